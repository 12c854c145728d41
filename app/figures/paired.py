"""The paired comparison on identical episodes: each learner's mean difference from a
reference learner, with its paired 95% interval, and its wins/ties/losses."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from . import RIGHT_COLOR, WRONG_COLOR


def paired_difference_figure(rows: list[dict], names: dict[str, str], *, title: str = "",
                             x_title: str = "", how_to_read: str = "",
                             record: str = "{wins} / {ties} / {losses}",
                             higher_is_better: bool = True) -> go.Figure:
    """One horizontal point per row of ``app.services.paired_differences`` at its mean
    difference (learner - reference), its 95% interval as an error bar, a line at 0
    (no difference). ``names`` maps a row's learner/reference to a label; ``record``
    formats the wins/ties/losses shown beside the point; ``how_to_read`` goes under
    the axis. A point whose interval excludes 0 on the better side (right for accuracy,
    left for an error with ``higher_is_better=False``) is green, on the worse side red,
    else grey."""
    labels = [f"{names.get(r['learner'], r['learner'])} − {names.get(r['reference'], r['reference'])}"
              for r in rows]
    means = [float(r["mean"]) for r in rows]
    cis = [0.0 if r["ci95"] is None or math.isnan(r["ci95"]) else float(r["ci95"]) for r in rows]
    sign = 1.0 if higher_is_better else -1.0
    colors = [RIGHT_COLOR if sign * m - c > 0 else WRONG_COLOR if sign * m + c < 0 else "#888"
              for m, c in zip(means, cis)]
    text = [record.format(wins=r["wins"], ties=r["ties"], losses=r["losses"]) for r in rows]
    fig = go.Figure(go.Scatter(
        x=means, y=labels, mode="markers+text", text=text, textposition="top center",
        marker=dict(color=colors, size=11),
        error_x=dict(type="data", array=cis, visible=True, thickness=1.5, width=8),
        hovertemplate="%{y}: %{x:.2f} ± %{error_x.array:.2f}<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_layout(title=title or None, xaxis_title=x_title, showlegend=False,
                      height=140 + 60 * len(rows),
                      margin=dict(l=10, r=10, t=50 if title else 20, b=60 if how_to_read else 10))
    fig.update_yaxes(autorange="reversed")
    if how_to_read:
        fig.add_annotation(text=how_to_read, xref="paper", yref="paper", x=0, y=-0.01,
                           yanchor="top", xanchor="left", showarrow=False, yshift=-40,
                           font=dict(size=11, color="#666"))
    return fig
