"""The paired comparison on identical episodes: each learner's mean difference from a
reference learner, with its paired 95% interval, and its wins/ties/losses."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from . import RIGHT_COLOR, WRONG_COLOR, merge_labels, titled

UNCLEAR_COLOR = "#888"


def paired_difference_figure(rows: list[dict], names: dict[str, str] | None = None, *,
                             title: str = "", higher_is_better: bool = True,
                             labels: dict | None = None, lang: str | None = None) -> go.Figure:
    """One horizontal point per row of ``app.comparison.paired_differences`` at its mean
    difference (learner - reference; accuracy in percentage points, or MSE with
    ``higher_is_better=False``), its 95% interval as an error bar, a dashed line at 0 (no
    difference). ``names`` maps a row's learner/reference to a short label; the wins /
    ties / losses show when hovering a point.

    A point whose interval is clear of 0 on the better side (right for accuracy, left
    for an error) is green, on the worse side red, else grey (also when there is no
    interval: one episode); the legend names the three. Words in ``lang`` (the package
    docstring): ``fig.title.paired``, ``fig.axis.pair``, ``fig.axis.paired_points`` /
    ``fig.axis.paired_mse``, ``fig.paired.*``, ``fig.how.paired_accuracy`` /
    ``fig.how.paired_mse``."""
    lab = merge_labels(labels, lang)
    names = names or {}
    pairs = [f"{names.get(r['learner'], r['learner'])} − {names.get(r['reference'], r['reference'])}"
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
            x=[means[i] for i in idx], y=[pairs[i] for i in idx], mode="markers",
            name=lab["paired." + kind], marker=dict(color=colors[kind], size=11),
            error_x=dict(type="data", array=[cis[i] for i in idx], visible=True, thickness=1.5,
                         width=8),
            hovertext=[f"{pairs[i]}: {means[i]:.2f} ± {cis[i]:.2f}<br>" + lab["paired.record"].format(
                wins=rows[i]["wins"], ties=rows[i]["ties"], losses=rows[i]["losses"]) for i in idx],
            hoverinfo="text"))
    fig.add_vline(x=0, line_dash="dash", line_color=UNCLEAR_COLOR)
    metric = "accuracy" if higher_is_better else "mse"
    layout = dict(xaxis=dict(title=dict(text=lab["axis.paired_points" if higher_is_better
                                                 else "axis.paired_mse"])),
                  yaxis=dict(title=dict(text=lab["axis.pair"]), autorange="reversed",
                             categoryorder="array", categoryarray=pairs, automargin=True),
                  showlegend=True, legend=dict(orientation="h", yanchor="top", y=-0.3),
                  height=220 + 45 * len(rows), margin=dict(l=10, r=10, b=10))
    titled(layout, kind="paired", title=title, lab=lab, width=72, top=16,
           meta={"metric": metric})
    layout["meta"]["how_to_read"] = lab.get("how.paired_" + metric, "")
    fig.update_layout(layout)
    return fig
