"""The embedding-space scatter: support, query and extra samples projected to 2-D
or 3-D, prototypes in the same projection, coloured by class or alphabet.

Seeing a point's image: Plotly's hover labels cannot show ``<img>``, so each
point's hover text carries its class, kind and index plus, when images are
given, a small braille-dot drawing of the image (text, so it shows in any
browser). For the real image, the page passes ``on_select="rerun"`` to
``st.plotly_chart``; a click selects a point, and :func:`selected_points` turns the
selection event into indices whose images the page shows beside the chart.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import WRONG_COLOR, color_of, merge_labels, titled
from .images import braille_thumbnails, to_display

KINDS = ("sample", "support", "query", "prototype")   # drawing order: samples at the back
SYMBOLS_2D = {"sample": "circle", "support": "square", "query": "circle", "prototype": "star"}
SYMBOLS_3D = {"sample": "circle", "support": "square", "query": "circle", "prototype": "diamond"}
SIZES_2D = {"sample": 5, "support": 10, "query": 8, "prototype": 22}
SIZES_3D = {"sample": 2.5, "support": 5, "query": 4, "prototype": 9}


def _group_index(values) -> tuple[np.ndarray, list[str]]:
    """Integer codes (n,) of ``values`` in order of first appearance, and the names."""
    names: list[str] = []
    where: dict = {}
    codes = np.empty(len(values), int)
    for i, v in enumerate(values):
        key = "—" if v is None else str(v)
        if key not in where:
            where[key] = len(names)
            names.append(key)
        codes[i] = where[key]
    return codes, names


def embedding_figure(points, y, *, class_names, kinds=None, wrong=None, images=None, groups=None,
                     color_by: str = "class", title: str = "", labels: dict | None = None,
                     thumbnails: bool = True, lang: str | None = None) -> go.Figure:
    """A scatter of projected embeddings.

    ``points`` (n, 2) or (n, 3); ``y`` (n,) class index into ``class_names``;
    ``kinds`` (n,) of "support" / "query" / "sample" / "prototype" (symbol: square /
    circle / small faint circle / star); ``wrong`` (n,) bool, misclassified points
    get a red ring; ``images`` (n, C, H, W) or (n, H, W[, 3]) for the hover
    drawings; ``groups`` (n,) alphabet per point, used when ``color_by="group"``.
    Every marker's ``customdata`` is its index in ``points``; ``marker.color`` holds
    colour codes (class or alphabet index) on a stepped colour scale, whose colours
    ``layout.meta["legend_colors"]`` lists by name. Words in ``lang`` (see the
    package docstring).
    """
    lab = merge_labels(labels, lang)
    pts = np.asarray(points, float)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"points must have shape (n, 2) or (n, 3), got {pts.shape}")
    n, dim = pts.shape
    y = np.asarray(y).astype(int).reshape(-1)
    kinds = np.asarray(kinds if kinds is not None else ["query"] * n).astype(str)
    wrong = np.zeros(n, bool) if wrong is None else np.asarray(wrong, bool).reshape(-1)
    if not (len(y) == len(kinds) == len(wrong) == n):
        raise ValueError(f"points ({n}), y ({len(y)}), kinds ({len(kinds)}) and wrong ({len(wrong)}) "
                         "must have the same length")
    names = [str(c) for c in class_names]
    class_of = [names[c] if 0 <= c < len(names) else str(c) for c in y]
    group_codes, group_names = _group_index(groups if groups is not None else [None] * n)
    color_codes = group_codes if (color_by == "group" and groups is not None) else y
    hover = _hover_texts(class_of, kinds, groups, images, lab, thumbnails)

    # Traces and layout as plain dicts, validated once by go.Figure (add_trace and
    # update_* re-validate on every call; with 1,000 points that doubled the cost).
    scatter = "scattergl" if dim == 2 else "scatter3d"
    symbols, sizes = (SYMBOLS_2D, SIZES_2D) if dim == 2 else (SYMBOLS_3D, SIZES_3D)
    # Colours as integer codes on a stepped colour scale: a list of 1,000 colour
    # strings costs ~40 ms of plotly validation, the codes ~1 ms.
    k = int(color_codes.max(initial=0)) + 1
    scale = [[edge, color_of(c)] for c in range(k) for edge in (c / k, (c + 1) / k)]
    colour = dict(colorscale=scale, cmin=-0.5, cmax=k - 0.5, showscale=False)
    hover = np.array(hover, dtype=object)

    def coords(sel):
        return dict(x=pts[sel, 0], y=pts[sel, 1]) | ({"z": pts[sel, 2]} if dim == 3 else {})

    data = []
    for kind in [k for k in KINDS if (kinds == k).any()] + sorted(set(kinds) - set(KINDS)):
        sel = np.flatnonzero(kinds == kind)
        proto = kind == "prototype"
        trace = dict(type=("scatter" if dim == 2 else "scatter3d") if proto else scatter, **coords(sel),
                     mode="markers", name=lab.get(kind, kind), customdata=sel, hovertext=hover[sel].tolist(),
                     hoverinfo="text",
                     marker=dict(symbol=symbols.get(kind, "circle"), size=sizes.get(kind, 7),
                                 color=color_codes[sel], **colour,
                                 opacity=0.45 if kind == "sample" else 1.0,
                                 line=dict(color="black", width=1.5 if proto else (0 if kind == "sample" else 0.5))))
        if proto:   # name the class at its prototype
            trace.update(mode="markers+text", text=_prototype_labels([class_of[i] for i in sel]),
                         textposition="top center", textfont=dict(size=11))
        data.append(trace)
    if wrong.any():
        bad = np.flatnonzero(wrong)
        data.append(dict(type=scatter, **coords(bad), mode="markers", name=lab["wrong"], customdata=bad,
                         hovertext=hover[bad].tolist(), hoverinfo="text",
                         marker=dict(symbol="circle-open", size=16 if dim == 2 else 7,
                                     color=WRONG_COLOR, line=dict(width=2.5, color=WRONG_COLOR))))
    layout = dict(height=540, margin=dict(l=10, r=10, b=10),
                  legend=dict(orientation="h", yanchor="top", y=-0.01 if dim == 3 else -0.08, x=0,
                              itemsizing="constant"),   # 2-D: under the axis title
                  hoverlabel=dict(font=dict(family="DejaVu Sans Mono, Menlo, Consolas, monospace", size=13)),
                  meta={"color_by": color_by if groups is not None else "class",
                        "legend_colors": _legend_colors(color_codes, y, group_codes, names, group_names,
                                                        color_by == "group" and groups is not None)})
    if dim == 2:   # padded ranges, so the prototypes' labels at the edges are not cut off
        lo, hi = (pts.min(0), pts.max(0)) if n else (np.zeros(2), np.ones(2))
        pad = np.maximum(hi - lo, 1e-6) * np.array([0.08, 0.1])
        layout["xaxis"] = dict(showticklabels=False, zeroline=False, range=[lo[0] - pad[0], hi[0] + pad[0]],
                               title=dict(text=lab["axis.proj1"]))
        layout["yaxis"] = dict(showticklabels=False, zeroline=False, range=[lo[1] - pad[1], hi[1] + pad[1]],
                               title=dict(text=lab["axis.proj2"]))
    else:
        layout["scene"] = {name: dict(showticklabels=False, title=dict(text=lab[f"axis.proj{k}"]))
                           for k, name in enumerate(("xaxis", "yaxis", "zaxis"), 1)}
    meta = layout.pop("meta")
    titled(layout, kind="embedding", title=title, lab=lab, width=48, meta=meta)
    return go.Figure(data=data, layout=layout)


def _prototype_labels(names: list[str], limit: int = 16) -> list[str]:
    """Short labels for the prototypes: the last part of each class name
    ("Alphabet_03/character07" -> "character07") unless two would read the same."""
    tails = [n.rsplit("/", 1)[-1] for n in names]
    labels = tails if len(set(tails)) == len(tails) else names
    return [s if len(s) <= limit else s[:limit - 1] + "…" for s in labels]


def _legend_colors(color_codes, y, group_codes, names, group_names, by_group) -> dict[str, str]:
    """Name -> colour of every class (or alphabet) shown, for a legend the page can print."""
    out = {}
    for code in sorted(set(color_codes.tolist())):
        label = group_names[code] if by_group else (names[code] if code < len(names) else str(code))
        out[label] = color_of(code)
    return out


def _hover_texts(class_of, kinds, groups, images, lab, thumbnails) -> list[str]:
    n = len(class_of)
    texts = []
    drawings = [""] * n
    if images is not None and thumbnails:
        imgs = to_display(images)
        if imgs.ndim in (3, 4) and len(imgs) == n and min(imgs.shape[1:3]) >= 4:
            width = 14 if n <= 150 else (10 if n <= 400 else 8)   # keep 1,000 points' JSON small
            drawings = [("" if kinds[i] == "prototype" else d)
                        for i, d in enumerate(braille_thumbnails(imgs, width))]
    for i in range(n):
        kind = str(kinds[i])
        text = f"<b>{class_of[i]}</b><br>{lab.get(kind, kind)} {lab['index']}{i}"
        if groups is not None and groups[i] is not None and str(groups[i]) not in class_of[i]:
            text += f"<br>{lab['group']}: {groups[i]}"
        if drawings[i]:
            text += "<br>" + drawings[i]
        texts.append(text)
    return texts


def selected_points(selection) -> list[int]:
    """Indices (into the figure's ``points``) of the points selected in a Streamlit
    ``st.plotly_chart(..., on_select="rerun")`` event: pass ``event.selection``
    (or the event itself). Works for every trace of :func:`embedding_figure`,
    whose markers carry their index as ``customdata``."""
    if selection is None:
        return []
    sel = selection.get("selection", selection) if hasattr(selection, "get") else selection
    pts = sel.get("points", []) if hasattr(sel, "get") else getattr(sel, "points", [])
    out = []
    for p in pts or []:
        cd = p.get("customdata") if hasattr(p, "get") else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            try:
                out.append(int(cd))
            except (TypeError, ValueError):
                continue
    return list(dict.fromkeys(out))
