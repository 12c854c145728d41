"""Convert the Omniglot background set (PNG zip) into the bundled 28x28 array.

    python scripts/make_omniglot.py [--zip ../shared/data/omniglot_images_background.zip]
                                    [--out assets/data/omniglot_background_28.npz]

Reads the official layout ``images_background/<Alphabet>/<character>/<id>_<nn>.png``
(30 alphabets, 964 characters, 20 drawings each, 105x105 binary) with the project's zip
reader, resizes every drawing with :func:`metarep_core.data.imaging.image_to_array` (the
same call the ``folder:`` loader makes, so the two agree pixel for pixel), and writes one
``np.savez_compressed`` file, readable with ``allow_pickle=False``:

* ``images``: uint8 (964, 20, 28, 28), the resized pixels as in the PNGs (paper 255, ink
  near 0; the loader inverts, like the folder loader does for Omniglot);
* ``class_names``: str (964,), ``"Alphabet/characterNN"``, sorted (the folder loader's order);
* ``drawings``: str (964, 20), each drawing's file name without ``.png``, sorted per
  character (the order of ``images[c]``);
* ``meta``: a 0-d str holding JSON (source zip and its SHA-256, resize, Pillow version).

The Omniglot licence (MIT, Brenden Lake 2015) is copied beside the array as
``LICENSE-omniglot.txt``; the MIT licence requires the notice to travel with the data.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metarep_core.data.archive import read_zip_images  # noqa: E402
from metarep_core.data.imaging import image_to_array  # noqa: E402

SIZE = 28
N_ALPHABETS, N_CHARACTERS, N_DRAWINGS = 30, 964, 20


def convert(zip_path: Path) -> dict[str, np.ndarray]:
    """The arrays to save (see the module docstring) from the background-set zip."""
    items, _ = read_zip_images(zip_path)
    by_class: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for parts, data in items:
        if len(parts) != 4 or parts[0] != "images_background":
            raise SystemExit(f"unexpected entry {'/'.join(parts)!r}: not the official "
                             "images_background/<Alphabet>/<character>/<file>.png layout")
        by_class[f"{parts[1]}/{parts[2]}"].append((Path(parts[3]).stem, data))
    class_names = sorted(by_class)
    alphabets = {c.split("/")[0] for c in class_names}
    counts = {len(v) for v in by_class.values()}
    if (len(alphabets), len(class_names), counts) != (N_ALPHABETS, N_CHARACTERS, {N_DRAWINGS}):
        raise SystemExit(f"expected {N_ALPHABETS} alphabets, {N_CHARACTERS} characters x "
                         f"{N_DRAWINGS} drawings; found {len(alphabets)}, {len(class_names)}, "
                         f"drawings per character {sorted(counts)}")
    images = np.empty((N_CHARACTERS, N_DRAWINGS, SIZE, SIZE), dtype=np.uint8)
    drawings = np.empty((N_CHARACTERS, N_DRAWINGS), dtype=f"<U{max(len(s) for v in by_class.values() for s, _ in v)}")
    for c, name in enumerate(class_names):
        for d, (stem, data) in enumerate(sorted(by_class[name])):
            with Image.open(io.BytesIO(data)) as im:
                images[c, d] = image_to_array(im, SIZE, "L")
            drawings[c, d] = stem
    meta = {"source": zip_path.name,
            "source_sha256": hashlib.sha256(zip_path.read_bytes()).hexdigest(),
            "resize": f"metarep_core.data.imaging.image_to_array(im, {SIZE}, 'L'): PIL bilinear",
            "pillow": PIL.__version__,
            "licence": "MIT, Copyright (c) 2015 Brenden Lake; see LICENSE-omniglot.txt",
            "citation": "Lake, Salakhutdinov & Tenenbaum (2015), Human-level concept learning "
                        "through probabilistic program induction. Science 350(6266)."}
    return {"images": images, "class_names": np.array(class_names), "drawings": drawings,
            "meta": np.array(json.dumps(meta, sort_keys=True))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", type=Path,
                    default=ROOT.parent / "shared/data/omniglot_images_background.zip")
    ap.add_argument("--out", type=Path, default=ROOT / "assets/data/omniglot_background_28.npz")
    args = ap.parse_args(argv)
    arrays = convert(args.zip)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    licence = args.zip.parent / "LICENSE-omniglot.txt"
    if licence.is_file():
        shutil.copyfile(licence, args.out.parent / "LICENSE-omniglot.txt")
    else:
        print(f"warning: {licence} not found; keep the MIT notice beside {args.out}", file=sys.stderr)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.2f} MiB, images {arrays['images'].shape}")


if __name__ == "__main__":
    main()
