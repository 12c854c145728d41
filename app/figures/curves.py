"""Curves: meta-training progress (loss and accuracy, training and validation) and
an adaptation trace's support/query loss and accuracy up to the scrubbed step."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import color_of, merge_labels, resolve_lang, titled
from .step_labels import step_label

MAX_POINTS = 1500   # raw per-step points drawn; longer runs are thinned (the smoothed line uses all)
TRAIN_COLOR, VAL_COLOR = color_of(0), color_of(1)
SUPPORT_COLOR, QUERY_COLOR = color_of(2), color_of(3)


def smooth(values, weight: float | None = None) -> np.ndarray:
    """Exponential moving average (bias-corrected, like TensorBoard's) of ``values``;
    the default weight grows with the length so long runs are not drowned in noise."""
    v = np.asarray(values, float)
    if v.size == 0:
        return v
    if weight is None:
        weight = float(np.clip(1.0 - 10.0 / max(v.size, 10), 0.0, 0.98))
    out, avg = np.empty_like(v), 0.0
    for i, x in enumerate(v):
        avg = weight * avg + (1.0 - weight) * x
        out[i] = avg / (1.0 - weight ** (i + 1))
    return out


def _column(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows that have ``key`` with a finite value."""
    pairs = [(r.get("step", i), r[key]) for i, r in enumerate(rows)
             if r.get(key) is not None and np.isfinite(r[key])]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    s, v = zip(*pairs)
    return np.asarray(s, float), np.asarray(v, float)


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= MAX_POINTS:
        return x, y
    keep = np.linspace(0, x.size - 1, MAX_POINTS).round().astype(int)
    return x[keep], y[keep]


def _panels_layout(n_panels: int, gap: float = 0.1) -> dict:
    """Axes of ``n_panels`` side-by-side panels (what make_subplots builds, without
    its cost: this figure is rebuilt on every step of the adaptation slider)."""
    width = (1.0 - gap * (n_panels - 1)) / n_panels
    layout = {}
    for k in range(n_panels):
        sfx = "" if k == 0 else str(k + 1)
        layout[f"xaxis{sfx}"] = {"domain": [k * (width + gap), k * (width + gap) + width], "anchor": f"y{sfx}"}
        layout[f"yaxis{sfx}"] = {"anchor": f"x{sfx}"}
    return layout


def training_curves(history: list[dict], val_curve: list[dict] | None = None, *,
                    regression: bool = False, title: str = "", labels: dict | None = None,
                    lang: str | None = None) -> go.Figure:
    """Two panels: loss, and accuracy (%) — or MSE for regression — against the
    meta-training step, for training (raw, faint, and smoothed) and validation
    (with its 95% interval as error bars).

    ``history``: the Trainer's per-step rows ``{"step", "loss", "accuracy" (percent)
    or "mse"}``; ``val_curve``: its validation rows ``{"step", "val_loss",
    "val_accuracy" (percent) or "val_mse", "val_ci95"}``. Validation keys found in
    ``history`` rows are used too. Words in ``lang`` (see the package docstring)."""
    lab = merge_labels(labels, lang)
    history = list(history or [])
    val_rows = list(val_curve or []) + [r for r in history if "val_loss" in r or "val_accuracy" in r
                                        or "val_mse" in r]
    metric, val_metric = ("mse", "val_mse") if regression else ("accuracy", "val_accuracy")
    metric_title = lab["axis.mse"] if regression else lab["axis.accuracy"]
    loss_title = lab["axis.loss_mse"] if regression else lab["axis.loss_ce"]
    layout = _panels_layout(2)
    data = []
    has_train = _column(history, "loss")[0].size > 0
    for col, (key, vkey) in enumerate((("loss", "val_loss"), (metric, val_metric))):
        sfx = "" if col == 0 else str(col + 1)
        axes = {"xaxis": f"x{sfx}", "yaxis": f"y{sfx}"}
        x, y = _column(history, key)
        if x.size:
            tx, ty = _thin(x, y)
            data.append(dict(type="scatter", x=tx, y=ty, mode="lines", name=lab["train"], legendgroup="train",
                             line=dict(color=TRAIN_COLOR, width=1), opacity=0.3, showlegend=False,
                             hoverinfo="skip", **axes))
            sx, sy = _thin(x, smooth(y))
            data.append(dict(type="scatter", x=sx, y=sy, mode="lines", name=lab["train"], legendgroup="train",
                             line=dict(color=TRAIN_COLOR, width=2.5), showlegend=col == 0, **axes))
        vx, vy = _column(val_rows, vkey)
        if vx.size:
            ci = None
            if col == 1:
                _, ci_all = _column(val_rows, "val_ci95")
                ci = ci_all if ci_all.size == vx.size else None
            data.append(dict(type="scatter", x=vx, y=vy, mode="lines+markers", name=lab["val"], legendgroup="val",
                             line=dict(color=VAL_COLOR, width=2),
                             error_y=None if ci is None else dict(type="data", array=ci, visible=True, thickness=1),
                             showlegend=col == 0 or not has_train, **axes))
        layout[f"xaxis{sfx}"]["title"] = {"text": lab["axis.train_step"]}
        layout[f"yaxis{sfx}"]["title"] = {"text": loss_title if col == 0 else metric_title}
    if not regression:
        layout["yaxis2"]["range"] = [0, 100]
    layout.update(height=360, margin=dict(l=10, r=10, b=10),
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    titled(layout, kind="training_curves_regression" if regression else "training_curves", title=title,
           lab=lab, width=80, legend_top=True)
    # one go.Figure call: the Train page redraws this every second while a run goes on
    return go.Figure(data=data, layout=layout)


def _trace_values(trace, name: str, scale: float = 1.0) -> np.ndarray:
    return np.array([np.nan if getattr(s, name) is None else getattr(s, name) * scale for s in trace], float)


def trace_curves(trace, upto: int, *, labels: dict | None = None, title: str = "",
                 lang: str | None = None) -> go.Figure:
    """Support and query loss (and accuracy, %, when classified) against the trace's
    steps, drawn up to ``upto`` (an index into ``trace``, a list of TraceStep) with
    the current step marked. Axis ranges come from the whole trace, so scrubbing
    the slider moves the lines without rescaling the axes. The x axis counts the
    trace's own ``step`` numbers. A trace without accuracies is a regression one:
    its loss is the MSE. Words in ``lang`` (see the package docstring)."""
    lab = merge_labels(labels, lang)
    classified = any(s.support_accuracy is not None or s.query_accuracy is not None for s in trace or [])
    fig_kind = "trace_curves" if classified else "trace_curves_regression"
    if not trace:
        return go.Figure(layout=titled(dict(height=300), kind=fig_kind, title=title, lab=lab))
    upto = int(np.clip(upto, 0, len(trace) - 1))
    steps = np.array([s.step for s in trace], float)
    panels = [("loss", lab["axis.loss_ce"] if classified else lab["axis.loss_mse"], "support_loss", "query_loss", 1.0)]
    if classified:
        panels.append(("accuracy", lab["axis.accuracy"], "support_accuracy", "query_accuracy", 100.0))
    layout = _panels_layout(len(panels))
    lang = resolve_lang(lang)
    hover = [f"{lab['axis.adapt_step']} {s.step}: {step_label(s.label, lang)}" for s in trace[:upto + 1]]
    span = steps.max() - steps.min()
    pad = 0.05 * max(span, 1)
    data = []
    in_legend = set()   # a series is keyed where it first appears (memory learners: no support loss)
    for col, (kind, axis_title, s_name, q_name, scale) in enumerate(panels):
        sfx = "" if col == 0 else str(col + 1)
        axes = {"xaxis": f"x{sfx}", "yaxis": f"y{sfx}"}
        all_vals = []
        for name, color, who in ((s_name, SUPPORT_COLOR, "support"), (q_name, QUERY_COLOR, "query")):
            vals = _trace_values(trace, name, scale)
            all_vals.append(vals)
            if np.isnan(vals).all():
                continue
            data.append(dict(type="scatter", x=steps[:upto + 1], y=vals[:upto + 1], mode="lines+markers",
                             name=lab[who], legendgroup=who, showlegend=who not in in_legend,
                             line=dict(color=color, width=2.5), marker=dict(size=6), hovertext=hover,
                             hovertemplate="%{hovertext}<br>%{y:.3g}", **axes))
            in_legend.add(who)
            if not np.isnan(vals[upto]):
                data.append(dict(type="scatter", x=[steps[upto]], y=[vals[upto]], mode="markers",
                                 marker=dict(size=13, color=color, line=dict(color="black", width=1.5)),
                                 showlegend=False, hoverinfo="skip", name=f"{who} now", **axes))
        vals = np.concatenate(all_vals)
        vals = vals[np.isfinite(vals)]
        if kind == "accuracy":
            y_range = [-3, 103]
        elif vals.size:
            lo, hi = float(vals.min()), float(vals.max())
            margin = 0.08 * max(hi - lo, 1e-6)
            y_range = [min(0.0, lo - margin) if lo >= 0 else lo - margin, hi + margin]
        else:
            y_range = None
        layout[f"yaxis{sfx}"].update(title={"text": axis_title}, **({"range": y_range} if y_range else {}))
        layout[f"xaxis{sfx}"].update(title={"text": lab["axis.adapt_step"]},
                                     range=[steps.min() - pad, steps.max() + pad],
                                     **({"dtick": 1} if span <= 20 else {}))
    layout.update(height=320, margin=dict(l=10, r=10, b=10),
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    titled(layout, kind=fig_kind, title=title, lab=lab, width=80, legend_top=True)
    return go.Figure(data=data, layout=layout)
