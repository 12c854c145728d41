"""User-supplied text shown as text, never as markdown.

Streamlit renders the body of ``st.error``/``st.warning``/``st.info``/``st.caption``/
``st.markdown``/``st.success`` as markdown: a link value, an uploaded file's name,
a checkpoint's metadata (or a core error message quoting any of them) that contains
``[Click here](https://...)`` or ``![x](http://...)`` would become a live link or an
image loaded from an outside host inside the app's own message box. :func:`plain`
escapes such a value so that it reads exactly as typed; every message that carries one
goes through it (``show`` for a whole message, ``plain`` for one value in a template).
"""
from __future__ import annotations

import re

import streamlit as st

# CommonMark lets any ASCII punctuation character be backslash-escaped; escaping all of
# them (not a hand-picked few) defuses links, images, emphasis, Streamlit's directives
# (":red[...]", ":material/...:"), LaTeX ("$") and raw HTML.
_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# Escapes do not stop GFM's autolinks: Streamlit's renderer finds "http://", "www." and
# e-mail addresses in the text after unescaping (seen in Chromium: a live <a href>). An
# invisible WORD JOINER after each ":" and "@" and before each "." breaks those patterns
# ("http:|//", "www|.", "a@|b").
_AUTOLINK_PARTS = re.compile(r"(\\[:@])|(\\\.)")
WORD_JOINER = "\u2060"


def _join(match: re.Match) -> str:
    return match.group(1) + WORD_JOINER if match.group(1) else WORD_JOINER + match.group(2)


def plain(value) -> str:
    """``value`` as markdown source that renders to the same characters, plus invisible
    word joiners (line breaks become spaces: a value cannot start a heading or a list)."""
    escaped = _ASCII_PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))
    return _AUTOLINK_PARTS.sub(_join, escaped)


def show(kind: str, message) -> None:
    """``st.<kind>(message)`` with the whole message shown as text; ``kind`` is one of
    error, warning, info, success, caption. For a core error (``str(exc)``) that may
    quote a file name, a link value or checkpoint metadata."""
    if kind not in ("error", "warning", "info", "success", "caption"):
        raise ValueError(f"kind must be error, warning, info, success or caption, got {kind!r}")
    getattr(st, kind)(plain(message))
