"""The paired comparison on identical episodes: each learner's mean difference from a
reference learner, with its paired 95% interval, and its wins/ties/losses."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from . import RIGHT_COLOR, WRONG_COLOR

UNCLEAR_COLOR = "#888"
# English defaults of the legend; the page passes translated ones under the same keys.
LEGEND = {"better": "better than the reference (interval clear of 0)",
          "worse": "worse than the reference (interval clear of 0)",
          "unclear": "no clear difference", "pair": "pair"}


def paired_difference_figure(rows: list[dict], names: dict[str, str], *, title: str = "",
                             x_title: str = "", record: str = "{wins} / {ties} / {losses}",
                             higher_is_better: bool = True,
                             legend: dict | None = None) -> go.Figure:
    """One horizontal point per row of ``app.services.paired_differences`` at its mean
    difference (learner - reference), its 95% interval as an error bar, a line at 0
    (no difference). ``names`` maps a row's learner/reference to a short label;
    ``record`` formats the wins/ties/losses shown when hovering a point.

    A point whose interval excludes 0 on the better side (right for accuracy, left for
    an error with ``higher_is_better=False``) is green, on the worse side red, else grey
    (also when there is no interval: one episode); the legend names the three (``legend``:
    "better", "worse", "unclear" and the y-axis title "pair")."""
    lab = {**LEGEND, **(legend or {})}
    labels = [f"{names.get(r['learner'], r['learner'])} − {names.get(r['reference'], r['reference'])}"
              for r in rows]
    means = [float(r["mean"]) for r in rows]
    known = [r["ci95"] is not None and not math.isnan(r["ci95"]) for r in rows]
    cis = [float(r["ci95"]) if k else 0.0 for r, k in zip(rows, known)]
    sign = 1.0 if higher_is_better else -1.0
    kinds = [("unclear" if not k else "better" if sign * m - c > 0
              else "worse" if sign * m + c < 0 else "unclear")
             for m, c, k in zip(means, cis, known)]
    colors = {"better": RIGHT_COLOR, "worse": WRONG_COLOR, "unclear": UNCLEAR_COLOR}
    fig = go.Figure()
    for kind in ("better", "unclear", "worse"):  # one trace per colour: the legend's entries
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if not idx:
            continue
        fig.add_trace(go.Scatter(
            x=[means[i] for i in idx], y=[labels[i] for i in idx], mode="markers", name=lab[kind],
            marker=dict(color=colors[kind], size=11),
            error_x=dict(type="data", array=[cis[i] for i in idx], visible=True, thickness=1.5,
                         width=8),
            hovertext=[f"{labels[i]}: {means[i]:.2f} ± {cis[i]:.2f}<br>" + record.format(
                wins=rows[i]["wins"], ties=rows[i]["ties"], losses=rows[i]["losses"]) for i in idx],
            hoverinfo="text"))
    fig.add_vline(x=0, line_dash="dash", line_color=UNCLEAR_COLOR)
    fig.update_layout(title=title or None, xaxis_title=x_title, yaxis_title=lab["pair"],
                      showlegend=True, legend=dict(orientation="h", y=-0.35 if rows else 0),
                      height=200 + 45 * len(rows), margin=dict(l=10, r=10, t=50 if title else 20, b=10))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=labels)
    return fig
