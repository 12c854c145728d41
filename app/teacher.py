"""The teacher's page (``views/teacher.py`` draws it with :func:`render`): create a class
or open one with its code and key; then, per exercise of the lessons, how many students
answered, the distribution of their answers, each student's last answer, a switch that
reveals the aggregate to the students; "You vs the model" per student; the CSV.

Every read goes through the run store with the teacher key, which checks it
(:mod:`metarep_core.store.classes`): a wrong key shows a message and nothing of the
class. The key is kept in this session only (``teacher_class``), never in the URL.

Session-state keys: ``teacher_class`` (``(code, key)`` of the open class),
``teacher_new`` (the code of a class created in this session: its key is shown until
the teacher confirms it is kept). Widget keys: ``teacher_create``, ``teacher_code``,
``teacher_key``, ``teacher_open``, ``teacher_kept``, ``teacher_refresh``, ``teacher_close``,
``teacher_csv``, ``teacher_reveal_<lesson>_<n>``, ``projector_toggle``.
"""
from __future__ import annotations

import statistics

import streamlit as st

from app import classroom, projector
from app.i18n import t
from app.lesson_state import all_lessons
from app.messages import user_message
from app.safe_text import plain, show
from metarep_core.errors import MetaRepError
from metarep_core.store.classes import KEY_MAX_CHARS

OPEN = "teacher_class"
NEW = "teacher_new"


def exercises() -> list[tuple]:
    """``(lesson, step number from 1, exercise)`` of every exercise of the shipped lessons."""
    return [(lesson, i + 1, step.exercise) for lesson in all_lessons()[0]
            for i, step in enumerate(lesson.steps) if step.exercise is not None]


# ------------------------------------------------------------------ create or open
def _create() -> None:
    try:
        code, key = classroom.store().create_class()
    except MetaRepError as exc:
        st.session_state["_teacher_error"] = str(exc)
        return
    st.session_state[OPEN] = (code, key)
    st.session_state[NEW] = code


def _open() -> None:
    ss = st.session_state
    code, key = (ss.get("teacher_code") or "").strip().upper(), (ss.get("teacher_key") or "").strip()
    try:
        classroom.store().class_students(code, key)  # checks the code and the key
    except MetaRepError as exc:
        ss["_teacher_error"] = str(exc)
        return
    ss[OPEN] = (code, key)
    ss.pop(NEW, None)


def _close() -> None:
    for key in (OPEN, NEW, "teacher_key"):
        st.session_state.pop(key, None)


def start() -> None:
    """No class open: create one, or open one with its code and key."""
    new, existing = st.columns(2)
    with new.container(border=True):
        st.subheader(t("teacher.new_title"))
        st.caption(t("teacher.new_how"))
        st.button(t("teacher.create"), key="teacher_create", on_click=_create, type="primary")
    with existing.container(border=True):
        st.subheader(t("teacher.open_title"))
        st.text_input(t("class.code"), key="teacher_code", max_chars=classroom.CODE_INPUT_MAX_CHARS)
        st.text_input(t("teacher.key"), key="teacher_key", type="password", max_chars=KEY_MAX_CHARS)
        st.button(t("teacher.open"), key="teacher_open", on_click=_open)
    error = st.session_state.pop("_teacher_error", None)
    if error:
        show("error", user_message(error))


# ------------------------------------------------------------------ the class
def header(code: str, key: str) -> None:
    """The class code for the board, the key once after creation, the join link."""
    st.subheader(t("teacher.class_title", code=code))
    if st.session_state.get(NEW) == code:
        st.success(t("teacher.created", code=code))
        st.code(key, language=None)
        st.warning(t("teacher.keep_key"))
        st.button(t("teacher.kept"), key="teacher_kept", on_click=lambda: st.session_state.pop(NEW, None))
    st.info(t("teacher.students_join", code=code, link=f"/lessons?class={code}"))


def exercise_view(lesson, n: int, ex, summary, last: dict, lang: str) -> None:
    """One exercise: counts, the distribution, each student's last answer, the reveal switch."""
    with st.container(border=True):
        st.markdown(f"**{t('teacher.exercise', lesson=lesson.title[lang], step=n)}** — {ex.question[lang]}")
        answered, right, timing = st.columns(3)
        answered.metric(t("teacher.answered"), f"{summary.answered} / {summary.students}")
        right.metric(t("teacher.right"), summary.correct)
        timing.metric(t("teacher.median_seconds"),
                      "—" if summary.median_seconds is None else f"{summary.median_seconds:.0f} s")
        if summary.answered:
            classroom.table(classroom.distribution_rows(ex, summary, lang), t("class.col.answer", lang))
            with st.expander(t("teacher.each_student")):
                classroom.table([{t("class.col.student"): plain(name), t("class.col.answer"):
                                  plain(classroom.answer_text(ex, a.answer, lang)),
                                  t("class.col.correct"): "—" if a.correct is None else "✓" if a.correct else "✗",
                                  t("class.col.attempts"): a.attempt}
                                 for name, a in sorted(last.items())], t("class.col.student"))
        else:
            st.caption(t("teacher.nobody_yet"))
        key = f"teacher_reveal_{lesson.id}_{n}"
        st.toggle(t("teacher.reveal"), value=summary.revealed, key=key, on_change=_reveal,
                  args=(lesson.id, n, key), help=t("teacher.reveal_help"))


def _reveal(lesson_id: str, n: int, widget: str) -> None:
    code, key = st.session_state[OPEN]
    try:
        classroom.store().set_revealed(code, key, lesson_id, n, bool(st.session_state.get(widget)))
    except MetaRepError as exc:
        st.session_state["_teacher_error"] = str(exc)


def human_view(rounds: list) -> None:
    """"You vs the model" per student: rounds played, the student's mean accuracy and the
    model's on the same episodes, seconds per round."""
    st.subheader(t("teacher.human_title"))
    if not rounds:
        st.caption(t("teacher.human_none"))
        return
    by_student: dict[str, list] = {}
    for a in rounds:
        by_student.setdefault(a.student, []).append(a)

    def mean(values):
        values = [v for v in values if isinstance(v, (int, float))]
        return round(statistics.fmean(values), 1) if values else None
    rows = [{t("class.col.student"): plain(name), t("teacher.col.rounds"): len(rs),
             t("teacher.col.you"): mean(r.answer.get("you") for r in rs),
             t("teacher.col.model"): mean(r.answer.get("model") for r in rs),
             t("teacher.col.learner"): plain(", ".join(sorted({str(r.answer.get("algorithm")) for r in rs}))),
             t("teacher.col.seconds"): mean(r.seconds for r in rs)}
            for name, rs in sorted(by_student.items())]
    classroom.table(rows, t("class.col.student"))
    st.caption(t("teacher.human_class", you=mean(r.answer.get("you") for r in rounds),
                 model=mean(r.answer.get("model") for r in rounds), n=len(rounds)))


def dashboard(code: str, key: str, lang: str) -> None:
    """The open class: everything the key shows (read once per page run)."""
    items = exercises()
    try:
        store = classroom.store()
        summaries = store.answer_summaries(code, key, [(lesson.id, n) for lesson, n, _ in items])
        answers = store.class_answers(code, key)
        csv_text = store.export_csv(code, key)
    except MetaRepError as exc:  # the class is gone (a reset store) or the key changed
        show("error", user_message(exc))
        st.button(t("teacher.close"), key="teacher_close", on_click=_close)
        return
    header(code, key)
    tools = st.columns(4)
    with tools[0]:
        projector.toggle(t("projector.toggle"))
    # Answers arrive through any app server (all write to the one store): a rerun reads them.
    tools[1].button(t("teacher.refresh"), key="teacher_refresh", icon=":material/refresh:")
    tools[2].download_button(t("teacher.csv"), data=csv_text, file_name=f"class_{code}.csv",
                             mime="text/csv", key="teacher_csv", icon=":material/download:")
    tools[3].button(t("teacher.close"), key="teacher_close", on_click=_close)
    error = st.session_state.pop("_teacher_error", None)
    if error:
        show("error", user_message(error))
    students = summaries[0].students if summaries else len({a.student for a in answers})
    st.caption(t("teacher.size", students=students, answers=len(answers)))
    last: dict[tuple, dict] = {}
    for a in answers:  # ordered by attempt: each student's last answer per exercise wins
        last.setdefault((a.lesson, a.step), {})[a.student] = a
    for (lesson, n, ex), summary in zip(items, summaries):
        exercise_view(lesson, n, ex, summary, last.get((lesson.id, n), {}), lang)
    human_view([a for a in answers if a.lesson == classroom.HUMAN_LESSON and isinstance(a.answer, dict)])


def render(lang: str) -> None:
    opened = st.session_state.get(OPEN)
    if opened is None:
        start()
    else:
        dashboard(*opened, lang)
