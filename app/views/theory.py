"""Theory: one section per family from assets/theory/<lang>/family_<family>.md, and
under it each registered algorithm of that family from <name>.md when present."""
import streamlit as st

from app import services
from app.i18n import current_lang, t
from metarep_core.learners import available, get_learner_class
from metarep_core.learners.base import FAMILIES

THEORY = services.ROOT / "assets" / "theory"


def read_text(name: str) -> str | None:
    """``name``.md in the session's language, else in English, else None."""
    for lang in (current_lang(), "en"):
        path = THEORY / lang / f"{name}.md"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


st.title(t("page.theory"))
st.caption(t("page.theory.intro"))
tabs = st.tabs([t("family." + f) for f in FAMILIES])
for family, tab in zip(FAMILIES, tabs):
    with tab:
        st.markdown(read_text(f"family_{family}") or t("theory.missing"))
        members = [n for n in available() if get_learner_class(n).family == family]
        if members:
            st.subheader(t("theory.algorithms"))
        for name in members:
            cls = get_learner_class(name)
            with st.expander(f"{cls.title or name} — {cls.paper}"):
                text = read_text(name)
                st.markdown(text if text else f"{cls.summary}\n\n*{cls.paper}*")
