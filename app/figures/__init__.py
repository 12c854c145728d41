"""Plain figure functions for the pages: data in, ``plotly.graph_objects.Figure`` out.

No Streamlit here, so tests call these directly. Every function takes ``labels``
(a dict of translated strings; unknown keys are ignored, missing ones fall back to
the English defaults below) and/or a ``title``, so the pages can show any language.

Modules: ``episodes`` (image grids, the regression plot), ``curves`` (training and
trace curves), ``adaptation`` (query predictions, trace extras, embedding motion),
``embedding`` (the embedding-space scatter), ``compare`` (accuracy bars),
``images`` (helpers: image layout conversion, grid composition, PNG data URIs).
"""
from __future__ import annotations

# English defaults; pages pass translated strings under the same keys.
DEFAULT_LABELS = {
    "support": "support", "query": "query", "sample": "sample", "prototype": "prototype",
    "wrong": "misclassified", "loss": "loss", "accuracy": "accuracy (%)", "mse": "MSE",
    "step": "step", "train": "training", "training": "training", "val": "validation",
    "validation": "validation", "smoothed": "smoothed", "true": "true function",
    "x": "x", "y": "y", "class": "class", "group": "alphabet", "predicted": "predicted",
    "probability": "probability", "index": "#", "title": "",
    "query_index": "query", "support_index": "support example", "slot": "memory slot",
    "time": "time step", "value": "value", "iteration": "iteration",
    "algorithm": "algorithm", "chance": "chance",
}


def merge_labels(labels: dict | None) -> dict:
    """The defaults overridden by ``labels`` (None and unknown keys are fine)."""
    out = dict(DEFAULT_LABELS)
    if labels:
        out.update({k: v for k, v in labels.items() if v is not None})
    return out


# A long qualitative palette: Plotly's (10) then Dark24/Light24-like extras, so
# 20-way episodes still get distinct colours; beyond that colours repeat.
PALETTE = (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
    "#FF97FF", "#FECB52", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A",
    "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D",
    "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
)
WRONG_COLOR = "#D62728"
RIGHT_COLOR = "#2CA02C"


def color_of(i: int) -> str:
    return PALETTE[int(i) % len(PALETTE)]
