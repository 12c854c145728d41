"""The bundled Omniglot background set: the same pixels as the folder loader gives for the
official PNGs, the README's alphabet split, and a file that is never unpickled.

The comparisons with the PNGs need the background-set zip (``METAREP_OMNIGLOT_ZIP`` or
``../shared/data/omniglot_images_background.zip``; CI has it) and skip, saying so, without it.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from metarep_core.cli import main
from metarep_core.data import DATASETS, load_dataset, load_image_archive
from metarep_core.data.omniglot import ASSET, load_omniglot, read_bundle
from metarep_core.errors import MetaRepError

REPO = Path(__file__).resolve().parents[1]
README_TEST_ALPHABETS = {"Anglo-Saxon_Futhorc", "Burmese_(Myanmar)", "Gujarati",
                         "Malay_(Jawi_-_Arabic)", "N_Ko", "Syriac_(Estrangelo)"}


def omniglot_zip() -> Path:
    env = os.environ.get("METAREP_OMNIGLOT_ZIP")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared/data/omniglot_images_background.zip"]:
        if p.is_file():
            return p
    pytest.skip("Omniglot zip absent: set METAREP_OMNIGLOT_ZIP or put it at "
                "../shared/data/omniglot_images_background.zip (CI has it)")


# A few characters from different alphabets, some of them long-named.
SAMPLE = ("Latin/character01", "Korean/character40", "N_Ko/character33",
          "Malay_(Jawi_-_Arabic)/character07", "Tifinagh/character55")


def sample_pngs(zip_path: Path) -> dict[str, bytes]:
    """{'images_background/<class>/<file>.png': bytes} for SAMPLE, read from the zip."""
    with zipfile.ZipFile(zip_path) as z:
        return {i.filename: z.read(i) for i in z.infolist()
                if not i.is_dir() and "/".join(i.filename.split("/")[1:3]) in SAMPLE}


def test_bundled_array_equals_the_folder_loader_on_the_same_pngs(tmp_path):
    pngs = sample_pngs(omniglot_zip())
    assert len(pngs) == 20 * len(SAMPLE)
    bundled = load_dataset("omniglot")
    index = {c: i for i, c in enumerate(bundled.class_names)}
    _, _, meta = read_bundle()
    with np.load(ASSET, allow_pickle=False) as z:
        drawings = z["drawings"]

    # Through the archive reader (a zip in memory, entries in file-name order as the
    # bundled array keeps them) and through `folder:` on a directory of the same PNGs.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(pngs):
            z.writestr(name, pngs[name])
    for name, data in pngs.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    from_zip = load_image_archive(buf.getvalue(), image_size=28)
    from_dir = load_dataset(f"folder:{tmp_path}")
    for loaded in (from_zip, from_dir):
        assert loaded.class_names == sorted(SAMPLE) and loaded.params["inverted"]
        for c, name in enumerate(loaded.class_names):
            ours = bundled.images[index[name]]
            assert ours.dtype == loaded.images[c].dtype == torch.uint8  # float per episode
            assert torch.equal(ours, loaded.images[c]), name  # bit for bit
    # The drawing order is the files' order, recorded beside the pixels.
    files = sorted(n for n in pngs if n.split("/")[1:3] == ["Latin", "character01"])
    assert drawings[index["Latin/character01"]].tolist() == [Path(f).stem for f in files]
    # Rotated classes are the folder loader's rotations of the same pixels.
    latin = from_zip.images[from_zip.class_names.index("Latin/character01")]
    rot = bundled.class_names.index("Latin/character01@rot90")
    assert torch.equal(bundled.images[rot], torch.rot90(latin, 1, dims=(-2, -1)))
    # Provenance, not compared with this zip's hash: another copy of the official
    # images_background.zip holds the same PNGs in different zip bytes.
    assert meta["source"] == "omniglot_images_background.zip" and len(meta["source_sha256"]) == 64


def test_split_is_by_alphabet_as_in_the_readme_protocol():
    d = load_dataset("omniglot")
    assert d.n_classes == 4 * 964 and len(set(d.groups)) == 30
    assert all(im.shape == (20, 1, 28, 28) for im in d.images)
    alphabets = {k: {d.groups[c] for c in d.splits[k]} for k in ("train", "val", "test")}
    assert [len(alphabets[k]) for k in ("train", "val", "test")] == [19, 5, 6]
    assert alphabets["test"] == README_TEST_ALPHABETS
    assert not (alphabets["train"] & alphabets["val"] or alphabets["train"] & alphabets["test"]
                or alphabets["val"] & alphabets["test"])
    assert [len(d.splits[k]) for k in ("train", "val", "test")] == [2544, 484, 828]
    # A rotation stays in its character's split (val and test hold rotations too).
    for k in ("train", "val", "test"):
        base = {d.class_names[c].split("@")[0] for c in d.splits[k]}
        assert len(d.splits[k]) == 4 * len(base)
    # Ink is 1 on a 0 background (inverted like glyphs), values in [0, 1].
    assert d.images[0].dtype == torch.uint8  # a quarter of float32; episodes get float
    x = torch.cat([d.class_images(c) for c in range(964)])
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and 0.03 < float(x.mean()) < 0.2
    # Another data seed splits other alphabets, still whole alphabets.
    other = load_omniglot(seed=1)
    test1 = {other.groups[c] for c in other.splits["test"]}
    assert test1 != README_TEST_ALPHABETS and not test1 & {other.groups[c] for c in other.splits["train"]}


def test_registered_listed_and_cached():
    assert "omniglot" in DATASETS
    out = io.StringIO()
    assert main(["datasets", "--json"], out=out, err=io.StringIO()) == 0
    assert "omniglot" in json.loads(out.getvalue())
    assert load_dataset("omniglot") is load_dataset("omniglot", image_size=28)
    assert load_dataset("omniglot").params["dataset"] == "omniglot"
    rgb = load_dataset("omniglot", channels=3)
    assert rgb.input_shape == (3, 28, 28)
    assert torch.equal(rgb.images[5][:, 1], load_dataset("omniglot").images[5][:, 0])
    with pytest.raises(MetaRepError, match=r"image_size must be 28 for omniglot .* got 32"):
        load_dataset("omniglot", image_size=32)


def test_a_missing_damaged_or_pickled_file_is_refused(tmp_path):
    with pytest.raises(MetaRepError, match=r"is missing; regenerate it with: python scripts/make_omniglot.py"):
        read_bundle(tmp_path / "absent.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MetaRepError, match="cannot be read"):
        read_bundle(tmp_path / "bad.npz")
    # Object arrays need pickle: the loader must refuse rather than unpickle.
    np.savez(tmp_path / "pickled.npz", images=np.zeros((1, 20, 28, 28), np.uint8),
             class_names=np.array([{"x": 1}], dtype=object), meta=np.array("{}"))
    with pytest.raises(MetaRepError, match="cannot be read"):
        read_bundle(tmp_path / "pickled.npz")
    np.savez(tmp_path / "shape.npz", images=np.zeros((2, 20, 32, 32), np.uint8),
             class_names=np.array(["A/character01", "A/character02"]), meta=np.array("{}"))
    with pytest.raises(MetaRepError, match=r"expected uint8 \(n, 20, 28, 28\)"):
        read_bundle(tmp_path / "shape.npz")


def test_the_licence_travels_with_the_array():
    text = (ASSET.parent / "LICENSE-omniglot.txt").read_text()
    assert "Copyright (c) 2015 Brenden Lake" in text and "Permission is hereby granted" in text
