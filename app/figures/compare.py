"""Comparing learners on identical episodes: one bar each with its 95% interval."""
from __future__ import annotations

import plotly.graph_objects as go

from . import color_of, merge_labels


def comparison_figure(summaries: dict, *, metric: str = "accuracy", title: str = "",
                      labels: dict | None = None, chance: float | None = None) -> go.Figure:
    """Bars of ``summaries[name][metric]`` ("accuracy" in percent, or "mse") with
    ``summaries[name]["ci95"]`` as error bars, one per learner, in the given order.
    ``chance`` (e.g. 100 / n_way) draws a dashed reference line."""
    lab = merge_labels(labels)
    names = list(summaries)
    values = [float(summaries[n].get(metric, float("nan"))) for n in names]
    cis = [float(summaries[n].get("ci95") or 0.0) for n in names]
    fmt = ".1f" if metric == "accuracy" else ".3g"
    fig = go.Figure(go.Bar(
        x=names, y=values, marker_color=[color_of(i) for i in range(len(names))],
        error_y=dict(type="data", array=cis, visible=True, thickness=1.5, width=8),
        text=[f"{v:{fmt}} ± {c:{fmt}}" for v, c in zip(values, cis)], textposition="outside",
        hovertemplate="%{x}: %{y:" + fmt + "}<extra></extra>"))
    y_title = lab["accuracy"] if metric == "accuracy" else lab["mse"]
    fig.update_layout(title=title or None, yaxis_title=y_title, xaxis_title=lab["algorithm"],
                      height=360, margin=dict(l=10, r=10, t=50 if title else 20, b=10), showlegend=False)
    if metric == "accuracy":
        fig.update_yaxes(range=[0, 105])
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="#888", annotation_text=lab.get("chance", "chance"))
    return fig
