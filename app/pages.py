"""The app's pages, declared once: ``app/main.py`` builds ``st.navigation`` from this
list and the tests (``tests/app_harness.py``) visit every page in it.

Importing this module runs nothing (no Streamlit calls), so a test can read it
without starting the app. A page ``name`` is the script ``app/views/<name>.py``,
served at ``/<name>`` (the default page at ``/``), titled ``t("page.<name>")``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    name: str  # script views/<name>.py, url path, and the "page.<name>" title key
    icon: str  # a Material icon: they ship with Streamlit (emoji need the viewer's fonts)

    @property
    def script(self) -> str:
        """The script's path relative to app/ (what st.Page and st.switch_page take)."""
        return script(self.name)


PAGES = (
    Page("episodes", ":material/style:"),
    Page("train", ":material/model_training:"),
    Page("adapt", ":material/timeline:"),
    Page("embedding", ":material/scatter_plot:"),
    Page("compare", ":material/compare_arrows:"),
    Page("human", ":material/person:"),
    Page("draw", ":material/draw:"),
    Page("lessons", ":material/school:"),
    Page("teacher", ":material/groups:"),
    Page("theory", ":material/menu_book:"),
)
DEFAULT = "episodes"  # served at "/" (Streamlit serves only the default page there)
NAMES = tuple(p.name for p in PAGES)


def script(name: str) -> str:
    """``views/<name>.py`` for a declared page; an unknown name is refused, naming the pages."""
    if name not in NAMES:
        raise ValueError(f"page must be one of {', '.join(NAMES)}, got {name!r}")
    return f"views/{name}.py"
