"""The family-specific arrays a learner records in ``TraceStep.extras``, one figure each.

Every key a registered learner emits is declared in ``EXTRAS`` with how to draw it and
the words of its axes, so a figure never shows the raw key: its title is
``extras.<key>`` and its "how to read this" text ``extras.<key>.how`` in the i18n
files. A key no learner here declares (a new learner's) is still drawn, by its shape,
under a title made from the key; the figure tests fail until it is declared and
translated.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import plotly.graph_objects as go

from . import color_of, merge_labels, titled


class ExtraSpec(NamedTuple):
    """How to draw one extras key. ``draw``: "heatmap" (a 2-D array, row 0 on top),
    "memory" (a heatmap whose rows are the steps so far), "per_step" (a 1-D array with
    one value per step so far), "bars" (a 1-D array with one value per item) or "line"
    (a 1-D array over iterations). ``x``, ``y``, ``z``: label keys of the x axis, the y
    axis and the colour bar (heatmaps). ``x_start``: the number of the first bar (bars)."""
    draw: str
    x: str
    y: str
    z: str = ""
    log: bool = False
    x_start: int = 0


EXTRAS: dict[str, ExtraSpec] = {
    # metric learners: how each query weighs each support example
    "attention": ExtraSpec("heatmap", "axis.support_index", "axis.query_index", "axis.weight01"),
    "similarity": ExtraSpec("heatmap", "axis.support_index", "axis.query_index", "axis.similarity01"),
    # generation learners (VERSA, ABML): the posterior over the classifier's weights
    "uncertainty": ExtraSpec("bars", "axis.query_index", "axis.entropy"),
    "posterior_mean": ExtraSpec("heatmap", "axis.feature", "axis.class_index", "axis.weight_value"),
    "posterior_std": ExtraSpec("heatmap", "axis.feature", "axis.class_index", "axis.std"),
    "weight_samples": ExtraSpec("heatmap", "axis.feature", "axis.sample_class", "axis.weight_value"),
    # memory learners (MANN, DNC): one row per step so far, a column per memory slot
    "read_weights": ExtraSpec("memory", "axis.slot", "axis.memory_step", "axis.weight01"),
    "write_weights": ExtraSpec("memory", "axis.slot", "axis.memory_step", "axis.weight01"),
    "usage": ExtraSpec("memory", "axis.slot", "axis.memory_step", "axis.usage01"),
    "allocation": ExtraSpec("memory", "axis.slot", "axis.memory_step", "axis.weight01"),
    "link": ExtraSpec("heatmap", "axis.slot_before", "axis.slot_after", "axis.link01"),
    # Santoro et al.'s figure: online accuracy at the 1st, 2nd, ... presentation of a class
    "presentation_accuracy": ExtraSpec("bars", "axis.presentation", "axis.accuracy01", x_start=1),
    # Meta Networks: the fast weights stored per support example
    "fast_weight_norm": ExtraSpec("bars", "axis.support_stored", "axis.norm"),
    # optimization learners: how far the inner loop moves the weights
    "distance_to_init": ExtraSpec("per_step", "axis.adapt_step", "axis.distance"),
    "head_weight_change": ExtraSpec("per_step", "axis.adapt_step", "axis.distance"),
    "head_weight": ExtraSpec("heatmap", "axis.feature", "axis.class_index", "axis.weight_value"),
    # MAML: feature reuse, measured — a row per step so far, a column per layer
    "layer_cka": ExtraSpec("memory", "axis.layer", "axis.adapt_step", "axis.similarity01"),
    # iMAML: how well the inner problem is solved, and the implicit system's CG residuals
    "proximal_grad_norm": ExtraSpec("per_step", "axis.adapt_step", "axis.norm", log=True),
    "cg_residuals": ExtraSpec("line", "axis.cg_iteration", "axis.residual", log=True),
}
# Drawn by other figures (the regression plot), not as extras.
SKIP_EXTRAS = frozenset({"curve_x", "curve_y"})
# The declared keys in this order (the most telling first); undeclared ones after, A-Z.
EXTRAS_ORDER = tuple(EXTRAS)


def _extras_order(keys) -> list[str]:
    known = [k for k in EXTRAS_ORDER if k in keys]
    return known + sorted(k for k in keys if k not in EXTRAS_ORDER)


def _as_array(value) -> np.ndarray | None:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None     # not numeric: nothing to draw
    return arr if arr.ndim in (1, 2) and arr.size else None


def _spec_for(key: str, arr: np.ndarray, n_query: int) -> ExtraSpec:
    """The declared spec, when it fits the array's shape; else one from the shape."""
    spec = EXTRAS.get(key)
    if spec is not None and (arr.ndim == 2) == (spec.draw in ("heatmap", "memory")):
        return spec
    if arr.ndim == 2:
        return ExtraSpec("heatmap", "axis.column", "axis.row", "axis.recorded")
    if arr.size == n_query:
        return ExtraSpec("bars", "axis.query_index", "axis.recorded")
    return ExtraSpec("line", "axis.position", "axis.recorded")


def trace_extras(step, *, n_query: int, labels: dict | None = None,
                 lang: str | None = None) -> list[go.Figure]:
    """One figure per array in ``step.extras`` (a TraceStep), drawn as ``EXTRAS``
    declares (undeclared keys by shape: 2-D -> heatmap; 1-D of length ``n_query`` ->
    a bar per query; any other 1-D -> a line). Titled ``extras.<key>`` in ``lang``
    (or ``labels[key]`` when given). Per-step arrays are drawn against the trace's
    step numbers, ending at ``step.step``. ``curve_x``/``curve_y`` are skipped (the
    regression plot draws them); non-numeric or >2-D values too. The figure's
    ``layout.meta["extra"]`` holds the key."""
    lab = merge_labels(labels, lang)
    figs = []
    for key in _extras_order(list((step.extras or {}).keys())):
        if key in SKIP_EXTRAS:
            continue
        arr = _as_array(step.extras[key])
        if arr is None:
            continue
        spec = _spec_for(key, arr, n_query)
        title = (labels or {}).get(key) or lab.get("extras." + key) or key.replace("_", " ")
        if spec.draw in ("heatmap", "memory"):
            trace, layout = _heatmap(arr, spec, lab, int(step.step))
        elif spec.draw == "bars":
            trace, layout = _bars(arr, spec, lab)
        else:
            trace, layout = _line(arr, spec, lab, int(step.step))
        kind = "extras." + key if key in EXTRAS else "extras.generic"
        layout.update(margin=dict(l=10, r=10, b=10))
        titled(layout, kind=kind, title=title, lab=lab, width=44, meta={"extra": key})
        # one go.Figure call per figure: these are rebuilt on every slider step
        figs.append(go.Figure(data=[trace], layout=layout))
    return figs


def _axis(lab: dict, key: str, **more) -> dict:
    return dict(title=dict(text=lab.get(key, key)), **more)


def _heatmap(arr: np.ndarray, spec: ExtraSpec, lab: dict, step: int) -> tuple[dict, dict]:
    rows = arr.shape[0]
    # memory weightings: row r is the state after step r, so the rows count steps
    y = np.arange(step - rows + 1, step + 1) if spec.draw == "memory" else np.arange(rows)
    trace = dict(type="heatmap", z=arr, x=np.arange(arr.shape[1]), y=y, colorscale="Viridis",
                 colorbar=dict(thickness=12, title=dict(text=lab.get(spec.z, spec.z), side="right")),
                 hovertemplate=(f"{lab.get(spec.y, '')} %{{y}}<br>{lab.get(spec.x, '')} %{{x}}<br>"
                                "%{z:.3g}<extra></extra>"))
    layout = dict(height=max(260, min(520, 140 + 10 * rows)), xaxis=_axis(lab, spec.x),
                  yaxis=_axis(lab, spec.y, autorange="reversed"))   # row 0 at the top, as in the matrix
    return trace, layout


def _bars(arr: np.ndarray, spec: ExtraSpec, lab: dict) -> tuple[dict, dict]:
    trace = dict(type="bar", x=np.arange(arr.size) + spec.x_start, y=arr, marker=dict(color=color_of(4)),
                 name=lab.get(spec.y, spec.y),
                 hovertemplate=f"{lab.get(spec.x, '')} %{{x}}: %{{y:.3g}}<extra></extra>")
    return trace, dict(height=280, bargap=0.1, xaxis=_axis(lab, spec.x), yaxis=_axis(lab, spec.y))


def _line(arr: np.ndarray, spec: ExtraSpec, lab: dict, step: int) -> tuple[dict, dict]:
    # per-step arrays end at this step: their x axis counts as the trace's steps do
    x = np.arange(step - arr.size + 1, step + 1) if spec.draw == "per_step" else np.arange(arr.size)
    trace = dict(type="scatter", x=x, y=arr, mode="lines+markers", line=dict(color=color_of(0)),
                 name=lab.get(spec.y, spec.y),
                 hovertemplate=f"{lab.get(spec.x, '')} %{{x}}: %{{y:.3g}}<extra></extra>")
    yaxis = _axis(lab, spec.y)
    if spec.log and np.all(arr > 0):
        yaxis["type"] = "log"
    xaxis = _axis(lab, spec.x, **({"dtick": 1} if arr.size <= 20 else {}))
    return trace, dict(height=280, xaxis=xaxis, yaxis=yaxis)
