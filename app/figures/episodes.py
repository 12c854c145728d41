"""Figures of an episode: the support or query set as one image grid (a row per
class), and the regression task's curve with its support and query points."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import RIGHT_COLOR, WRONG_COLOR, color_of, merge_labels, titled
from .images import compose_grid, png_data_uri, to_display


def short_name(name: str, limit: int = 12) -> str:
    """The last part of a class name ("Alphabet_03/character07" -> "character07"),
    cut to ``limit`` characters, for captions under small images."""
    tail = str(name).rsplit("/", 1)[-1]
    return tail if len(tail) <= limit else tail[:limit - 1] + "…"


def _ellipsize(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def class_code(c: int) -> str:
    """A one- or two-character code for class ``c`` (A, B, ... then 27, 28 ...):
    small enough to caption a 28-pixel image with its predicted class."""
    return chr(ord("A") + c) if c < 26 else str(c + 1)


def _class_rows(y: np.ndarray, n_classes: int, max_cols: int | None) -> list[list[int]]:
    rows = [np.flatnonzero(y == c).tolist() for c in range(n_classes)]
    return [r[:max_cols] if max_cols else r for r in rows]


def episode_grid(x, y, class_names, *, probs=None, title: str = "", labels: dict | None = None,
                 max_cols: int | None = None, row_labels: list[str] | None = None,
                 height: int | None = None, width_hint: int = 600, kind: str | None = None,
                 lang: str | None = None) -> go.Figure:
    """The examples ``x`` (n, C, H, W) / (n, H, W[, 3]) in [0, 1] with labels ``y``
    (n,) as one grid: a row per class, headed by ``row_labels`` (default
    ``class_names``).

    With ``probs`` (n, n_way) each image is captioned with its predicted class and
    that class's probability, framed green when right and red when wrong. The grid
    is a single ``go.Image`` (a PNG) plus one invisible marker per image carrying
    its hover text (index, class, prediction), so it draws fast for any n.
    The height fits a plot about ``width_hint`` pixels wide (images keep their
    aspect ratio, so a wrong guess leaves a margin); ``height`` overrides it.

    ``kind`` picks the default title and "how to read this" text: "support_grid",
    "query_grid", "query_predictions" (the default with ``probs``) or "episode_grid"
    (without). Words in ``lang`` (see the package docstring).
    """
    lab = merge_labels(labels, lang)
    kind = kind or ("query_predictions" if probs is not None else "episode_grid")
    y = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y).astype(int).reshape(-1)
    imgs = to_display(x)
    n, h, w = imgs.shape[:3]
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)} labels")
    names = list(class_names)
    n_rows = max(len(names), int(y.max()) + 1 if n else 0)
    names += [str(c) for c in range(len(names), n_rows)]
    rows = _class_rows(y, n_rows, max_cols)
    heads = list(row_labels) if row_labels is not None else names
    if probs is not None:   # captions name classes by code; the row headers say which is which
        heads = [f"{class_code(r)} · {hd}" for r, hd in enumerate(heads)]

    pred = conf = None
    border, pad, row_pad = 0, max(1, w // 14), max(1, h // 14)
    colors = {}
    if probs is not None:
        probs = np.asarray(probs.detach().cpu().numpy() if hasattr(probs, "detach") else probs, float)
        if probs.shape[0] != n:
            raise ValueError(f"probs has {probs.shape[0]} rows but x has {n} examples")
        pred, conf = probs.argmax(1), probs.max(1)
        border = max(1, w // 14)
        row_pad = max(2, int(h * 0.45))        # room for a caption under each image
        colors = {i: (RIGHT_COLOR if pred[i] == y[i] else WRONG_COLOR) for i in range(n)}
    canvas = _compose(imgs, rows, pad, row_pad, border, colors)
    ch, cw = h + 2 * border + row_pad, w + 2 * border + pad

    # Traces and layout as plain dicts, validated once by go.Figure: add_trace and
    # update_* re-validate on every call, which cost ~40 ms per grid on a busy CPU.
    data = [dict(type="image", source=png_data_uri(canvas), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip",
                 name="images")]
    cx, cy, hover, idx = [], [], [], []
    for r, row in enumerate(rows):
        for c, i in enumerate(row):
            cx.append(c * cw + border + w / 2 - 0.5)
            cy.append(r * ch + border + h / 2 - 0.5)
            text = f"{lab['index']}{i} · {names[y[i]]}"
            if pred is not None:
                text += f"<br>{lab['predicted']}: {names[pred[i]]} ({conf[i]:.0%})"
            hover.append(text)
            idx.append(i)
    data.append(dict(type="scatter", x=cx, y=cy, mode="markers", marker=dict(size=max(8, w), opacity=0),
                     hovertext=hover, hoverinfo="text", customdata=idx, name="hover", showlegend=False))
    if pred is not None:
        data.append(dict(type="scatter", x=cx, y=[yy + h / 2 + border + row_pad * 0.45 for yy in cy],
                         mode="text", text=[f"{class_code(pred[i])} {conf[i]:.0%}" for i in idx],
                         textfont=dict(size=10, color=[colors[i] for i in idx]), hoverinfo="skip",
                         name="captions", showlegend=False))
    layout = dict(
        showlegend=False, plot_bgcolor="white", dragmode=False, margin=dict(l=10, r=10, b=10),
        xaxis=dict(visible=False, range=[-0.5, canvas.shape[1] - 0.5]),
        yaxis=dict(range=[canvas.shape[0] - 0.5, -0.5], scaleanchor="x", showgrid=False, zeroline=False,
                   tickmode="array", tickvals=[r * ch + border + h / 2 - 0.5 for r in range(len(rows))],
                   ticktext=[_ellipsize(str(hd), 34) for hd in heads], automargin=True,
                   title=dict(text=lab["axis.class_row"])))
    titled(layout, kind=kind, title=title, lab=lab, width=max(24, width_hint // 11))
    if height is None:   # the images' height at this width, plus the title's margin
        height_px = canvas.shape[0] * min(2.5, width_hint / max(canvas.shape[1], 1))
        height = int(min(1100, max(140, height_px + layout["margin"]["t"] + 10)))
    layout["height"] = height
    titled(layout, kind=kind, title=title, lab=lab, width=max(24, width_hint // 11))   # placed for it
    return go.Figure(data=data, layout=layout)


def _compose(imgs, rows, pad, row_pad, border, colors) -> np.ndarray:
    """compose_grid with a taller gap between rows (room for captions)."""
    if row_pad == pad:
        return compose_grid(imgs, rows, pad=pad, border=border, border_colors=colors)
    # compose each row with the column gap, then stack them with the row gap
    strips = [compose_grid(imgs, [row], pad=pad, border=border, border_colors=colors) for row in rows]
    width = max(s.shape[1] for s in strips)
    out = []
    for k, s in enumerate(strips):
        if s.shape[1] < width:
            s = np.concatenate([s, np.full((s.shape[0], width - s.shape[1], 3), 255, np.uint8)], 1)
        out.append(s)
        out.append(np.full((row_pad, width, 3), 255, np.uint8))   # the last row's captions too
    return np.concatenate(out, 0)


def support_query_figures(episode, labels: dict | None = None,
                          lang: str | None = None) -> tuple[go.Figure, go.Figure]:
    """The support grid and the query grid of a classification ``Episode``."""
    lab = merge_labels(labels, lang)
    names = list(episode.class_names)
    groups = episode.info.get("groups") if episode.info else None
    heads = ([f"{g} / {c}" if g and g not in c else c for g, c in zip(groups, names)]
             if groups else names)
    support = episode_grid(episode.support_x, episode.support_y, names, row_labels=heads,
                           title=lab.get("support_title", ""), labels=labels, kind="support_grid", lang=lang)
    query = episode_grid(episode.query_x, episode.query_y, names, row_labels=heads,
                         title=lab.get("query_title", ""), labels=labels, kind="query_grid", lang=lang)
    return support, query


def regression_plot(true_x, true_y, support_x, support_y, curves: dict | None = None, *,
                    query_x=None, query_y=None, title: str = "", labels: dict | None = None,
                    y_range: tuple[float, float] | None = None, lang: str | None = None) -> go.Figure:
    """A regression task: the true function (``true_x``, ``true_y``: (G,)), the support
    points, optional query points, and named model curves ``{name: (x (G,), y (G,))}``
    (e.g. the model after each inner step). ``y_range`` fixes the axis (so curves of
    successive steps do not rescale it); by default it fits the true curve and points.
    Words in ``lang`` (see the package docstring)."""
    lab = merge_labels(labels, lang)
    flat = lambda a: None if a is None else np.asarray(  # noqa: E731
        a.detach().cpu().numpy() if hasattr(a, "detach") else a, float).reshape(-1)
    true_x, true_y, support_x, support_y = map(flat, (true_x, true_y, support_x, support_y))
    fig = go.Figure()
    if true_x is not None and true_y is not None:
        fig.add_trace(go.Scatter(x=true_x, y=true_y, mode="lines", name=lab["true"],
                                 line=dict(color="#444", dash="dash", width=2)))
    for k, (name, (cx, cy)) in enumerate((curves or {}).items()):
        fig.add_trace(go.Scatter(x=flat(cx), y=flat(cy), mode="lines", name=str(name),
                                 line=dict(color=color_of(k), width=2.5)))
    if query_x is not None and query_y is not None:
        fig.add_trace(go.Scatter(x=flat(query_x), y=flat(query_y), mode="markers", name=lab["query"],
                                 marker=dict(symbol="circle-open", size=8, color="#888")))
    fig.add_trace(go.Scatter(x=support_x, y=support_y, mode="markers", name=lab["support"],
                             marker=dict(size=11, color=WRONG_COLOR, line=dict(color="black", width=1))))
    if y_range is None:
        ys = [a for a in (true_y, support_y, flat(query_y)) if a is not None and a.size]
        if ys:
            lo, hi = float(min(a.min() for a in ys)), float(max(a.max() for a in ys))
            margin = 0.25 * max(hi - lo, 1e-6)
            y_range = (lo - margin, hi + margin)
    layout = dict(xaxis_title=lab["axis.x"], yaxis_title=lab["axis.y"], height=400,
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_layout(titled(layout, kind="regression", title=title, lab=lab, legend_top=True))
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig
