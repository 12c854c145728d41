"""Figures of one adaptation step: the query predictions, the family-specific
arrays a learner records in ``TraceStep.extras`` (drawn generically), and the
query embeddings moving from step to step."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import WRONG_COLOR, color_of, merge_labels
from .episodes import episode_grid

# Drawn by other figures (the regression plot), not as extras.
SKIP_EXTRAS = frozenset({"curve_x", "curve_y"})
# Documented extras first, in this order; the rest alphabetically after them.
EXTRAS_ORDER = ("attention", "similarity", "uncertainty", "read_weights", "write_weights", "usage",
                "allocation", "link", "cg_residuals")
# Axis titles (label keys) of the documented 2-D extras: (x, y).
HEATMAP_AXES = {
    "attention": ("support_index", "query_index"), "similarity": ("support_index", "query_index"),
    "read_weights": ("slot", "time"), "write_weights": ("slot", "time"), "usage": ("slot", "time"),
    "allocation": ("slot", "time"), "link": ("slot", "slot"),
}
LINE_AXES = {"cg_residuals": ("iteration", "value")}


def query_predictions(query_x, query_y, probs, class_names, *, title: str = "",
                      labels: dict | None = None) -> go.Figure:
    """The query set, a row per true class, each image captioned with its predicted
    class (by row code A, B, ...) and probability, framed red when wrong.
    ``probs`` (n_q, n_way)."""
    return episode_grid(query_x, query_y, class_names, probs=probs, title=title, labels=labels)


def probability_bars(probs_row, class_names, true_class: int | None = None, *, title: str = "",
                     labels: dict | None = None) -> go.Figure:
    """One query's predicted distribution (n_way,) as bars; the true class outlined."""
    lab = merge_labels(labels)
    p = np.asarray(probs_row, float).reshape(-1)
    names = list(class_names)[:p.size]
    pred = int(p.argmax())
    colors = [(WRONG_COLOR if true_class is not None and c == pred and c != true_class else color_of(c))
              for c in range(p.size)]
    widths = [3 if c == true_class else 0 for c in range(p.size)]
    fig = go.Figure(go.Bar(x=names, y=p, marker=dict(color=colors, line=dict(color="black", width=widths)),
                           hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(title=title or None, yaxis=dict(range=[0, 1], tickformat=".0%", title=lab["probability"]),
                      height=260, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


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


def trace_extras(step, *, n_query: int, labels: dict | None = None) -> list[go.Figure]:
    """One figure per array in ``step.extras`` (a TraceStep), drawn by its shape:
    2-D -> heatmap; 1-D of length ``n_query`` -> a bar per query ("uncertainty"
    is such); any other 1-D -> a line. Each is titled by its key (or by
    ``labels[key]`` when the page passes a translation). ``curve_x``/``curve_y``
    are skipped (the regression plot draws them); non-numeric or >2-D values too.
    The figure's ``layout.meta["extra"]`` holds the key."""
    lab = merge_labels(labels)
    figs = []
    for key in _extras_order(list((step.extras or {}).keys())):
        if key in SKIP_EXTRAS:
            continue
        arr = _as_array(step.extras[key])
        if arr is None:
            continue
        title = str(lab.get(key, key))
        if arr.ndim == 2:
            trace, layout = _heatmap(arr, key, lab)
        elif arr.size == n_query:
            trace, layout = _per_query_bars(arr, lab)
        else:
            trace, layout = _line(arr, key, lab)
        # one go.Figure call per figure: these are rebuilt on every slider step
        layout.update(title=title, margin=dict(l=10, r=10, t=40, b=10), meta={"extra": key})
        figs.append(go.Figure(data=[trace], layout=layout))
    return figs


def _heatmap(arr: np.ndarray, key: str, lab: dict) -> tuple[dict, dict]:
    x_key, y_key = HEATMAP_AXES.get(key, ("", ""))
    trace = dict(type="heatmap", z=arr, colorscale="Viridis", colorbar=dict(thickness=12),
                 hovertemplate="%{y}, %{x}: %{z:.3g}<extra></extra>")
    layout = dict(height=max(240, min(520, 120 + 10 * arr.shape[0])),
                  xaxis=dict(title=dict(text=lab.get(x_key, "")) if x_key else None),
                  yaxis=dict(autorange="reversed",   # row 0 at the top, as in the matrix
                             title=dict(text=lab.get(y_key, "")) if y_key else None))
    return trace, layout


def _per_query_bars(arr: np.ndarray, lab: dict) -> tuple[dict, dict]:
    trace = dict(type="bar", x=np.arange(arr.size), y=arr, marker=dict(color=color_of(4)),
                 hovertemplate=f"{lab['query_index']} %{{x}}: %{{y:.3g}}<extra></extra>")
    return trace, dict(height=260, bargap=0.1, xaxis=dict(title=dict(text=lab["query_index"])))


def _line(arr: np.ndarray, key: str, lab: dict) -> tuple[dict, dict]:
    x_key, y_key = LINE_AXES.get(key, ("index", "value"))
    trace = dict(type="scatter", x=np.arange(arr.size), y=arr, mode="lines+markers",
                 line=dict(color=color_of(0)))
    yaxis = dict(title=dict(text=lab.get(y_key, y_key)))
    if key == "cg_residuals" and np.all(arr > 0):
        yaxis["type"] = "log"
    return trace, dict(height=260, xaxis=dict(title=dict(text=lab.get(x_key, x_key))), yaxis=yaxis)


def embedding_motion(points, y, *, upto: int, kinds=None, class_names=None, wrong=None,
                     labels: dict | None = None, title: str = "") -> go.Figure:
    """Points moving through adaptation: ``points`` (T, n, 2) are aligned 2-D
    positions of the same n points at each of T steps (see
    ``metarep_core.projection.project_sequence``); ``y`` (n,) their classes;
    ``kinds`` (n,) "query" / "support" / "prototype". Draws each point's path from
    step 0 to ``upto`` (faint) and its position at ``upto``; prototypes as stars.
    ``wrong`` (n,) bool marks misclassified points at this step with a red ring.
    Axis ranges cover all T steps so scrubbing does not rescale."""
    lab = merge_labels(labels)
    pts = np.asarray(points, float)
    if pts.ndim != 3 or pts.shape[2] != 2:
        raise ValueError(f"points must have shape (T, n, 2), got {pts.shape}")
    T, n, _ = pts.shape
    upto = int(np.clip(upto, 0, T - 1))
    y = np.asarray(y).astype(int).reshape(-1)
    kinds = np.asarray(kinds if kinds is not None else ["query"] * n)
    names = list(class_names) if class_names is not None else [str(c) for c in range(int(y.max()) + 1)]
    data = []
    if upto > 0:   # all paths in one trace, separated by None (NaN): one draw call
        seg = np.full((n, upto + 2, 2), np.nan)
        seg[:, :upto + 1] = pts[:upto + 1].transpose(1, 0, 2)
        seg = seg.reshape(-1, 2)
        data.append(dict(type="scatter", x=seg[:, 0], y=seg[:, 1], mode="lines", hoverinfo="skip",
                         line=dict(color="rgba(90,90,90,0.35)", width=1), showlegend=False, name="paths"))
    now = pts[upto]
    symbols = {"query": "circle", "support": "square", "sample": "circle", "prototype": "star"}
    for kind in [k for k in ("support", "query", "sample", "prototype") if (kinds == k).any()]:
        sel = np.flatnonzero(kinds == kind)
        data.append(dict(
            type="scatter", x=now[sel, 0], y=now[sel, 1], mode="markers", name=lab.get(kind, kind),
            marker=dict(symbol=symbols[kind], size=18 if kind == "prototype" else 9,
                        color=[color_of(c) for c in y[sel]],
                        line=dict(color="black", width=1.5 if kind == "prototype" else 0.5)),
            customdata=sel, hoverinfo="text",
            hovertext=[f"{names[y[i]] if y[i] < len(names) else y[i]} · {lab.get(kind, kind)} {lab['index']}{i}"
                       for i in sel]))
    if wrong is not None and np.asarray(wrong).any():
        bad = np.flatnonzero(np.asarray(wrong, bool))
        data.append(dict(type="scatter", x=now[bad, 0], y=now[bad, 1], mode="markers", name=lab["wrong"],
                         marker=dict(symbol="circle-open", size=15, color=WRONG_COLOR, line=dict(width=2.5)),
                         hoverinfo="skip"))
    lo, hi = pts.reshape(-1, 2).min(0), pts.reshape(-1, 2).max(0)
    pad = 0.06 * np.maximum(hi - lo, 1e-6)
    layout = dict(title=title or lab.get("title") or None, height=420, margin=dict(l=10, r=10, t=40, b=10),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
                  xaxis=dict(range=[lo[0] - pad[0], hi[0] + pad[0]], showticklabels=False, zeroline=False),
                  yaxis=dict(range=[lo[1] - pad[1], hi[1] + pad[1]], showticklabels=False, zeroline=False))
    return go.Figure(data=data, layout=layout)
