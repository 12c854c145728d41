"""omniglot: the real Omniglot background set, bundled with the project.

Lake, Salakhutdinov & Tenenbaum (2015): 30 alphabets, 964 characters, 20 drawings each,
drawn on 105x105 binary canvases, here converted once to 28x28 by
``scripts/make_omniglot.py`` into ``assets/data/omniglot_background_28.npz`` (uint8,
``np.savez_compressed``, read with ``allow_pickle=False``). MIT licence; the notice is
``assets/data/LICENSE-omniglot.txt``, beside the array.

The images are exactly what ``folder:omniglot_images_background.zip?rotate=1`` gives
(the conversion calls the folder loader's resize, :func:`.imaging.image_to_array`, and
this module repeats its float conversion and inversion), so a checkpoint trained here can
be evaluated on the official PNGs of other alphabets (``folder:.../images_evaluation
--split all``) on equal terms — without decoding 19,280 PNGs at every start.

Protocol (the README's Omniglot protocol, the one ``folder:...?rotate=1`` follows):

* classes ``"Alphabet/characterNN"`` sorted by name, ``groups`` their alphabet; then the
  90/180/270-degree rotations of every character as new classes
  ``"Alphabet/characterNN@rot90"`` etc. (3,856 classes);
* splits by alphabet (:func:`.base.split_classes` with the alphabets as groups): with data
  seed 0, 19 train / 5 val / 6 test alphabets, test = Anglo-Saxon Futhorc, Burmese,
  Gujarati, Malay (Jawi), N'Ko, Syriac (Estrangelo); no alphabet is in two splits;
* a rotation stays in its character's split, so val and test hold rotated classes too
  (2,544 / 484 / 828 classes), as ``?rotate=1`` does and as in Vinyals et al.'s and
  Finn et al.'s Omniglot code; no rotation of a test character is ever trained on.

Images: uint8 (20, 1, 28, 28) per class, ink 255 and paper 0 (inverted, like glyphs and
like the folder loader does for dark-on-white sets); episodes and
:meth:`.base.ClassDataset.class_images` give float32 in [0, 1], ink 1 (a quarter of the
memory of float32: 60 MB instead of 242 MB with the rotations). ``channels=3`` repeats the
gray channel. The array is stored at 28x28 only: another ``image_size`` is refused (load
the PNGs through ``folder:`` for that).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import MetaRepError
from .base import ClassDataset, split_classes
from .folder import ROTATIONS

ASSET = Path(__file__).resolve().parents[2] / "assets" / "data" / "omniglot_background_28.npz"
IMAGE_SIZE = 28
REMAKE = "python scripts/make_omniglot.py --zip ../shared/data/omniglot_images_background.zip"


def read_bundle(path: Path = ASSET) -> tuple[np.ndarray, list[str], dict]:
    """(images uint8 (n_characters, 20, 28, 28) as in the PNGs, class names, meta) from the
    bundled file; :class:`MetaRepError` naming the fix when it is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, names, meta = z["images"], z["class_names"].tolist(), json.loads(str(z["meta"]))
    except FileNotFoundError:
        raise MetaRepError(f"the bundled Omniglot array {str(path)!r} is missing; "
                           f"regenerate it with: {REMAKE}") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise MetaRepError(f"the bundled Omniglot array {str(path)!r} cannot be read "
                           f"({type(exc).__name__}: {exc}); regenerate it with: {REMAKE}") from None
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE)
            or len(names) != images.shape[0]):
        raise MetaRepError(f"the bundled Omniglot array {str(path)!r} holds images "
                           f"{images.dtype}{tuple(images.shape)} for {len(names)} names; expected "
                           f"uint8 (n, 20, 28, 28) with one name per character; regenerate it "
                           f"with: {REMAKE}")
    return images, names, meta


def load_omniglot(seed: int = 0, image_size: int | None = None, channels: int = 1,
                  path: Path = ASSET) -> ClassDataset:
    """The bundled background set with rotations, split by alphabet (see module doc)."""
    if image_size not in (None, IMAGE_SIZE):
        raise MetaRepError(
            f"image_size must be {IMAGE_SIZE} for omniglot (the bundled array is 28x28), got "
            f"{image_size!r}; for another size load the PNGs: "
            "folder:../shared/data/omniglot_images_background.zip?rotate=1")
    raw, base_names, meta = read_bundle(path)
    n_chars, n_drawings = raw.shape[:2]
    # Kept as uint8 and inverted as folder.load_folder does (255 - x): the float32 an
    # episode gets (ClassDataset.class_images) is then equal to the folder's to the last bit.
    x = torch.from_numpy(255 - raw.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)).unsqueeze(1)
    if channels == 3:
        x = x.expand(-1, 3, -1, -1).contiguous()
    # Rotate all characters at once (one block per angle), then cut into classes (views);
    # the order (all originals, then all rot90, ...) is the folder loader's, so the split is too.
    blocks = [x] + [torch.rot90(x, r // 90, dims=(-2, -1)).contiguous() for r in ROTATIONS]
    images = [im for block in blocks for im in torch.split(block, n_drawings)]
    base_groups = [c.split("/")[0] for c in base_names]
    class_names, groups = list(base_names), list(base_groups)
    for r in ROTATIONS:
        class_names += [f"{c}@rot{r}" for c in base_names]
        groups += base_groups
    return ClassDataset(
        name="omniglot", class_names=class_names, images=images,
        splits=split_classes(len(class_names), seed, groups=groups), groups=groups,
        params={"dataset": "omniglot", "seed": seed, "image_size": IMAGE_SIZE,
                "channels": channels, "rotate": True, "layout": "omniglot", "inverted": True,
                "source": meta.get("source"), "source_sha256": meta.get("source_sha256")},
    )
