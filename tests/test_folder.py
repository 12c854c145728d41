"""folder / zip datasets: both layouts, conversion, and every bad input refused clearly.

Every fixture is made of real image files written with PIL (and real zips).
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metarep_core.data import load_dataset, load_image_archive
from metarep_core.data.archive import ArchiveLimits
from metarep_core.data.folder import load_folder, parse_folder_spec
from metarep_core.episodes import EpisodeSampler
from metarep_core.errors import MetaRepError

REPO = Path(__file__).resolve().parents[1]


def png_bytes(k: int, size: int = 40, color=None, fmt: str = "PNG") -> bytes:
    """A real image: dark strokes on white paper, a different bar per ``k``."""
    im = Image.new("RGB" if color else "L", (size, size), "white")
    pix = np.array(im)
    pix[(k * 7) % (size - 10):(k * 7) % (size - 10) + 8, 4:size - 4] = color or 0
    out = io.BytesIO()
    Image.fromarray(pix).save(out, fmt)
    return out.getvalue()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def zip_bytes(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def class_folders(n_classes=4, per_class=5) -> dict[str, bytes]:
    return {f"cls{c}/img{i}.png": png_bytes(c + i % 2) for c in range(n_classes) for i in range(per_class)}


def omniglot_layout(n_alphabets=4, chars=3, per_char=4) -> dict[str, bytes]:
    return {f"top/Alpha{a}/character{c:02d}/{a}{c}_{i:02d}.png": png_bytes(a * chars + c)
            for a in range(n_alphabets) for c in range(chars) for i in range(per_char)}


def test_class_folder_layout_from_a_directory(tmp_path):
    write_tree(tmp_path, {**class_folders(), "cls0/notes.txt": b"hello", ".DS_Store": b"\0"})
    d = load_folder(tmp_path, image_size=16)
    assert d.class_names == ["cls0", "cls1", "cls2", "cls3"]
    assert all(im.shape == (5, 1, 16, 16) for im in d.images)
    assert d.groups is None and d.params["layout"] == "class_folders"
    assert d.params["skipped_files"] == 1
    # Dark ink on white paper is inverted: ink 1, background 0 (as in glyphs). Kept as
    # uint8 (a quarter of float32); class_images gives float32 in [0, 1].
    assert d.images[0].dtype == torch.uint8
    x = d.class_images(0)
    assert d.params["inverted"] and x.mean() < 0.5 and x.max() > 0.9 and x.min() == 0.0
    s = {k: set(v) for k, v in d.splits.items()}
    assert not (s["train"] & s["test"]) and s["all"] == {0, 1, 2, 3}


def test_omniglot_layout_from_a_zip_splits_by_alphabet(tmp_path):
    path = tmp_path / "set.zip"
    path.write_bytes(zip_bytes(omniglot_layout(n_alphabets=5)))
    d = load_dataset(f"folder:{path}", seed=1)
    assert d.params["layout"] == "omniglot" and d.n_classes == 15
    assert d.class_names[0] == "Alpha0/character00" and d.groups[0] == "Alpha0"
    alpha = {k: {d.groups[c] for c in v} for k, v in d.splits.items() if k != "all"}
    assert not (alpha["train"] & alpha["test"]) and not (alpha["val"] & alpha["test"])
    assert d.input_shape == (1, 28, 28)
    ep = EpisodeSampler(d, "all", 5, 1, 3, seed=0).sample()
    assert ep.query_x.shape == (15, 1, 28, 28) and len(set(ep.class_names)) == 5
    # The same seed gives the same splits; the load is cached in-process.
    assert load_dataset(f"folder:{path}", seed=1) is d
    assert load_folder(path, seed=1).splits == d.splits


def test_rgb_conversion_resizing_and_upload_bytes():
    files = {f"red/{i}.png": png_bytes(i, 30, (255, 0, 0)) for i in range(3)}
    files.update({f"blue/{i}.jpg": png_bytes(i, 30, (0, 0, 255), "JPEG") for i in range(3)})
    d = load_image_archive(zip_bytes(files), image_size=12, channels=3, name="colours")
    assert d.name == "colours" and d.input_shape == (3, 12, 12)
    red, blue = d.class_images(d.class_names.index("red")), d.class_images(d.class_names.index("blue"))
    # Background white, bars coloured: red lacks green/blue ink where the bar is.
    assert not d.params["inverted"]
    assert (red[:, 0].mean() > red[:, 2].mean()) and (blue[:, 2].mean() > blue[:, 0].mean())
    gray = load_image_archive(zip_bytes(files), image_size=12, channels=1)
    assert gray.input_shape == (1, 12, 12)


def test_rotations_add_classes_in_the_same_split(tmp_path):
    write_tree(tmp_path, class_folders(n_classes=6))
    d = load_dataset(f"folder:{tmp_path}?rotate=1")
    assert d.n_classes == 24 and "cls0@rot90" in d.class_names
    split_of = {c: k for k, v in d.splits.items() if k != "all" for c in v}
    for i, name in enumerate(d.class_names):
        base = d.class_names.index(name.split("@rot")[0])
        assert split_of[i] == split_of[base]
    i90 = d.class_names.index("cls1@rot90")
    assert torch.equal(d.images[i90], torch.rot90(d.images[1], 1, dims=(-2, -1)))
    with pytest.raises(MetaRepError, match="unknown folder option 'turn=2'"):
        parse_folder_spec("folder:/x?turn=2")


def test_missing_path_not_a_zip_and_corrupt_zip(tmp_path):
    with pytest.raises(MetaRepError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    text = tmp_path / "fake.zip"
    text.write_text("not a zip at all")
    with pytest.raises(MetaRepError, match="not a zip file"):
        load_folder(text)
    with pytest.raises(MetaRepError, match="not a zip file"):
        load_image_archive(b"GIF89a not a zip")
    good = zip_bytes(class_folders(), compression=zipfile.ZIP_STORED)
    with pytest.raises(MetaRepError, match="not a zip file|corrupt"):
        load_image_archive(good[: len(good) // 2])  # truncated upload
    flipped = bytearray(good)
    flipped[200:260] = b"\xff" * 60  # damage an entry's data: its CRC check fails
    with pytest.raises(MetaRepError, match="corrupt|not a readable image"):
        load_image_archive(bytes(flipped))


def test_no_class_folders_and_no_images(tmp_path):
    with pytest.raises(MetaRepError, match="no class folders"):
        load_image_archive(zip_bytes({"a.png": png_bytes(0), "b.png": png_bytes(1)}))
    with pytest.raises(MetaRepError, match="holds no image files.*2 other files"):
        load_image_archive(zip_bytes({"cls/readme.txt": b"x", "cls/data.csv": b"1,2"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetaRepError, match="holds no image files"):
        load_folder(tmp_path / "empty")


def test_undecodable_image_is_named(tmp_path):
    files = {**class_folders(), "cls2/broken.png": b"\x89PNG this is not really a png"}
    with pytest.raises(MetaRepError, match=r"'cls2/broken.png' has an image extension but is not"):
        load_image_archive(zip_bytes(files))
    write_tree(tmp_path, files)
    with pytest.raises(MetaRepError, match="broken.png"):
        load_folder(tmp_path)


@pytest.mark.parametrize("entry", ["../evil/x.png", "/etc/cls/x.png", "cls/../../x.png",
                                   "C:/cls/x.png", "..\\cls\\x.png"])
def test_entries_escaping_the_archive_are_refused(entry):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in class_folders().items():
            z.writestr(name, data)
        info = zipfile.ZipInfo("placeholder")
        info.filename = entry  # ZipInfo() would sanitise the name; a hostile tool does not
        z.writestr(info, png_bytes(0))
    with pytest.raises(MetaRepError, match=r"points outside the archive") as err:
        load_image_archive(buf.getvalue())
    assert repr(entry) in str(err.value)


def test_zip_bombs_are_refused_before_decompressing():
    zeros = b"\0" * (25 * 2**20)  # 25 MB of zeros compresses to ~25 KB
    bomb = zip_bytes({**class_folders(), "cls0/huge.png": zeros})
    assert len(bomb) < 200_000
    with pytest.raises(MetaRepError, match=r"'cls0/huge.png' is 25.0 MB uncompressed.*cap per file"):
        load_image_archive(bomb)
    # A suspicious ratio under the per-file cap is refused too.
    ratio = zip_bytes({**class_folders(), "cls0/big.bmp": b"\0" * (3 * 2**20)})
    with pytest.raises(MetaRepError, match=r"expands \d+x.*zip bomb"):
        load_image_archive(ratio)
    # The total cap counts every entry (lowered here to keep the test small).
    many = zip_bytes(class_folders(per_class=20))
    limits = ArchiveLimits(max_total_bytes=2048)
    with pytest.raises(MetaRepError, match=r"would decompress to [\d.]+ KB of images; the cap is 2.0 KB"):
        load_image_archive(many, limits=limits)


def test_too_few_images_for_the_episode(tmp_path):
    write_tree(tmp_path, class_folders(n_classes=5, per_class=3))
    d = load_folder(tmp_path)
    with pytest.raises(MetaRepError, match=r"k_shot \+ n_query = 6 but class 'cls\d' has 3 images"):
        EpisodeSampler(d, "all", n_way=5, k_shot=1, n_query=5)
    with pytest.raises(MetaRepError, match=r"n_way = 6 but the 'all' split .* has 5 classes"):
        EpisodeSampler(d, "all", n_way=6, k_shot=1, n_query=1)


def omniglot_zip() -> Path | None:
    env = os.environ.get("METAREP_OMNIGLOT_ZIP")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared/data/omniglot_images_background.zip"]:
        if p.is_file():
            return p
    return None


def test_real_omniglot_alphabets():
    """Real data: a few alphabets of the Omniglot background set, in the official layout."""
    path = omniglot_zip()
    if path is None:
        pytest.skip("Omniglot zip absent: set METAREP_OMNIGLOT_ZIP or put it at "
                    "../shared/data/omniglot_images_background.zip (CI has it)")
    keep = ("Latin", "Greek", "Futurama", "Korean")
    with zipfile.ZipFile(path) as z:
        files = {i.filename: z.read(i) for i in z.infolist()
                 if not i.is_dir() and i.filename.split("/")[1] in keep}
    d = load_image_archive(zip_bytes(files, zipfile.ZIP_STORED), image_size=28, rotate=True)
    n_chars = len({"/".join(n.split("/")[1:3]) for n in files})
    assert d.params["layout"] == "omniglot" and d.n_classes == 4 * n_chars
    assert set(d.groups) == set(keep) and all(im.shape == (20, 1, 28, 28) for im in d.images)
    assert d.params["inverted"] and 0.03 < float(d.class_images(0).mean()) < 0.3
    alpha = {k: {d.groups[c] for c in v} for k, v in d.splits.items() if k != "all"}
    assert len(alpha["test"]) == 1 and not (alpha["test"] & alpha["train"])
