"""glyphs: the embedded default dataset, generated Omniglot-like handwritten characters.

Generative model (three levels, as in Omniglot's alphabets -> characters -> drawings):

* **alphabet** — a stroke *style*: its own small set of stroke primitives (cubic
  Bezier curves for "smooth" scripts, 3-segment polylines for "angular" ones), a
  curvature scale, a range of stroke counts, a stroke-length range, preferred stroke
  directions (some scripts quantise them to multiples of 30/45 degrees), a tendency
  to join strokes and a pen width.
* **character** (a class) — 1 to 5 strokes drawn from the alphabet's primitives, each
  scaled, rotated, possibly mirrored and placed (often starting on an earlier stroke),
  then centred and scaled to fill the glyph box.
* **drawing** (an example) — the character's control points moved by stroke-point
  noise, the whole glyph put through its own affine jitter (rotation, scale, shear,
  shift) and rendered with its own pen width.

Rendering is vectorised over all drawings of an alphabet: curve points are splatted
bilinearly onto the pixel grid (weighted by arc length), blurred with a per-drawing
Gaussian pen (two batched matrix products) and mapped through ``1 - exp(-k*ink)`` so
strokes saturate like ink. The default set (50 alphabets, 1,650 characters, 20
drawings, 28x28) takes a few seconds on one core; it is also cached on disk
(:mod:`.cache`). Everything is deterministic in ``seed``: each alphabet and each
character draws from its own ``numpy`` stream, keyed by (seed, alphabet, character).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .base import ClassDataset, split_classes

GENERATOR_VERSION = 1
MAX_STROKES = 5
CURVE_POINTS = 40  # samples per stroke; ~0.5 px apart at 28x28, below the pen blur
GLYPH_HALF = 0.34  # half the glyph box, as a fraction of the image side (rest is margin)


@dataclass(frozen=True)
class GlyphParams:
    """Everything the images depend on (the disk-cache key is built from these)."""

    seed: int = 0
    image_size: int = 28
    n_alphabets: int = 50
    n_classes: int = 1650
    n_drawings: int = 20
    # per-drawing variation (glyph-box units are [-1, 1]; shift in pixels at 28x28)
    rotation_deg: float = 9.0
    scale_jitter: float = 0.08
    shear: float = 0.10
    shift_px: float = 1.6
    point_noise: float = 0.05
    pen_jitter: float = 0.18

    def as_dict(self) -> dict:
        return {**asdict(self), "generator_version": GENERATOR_VERSION}


def _basis(smooth: bool) -> np.ndarray:
    """(CURVE_POINTS, 4) weights taking 4 control points to points along a stroke.

    Smooth: the cubic Bernstein basis. Angular: piecewise-linear through the 4 points
    (a 3-segment polyline with corners), parameterised uniformly per segment.
    """
    t = np.linspace(0.0, 1.0, CURVE_POINTS)
    if smooth:
        return np.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3], 1)
    s = t * 3.0
    seg = np.minimum(s.astype(int), 2)
    f = s - seg
    out = np.zeros((CURVE_POINTS, 4))
    out[np.arange(CURVE_POINTS), seg] = 1 - f
    out[np.arange(CURVE_POINTS), seg + 1] = f
    return out


def _alphabet_style(rng: np.random.Generator) -> dict:
    """Random stroke style shared by every character of one alphabet."""
    smooth = bool(rng.random() < 0.6)
    curvature = rng.uniform(0.25, 0.9)
    n_prims = int(rng.integers(3, 7))
    prims = np.zeros((n_prims, 4, 2))
    for p in range(n_prims):
        prims[p, 3] = (1.0, 0.0)
        prims[p, 1] = (rng.uniform(-0.1, 0.6), rng.normal(0, curvature))
        prims[p, 2] = (rng.uniform(0.4, 1.1), rng.normal(0, curvature))
        if rng.random() < 0.2:  # a loop or hook: the end comes back near the start
            prims[p, 3] = (rng.uniform(-0.1, 0.5), rng.normal(0, 0.2))
            prims[p, 1, 1] = np.sign(prims[p, 1, 1] or 1) * rng.uniform(0.8, 1.3)
            prims[p, 2, 1] = prims[p, 1, 1] * rng.uniform(0.7, 1.1)
    lo = int(rng.integers(1, 4))
    return {
        "smooth": smooth,
        "prims": prims,
        "stroke_range": (lo, min(MAX_STROKES, lo + int(rng.integers(1, 3)))),
        "length": (rng.uniform(0.7, 1.0), rng.uniform(1.2, 1.8)),
        "angle_step": [0.0, math.pi / 4, math.pi / 6][int(rng.integers(3))],
        "connect": rng.uniform(0.3, 0.9),
        "pen": rng.uniform(0.85, 1.2),
    }


def _character(rng: np.random.Generator, style: dict) -> np.ndarray:
    """Control points (MAX_STROKES, 4, 2) of one character (unused strokes are NaN)."""
    basis = _basis(style["smooth"])
    lo, hi = style["stroke_range"]
    n = int(rng.integers(lo, hi + 1))
    ctrl = np.full((MAX_STROKES, 4, 2), np.nan)
    drawn: list[np.ndarray] = []
    for s in range(n):
        prim = style["prims"][rng.integers(len(style["prims"]))].copy()
        if rng.random() < 0.5:
            prim[:, 1] *= -1  # mirror
        length = rng.uniform(*style["length"])
        angle = rng.uniform(0, 2 * math.pi)
        if style["angle_step"]:
            angle = round(angle / style["angle_step"]) * style["angle_step"] + rng.normal(0, 0.05)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = prim @ rot.T * length
        if drawn and rng.random() < style["connect"]:
            prev = drawn[rng.integers(len(drawn))]
            start = prev[[0, -1, len(prev) // 2][rng.integers(3)]]
        else:
            start = rng.uniform(-1.0, 1.0, 2)
        pts = pts + start
        ctrl[s] = pts
        drawn.append(basis @ pts)
    # Centre the character and scale its larger extent to the glyph box [-1, 1].
    allpts = np.concatenate(drawn)
    lo_xy, hi_xy = allpts.min(0), allpts.max(0)
    scale = 2.0 / max(float((hi_xy - lo_xy).max()), 1e-6)
    return (ctrl - (lo_xy + hi_xy) / 2) * scale


def _render(ctrl: np.ndarray, smooth: bool, pen: float, p: GlyphParams,
            rng: np.random.Generator) -> np.ndarray:
    """Drawings of the characters ``ctrl`` (n_c, S, 4, 2) -> uint8 (n_c, n_drawings, H, W)."""
    n_c, size, n_d = ctrl.shape[0], p.image_size, p.n_drawings
    n = n_c * n_d
    used = ~np.isnan(ctrl[:, :, 0, 0])                                # (n_c, S)
    c = np.nan_to_num(ctrl)[:, None].repeat(n_d, 1)                    # (n_c, D, S, 4, 2)
    c = c + rng.normal(0, p.point_noise, c.shape)
    pts = np.einsum("tk,cdskx->cdstx", _basis(smooth), c).reshape(n, -1, CURVE_POINTS, 2)

    # Affine jitter per drawing: rotation, anisotropic scale, shear, then shift.
    th = np.deg2rad(rng.normal(0, p.rotation_deg, n))
    sx, sy = np.exp(rng.normal(0, p.scale_jitter, (2, n)))
    sh = rng.normal(0, p.shear, n)
    cos, sin = np.cos(th), np.sin(th)
    a = np.stack([np.stack([cos * sx, cos * sh * sy - sin * sy], -1),
                  np.stack([sin * sx, sin * sh * sy + cos * sy], -1)], -2)  # (n, 2, 2)
    shift = rng.normal(0, p.shift_px * size / 28, (n, 2))
    pix = np.einsum("nij,nstj->nsti", a, pts) * (GLYPH_HALF * size) + (size - 1) / 2
    pix = pix + shift[:, None, None, :]

    # Segment midpoints, weighted by their length in pixels (uniform ink along strokes).
    mid = (pix[:, :, 1:] + pix[:, :, :-1]) / 2
    w = np.linalg.norm(pix[:, :, 1:] - pix[:, :, :-1], axis=-1)
    w = w * np.repeat(used, n_d, 0)[:, :, None]
    mid, w = mid.reshape(n, -1, 2), w.reshape(n, -1)

    # Bilinear splat of all points of all drawings with one bincount.
    x, y = mid[..., 0], mid[..., 1]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    img_off = (np.arange(n) * size * size)[:, None]
    ink = np.zeros(n * size * size)
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
        ink += np.bincount((img_off + yi * size + xi)[ok], (w * wt)[ok], minlength=n * size * size)
    ink = ink.reshape(n, size, size)

    # Gaussian pen, its own width per drawing: K @ ink @ K (K symmetric, rows sum to 1
    # over the line), rescaled so the centre of a straight stroke has ink ~= 1.
    sigma = 0.62 * pen * np.exp(rng.normal(0, p.pen_jitter, n)) * size / 28
    d = np.arange(size)[:, None] - np.arange(size)[None, :]
    k = np.exp(-d[None] ** 2 / (2 * sigma[:, None, None] ** 2)) / (math.sqrt(2 * math.pi) * sigma[:, None, None])
    ink = k @ ink @ k * (math.sqrt(2 * math.pi) * sigma[:, None, None])
    img = 1.0 - np.exp(-3.0 * ink)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8).reshape(n_c, n_d, size, size)


def class_counts(p: GlyphParams) -> np.ndarray:
    """Characters per alphabet: between 20 and ~50, summing to ``p.n_classes``."""
    rng = np.random.default_rng([p.seed, 0xA1FA])
    base = max(1, p.n_classes // p.n_alphabets // 2)
    counts = np.full(p.n_alphabets, base)
    extra = rng.multinomial(p.n_classes - counts.sum(), rng.dirichlet(np.full(p.n_alphabets, 4.0)))
    return counts + extra


def generate(p: GlyphParams) -> tuple[np.ndarray, list[str], list[str]]:
    """uint8 images (n_classes, n_drawings, H, W), class names and alphabet per class."""
    images, names, groups = [], [], []
    for a, n_chars in enumerate(class_counts(p)):
        style = _alphabet_style(np.random.default_rng([p.seed, 1, a]))
        ctrl = np.stack([_character(np.random.default_rng([p.seed, 2, a, i]), style)
                         for i in range(n_chars)])
        images.append(_render(ctrl, style["smooth"], style["pen"], p,
                              np.random.default_rng([p.seed, 3, a])))
        alphabet = f"Alphabet_{a + 1:02d}"
        names += [f"{alphabet}/character{i + 1:02d}" for i in range(n_chars)]
        groups += [alphabet] * n_chars
    return np.concatenate(images), names, groups


def load_glyphs(seed: int = 0, image_size: int = 28, channels: int = 1,
                use_cache: bool = True, **overrides) -> ClassDataset:
    """The glyphs :class:`ClassDataset`; splits by alphabet, so test alphabets are unseen."""
    from .cache import cached_array

    p = GlyphParams(seed=seed, image_size=image_size, **overrides)

    def make():
        arr, names, groups = generate(p)
        return arr, {"class_names": names, "groups": groups}

    arr, extra = cached_array("glyphs", p.as_dict(), make, enabled=use_cache)
    names, groups = extra["class_names"], extra["groups"]
    x = torch.from_numpy(arr).to(torch.float32).div_(255.0).unsqueeze(2)  # (n_c, D, 1, H, W)
    if channels == 3:
        x = x.expand(-1, -1, 3, -1, -1).contiguous()
    return ClassDataset(
        name="glyphs", class_names=names, images=list(x.unbind(0)),
        splits=split_classes(len(names), seed, groups=groups), groups=groups,
        params={"dataset": "glyphs", **p.as_dict(), "channels": channels},
    )
