"""Characters drawn in the browser: canvas pixels to the dataset's arrays, an episode, a zip.

A drawing canvas gives RGBA pixels: black strokes whose antialiased edges are partly
transparent, on a white or a transparent background. Omniglot's PNGs are dark strokes
on white paper. So a drawing is first put on paper (:func:`canvas_to_paper`: composited
over white, then PIL's grayscale conversion) and from there takes exactly the path of an
Omniglot PNG: :func:`.imaging.image_to_array` to the dataset's size, then the folder
loader's inversion and the dataset's float conversion (ink 1, paper 0). The zip
(:func:`drawn_zip`) stores the paper images as PNGs in the Omniglot layout, so uploading
it back (``load_image_archive``) gives the very same pixels the drawn episode had.

Pure: numpy, PIL and torch only (the app's page ``views/draw.py`` holds the canvases).
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..episodes import Episode
from ..errors import MetaRepError
from .imaging import image_to_array

INK_LEVEL = 250  # a paper pixel darker than this is ink; a drawing with none is blank
ROOT = "drawn_characters"  # the zip's top folder (looked through by the folder loader)


def canvas_to_paper(pixels) -> np.ndarray:
    """A canvas image as Omniglot paper: (H, W, 4) RGBA, (H, W, 3) RGB or (H, W) gray,
    uint8 -> (H, W) uint8 grayscale, dark strokes on white (255) paper.

    Transparent pixels are paper: the RGBA image is composited over white before PIL's
    grayscale conversion (an RGBA "L" conversion alone would drop the alpha and turn a
    transparent background black)."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise MetaRepError(f"a drawing must be uint8 pixels (H, W), (H, W, 3) or (H, W, 4); got "
                           f"{arr.dtype}{tuple(arr.shape)}")
    if arr.ndim == 2:
        return arr.copy()
    im = Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB")
    if im.mode == "RGBA":
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    return np.asarray(im.convert("L"), dtype=np.uint8)


def is_blank(paper: np.ndarray) -> bool:
    """True when the paper (H, W) uint8 holds no stroke."""
    return not bool((np.asarray(paper) < INK_LEVEL).any())


def paper_png(paper: np.ndarray) -> bytes:
    """The paper image (H, W) uint8 as a grayscale PNG (what goes in the zip)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(paper, dtype=np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def paper_to_array(paper: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8: the paper resized exactly as an Omniglot PNG is (still dark on
    white; :func:`to_images` inverts)."""
    return image_to_array(Image.fromarray(np.asarray(paper, dtype=np.uint8), "L"), size, "L")


def to_images(arrays, channels: int = 1) -> torch.Tensor:
    """(n, size, size) uint8 paper arrays -> (n, channels, size, size) float32 in [0, 1],
    ink 1 and paper 0: inverted in uint8 (255 - x) as the folder loader does, then
    ``ClassDataset.class_images``' float conversion, so the values are equal to the last
    bit to the episode an upload of the same PNGs gives."""
    x = torch.from_numpy(255 - np.stack(arrays)).unsqueeze(1)
    x = x.to(torch.float32).div_(255.0)
    return x.expand(-1, channels, -1, -1).contiguous() if channels == 3 else x


def _safe_name(name: str, fallback: str) -> str:
    """A folder name for the zip: letters, digits, '-' and '_' (nothing that could
    escape or nest a folder)."""
    clean = re.sub(r"[^0-9A-Za-z_-]+", "_", str(name)).strip("_")
    return clean or fallback


@dataclass
class DrawnSet:
    """A student's drawings: ``support[c][i]`` and ``queries[c][j]`` are paper images
    (H, W) uint8 (see :func:`canvas_to_paper`) of character ``c``, or None where nothing
    was drawn yet; ``characters[c]`` its name; ``alphabet`` the folder they go in."""

    characters: list[str]
    support: list[list]
    queries: list[list]
    alphabet: str = "my_alphabet"

    @property
    def n_way(self) -> int:
        return len(self.characters)

    def missing(self) -> list[tuple[str, int, int]]:
        """(role "support"/"query", character index, drawing index) of each empty slot."""
        out = []
        for role, rows in (("support", self.support), ("query", self.queries)):
            for c, row in enumerate(rows):
                out += [(role, c, i) for i, p in enumerate(row) if p is None or is_blank(p)]
        return out

    def check(self) -> None:
        """MetaRepError naming the first empty drawing, or an uneven shape."""
        if self.n_way < 2:
            raise MetaRepError(f"draw at least 2 characters to make an episode, got {self.n_way}")
        for role, rows in (("support", self.support), ("query", self.queries)):
            counts = {len(r) for r in rows}
            if len(rows) != self.n_way or len(counts) != 1 or 0 in counts:
                raise MetaRepError(f"every character needs the same number (at least one) of "
                                   f"{role} drawings; got {[len(r) for r in rows]}")
        folders = [_safe_name(c, f"character{j + 1:02d}") for j, c in enumerate(self.characters)]
        if len(set(folders)) != len(folders):
            raise MetaRepError(f"character names must differ as folder names; got {folders}")
        missing = self.missing()
        if missing:
            role, c, i = missing[0]
            raise MetaRepError(f"{role} drawing {i + 1} of character {c + 1} "
                               f"({self.characters[c]!r}) is empty; draw it, or lower the number "
                               f"of drawings ({len(missing)} empty in all)")


def drawn_episode(drawn: DrawnSet, image_size: int, channels: int = 1) -> Episode:
    """The drawings as an N-way K-shot episode at ``image_size`` (the dataset's size):
    support_x (N*K, C, size, size), queries (N*Q, C, size, size), class-major like every
    sampled episode; class names "alphabet/character", their alphabet as the group."""
    drawn.check()
    k_shot, n_query = len(drawn.support[0]), len(drawn.queries[0])
    sx = to_images([paper_to_array(p, image_size) for row in drawn.support for p in row], channels)
    qx = to_images([paper_to_array(p, image_size) for row in drawn.queries for p in row], channels)
    labels = torch.arange(drawn.n_way)
    alphabet = _safe_name(drawn.alphabet, "my_alphabet")
    names = [_safe_name(c, f"character{j + 1:02d}") for j, c in enumerate(drawn.characters)]
    return Episode(sx, labels.repeat_interleave(k_shot), qx, labels.repeat_interleave(n_query),
                   class_names=[f"{alphabet}/{c}" for c in names], n_way=drawn.n_way,
                   k_shot=k_shot, n_query=n_query, seed=0,
                   info={"groups": [alphabet] * drawn.n_way, "drawn": True})


def drawn_zip(drawn: DrawnSet) -> bytes:
    """The drawings as a zip in the Omniglot layout,
    ``drawn_characters/<alphabet>/<character>/<character>_NN.png`` (support drawings
    first, then queries), dark on white like Omniglot's PNGs; ``load_image_archive``
    reads it back (as class folders: one alphabet has no alphabet split)."""
    drawn.check()
    alphabet = _safe_name(drawn.alphabet, "my_alphabet")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for c, name in enumerate(drawn.characters):
            folder = _safe_name(name, f"character{c + 1:02d}")
            for i, paper in enumerate(list(drawn.support[c]) + list(drawn.queries[c])):
                zf.writestr(f"{ROOT}/{alphabet}/{folder}/{folder}_{i + 1:02d}.png", paper_png(paper))
    return buf.getvalue()
