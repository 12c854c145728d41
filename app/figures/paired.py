"""The paired comparison on identical episodes: each learner's mean difference from a
reference learner, with its paired 95% interval, and its wins/ties/losses."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from . import RIGHT_COLOR, WRONG_COLOR


def paired_difference_figure(rows: list[dict], names: dict[str, str], *, title: str = "",
                             x_title: str = "", record: str = "{wins} / {ties} / {losses}",
                             higher_is_better: bool = True) -> go.Figure:
    """One horizontal point per row of ``app.services.paired_differences`` at its mean
    difference (learner - reference), its 95% interval as an error bar, a line at 0
    (no difference). ``names`` maps a row's learner/reference to a short label;
    ``record`` formats the wins/ties/losses shown when hovering a point. A point whose interval excludes 0 on the better side (right for accuracy,
    left for an error with ``higher_is_better=False``) is green, on the worse side red,
    else grey (also when there is no interval: one episode)."""
    labels = [f"{names.get(r['learner'], r['learner'])} − {names.get(r['reference'], r['reference'])}"
              for r in rows]
    means = [float(r["mean"]) for r in rows]
    known = [r["ci95"] is not None and not math.isnan(r["ci95"]) for r in rows]
    cis = [float(r["ci95"]) if k else 0.0 for r, k in zip(rows, known)]
    sign = 1.0 if higher_is_better else -1.0
    # no interval (one episode): grey, whatever the sign
    colors = [("#888" if not k else RIGHT_COLOR if sign * m - c > 0
               else WRONG_COLOR if sign * m + c < 0 else "#888")
              for m, c, k in zip(means, cis, known)]
    hover = [f"{label}: {m:.2f} ± {c:.2f}<br>" + record.format(wins=r["wins"], ties=r["ties"],
                                                             losses=r["losses"])
             for label, m, c, r in zip(labels, means, cis, rows)]
    fig = go.Figure(go.Scatter(
        x=means, y=labels, mode="markers", marker=dict(color=colors, size=11),
        error_x=dict(type="data", array=cis, visible=True, thickness=1.5, width=8),
        hovertext=hover, hoverinfo="text"))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_layout(title=title or None, xaxis_title=x_title, showlegend=False,
                      height=150 + 45 * len(rows), margin=dict(l=10, r=10, t=50 if title else 20, b=10))
    fig.update_yaxes(autorange="reversed")
    return fig
