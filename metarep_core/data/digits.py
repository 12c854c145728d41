"""digits: scikit-learn's bundled handwritten digits (real data, no download).

1,797 images of the digits 0-9 (about 180 per class), 8x8 grayscale, pixel values
0..16 scaled to [0, 1]. Shape (1, 8, 8) by default: the native size, which Conv-4
handles (it skips pooling once the map is 1x1). Passing ``image_size`` resizes
(bilinear) — e.g. ``image_size=28`` to evaluate a glyphs-trained model on digits.

Class split (fixed, the same for every seed, so "unseen digits" always means the
same digits; the seed still drives episode sampling):

* train: 0 1 2 3 4  (5 classes: enough for 5-way meta-training)
* val:   5 6        (2 classes: validation runs at n_way <= 2)
* test:  7 8 9      (3 classes: unseen digits, so test episodes are at most 3-way)
* all:   0-9        (10 classes: e.g. evaluate a model trained elsewhere)

Ten classes cannot give 5-way train *and* 5-way test; we chose to keep 5-way
training possible and leave three digits never seen in training. A 5-way test
episode is refused by :meth:`ClassDataset.check_episode` with a message naming the
three classes available (use ``--split all`` for up to 10-way).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClassDataset

SPLITS = {"train": [0, 1, 2, 3, 4], "val": [5, 6], "test": [7, 8, 9], "all": list(range(10))}


def load_digits_dataset(seed: int = 0, image_size: int | None = None,
                        channels: int = 1) -> ClassDataset:
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.from_numpy(raw.images).to(torch.float32).div_(16.0).unsqueeze(1)  # (n, 1, 8, 8)
    size = image_size or 8
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    if channels == 3:
        x = x.expand(-1, 3, -1, -1)
    y = torch.from_numpy(raw.target)
    images = [x[y == d].contiguous() for d in range(10)]
    return ClassDataset(
        name="digits", class_names=[str(d) for d in range(10)], images=images,
        splits={k: list(v) for k, v in SPLITS.items()}, groups=None,
        params={"dataset": "digits", "seed": seed, "image_size": size, "channels": channels},
    )
