"""What a user uploads: a zip of class folders (a dataset) or a checkpoint.

Both land in the user's ``st.session_state`` only. Both are checked by the core
(``load_image_archive``: not a zip, corrupt, no class folders, non-image files,
zip-slip, zip bomb; ``load_checkpoint``: safetensors only, never unpickled, the
algorithm checked) and by the shape checks here; every refusal is a
:class:`MetaRepError` whose text the page shows.
"""
from __future__ import annotations

import hashlib

import streamlit as st

from app import memory, state
from app.i18n import t
from metarep_core.errors import MetaRepError

IMAGE_SIZE = 28  # uploads are resized to the shipped models' input size


def dataset_from_zip(name: str, data: bytes, image_size: int = IMAGE_SIZE):
    """A ClassDataset from a zip's bytes (class folders or the Omniglot layout).
    Raises MetaRepError with the core's explanation when the archive is refused."""
    from metarep_core.data import load_image_archive
    if not data:
        raise MetaRepError(t("upload.empty", name=name))
    return load_image_archive(data, name=name, image_size=image_size, seed=0)


def content_id(data: bytes) -> str:
    """The identity of an upload: a hash of its bytes (a corrected file with the same
    name and size is a different upload)."""
    return hashlib.sha256(data).hexdigest()


def accept_dataset_upload(name: str, data: bytes) -> dict:
    """Validate an uploaded zip and make it this session's "upload" dataset.

    A session holds one uploaded dataset: the previous one is dropped before the new
    one is decoded, so a re-upload never holds two at once (the core bounds each:
    images, pixels, bytes; see the README's Limits)."""
    st.session_state.pop("upload", None)
    try:
        dataset = dataset_from_zip(name, data)
    finally:
        # The read's decompressed entries (up to 200 MB) are freed now, into this script
        # thread's malloc heap, where the next read (another thread) would not reuse them.
        # Measured with 30 uploads at once: 2.99 GB held afterwards with this, 3.11 without.
        memory.release_freed_memory()
    entry = {"dataset": dataset, "name": name, "id": "upload:" + content_id(data)[:12]}
    st.session_state["upload"] = entry
    return entry


def learner_from_checkpoint(data: bytes, *, algorithm: str, n_way: int, input_shape, task: str):
    """(learner, metadata) from uploaded checkpoint bytes, refused unless it is a
    safetensors checkpoint of ``algorithm`` for ``n_way`` classes of ``input_shape``.

    The header alone is checked first (the core's fixed bounds, then what this page
    expects), so a file whose config describes another or an oversized model is
    refused before any learner is built from it."""
    from metarep_core.checkpoints import load_checkpoint, read_config
    want = (int(n_way), tuple(int(s) for s in input_shape), task)
    try:
        config, _ = read_config(data, algorithm=algorithm)
        got = (config["n_way"], config["input_shape"], config["task"])
        if got != want:
            raise MetaRepError(t("checkpoint.shape_mismatch", got=_describe(*got),
                                 want=_describe(*want)))
        learner, meta = load_checkpoint(data, expected_algorithm=algorithm, expected_n_way=want[0],
                                        expected_input_shape=want[1], expected_task=task)
    except MetaRepError:
        raise
    except Exception as exc:  # a file the safetensors reader cannot even parse
        raise MetaRepError(t("checkpoint.unreadable", error=type(exc).__name__)) from None
    return learner.eval(), dict(meta or {})


def _describe(n_way, shape, task) -> str:
    return f"{task}, n_way={n_way}, input {'x'.join(map(str, shape))}"


def accept_checkpoint_upload(data: bytes, name: str, ctx) -> dict:
    """Load an uploaded checkpoint as the session's model for the sidebar's key."""
    s = ctx.settings
    learner, meta = learner_from_checkpoint(data, algorithm=s.algorithm, n_way=s.n_way,
                                            input_shape=ctx.dataset.input_shape, task=ctx.task)
    key = state.model_key(s.algorithm, ctx.dataset_id, s.n_way, ctx.dataset.input_shape)
    state.set_model(key, learner, "uploaded", dict(meta, file=name))
    return state.session_models()[key]
