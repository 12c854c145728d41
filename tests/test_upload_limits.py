"""Nothing a user sends can exhaust the server (issue 12): the bad-input corpus, its
uploads (the checkpoints: tests/test_limits.py).

Every file here is made at test time, in memory or in ``tmp_path`` (small on disk):
pixel bombs, overlapping zips, too many images, FIFOs and devices. Each case is refused
with a message naming the limit, before the expensive work (decoding pixels, reading a
device) starts. The figure kept: any single upload, refused or the worst accepted, grows
the reading process by at most 300 MB and costs at most 10 s of CPU.
"""
from __future__ import annotations

import io
import os
import struct
import threading
import zipfile
import zlib

import pytest
import torch
from PIL import Image

from limits_harness import MB, assert_within_figure, cost, read_in_child
from metarep_core import limits
from metarep_core.checkpoints import load_checkpoint
from metarep_core.data import load_dataset, load_image_archive
from metarep_core.errors import MetaRepError

pytestmark = pytest.mark.child_processes  # the upload figures are read in a child (tests/limits_harness.py)


# --------------------------------------------------------------------------- images
def blank_png(width: int, height: int, mode: str = "L") -> bytes:
    """A PNG of one colour: a few KB on disk whatever canvas it declares."""
    out = io.BytesIO()
    Image.new(mode, (width, height), 255 if mode == "L" else (255, 255, 255)).save(out, "PNG")
    return out.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def canvas_25mp() -> bytes:
    return blank_png(5000, 5000)


def test_pixel_bombs_past_the_archive_budget_are_refused_before_decoding(canvas_25mp):
    # Eleven 25 MP canvases (275 MP, each under the 40 MP per-image cap): 4 KB each zipped.
    data = zip_of({f"c{i % 3}/{i}.png": canvas_25mp for i in range(11)})
    assert len(data) < 100_000
    with cost() as figures, pytest.raises(MetaRepError) as err:
        load_image_archive(data)
    assert "more than 250 megapixels" in str(err.value) and "at most 250 megapixels" in str(err.value)
    assert figures["cpu_s"] < 1.0  # headers only: decoding them all takes several seconds


def test_a_worst_refused_pixel_bomb_costs_little():
    # The zip: thousands of 39.7 MP PNGs (here 300). Refused at the seventh header.
    bomb = blank_png(6300, 6300)
    data = zip_of({f"c{i % 5}/{i}.png": bomb for i in range(300)})
    with cost() as figures, pytest.raises(MetaRepError, match="250 megapixels"):
        load_image_archive(data)
    assert_within_figure(figures, cpu_s=3.0)


def test_one_image_past_40_megapixels_is_refused_with_its_real_reason():
    data = zip_of({"a/big.png": blank_png(8000, 5001), "a/x.png": blank_png(4, 4),
                   "b/y.png": blank_png(4, 4)})
    with pytest.raises(MetaRepError) as err:
        load_image_archive(data)
    assert "'a/big.png' is 8000x5001 pixels; at most 40 megapixels per image" in str(err.value)
    assert "not a readable image" not in str(err.value)


def overlapping_zip(copies: int) -> bytes:
    """A zip whose central directory lists one local header ``copies`` times (the
    "overlapped" zip bomb: every entry decompresses the same bytes)."""
    data = zip_of({"a/x.png": blank_png(30, 30)})
    eocd = data.rindex(b"PK\x05\x06")
    _, _, _, _, _, cd_size, cd_offset, _ = struct.unpack("<IHHHHIIH", data[eocd:eocd + 22])
    record = data[cd_offset:cd_offset + cd_size]
    directory = record * copies
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, copies, copies, len(directory), cd_offset, 0)
    return data[:cd_offset] + directory + end


def test_overlapping_zip_entries_are_refused():
    data = overlapping_zip(50)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 50  # zipfile itself accepts it
    with pytest.raises(MetaRepError, match="overlapping entries.*zip bomb"):
        load_image_archive(data)


@pytest.fixture(scope="module")
def tiny_png() -> bytes:
    return blank_png(1, 1)


@pytest.fixture(scope="module")
def most_images(tiny_png) -> bytes:
    """A zip of exactly MAX_IMAGES 1x1 PNGs in 10 classes (~2 MB)."""
    return zip_of({f"c{i % 10}/{i}.png": tiny_png for i in range(limits.MAX_IMAGES)})


def read_in_fresh_process(data: bytes, tmp_path, **kwargs) -> dict:
    """load_image_archive(data, **kwargs) in a process that has read nothing else
    (tests/limits_harness.py says why): its outcome ("images" and "classes", or "refused"
    with the message), "cpu_s" and peak "growth" (bytes)."""
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    try:
        return read_in_child(path, **kwargs)
    finally:
        path.unlink()


def test_more_images_than_the_cap_are_refused(most_images, tiny_png, tmp_path):
    buf = io.BytesIO(most_images)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("c0/one-more.png", tiny_png)
    figures = read_in_fresh_process(buf.getvalue(), tmp_path)
    assert "holds 20,001 images; at most 20,000" in figures.get("refused", ""), figures
    assert_within_figure(figures, cpu_s=5.0)


def test_worst_accepted_uploads_stay_within_the_figure(most_images, tmp_path):
    # The most images (20,000, as the app reads them: 28x28 grayscale) ...
    figures = read_in_fresh_process(most_images, tmp_path)
    assert figures.get("images") == limits.MAX_IMAGES, figures
    assert_within_figure(figures)
    # ... and nearly the most pixels: six 40 MP RGBA canvases (240 MP, 4 bytes a pixel
    # decoded), decoded one at a time.
    out = io.BytesIO()
    Image.new("RGBA", (8000, 5000), (255, 255, 255, 255)).save(out, "PNG")
    data = zip_of({f"c{i}/x.png": out.getvalue() for i in range(6)})
    del out
    figures = read_in_fresh_process(data, tmp_path, image_size=28, channels=1)  # as the app reads uploads
    assert figures.get("classes") == 6, figures
    assert_within_figure(figures)


def padded_png(pad: int) -> bytes:
    """A valid 1x1 PNG carrying ``pad`` incompressible bytes in a private chunk (PIL
    skips it): the most archive bytes for the fewest pixels."""
    png, body = blank_png(1, 1), os.urandom(pad)
    chunk = struct.pack(">I", len(body)) + b"prVt" + body + struct.pack(">I", zlib.crc32(b"prVt" + body))
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the 25-byte IHDR


def test_worst_accepted_upload_in_bytes_stays_within_the_figure(tmp_path):
    # 2,000 files of 100 KB: 191 MB of image bytes, just under the 200 MB cap, uncompressible.
    buf = io.BytesIO()
    png = padded_png(100_000)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(2000):
            z.writestr(f"c{i % 10}/{i}.png", png)
    data = buf.getvalue()
    del buf
    figures = read_in_fresh_process(data, tmp_path)
    assert figures.get("classes") == 10, figures
    assert_within_figure(figures)


def test_archives_are_read_two_at_a_time_per_process():
    # Sessions share the server process: a third upload waits for a free slot instead of
    # holding its decompressed bytes beside the two being read.
    from metarep_core.data import folder
    data = zip_of({f"c{i % 2}/{i}.png": blank_png(4, 4) for i in range(6)})
    assert limits.MAX_CONCURRENT_ARCHIVE_READS == 2
    for _ in range(2):
        assert folder._READS.acquire(timeout=5)
    done = threading.Event()
    reader = threading.Thread(target=lambda: (load_image_archive(data), done.set()), daemon=True)
    try:
        reader.start()
        assert not done.wait(0.5), "a third archive was read while two slots were taken"
    finally:
        folder._READS.release()
        folder._READS.release()
    assert done.wait(30)


def test_decoded_images_are_kept_as_uint8_and_episodes_are_float(tiny_png):
    data = zip_of({f"c{i % 3}/{i}.png": blank_png(6, 6) for i in range(12)})
    d = load_image_archive(data, image_size=8)
    assert all(x.dtype == torch.uint8 for x in d.images)
    assert d.class_images(0).dtype == torch.float32
    from metarep_core.episodes import EpisodeSampler
    ep = EpisodeSampler(d, "all", 3, 1, 2, seed=0).sample()
    assert ep.support_x.dtype == torch.float32 and 0.0 <= float(ep.query_x.min()) <= float(ep.query_x.max()) <= 1.0


def test_decoded_size_past_the_bound_is_refused_before_decoding(tiny_png):
    # 4,000 1x1 PNGs upscaled to 3x256x256 with rotations would be 3 GB decoded.
    data = zip_of({f"c{i % 10}/{i}.png": tiny_png for i in range(4000)})
    with cost() as figures, pytest.raises(MetaRepError, match=r"would take 3000 MB decoded; at most 200 MB"):
        load_image_archive(data, image_size=256, channels=3, rotate=True)
    assert_within_figure(figures, growth=50 * MB, cpu_s=2.0)


# --------------------------------------------------------------------------- paths
def test_devices_and_fifos_are_never_read(tmp_path):
    with pytest.raises(MetaRepError, match="'/dev/zero' is not a regular file or a directory"):
        load_dataset("folder:/dev/zero")
    fifo = tmp_path / "pipe.zip"
    os.mkfifo(fifo)
    with pytest.raises(MetaRepError, match="not a regular file or a directory"):
        load_dataset(f"folder:{fifo}")
    with pytest.raises(MetaRepError, match="not a regular file"):
        load_checkpoint(fifo)


def test_a_fifo_named_like_an_image_in_a_folder_is_refused_not_opened(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            (tmp_path / c / f"{i}.png").write_bytes(blank_png(8, 8))
    os.mkfifo(tmp_path / "b" / "x.png")
    result = {}

    def load():
        try:
            load_dataset(f"folder:{tmp_path}")
        except MetaRepError as err:
            result["error"] = str(err)

    worker = threading.Thread(target=load, daemon=True)  # opening the FIFO would block forever
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "reading the folder hung on the FIFO"
    assert "'b/x.png'" in result["error"] and "not a regular file" in result["error"]


# --------------------------------------------------------------------------- the app
def _class_zip(first_class: str) -> bytes:
    files = {f"{c}/{i}.png": blank_png(10, 10) for c in (first_class, "cls1", "cls2") for i in range(6)}
    return zip_of(files)


def test_a_corrected_upload_with_the_same_name_and_size_is_read_again():
    from app_harness import new_app, set_and_run
    at = new_app()
    set_and_run(at, dataset="upload")
    first, corrected = _class_zip("clsA"), _class_zip("clsB")
    assert len(first) == len(corrected) and first != corrected
    at.file_uploader(key="upload_file").upload("set.zip", first).run()
    assert "clsA" in at.session_state["upload"]["dataset"].class_names
    at.file_uploader(key="upload_file").upload("set.zip", corrected).run()
    names = at.session_state["upload"]["dataset"].class_names
    assert "clsB" in names and "clsA" not in names
