"""One image-to-array conversion for every image dataset (the ``folder:`` loader and the
bundled ``omniglot`` array made by ``scripts/make_omniglot.py``).

A model sees exactly the pixels this function makes; if the bundled set and a user's
PNG folder were resized differently (another filter, another rounding), a checkpoint
trained on one would be evaluated on subtly different images from the other. Keeping
the single call here is what lets a checkpoint trained on the bundled Omniglot
background set be evaluated on the official PNGs of other alphabets
(``folder:.../images_evaluation``) on equal terms.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def image_to_array(im: Image.Image, size: int, mode: str = "L") -> np.ndarray:
    """``im`` converted to ``mode`` ("L" grayscale or "RGB") and resized to size x size.

    Returns uint8, shape (size, size) for "L" or (size, size, 3) for "RGB", pixel values as
    in the file (no inversion, no scaling to [0, 1]: the caller does that). The filter is
    PIL's bilinear, which widens its support when shrinking (antialiased), so a 105x105
    binary Omniglot drawing becomes a 28x28 grayscale one without aliasing.
    """
    im.draft(mode, (size, size))  # JPEG: decode at a reduced scale directly (no-op for PNG)
    if im.mode != mode:  # convert() of a same-mode image is a full copy (120 MB at 40 MP RGB)
        im = im.convert(mode)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)
