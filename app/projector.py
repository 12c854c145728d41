"""Projector mode: the app on a classroom projector, readable from the back row.

``?projector=1`` (or the toggle on the teacher's page, key ``projector_toggle``)
turns it on for the session: the page's main area zoomed (CSS ``zoom``: Streamlit 1.67
sizes its text in pixels, so a larger root font changes nothing; zoom enlarges text,
tables and widgets alike, and the layout reflows to the narrower effective width),
the side margins narrowed, the sidebar collapsed and its settings out of view. Streamlit's own toolbar shows no
"Deploy" or developer items in any mode: ``client.toolbarMode = "viewer"`` in
``.streamlit/config.toml``. Sized to stay readable at 1024x768, a common projector.
"""
from __future__ import annotations

import streamlit as st

KEY = "_projector"  # the session's mode (not a widget key: a widget's state goes with its page)
ZOOM = 1.4  # a 16 px paragraph is drawn 22 px high; at 1024 px wide the page is laid out at 731 px


def init_from_url() -> None:
    """Once per session: ``?projector=1`` turns projector mode on (``0`` off)."""
    ss = st.session_state
    if "_projector_url_loaded" in ss:
        return
    ss["_projector_url_loaded"] = True
    ss[KEY] = st.query_params.get("projector", "") in ("1", "true", "on")


def enabled() -> bool:
    return bool(st.session_state.get(KEY))


def _from_toggle() -> None:
    st.session_state[KEY] = bool(st.session_state.get("projector_toggle"))


def toggle(label: str) -> None:
    """The on/off switch (on the teacher's page)."""
    st.toggle(label, value=enabled(), key="projector_toggle", on_change=_from_toggle)


def apply() -> None:
    """Every run: the URL says the mode (a reload keeps it); in projector mode, the
    larger type and the sidebar out of the way."""
    params = st.query_params
    if enabled():
        if params.get("projector") != "1":
            params["projector"] = "1"
        st.set_page_config(initial_sidebar_state="collapsed")
        st.html(f"<style>[data-testid='stMain'] {{zoom: {ZOOM};}} "
                "[data-testid='stMainBlockContainer'] {padding-left: 1rem; padding-right: 1rem;} "
                "[data-testid='stSidebarUserContent'] {display: none !important;}</style>")
    elif "projector" in params:
        del params["projector"]
