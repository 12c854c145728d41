"""Comparing learners on identical episodes: one bar each with its 95% interval."""
from __future__ import annotations

import plotly.graph_objects as go

from app.i18n import strings

from . import color_of, merge_labels, resolve_lang, titled


def learner_label(name: str, lang: str | None = None) -> str:
    """A learner's title and family in words ("MAML<br>Optimization-based"), for a
    tick label; a name the registry does not know is shown as given."""
    from metarep_core.errors import MetaRepError
    from metarep_core.learners import get_learner_class
    try:
        cls = get_learner_class(name)
    except MetaRepError:   # not a registered learner (a caller's own label): show it as given
        return str(name)
    lang = resolve_lang(lang)
    family = strings(lang).get("family." + cls.family) or strings("en").get("family." + cls.family, "")
    return f"{cls.title or cls.name}<br><sup>{family}</sup>" if family else (cls.title or cls.name)


def comparison_figure(summaries: dict, *, metric: str = "accuracy", title: str = "",
                      labels: dict | None = None, chance: float | None = None,
                      lang: str | None = None) -> go.Figure:
    """Bars of ``summaries[name][metric]`` ("accuracy" in percent, or "mse" for
    regression) with ``summaries[name]["ci95"]`` as error bars, one per learner, in the
    given order, each named by its title and family. ``chance`` (e.g. 100 / n_way)
    draws a dashed reference line. Values are printed rounded: accuracy to 0.1
    point, MSE to 3 significant digits. Words in ``lang`` (see the package docstring)."""
    lab = merge_labels(labels, lang)
    names = list(summaries)
    values = [float(summaries[n].get(metric, float("nan"))) for n in names]
    cis = [float(summaries[n].get("ci95") or 0.0) for n in names]
    fmt = ".1f" if metric == "accuracy" else ".3g"
    ticks = [learner_label(n, lang) for n in names]
    fig = go.Figure(go.Bar(
        x=ticks, y=values, marker_color=[color_of(i) for i in range(len(names))],
        error_y=dict(type="data", array=cis, visible=True, thickness=1.5, width=8),
        text=[f"{v:{fmt}} ± {c:{fmt}}" for v, c in zip(values, cis)], textposition="none",
        name=lab["axis.accuracy_query"] if metric == "accuracy" else lab["axis.mse"],
        hovertemplate="%{x}: %{text}<extra></extra>"))
    # the rounded value over each whisker (text on the bar itself would sit under the whisker)
    fig.add_trace(go.Scatter(x=ticks, y=[v + c for v, c in zip(values, cis)], mode="text",
                             text=list(fig.data[0].text), textposition="top center", cliponaxis=False,
                             hoverinfo="skip", showlegend=False, name=""))
    regression = metric != "accuracy"
    layout = dict(yaxis=dict(title=dict(text=lab["axis.mse"] if regression else lab["axis.accuracy_query"]),
                             automargin=True),
                  xaxis=dict(title=dict(text=lab["axis.learner"]), automargin=True),
                  height=400, showlegend=False)
    titled(layout, kind="comparison_mse" if regression else "comparison_accuracy", title=title, lab=lab,
           width=72, top=16)
    fig.update_layout(layout)
    if not regression:   # room above 100% for the printed values
        fig.update_yaxes(range=[0, 112], tickvals=[0, 20, 40, 60, 80, 100])
    else:
        top = max([v + c for v, c in zip(values, cis) if v == v] or [1.0])
        fig.update_yaxes(range=[0, top * 1.18], rangemode="tozero")
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="#888",
                      annotation_text=f"{lab['chance']} ({chance:.0f}%)", annotation_position="top left")
    return fig
