"""For the teacher: create a class or open one with its code and key, and see what the
class answered, exercise by exercise (app/teacher.py); projector mode from here."""
from app import teacher
from app.i18n import current_lang, t

import streamlit as st

st.title(t("page.teacher"))
st.caption(t("page.teacher.intro"))
teacher.render(current_lang())
