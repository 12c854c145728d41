"""folder / zip: the user's own images as a :class:`ClassDataset`.

Two layouts are recognised automatically, from a directory or a ``.zip``:

* class folders — ``root/<class>/*.png``: one class per folder;
* Omniglot — ``root/<alphabet>/<character>/*.png``: class ``"alphabet/character"``,
  group ``"alphabet"``; with 3 or more alphabets the splits go by alphabet, so test
  classes come from unseen alphabets (Omniglot's protocol).

A single top folder that holds everything (``images_background/...``, or the folder
a zip tool adds) is looked through. Images are converted to grayscale (``channels=1``)
or RGB (``channels=3``) and resized to ``image_size`` x ``image_size``. Grayscale sets
whose mean is bright (dark strokes on white paper, like Omniglot) are inverted, so ink
is 1 and background 0 as in glyphs; ``params["inverted"]`` records it.
``rotate=True`` adds the 90/180/270-degree rotations of every class as new classes
(kept in the split of their original, so no rotation of a test class is trained on).

Validation: a missing path, a file that is not a zip, a corrupt zip, unsafe entries
and zip bombs (:mod:`.archive`), no class folders, no images, and an image file that
does not decode (named) all raise :class:`MetaRepError`. Before any pixel is decoded,
every image's width x height is read from its header (PIL reads headers lazily) and
summed: one image past ``MAX_IMAGE_PIXELS`` or all of them past ``MAX_ARCHIVE_PIXELS``
is refused ("pixel bombs": tiny PNGs that declare huge canvases), and so is a dataset
whose decoded images (after resizing, rotations included) would pass
``MAX_DECODED_BYTES``. Images are kept as uint8 (a quarter of float32); episodes
convert the few images they use (:meth:`ClassDataset.class_images`). Files with non-image
extensions (notes, ``.DS_Store``) are skipped and counted in ``params["skipped_files"]``.
"""
from __future__ import annotations

import io
import os
import stat
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import MetaRepError
from ..limits import (MAX_ARCHIVE_PIXELS, MAX_CONCURRENT_ARCHIVE_READS, MAX_DECODED_BYTES,
                      MAX_IMAGE_PIXELS)
from .archive import (IMAGE_EXTENSIONS, ArchiveLimits, check_image_count, check_regular_or_dir,
                      read_dir_images, read_zip_images)
from .base import ClassDataset, split_classes
from .imaging import image_to_array

ROTATIONS = (90, 180, 270)
MAX_PIXELS = MAX_IMAGE_PIXELS  # per image, before resizing: a tiny PNG can declare a huge canvas


def parse_folder_spec(spec: str) -> tuple[str, bool]:
    """``"folder:PATH[?rotate=1]"`` -> (PATH, rotate)."""
    body = spec[len("folder:"):]
    rotate = False
    if "?" in body:
        path, query = body.rsplit("?", 1)
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key != "rotate" or value not in ("0", "1", "true", "false", ""):
                raise MetaRepError(f"unknown folder option {item!r} in {spec!r}; "
                                   "allowed: rotate=1 or rotate=0")
            rotate = value in ("1", "true", "")
        body = path
    if not body:
        raise MetaRepError(f"dataset {spec!r} names no path; use folder:PATH (a directory or .zip)")
    return os.path.expanduser(body), rotate


def _gather(source, limits: ArchiveLimits):
    """[(path parts, bytes or Path)], skipped count, label for messages."""
    if isinstance(source, (bytes, bytearray)):
        items, skipped = read_zip_images(bytes(source), limits)
        return items, skipped, "the uploaded zip"
    path = Path(source)
    st = check_regular_or_dir(path, "dataset folder or zip")
    if stat.S_ISDIR(st.st_mode):
        items, skipped = read_dir_images(path, limits)
        check_image_count(len(items), repr(str(path)), limits)
        return items, skipped, repr(str(path))
    items, skipped = read_zip_images(path, limits)
    return items, skipped, repr(str(path))


def _classes(items, label: str) -> tuple[dict[str, list], dict[str, str | None]]:
    """Group image files into classes by their folder; detect the layout."""
    dirs = [parts[:-1] for parts, _ in items]
    # Look through a single top folder that holds every image (zip tools add one).
    depth = 0
    while all(len(d) > depth + 1 for d in dirs) and len({d[depth] for d in dirs}) == 1:
        depth += 1
    by_class: dict[str, list] = defaultdict(list)
    group_of: dict[str, str | None] = {}
    for (parts, src), d in zip(items, dirs):
        rel = d[depth:]
        if not rel:
            continue  # a loose image next to the class folders belongs to no class
        name = "/".join(rel)
        by_class[name].append((parts, src))
        group_of[name] = rel[0] if len(rel) >= 2 else None
    if not by_class:
        raise MetaRepError(
            f"{label} has no class folders: put each class's images in its own folder "
            "(root/<class>/*.png) or use the Omniglot layout (root/<alphabet>/<character>/*.png)")
    if any(g is None for g in group_of.values()):
        group_of = {k: None for k in group_of}  # mixed depths: plain class folders
    return dict(sorted(by_class.items())), group_of


def _unreadable(parts, exc) -> MetaRepError:
    return MetaRepError(f"the file {'/'.join(parts)!r} has an image extension but is not a "
                        f"readable image ({type(exc).__name__}); fix or remove it")


def _too_many_pixels(parts, width, height) -> MetaRepError:
    return MetaRepError(f"the image {'/'.join(parts)!r} is {width}x{height} pixels; at most "
                        f"{MAX_PIXELS // 1_000_000} megapixels per image are allowed")


def _pixels(src, parts) -> int:
    """width x height from the image's header; no pixel is decoded."""
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            width, height = im.size
    except Image.DecompressionBombError:  # PIL's own cap (~179 MP) is past ours anyway
        raise MetaRepError(f"the image {'/'.join(parts)!r} declares more than {MAX_PIXELS // 1_000_000} "
                           "megapixels; at most that many per image are allowed") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _unreadable(parts, exc) from None
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(parts, width, height)
    return width * height


def _check_budget(flat, label: str, n_images: int, size: int, channels: int, rotate: bool) -> list[int]:
    """Pixels per image (from headers), refusing past the per-image and archive budgets
    and a decoded size past MAX_DECODED_BYTES, before anything is decoded."""
    decoded = n_images * channels * size * size * (1 + len(ROTATIONS) * rotate)
    if decoded > MAX_DECODED_BYTES:
        raise MetaRepError(
            f"{label}: {n_images:,} images of {channels}x{size}x{size}{' with rotations' if rotate else ''} "
            f"would take {decoded / 2**20:.0f} MB decoded; at most {MAX_DECODED_BYTES // 2**20} MB "
            "are allowed (use fewer images, a smaller image size or no rotations)")
    pixels, total = [], 0
    for src, parts in flat:
        pixels.append(_pixels(src, parts))
        total += pixels[-1]
        if total > MAX_ARCHIVE_PIXELS:
            raise MetaRepError(
                f"{label} holds more than {MAX_ARCHIVE_PIXELS // 1_000_000} megapixels of images "
                f"(counted from the image headers, up to {'/'.join(parts)!r}); at most "
                f"{MAX_ARCHIVE_PIXELS // 1_000_000} megapixels in all are allowed")
    return pixels


def _batches(pixels: list[int]) -> list[range]:
    """Consecutive index ranges of at most MAX_PIXELS source pixels each (a bigger
    image alone): the images decoded at once never hold more than one maximal image."""
    out, start, held = [], 0, 0
    for i, n in enumerate(pixels):
        if held and held + n > MAX_PIXELS:
            out.append(range(start, i))
            start, held = i, 0
        held += n
    out.append(range(start, len(pixels)))
    return out


def _decode(src, parts, size: int, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            if im.width * im.height > MAX_PIXELS:
                raise _too_many_pixels(parts, im.width, im.height)
            return image_to_array(im, size, mode)  # shared with the bundled omniglot array
    except MetaRepError:
        raise  # its own reason (the pixel cap), not "not a readable image"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(parts, exc) from None


# The app's sessions share one process: while an archive is read it may hold up to
# ArchiveLimits.max_total_bytes of decompressed image bytes plus a batch being decoded,
# so 30 sessions uploading at once queue here instead of holding 30 times that (decoding
# is CPU-bound, and a server has few cores anyway).
_READS = threading.BoundedSemaphore(MAX_CONCURRENT_ARCHIVE_READS)


def _read_pixels(source, limits: ArchiveLimits, image_size: int, channels: int, rotate: bool):
    """The images of ``source`` decoded and resized, checked first (see the module doc):
    (uint8 (n, image_size, image_size[, 3]) in class order, {class: files},
    {class: group}, non-image files skipped). At most MAX_CONCURRENT_ARCHIVE_READS run
    at once in this process."""
    with _READS:
        items, skipped, label = _gather(source, limits)
        if not items:
            raise MetaRepError(f"{label} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                               f"{skipped} other files were found")
        by_class, group_of = _classes(items, label)
        mode = "L" if channels == 1 else "RGB"
        flat = [(src, parts) for files in by_class.values() for parts, src in files]
        pixels = _check_budget(flat, label, len(flat), image_size, channels, rotate)
        # uint8, written in place: no list of arrays beside the stack, a quarter of float32.
        x = np.empty((len(flat), image_size, image_size) + ((3,) if channels == 3 else ()), np.uint8)

        def decode(i):
            x[i] = _decode(flat[i][0], flat[i][1], image_size, mode)

        # Decoding is C code that releases the GIL, so a few threads help (~19k Omniglot PNGs);
        # batches bound the pixels decoded at once (see _batches).
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            for batch in _batches(pixels):
                list(pool.map(decode, batch, chunksize=64))
        return x, by_class, group_of, skipped


def load_folder(source, *, seed: int = 0, image_size: int = 28, channels: int = 1,
                rotate: bool = False, name: str | None = None,
                limits: ArchiveLimits | None = None, invert: bool | None = None) -> ClassDataset:
    """Load images from a directory, a ``.zip`` path or zip ``bytes`` (see module doc).

    Returns a :class:`ClassDataset` with uint8 images (n_c, channels, image_size,
    image_size) in 0..255 (:meth:`ClassDataset.class_images` gives float32 in [0, 1]).
    ``invert=None`` decides from the data (grayscale only); True/False forces it.
    """
    limits = limits or ArchiveLimits()
    x, by_class, group_of, skipped = _read_pixels(source, limits, image_size, channels, rotate)
    if invert is None:
        invert = channels == 1 and x.mean(dtype=np.float64) > 127.5
    if invert:
        np.subtract(255, x, out=x)
    x = torch.from_numpy(x)
    x = x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)
    class_names = list(by_class)
    counts = [len(v) for v in by_class.values()]
    images = list(torch.split(x.contiguous(), counts))
    groups = [group_of[c] for c in class_names]
    has_groups = all(g is not None for g in groups)
    n_alphabets = len(set(groups)) if has_groups else 0
    if rotate:
        base_names, base_groups = class_names, groups
        for r in ROTATIONS:
            images += [torch.rot90(im, r // 90, dims=(-2, -1)).contiguous() for im in images[:len(base_names)]]
            class_names = class_names + [f"{c}@rot{r}" for c in base_names]
            groups = groups + base_groups
    if n_alphabets >= 3:
        split_keys = groups
    elif rotate:  # split on the original class, so its rotations share its split
        split_keys = [c.split("@rot")[0] for c in class_names]
    else:
        split_keys = None
    splits = split_classes(len(class_names), seed, groups=split_keys)
    return ClassDataset(
        name=name or Path(str(source) if not isinstance(source, (bytes, bytearray)) else "upload").name,
        class_names=class_names, images=images, splits=splits,
        groups=groups if has_groups else None,
        params={"dataset": "folder", "source": None if isinstance(source, (bytes, bytearray)) else str(source),
                "seed": seed, "image_size": image_size, "channels": channels, "rotate": rotate,
                "layout": "omniglot" if has_groups else "class_folders", "inverted": bool(invert),
                "skipped_files": skipped},
    )
