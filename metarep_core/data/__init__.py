"""Datasets: ``load_dataset(spec)`` is the one way in (CLI, app, tests).

Specs: ``"glyphs"`` (the embedded default), ``"omniglot"`` (the real background set,
bundled), ``"digits"``, ``"sinusoid"`` and
``"folder:PATH"`` where PATH is a directory of class folders or a ``.zip`` (add
``?rotate=1`` to add 90/180/270-degree rotations as extra classes, as in the
Omniglot protocol). Datasets are read-only, so loads are cached in-process.
"""
from __future__ import annotations

import functools
from pathlib import Path

from ..errors import MetaRepError
from .base import SPLITS, ClassDataset, TaskFamily, split_classes

DATASETS: dict[str, str] = {
    "glyphs": "Generated Omniglot-like handwritten characters: 1,650 classes in 50 alphabets, "
              "20 drawings each, 28x28 (the embedded default; test alphabets are unseen)",
    "omniglot": "Real Omniglot background set (Lake et al. 2015, MIT licence), bundled: 964 "
                "characters of 30 alphabets, 20 drawings each, 28x28, with 90/180/270-degree "
                "rotations as extra classes; split by alphabet (19/5/6 with seed 0)",
    "digits": "scikit-learn's handwritten digits 0-9, 8x8 real data; train 0-4, val 5-6, "
              "test 7-9 (unseen digits)",
    "sinusoid": "MAML's regression tasks y = A sin(x - phase), A in [0.1, 5], phase in [0, pi], "
                "x in [-5, 5]",
    "folder:PATH": "Your images: a directory or .zip of class folders (root/<class>/*.png) or "
                   "the Omniglot layout (root/<alphabet>/<character>/*.png); add ?rotate=1 "
                   "for rotated copies as extra classes",
}

__all__ = ["DATASETS", "SPLITS", "ClassDataset", "TaskFamily", "load_dataset",
           "load_image_archive", "split_classes"]


def _check_args(image_size, channels) -> None:
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)
                                   or not 4 <= image_size <= 256):
        raise MetaRepError(f"image_size must be an integer between 4 and 256, got {image_size!r}")
    if channels not in (1, 3):
        raise MetaRepError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def load_dataset(spec: str, *, seed: int = 0, image_size: int | None = None,
                 channels: int = 1) -> ClassDataset | TaskFamily:
    """The dataset named by ``spec`` (see the module docstring).

    ``image_size=None`` means the dataset's own size: 28 for glyphs, omniglot and folders,
    the native 8 for digits (any explicit size resizes, except omniglot's stored 28x28,
    which refuses another size). ``channels`` is 1 or 3.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise MetaRepError(f"dataset must be one of {', '.join(DATASETS)}, got {spec!r}")
    spec = spec.strip()
    _check_args(image_size, channels)
    seed = int(seed)
    if spec.startswith("folder:"):
        from .folder import parse_folder_spec

        path, rotate = parse_folder_spec(spec)
        from .archive import check_regular_or_dir

        # A FIFO or a device (folder:/dev/zero) is refused before anything reads it.
        st = check_regular_or_dir(Path(path), "dataset folder or zip")
        # The modification time and size are in the key, so an edited folder reloads.
        return _load_folder_cached(path, st.st_mtime_ns, st.st_size, seed, image_size or 28,
                                   channels, rotate)
    if spec not in ("glyphs", "omniglot", "digits", "sinusoid"):
        raise MetaRepError(f"unknown dataset {spec!r}; choose one of {', '.join(DATASETS)}")
    # Normalise the cache key: defaults spelled out, unused arguments dropped.
    if spec in ("glyphs", "omniglot"):
        image_size = image_size or 28
    elif spec == "sinusoid":
        image_size, channels = None, 1
    return _load_builtin(spec, seed, image_size, channels)


@functools.lru_cache(maxsize=8)
def _load_builtin(name: str, seed: int, image_size: int | None, channels: int):
    if name == "glyphs":
        from .glyphs import load_glyphs

        return load_glyphs(seed=seed, image_size=image_size or 28, channels=channels)
    if name == "omniglot":
        from .omniglot import load_omniglot

        return load_omniglot(seed=seed, image_size=image_size, channels=channels)
    if name == "digits":
        from .digits import load_digits_dataset

        return load_digits_dataset(seed=seed, image_size=image_size, channels=channels)
    from .sinusoid import Sinusoid

    return Sinusoid(seed=seed)


@functools.lru_cache(maxsize=4)
def _load_folder_cached(path, mtime_ns, size, seed, image_size, channels, rotate):
    from .folder import load_folder

    return load_folder(path, seed=seed, image_size=image_size, channels=channels, rotate=rotate)


def load_image_archive(source, *, image_size: int = 28, channels: int = 1, seed: int = 0,
                       name: str = "upload", rotate: bool = False, **limits) -> ClassDataset:
    """A dataset from an uploaded ``.zip`` (bytes or path) or a directory; not cached
    (an upload belongs to the session that made it)."""
    _check_args(image_size, channels)
    from .folder import load_folder

    return load_folder(source, seed=seed, image_size=image_size, channels=channels,
                       rotate=rotate, name=name, **limits)
