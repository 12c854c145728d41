"""A session's place in a lesson, lesson links, and the answers given (Streamlit side).

Session-state keys (one each): ``lesson`` (the open lesson's id, or None),
``lesson_step`` (its 0-based step), ``lesson_hide`` (the controls a link hid) and
``lesson_answers`` (a list of :class:`app.exercises.Answer`).

A lesson link ``/lessons?lesson=<id>&step=<n>&hide=sidebar`` (``n`` from 1) opens that
step; ``hide`` is a comma list of :data:`HIDEABLE`. main.py calls :func:`init_from_url`
before the sidebar is drawn (a step's settings must reach its widgets first) and
:func:`write_url`, :func:`hide_controls` and :func:`banner` after it.

Why a lesson once switched the app to English: ``st.switch_page`` drops the widget
values of the run it interrupts unless a callback wrote them (the old button's
callback wrote only the lesson's settings, so the language widget fell back to its
first option, English). :func:`apply_settings` writes every sidebar setting, the
language included, and the page is opened with the settings in its URL.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import streamlit as st

from app import classroom, exercises, pages, persistence, state
from app.i18n import t
from app.lessons import LESSON_DIR, Lesson, load_lessons

HIDEABLE = {
    # what a link may hide -> the CSS selectors that hide it
    "sidebar": ("[data-testid='stSidebar']", "[data-testid='stExpandSidebarButton']"),
    "settings": ("[data-testid='stSidebarUserContent']",),
    "nav": ("[data-testid='stSidebarNav']",),
}


def _folder_signature(folder: Path) -> tuple:
    """(name, size, modification time) of each lesson file: a few stat calls, where
    parsing every lesson costs about 0.2 s of CPU."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            st_ = path.stat()
        except OSError:  # removed between the listing and the stat: it changed anyway
            continue
        out.append((path.name, st_.st_size, st_.st_mtime_ns))
    return tuple(out)


@st.cache_resource(show_spinner=False, max_entries=4)
def _lessons_for(signature: tuple) -> tuple[list[Lesson], list[str]]:
    return load_lessons(LESSON_DIR)


def all_lessons() -> tuple[list[Lesson], list[str]]:
    """The lessons in assets/lessons and the refusals. Parsed again only when a file
    there is added, removed or edited (so a teacher's new file appears at the next page
    run without restarting the server); every other run costs a stat per file. (A
    5-second TTL re-parsed them for someone every 5 s: 0.2 s of CPU each time.)"""
    return _lessons_for(_folder_signature(LESSON_DIR))


def find(lesson_id: str | None) -> Lesson | None:
    return next((l for l in all_lessons()[0] if l.id == lesson_id), None)


def step_settings(lesson: Lesson, index: int) -> state.Settings:
    """The chosen settings of step ``index``: the session's (its language) with the
    lesson's and the step's on top."""
    return replace(state.current(), **lesson.step_settings(index))


def apply_settings(settings: state.Settings) -> None:
    """Write every sidebar setting, the language included (see the module docstring),
    before the widgets are drawn (a callback, or before main.py draws the sidebar)."""
    for key, value in asdict(settings).items():
        st.session_state[key] = value


def go_to(lesson_id: str | None, index: int = 0) -> None:
    """Button callback: open step ``index`` of a lesson (None: the list of lessons) and
    set the sidebar to that step's settings."""
    ss = st.session_state
    lesson = find(lesson_id)
    ss["lesson"] = lesson.id if lesson else None
    ss["lesson_step"] = min(max(index, 0), len(lesson.steps) - 1) if lesson else 0
    if lesson:
        apply_settings(step_settings(lesson, ss["lesson_step"]))


def open_page(page: str, settings: state.Settings) -> None:
    """Open ``page`` on ``settings``, keeping the language (call from a button's
    branch, after :func:`apply_settings` ran in its callback)."""
    st.switch_page(pages.script(page), query_params={k: str(v) for k, v in asdict(settings).items()})


def init_from_url() -> None:
    """Once per session: ``?lesson=&step=&hide=`` from the URL (unknown values noted)."""
    ss = st.session_state
    if ss.get("_lesson_url_loaded"):
        return
    ss["_lesson_url_loaded"] = True
    params = st.query_params
    hide = [h.strip() for h in params.get("hide", "").split(",") if h.strip()]
    ss["lesson_hide"] = [h for h in hide if h in HIDEABLE]
    bad = [f"hide={h}" for h in hide if h not in HIDEABLE]
    lesson_id = params.get("lesson")
    if lesson_id:
        lesson = find(lesson_id)
        if lesson is None:
            bad.append(f"lesson={lesson_id}")
        else:
            try:
                step = int(params.get("step", "1")) - 1
            except ValueError:
                bad.append(f"step={params.get('step')}")
                step = 0
            # Settings the link states itself (valid ones, already read by state.py) win
            # over the step's: a link copied from the address bar, which carries both,
            # reopens what the student was looking at.
            given = {k: ss[k] for k in state.FIELDS if state._parse(k, params.get(k)) is not None}
            go_to(lesson.id, step)
            for key, value in given.items():
                ss[key] = value
    ss["_lesson_url_warnings"] = bad


def url_warnings() -> list[str]:
    return st.session_state.get("_lesson_url_warnings", [])


def write_url() -> None:
    """Keep ``lesson``, ``step`` and ``hide`` in the URL while a lesson is open (and
    out of it otherwise), so the address bar is always a link to where the student is."""
    ss, params = st.session_state, st.query_params
    lesson = find(ss.get("lesson"))
    wanted = {"lesson": lesson.id, "step": str(ss.get("lesson_step", 0) + 1)} if lesson else {}
    if ss.get("lesson_hide"):
        wanted["hide"] = ",".join(ss["lesson_hide"])
    for key in ("lesson", "step", "hide"):
        if key in wanted and params.get(key) != wanted[key]:
            params[key] = wanted[key]
        elif key not in wanted and key in params:
            del params[key]


def hide_controls() -> None:
    """Hide what the lesson link asked to hide (on every page of the session)."""
    selectors = [s for h in st.session_state.get("lesson_hide", []) for s in HIDEABLE[h]]
    if selectors:
        st.html(f"<style>{', '.join(selectors)} {{display: none !important;}}</style>")


def link(lesson: Lesson, index: int, lang: str) -> str:
    """The path and query of a link to step ``index`` (0-based) in ``lang``."""
    hide = ",".join(st.session_state.get("lesson_hide", []))
    return (f"/lessons?lesson={lesson.id}&step={index + 1}&lang={lang}"
            + (f"&hide={hide}" if hide else ""))


def banner(current_page: str) -> None:
    """On a page other than Lessons while a lesson is open: where the student is in
    it, and the way back."""
    lesson = find(st.session_state.get("lesson"))
    if lesson is None or current_page == "lessons":
        return
    from app.i18n import current_lang
    i = st.session_state.get("lesson_step", 0)
    cols = st.columns([4, 1])
    cols[0].caption(t("lesson.banner", title=lesson.title[current_lang()], step=i + 1,
                      steps=len(lesson.steps)))
    cols[1].page_link(pages.script("lessons"), label=t("lesson.back_to_lesson"),
                      icon=":material/school:")


# ------------------------------------------------------------------ answers
def answers() -> list[exercises.Answer]:
    return st.session_state.setdefault(exercises.ANSWERS_KEY, [])


def record(answer: exercises.Answer) -> None:
    """The one way an exercise answer is kept: in the session, and in its run
    (:func:`app.persistence.record_answer`; a student's run when the session joined a class)."""
    answers().append(answer)
    persistence.record_answer(answer)
    classroom.record_lesson_answer(answer)  # to the student's class, when this session joined one


def last_answer(lesson_id: str, step: int) -> exercises.Answer | None:
    """The latest answer to step ``step`` (1-based) of a lesson in this session."""
    return next((a for a in reversed(answers()) if (a.lesson, a.step) == (lesson_id, step)), None)
