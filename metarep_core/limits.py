"""The fixed bounds on what a user may send: one place, so the README, the CLI, the
app and the tests quote the same numbers.

One server is shared by a whole class, so no single upload, checkpoint or command
line may cost more than a bounded amount of memory and CPU. The figures these
bounds are chosen to keep (tested in ``tests/test_limits.py`` and
``tests/test_upload_limits.py``): any single upload or checkpoint grows the process
by at most 300 MB and costs at most 10 s of CPU, and anything past a bound is
refused with a message naming the bound.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- checkpoints
CHECKPOINT_MAX_BYTES = 100 * 2**20      # a Conv-4 learner is ~0.5 MB; the parameter cap in float32 is 80 MB
CHECKPOINT_MAX_HEADER_BYTES = 1 * 2**20  # the shipped headers are ~10 KB (names, shapes, metadata)
CHECKPOINT_MAX_PARAMETERS = 20_000_000   # numbers in all tensors together (the shipped: <= 0.2 M)
MAX_CHANNELS = 3                         # an image input is (C, H, W) with C in 1..3
MAX_IMAGE_SIDE = 256                     # H and W; the same range the datasets resize to (4..256)
MAX_VECTOR_DIM = 4096                    # a vector input is (D,)
MAX_N_WAY = 64                           # classes per episode a checkpoint may be built for

# ----------------------------------------------------------------------------- seeds
MAX_SEED = 2**32 - 1                     # numpy's and torch's seeds agree on 0..2**32-1

# ----------------------------------------------------------------------------- images
MAX_IMAGE_PIXELS = 40_000_000            # one image, before resizing (a tiny PNG can declare a huge canvas)
MAX_ARCHIVE_PIXELS = 250_000_000         # all images of one upload or folder (Omniglot background: 213 MP)
MAX_IMAGES = 20_000                      # image files in one upload or folder (Omniglot has 32,460 in two zips)
MAX_DECODED_BYTES = 200 * 2**20          # one dataset's images after resizing, as uint8, rotations included
MAX_CONCURRENT_ARCHIVE_READS = 2        # uploads/folders read at once per process; more sessions queue

# ----------------------------------------------------------------------------- run store
# What one run (one browser session's lasting work) may keep in the store (metarep_core/store).
# A checkpoint blob is bounded by CHECKPOINT_MAX_BYTES above.
STORE_DATASET_MAX_BYTES = 32 * 2**20     # an uploaded zip or a drawing, as sent (= server.maxUploadSize; Omniglot's background zip: 9 MB)
STORE_RUN_MAX_BYTES = 200 * 2**20        # all blobs of one run together
STORE_RUN_MAX_BLOBS = 32                 # checkpoints and datasets of one run (12 learners x a few datasets)
STORE_RUN_MAX_ANSWERS = 5_000            # exercise answers of one run, every attempt counted
STORE_JSON_MAX_CHARS = 16_384            # a run's settings, or one page's state, as JSON
STORE_ANSWER_MAX_CHARS = 1_000           # one answer, as JSON
STORE_NAME_MAX_CHARS = 40                # a student's display name
STORE_RESULT_MAX_BYTES = 2 * 2**20       # one kept comparison as JSON (12 learners x 600 episodes: ~0.2 MB)
