"""What a click on a page's chart picked: the Embedding page's map is drawn with
``st.plotly_chart(..., on_select="rerun", selection_mode="points")``; a click selects
a point and the page reruns with the selection, which :func:`clicked_points` turns
into the points to describe. Plain data in and out (no Streamlit), so tests call it
directly: an AppTest cannot click.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.figures.embedding import selected_points
from app.embedding_space import EmbeddingPoints


@dataclass(frozen=True)
class PointInfo:
    """One point of :class:`EmbeddingPoints`, as the Embedding page describes it when
    it is clicked: its ``index``, class name, group (or None), kind ("support",
    "query", "sample", "prototype"), whether it is a misclassified query, and
    ``images`` (m, H, W[, 3]) to show: its own image (m = 1), or for a prototype (an
    average, with no image of its own) its class's support images."""

    index: int
    class_name: str
    group: object
    kind: str
    wrong: bool
    images: np.ndarray


def clicked_points(points: EmbeddingPoints, selection, limit: int = 4) -> list[PointInfo]:
    """The points of ``points`` selected in the chart drawn from them, at most ``limit``:
    ``selection`` is what ``st.plotly_chart(..., on_select="rerun")`` returned (or its
    ``.selection``; None when nothing is selected). Indices come from the markers'
    ``customdata`` (the point's index, see ``embedding_figure``); one the current
    points do not have (a selection left from a larger projection) is dropped."""
    n = len(points.kinds)
    out = []
    for i in selected_points(selection):
        if not 0 <= i < n:
            continue
        kind, name = str(points.kinds[i]), points.names[i]
        if kind == "prototype":
            own = [j for j in range(n) if points.kinds[j] == "support" and points.names[j] == name]
            images = points.images[own]
        else:
            images = points.images[i:i + 1]
        out.append(PointInfo(i, name, points.groups[i], kind, bool(points.wrong[i]), images))
        if len(out) == limit:
            break
    return out
