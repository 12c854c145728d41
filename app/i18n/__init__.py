"""Every user-facing string of the app, one JSON file per language.

``t("sidebar.dataset")`` looks the key up in the session's language (``?lang=``),
falls back to English, then to the key itself, so a missing translation shows
up as readable English rather than an exception. ``t(key, n=3)`` formats.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

LANGUAGES = {"en": "English", "zh": "简体中文"}
DEFAULT_LANG = "en"
_DIR = Path(__file__).parent


@lru_cache(maxsize=None)
def strings(lang: str) -> dict[str, str]:
    """The key -> text table of one language."""
    path = _DIR / f"{lang}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def current_lang() -> str:
    """The session's language ("en" when there is no session, e.g. in plain tests)."""
    try:
        import streamlit as st
        lang = st.session_state.get("lang", DEFAULT_LANG)
    except Exception:  # outside a Streamlit run
        lang = DEFAULT_LANG
    return lang if lang in LANGUAGES else DEFAULT_LANG


def t(key: str, lang: str | None = None, **fmt) -> str:
    """The text for ``key`` in ``lang`` (default: the session's), formatted with ``fmt``."""
    lang = lang or current_lang()
    text = strings(lang).get(key) or strings(DEFAULT_LANG).get(key) or key
    if fmt:
        try:
            return text.format(**fmt)
        except (KeyError, IndexError, ValueError):
            return text
    return text
