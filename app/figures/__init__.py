"""Plain figure functions for the pages: data in, ``plotly.graph_objects.Figure`` out.

No Streamlit here, so tests call these directly.

Words: every figure function takes ``lang`` ("en" / "zh"; None = the session's language
inside a Streamlit run, English outside one) and draws all its words — title, axis
titles, legend names, colour-bar titles — from ``app/i18n/<lang>.json``: the ``fig.*``
keys (``fig.title.<kind>``, ``fig.axis.<name>``, legend words like ``fig.support``)
and, for trace extras, ``extras.<key>``. ``labels`` (a dict of already translated
strings under the same keys without the ``fig.`` prefix) still overrides single words,
and ``title`` overrides the default title. Long titles are wrapped, not cut.

How to read a figure: each figure carries a one-or-two-line "how to read this" text in
``fig.layout.meta["how_to_read"]`` (from ``fig.how.<kind>`` / ``extras.<key>.how``), in
the figure's language, and its kind in ``fig.layout.meta["figure"]``. A page shows it
under the chart with ``st.caption(how_to_read(fig))``; :func:`caption_for` gives the
same text without building a figure.

Modules: ``episodes`` (image grids, the regression plot), ``curves`` (training and
trace curves), ``adaptation`` (query predictions, embedding motion), ``extras`` (the
family-specific arrays of a trace step), ``embedding`` (the embedding-space scatter),
``compare`` (accuracy / MSE bars), ``images`` (helpers: image layout conversion, grid
composition, PNG data URIs).
"""
from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache

from app.i18n import DEFAULT_LANG, LANGUAGES, strings

# Keys whose i18n name differs from the short name the figure code uses.
_ALIASES = {"train": "training", "val": "validation", "true": "true_curve"}


def resolve_lang(lang: str | None) -> str:
    """``lang`` if it is a known language; None -> the session's language when called
    inside a Streamlit script run, else English (plain tests and scripts)."""
    if lang:
        return lang if lang in LANGUAGES else DEFAULT_LANG
    if "streamlit" not in sys.modules:   # never import Streamlit just to ask
        return DEFAULT_LANG
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        if get_script_run_ctx(suppress_warning=True) is None:
            return DEFAULT_LANG
        from app.i18n import current_lang
        return current_lang()
    except Exception:   # an older/newer Streamlit without this API: stay in English
        return DEFAULT_LANG


def figure_text(lang: str | None = None) -> dict[str, str]:
    """Every figure word of ``lang``: ``fig.<name>`` as ``<name>`` and ``extras.<key>``
    as is, English where the language lacks one. (A copy: callers may change it.)"""
    return dict(_figure_text(resolve_lang(lang)))


@lru_cache(maxsize=None)
def _figure_text(lang: str) -> dict[str, str]:
    # built once per language: figures are rebuilt on every step of the adaptation slider
    out: dict[str, str] = {}
    for table in (strings(DEFAULT_LANG), strings(lang)):
        for k, v in table.items():
            if k.startswith("fig."):
                out[k[4:]] = v
            elif k.startswith("extras."):
                out[k] = v
    for short, long in _ALIASES.items():
        out.setdefault(short, out.get(long, short))
    return out


def merge_labels(labels: dict | None, lang: str | None = None) -> dict:
    """The words of ``lang`` overridden by ``labels`` (None values and unknown keys are fine)."""
    out = dict(figure_text(lang))
    if labels:
        out.update({k: v for k, v in labels.items() if v is not None})
    return out


def caption_for(kind: str, lang: str | None = None, **fmt) -> str:
    """The "how to read this" text of a figure kind (``fig.how.<kind>``, or
    ``extras.<key>.how`` for ``kind="extras.<key>"``) in ``lang``."""
    lab = figure_text(lang)
    key = kind + ".how" if kind.startswith("extras.") else "how." + kind
    text = lab.get(key, "")
    return text.format(**fmt) if fmt else text


def how_to_read(fig) -> str:
    """The "how to read this" text a figure function stored in the figure ("" if none)."""
    meta = fig.layout.meta
    return str(meta.get("how_to_read", "")) if isinstance(meta, dict) else ""


def display_width(text: str) -> int:
    """Columns ``text`` takes in a proportional font, roughly: CJK characters count 2."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def wrap_title(text: str, width: int = 52) -> str:
    """``text`` broken with ``<br>`` into lines of at most ``width`` columns (at spaces,
    or anywhere in CJK text), so a title in a narrow column wraps instead of being cut."""
    text = str(text or "")
    if display_width(text) <= width or "<br>" in text:
        return text
    lines, line = [], ""
    # split into words; CJK characters are words of their own
    words, word = [], ""
    for ch in text:
        if ch == " ":
            words.append(word + " ")
            word = ""
        elif unicodedata.east_asian_width(ch) in "WF":
            if word:
                words.append(word)
            words.append(ch)
            word = ""
        else:
            word += ch
    if word:
        words.append(word)
    for w in words:
        if line and display_width(line + w.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += w
    if line.strip():
        lines.append(line.rstrip())
    return "<br>".join(lines)


TITLE_LINE_PX = 22    # one line of a 17-px title
TITLE_PAD_PX = 6      # above the title
LEGEND_ROW_PX = 30    # a horizontal legend drawn above the plot


def titled(layout: dict, *, kind: str, title: str, lab: dict, width: int = 52,
           how_fmt: dict | None = None, top: int = 10, legend_top: bool = False,
           meta: dict | None = None) -> dict:
    """``layout`` with the wrapped ``title`` (or the kind's default ``fig.title.<kind>``),
    a top margin that fits it (plus a row for a legend drawn above the plot when
    ``legend_top``), and ``meta`` holding the figure's kind and its "how to read this"
    text (``lab["how.<kind>"]`` formatted with ``how_fmt``).

    The title block is placed by its middle, in pixels from the top of the figure
    (``layout["height"]``, 450 when unset): Plotly anchors a multi-line title's "top"
    at its first line, so with ``yanchor="top"`` the other lines ran off the figure."""
    text = wrap_title(title or lab.get("title") or lab.get("title." + kind, ""), width)
    n_lines = text.count("<br>") + 1 if text else 0
    how = lab.get("how." + kind, "") if not kind.startswith("extras.") else lab.get(kind + ".how", "")
    if how_fmt:
        how = how.format(**how_fmt)
    margin = dict(layout.get("margin") or dict(l=10, r=10, b=10))
    margin["t"] = (top + TITLE_PAD_PX + TITLE_LINE_PX * n_lines + (8 if n_lines else 0)
                   + (LEGEND_ROW_PX if legend_top else 0))
    height = float(layout.get("height") or 450)
    middle_px = TITLE_PAD_PX + TITLE_LINE_PX * n_lines / 2
    layout.update(title=dict(text=text, x=0, xanchor="left", xref="container", yref="container",
                             y=1 - middle_px / height, yanchor="middle") if text else None,
                  margin=margin, meta={"figure": kind, "how_to_read": how, **(meta or {})})
    return layout


# A long qualitative palette: Plotly's (10) then Dark24/Light24-like extras, so
# 20-way episodes still get distinct colours; beyond that colours repeat.
PALETTE = (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
    "#FF97FF", "#FECB52", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A",
    "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D",
    "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
)
WRONG_COLOR = "#D62728"
RIGHT_COLOR = "#2CA02C"


def color_of(i: int) -> str:
    return PALETTE[int(i) % len(PALETTE)]
