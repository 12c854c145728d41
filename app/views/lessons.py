"""Lessons: short guided steps for a class or a student. Each lesson (listed in
assets/lessons/lessons.json: a page and the sidebar settings it needs) has its text
in the language files (lesson.<id>.title / .body); its button applies the settings
and opens the page. A lesson whose algorithm is not registered is shown disabled."""
import json

import streamlit as st

from app import pages, services, state
from app.i18n import t
from metarep_core.learners import available

LESSONS = json.loads((services.ROOT / "assets" / "lessons" / "lessons.json").read_text("utf-8"))


def _apply(settings: dict) -> None:
    """Button callback: set the sidebar's widgets before they are drawn again."""
    for key, value in settings.items():
        st.session_state[key] = value


st.title(t("page.lessons"))
st.caption(t("page.lessons.intro"))
registered = set(available())
for i, lesson in enumerate(LESSONS, 1):
    lid, settings = lesson["id"], lesson["settings"]
    with st.container(border=True):
        st.subheader(f"{i}. {t(f'lesson.{lid}.title')}")
        st.markdown(t(f"lesson.{lid}.body"))
        ok = settings.get("algorithm", state.DEFAULTS.algorithm) in registered
        if st.button(t("lessons.open", page=t("page." + lesson["page"])), key=f"lesson_{lid}",
                     on_click=_apply, args=(settings,), disabled=not ok):
            st.switch_page(pages.script(lesson["page"]))
