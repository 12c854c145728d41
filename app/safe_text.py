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

# Characters that open a markdown construct in Streamlit's renderer: links and images
# ("[", "]"), code, emphasis, strike-through, HTML and autolinks ("<", ">"), tables,
# LaTeX ("$"), entities ("&") and the escape itself. "_" only counts at a word's edge
# (CommonMark never reads an underscore inside a word as emphasis), so "n_way" stays.
# Other punctuation ("=", "'", "/", ":", "(", ")") is left as typed: without "[" it
# forms nothing, and the messages keep quoting values as the core wrote them.
_SPECIAL = re.compile(r"([\\`*\[\]<>|$&~#]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
# A message that starts like a list item, a quote or a heading.
_BLOCK_START = re.compile(r"^(\s*(?:\d+)?)([-+=>.)])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# Escapes do not stop GFM's autolinks or Streamlit's ":shortcodes:": its renderer finds
# "http://", "www." and e-mail addresses in the text after unescaping (seen in Chromium:
# a live <a href>). An invisible WORD JOINER inside each such pattern breaks it.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)(?=\w)|(?<=:)(?=[\w+/-]+:)",
                       re.IGNORECASE)


def plain(value) -> str:
    """``value`` as markdown source that renders to the same characters, plus invisible
    word joiners (line breaks become spaces: a value cannot start a heading or a list)."""
    text = _LINE_BREAKS.sub(" ", str(value))
    text = _SPECIAL.sub(r"\\\1", text)
    text = _BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text, count=1)
    return _AUTOLINK.sub(WORD_JOINER, text)


def show(kind: str, message) -> None:
    """``st.<kind>(message)`` with the whole message shown as text; ``kind`` is one of
    error, warning, info, success, caption. For a core error (``str(exc)``) that may
    quote a file name, a link value or checkpoint metadata."""
    if kind not in ("error", "warning", "info", "success", "caption"):
        raise ValueError(f"kind must be error, warning, info, success or caption, got {kind!r}")
    getattr(st, kind)(plain(message))
