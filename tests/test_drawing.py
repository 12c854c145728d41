"""Drawn characters (metarep_core/data/drawing.py): canvas pixels take the Omniglot PNG
path to the dataset's arrays; the drawn set round-trips through the zip upload; the
shipped ProtoNet and MAML adapt to a drawn episode through their ordinary adapt/predict."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from metarep_core.data import load_image_archive
from metarep_core.data.drawing import (DrawnSet, canvas_to_paper, drawn_episode, drawn_zip,
                                       is_blank, paper_to_array)
from metarep_core.data.imaging import image_to_array
from metarep_core.errors import MetaRepError

CANVAS = 150
STROKE = 9
CHECKPOINTS = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"


def strokes(draw: ImageDraw.ImageDraw, shape: int, dx: int, dy: int, ink) -> None:
    """One of five clearly distinct characters, shifted by (dx, dy)."""
    def pt(x, y):
        return (x + dx, y + dy)
    if shape == 0:    # a horizontal bar
        draw.line([pt(30, 75), pt(120, 75)], fill=ink, width=STROKE)
    elif shape == 1:  # a vertical bar
        draw.line([pt(75, 30), pt(75, 120)], fill=ink, width=STROKE)
    elif shape == 2:  # a ring
        draw.ellipse([pt(35, 35), pt(115, 115)], outline=ink, width=STROKE)
    elif shape == 3:  # a cross of diagonals
        draw.line([pt(35, 35), pt(115, 115)], fill=ink, width=STROKE)
        draw.line([pt(35, 115), pt(115, 35)], fill=ink, width=STROKE)
    else:             # a triangle
        draw.line([pt(75, 30), pt(120, 115), pt(30, 115), pt(75, 30)], fill=ink, width=STROKE)


def canvas_rgba(shape: int, dx: int = 0, dy: int = 0, background=(0, 0, 0, 0)) -> np.ndarray:
    """What the browser canvas gives: black strokes, their edges half transparent, on a
    transparent (or opaque white) background, (H, W, 4) uint8."""
    im = Image.new("RGBA", (CANVAS, CANVAS), background)
    draw = ImageDraw.Draw(im)
    strokes(draw, shape, dx, dy, (0, 0, 0, 255))
    arr = np.array(im)
    # an antialiased rim: pixels next to ink at half alpha (on a transparent background)
    if background[3] == 0:
        ink = arr[..., 3] == 255
        rim = np.zeros_like(ink)
        rim[1:] |= ink[:-1]
        rim &= ~ink
        arr[rim] = (0, 0, 0, 128)
    return arr


def test_canvas_pixels_become_what_image_to_array_gives_for_the_same_png(tmp_path):
    rgba = canvas_rgba(2)
    # The same drawing as an Omniglot PNG: dark on white paper; the half-transparent rim
    # over white is gray 127 (255 * (1 - 128/255)).
    paper_ref = np.full((CANVAS, CANVAS), 255, np.uint8)
    paper_ref[rgba[..., 3] == 255] = 0
    paper_ref[rgba[..., 3] == 128] = 127
    Image.fromarray(paper_ref, "L").save(tmp_path / "ref.png")
    expected = image_to_array(Image.open(tmp_path / "ref.png"), 28)

    paper = canvas_to_paper(rgba)
    assert paper[0, 0] == 255 and paper.min() == 0  # transparent is paper, strokes are dark
    assert np.array_equal(paper_to_array(paper, 28), expected)
    # A canvas with an opaque white background gives the same pixels as a transparent one.
    white = canvas_rgba(2, background=(255, 255, 255, 255))
    opaque_ref = np.where(white[..., 0] == 0, 0, 255).astype(np.uint8)
    assert np.array_equal(canvas_to_paper(white), opaque_ref)
    # 8x8 for digits: the dataset's size, by the same function
    assert paper_to_array(paper, 8).shape == (8, 8)


def _drawn(k_shot=2, n_query=3, n_way=5) -> DrawnSet:
    rng = np.random.default_rng(0)

    def one(c):
        dx, dy = (int(v) for v in rng.integers(-12, 13, size=2))
        return canvas_to_paper(canvas_rgba(c, dx, dy))
    return DrawnSet([f"character{c + 1:02d}" for c in range(n_way)],
                    [[one(c) for _ in range(k_shot)] for c in range(n_way)],
                    [[one(c) for _ in range(n_query)] for c in range(n_way)], alphabet="class 3B")


def test_drawn_episode_shapes_values_and_order():
    drawn = _drawn()
    ep = drawn_episode(drawn, 28)
    assert ep.support_x.shape == (10, 1, 28, 28) and ep.query_x.shape == (15, 1, 28, 28)
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.class_names[0] == "class_3B/character01" and ep.info["groups"] == ["class_3B"] * 5
    # ink is 1 and paper 0, as in glyphs and the inverted folder images
    expected = (255 - torch.tensor(paper_to_array(drawn.support[1][0], 28))).float() / 255.0
    assert torch.equal(ep.support_x[2, 0], expected) and ep.support_x[2, 0, 0, 0] == 0.0
    assert drawn_episode(drawn, 28, channels=3).support_x.shape == (10, 3, 28, 28)


def test_the_zip_uploads_back_to_the_same_pixels():
    drawn = _drawn(k_shot=1, n_query=2, n_way=3)
    data = drawn_zip(drawn)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "drawn_characters/class_3B/character02/character02_03.png" in names and len(names) == 9
    dataset = load_image_archive(data, image_size=28)
    assert dataset.class_names == ["character01", "character02", "character03"]
    assert dataset.params["inverted"]
    ep = drawn_episode(drawn, 28)
    for c in range(3):  # support drawing first, then the queries, as written
        mine = torch.cat([ep.support_x[ep.support_y == c], ep.query_x[ep.query_y == c]])
        assert torch.equal(dataset.class_images(c), mine)


def test_an_empty_drawing_is_named():
    drawn = _drawn(k_shot=1, n_query=1, n_way=3)
    drawn.queries[1][0] = np.full((CANVAS, CANVAS), 255, np.uint8)
    assert is_blank(drawn.queries[1][0]) and drawn.missing() == [("query", 1, 0)]
    with pytest.raises(MetaRepError, match="query drawing 1 of character 2 .* is empty"):
        drawn_episode(drawn, 28)
    drawn.queries[1][0] = None
    with pytest.raises(MetaRepError, match="is empty"):
        drawn_zip(drawn)
    with pytest.raises(MetaRepError, match="uint8"):
        canvas_to_paper(np.zeros((4, 4, 2), np.uint8))


SHIPPED = sorted(p.name.split("_")[0] for p in CHECKPOINTS.glob("*_glyphs_5w1s.safetensors"))


def test_every_family_has_a_shipped_checkpoint_to_adapt_with():
    assert {"protonet", "maml"} <= set(SHIPPED) and len(SHIPPED) >= 12


@pytest.mark.parametrize("algorithm", SHIPPED)
def test_shipped_learners_adapt_to_a_drawn_episode(algorithm):
    from metarep_core.checkpoints import load_checkpoint
    learner, _ = load_checkpoint(str(CHECKPOINTS / f"{algorithm}_glyphs_5w1s.safetensors"))
    learner.eval()
    ep = drawn_episode(_drawn(k_shot=2, n_query=3), 28)
    probs = learner.adapt(ep).predict(ep.query_x)
    assert probs.shape == (15, 5)
    accuracy = float((probs.argmax(1) == ep.query_y).float().mean())
    assert accuracy >= 0.6, f"{algorithm}: {accuracy:.0%} on five clearly distinct characters (chance 20%)"
