"""Figures of one adaptation step: the query predictions, one query's predicted
distribution, and the query embeddings moving from step to step. The
family-specific arrays of ``TraceStep.extras`` are drawn by :mod:`.extras`
(``trace_extras`` is re-exported here)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import WRONG_COLOR, color_of, merge_labels, titled
from .episodes import episode_grid, short_name
from .extras import trace_extras  # noqa: F401  (the pages import it from here)

MAX_CLASS_KEYS = 12   # more classes than this: no colour key (it would fill the figure)


def query_predictions(query_x, query_y, probs, class_names, *, title: str = "",
                      labels: dict | None = None, lang: str | None = None,
                      width_hint: int = 600) -> go.Figure:
    """The query set, a row per true class, each image captioned with its predicted
    class (by row code A, B, ...) and probability, framed red when wrong.
    ``probs`` (n_q, n_way); ``width_hint`` the column's width in pixels (a long
    title wraps to it)."""
    return episode_grid(query_x, query_y, class_names, probs=probs, title=title, labels=labels,
                        kind="query_predictions", lang=lang, width_hint=width_hint)


def probability_bars(probs_row, class_names, true_class: int | None = None, *, title: str = "",
                     labels: dict | None = None, lang: str | None = None) -> go.Figure:
    """One query's predicted distribution (n_way,) as bars; the true class outlined."""
    lab = merge_labels(labels, lang)
    p = np.asarray(probs_row, float).reshape(-1)
    names = list(class_names)[:p.size]
    pred = int(p.argmax())
    colors = [(WRONG_COLOR if true_class is not None and c == pred and c != true_class else color_of(c))
              for c in range(p.size)]
    widths = [3 if c == true_class else 0 for c in range(p.size)]
    fig = go.Figure(go.Bar(x=names, y=p, marker=dict(color=colors, line=dict(color="black", width=widths)),
                           hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(titled(dict(yaxis=dict(range=[0, 1], tickformat=".0%", title=lab["axis.probability"]),
                                  xaxis=dict(title=lab["axis.class"]), height=280),
                             kind="probability_bars", title=title, lab=lab))
    return fig


def embedding_motion(points, y, *, upto: int, kinds=None, class_names=None, wrong=None,
                     labels: dict | None = None, title: str = "", lang: str | None = None) -> go.Figure:
    """Points moving through adaptation: ``points`` (T, n, 2) are aligned 2-D
    positions of the same n points at each of T steps (see
    ``metarep_core.projection.project_sequence``); ``y`` (n,) their classes;
    ``kinds`` (n,) "query" / "support" / "prototype". Draws each point's path from
    step 0 to ``upto`` (faint) and its position at ``upto``; prototypes as stars.
    ``wrong`` (n,) bool marks misclassified points at this step with a red ring.
    Axis ranges cover all T steps so scrubbing does not rescale.

    The key (legend) sits under the plot, so the title never covers it: the path,
    each kind's symbol, the red ring, then one entry per class colour (up to
    ``MAX_CLASS_KEYS`` classes; beyond that the hover text names the class)."""
    lab = merge_labels(labels, lang)
    pts = np.asarray(points, float)
    if pts.ndim != 3 or pts.shape[2] != 2:
        raise ValueError(f"points must have shape (T, n, 2), got {pts.shape}")
    T, n, _ = pts.shape
    upto = int(np.clip(upto, 0, T - 1))
    y = np.asarray(y).astype(int).reshape(-1)
    kinds = np.asarray(kinds if kinds is not None else ["query"] * n)
    names = list(class_names) if class_names is not None else [str(c) for c in range(int(y.max()) + 1)]
    # all paths in one trace, separated by None (NaN): one draw call; empty at step 0,
    # but always there, so the key does not change while scrubbing
    seg = np.full((n, upto + 2, 2), np.nan)
    seg[:, :upto + 1] = pts[:upto + 1].transpose(1, 0, 2)
    seg = seg.reshape(-1, 2) if upto > 0 else np.zeros((0, 2))
    data = [dict(type="scatter", x=seg[:, 0], y=seg[:, 1], mode="lines", hoverinfo="skip",
                 line=dict(color="rgba(90,90,90,0.35)", width=1), name=lab["path"])]
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
    classes = sorted(set(y.tolist()))
    if len(classes) <= MAX_CLASS_KEYS:   # the colour key: a legend entry per class, no points
        for c in classes:
            name = names[c] if c < len(names) else str(c)
            data.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=short_name(name, 18),
                             marker=dict(symbol="square", size=10, color=color_of(c)), hoverinfo="skip",
                             legendgroup="classes"))
    lo, hi = pts.reshape(-1, 2).min(0), pts.reshape(-1, 2).max(0)
    pad = 0.06 * np.maximum(hi - lo, 1e-6)
    layout = dict(height=460, margin=dict(l=10, r=10, b=10),
                  # under the axis title (Plotly widens the bottom margin to fit it); one
                  # flowing row of entries, classes included, not a block per group
                  legend=dict(orientation="h", yanchor="top", y=-0.1, x=0, traceorder="normal"),
                  xaxis=dict(range=[lo[0] - pad[0], hi[0] + pad[0]], showticklabels=False, zeroline=False,
                             title=dict(text=lab["axis.proj1"])),
                  yaxis=dict(range=[lo[1] - pad[1], hi[1] + pad[1]], showticklabels=False, zeroline=False,
                             title=dict(text=lab["axis.proj2"])))
    return go.Figure(data=data, layout=titled(layout, kind="embedding_motion", title=title, lab=lab, width=48))
