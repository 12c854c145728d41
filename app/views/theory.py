"""Theory: one section per family from assets/theory/<lang>/family_<family>.md, and
under it each registered algorithm of that family from <name>.md when present, with
its measured accuracy on the bundled Omniglot beside the paper's (app/results.py)."""
import streamlit as st

from app import results, services
from app.i18n import current_lang, t
from app.safe_text import plain
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


def show_results(name: str, measured: results.Results | None) -> None:
    """The learner's measured Omniglot figures beside the paper's, or "not measured yet"."""
    lang = current_lang()
    st.markdown(f"##### {t('results.heading')}")
    entry = measured.learners.get(name) if measured else None
    if entry is None:
        st.caption(t("results.not_measured"))
        return
    protocol = results.protocol_text(measured, lang)
    if protocol:
        st.caption(plain(protocol))
    st.markdown(results.table_markdown(entry, lang))
    note = results.note_text(entry, lang)
    if note:
        st.caption(plain(note))


st.title(t("page.theory"))
st.caption(t("page.theory.intro"))
try:
    measured = results.load_results()
except results.ResultsError as exc:   # a broken file costs the table, never the page
    measured = None
    st.warning(t("results.invalid", error=plain(exc)))
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
                show_results(name, measured)
