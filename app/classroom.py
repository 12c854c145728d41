"""A student in a class (Streamlit side): joining with the class code and a display
name, the answers sent to the class, and the class's aggregate once the teacher
revealed it. The classes themselves (codes, keys, answers, reveals) are the run
store's (:mod:`metarep_core.store.classes`); the teacher's page is :mod:`app.teacher`.

Session-state keys: ``class_member`` (``{"code", "name", "token"}`` of the class this
session joined, or absent), and the join form's widgets ``class_code``, ``class_name``,
``class_join``, ``class_leave``. The student's run token rides in the URL as
``?student=<token>`` so that a reload keeps the student in the class (joining again
under the same name is refused: names are unique in a class); ``?class=<code>`` fills
in the join form (the link a teacher hands out).

A student's answers go to the class through one call at the answer point
(:func:`record_lesson_answer`, from :func:`app.lesson_state.record`); the rounds of
"You vs the model" through :func:`record_human_round`. A student never reads other
students' answers: only :meth:`RunStore.answer_summary` without a key, which the
store refuses until the teacher reveals the exercise.
"""
from __future__ import annotations

import streamlit as st

from app import persistence
from app.i18n import t
from app.messages import user_message
from app.safe_text import plain, show
from metarep_core import limits
from metarep_core.errors import MetaRepError
from metarep_core.store import RunStore
from metarep_core.store.checks import MAX_SECONDS, TOKEN_RE

MEMBER = "class_member"
# The rounds of "You vs the model" are kept as the answers of this pseudo-lesson, step =
# round number (a lesson's id is its file's name; no shipped lesson is called this).
HUMAN_LESSON = "human-vs-model"
CODE_INPUT_MAX_CHARS = 16  # what the store reads as a code (6 characters, spaces around allowed)


def store() -> RunStore:
    """The server's run store, shared with the session runs (:mod:`app.persistence`)."""
    return persistence.open_store()


def member() -> dict | None:
    return st.session_state.get(MEMBER)


def init_from_url() -> None:
    """Once per session: ``?student=`` (a reload of a joined student) and ``?class=``."""
    ss, params = st.session_state, st.query_params
    if ss.get("_class_url_loaded"):
        return
    ss["_class_url_loaded"] = True
    code = params.get("class", "")
    if code and len(code) <= CODE_INPUT_MAX_CHARS:
        ss["class_code"] = code.strip().upper()
    token = params.get("student", "")
    if token and TOKEN_RE.fullmatch(token):
        try:
            run = store().load_run(token)
        except MetaRepError:
            return  # a stale link: the student joins again
        if run.class_code:
            ss[MEMBER] = {"code": run.class_code, "name": run.student, "token": token}


def write_url() -> None:
    """``?student=`` while this session is in a class (every page: Streamlit drops the
    query of the page it leaves)."""
    params, joined = st.query_params, member()
    if joined and params.get("student") != joined["token"]:
        params["student"] = joined["token"]
    elif not joined and "student" in params:
        del params["student"]


def _join() -> None:
    ss = st.session_state
    code = (ss.get("class_code") or "").strip().upper()
    try:
        token = store().join_class(code, ss.get("class_name") or "")
    except MetaRepError as exc:
        ss["_class_error"] = str(exc)
        return
    run = store().load_run(token)
    ss[MEMBER] = {"code": run.class_code, "name": run.student, "token": token}
    ss.pop("_class_error", None)


def _leave() -> None:
    st.session_state.pop(MEMBER, None)


def student_panel() -> None:
    """The class this session is in (with a way out), or the form to join one."""
    joined = member()
    if joined:
        cols = st.columns([4, 1])
        cols[0].caption(t("class.joined", code=joined["code"], name=plain(joined["name"])))
        cols[1].button(t("class.leave"), key="class_leave", on_click=_leave)
        return
    with st.expander(t("class.join_title"), expanded=bool(st.session_state.get("class_code"))):
        st.caption(t("class.join_how", n=limits.STORE_NAME_MAX_CHARS))
        left, right = st.columns(2)
        left.text_input(t("class.code"), key="class_code", max_chars=CODE_INPUT_MAX_CHARS)
        right.text_input(t("class.name"), key="class_name", max_chars=limits.STORE_NAME_MAX_CHARS)
        st.button(t("class.join"), key="class_join", on_click=_join, type="primary")
        error = st.session_state.pop("_class_error", None)
        if error:
            show("error", user_message(error))


def _send(lesson: str, step: int, answer, correct: bool | None, seconds: float | None) -> None:
    joined = member()
    if joined is None:
        return
    try:
        store().record_answer(joined["token"], lesson, step, answer, correct=correct, seconds=seconds)
    except MetaRepError as exc:  # the answer still counts here; only the class misses it
        show("warning", t("class.not_sent", message=user_message(exc)))


def record_lesson_answer(answer) -> None:
    """Send an :class:`app.exercises.Answer` to the class, when this session joined one."""
    _send(answer.lesson, answer.step, answer.answer, answer.correct, None)


def record_human_round(ctx, episode, round_) -> None:
    """Send a round of "You vs the model" to the class: the student's accuracy and the
    session's model's on the same episode (in %), with the learner and the setting."""
    if member() is None:
        return
    from app import services
    try:
        model = services.session_model(ctx.settings, ctx.dataset, ctx.dataset_id)
        _, model_accuracy = services.predictions(model, episode)
    except MetaRepError:
        model_accuracy = None  # the student's score still goes to the class
    s = ctx.settings
    _send(HUMAN_LESSON, round_.index + 1,
          {"you": round(100 * round_.accuracy, 1),
           "model": None if model_accuracy is None else round(model_accuracy, 1),
           "algorithm": s.algorithm, "n_way": s.n_way, "k_shot": s.k_shot},
          None, min(round_.seconds, MAX_SECONDS))


def answer_text(ex, label: str, lang: str) -> str:
    """An answer as the exercise's radio shows it: a learner's name, a class's letter, a
    direction in words, or the number tried."""
    from app import services
    from app.figures.episodes import class_code
    try:
        if ex.kind == "best_learner":
            return services.algorithm_label(label, lang).split(" · ")[0]
        if ex.kind == "query_class":
            return class_code(int(label))
        if ex.kind != "reach_target":
            key = "lesson.option." + str(label)
            shown = t(key, lang)
            return str(label) if shown == key else shown
    except (KeyError, ValueError, MetaRepError):
        pass  # an answer from an older version of the lesson: shown as stored
    return str(label)


def table(rows: list[dict], index: str) -> None:
    """``rows`` as a plain table indexed by column ``index``: ``st.table`` draws its cells
    as text in the page (a data grid draws on a canvas that a screen reader and a
    browser test cannot read) and reads them as markdown, so every text cell must come
    through :func:`plain`."""
    import pandas as pd
    st.table(pd.DataFrame(rows).set_index(index))


def distribution_rows(ex, summary, lang: str) -> list[dict]:
    """The rows of a distribution: each answer, how many students gave it, their share."""
    return [{t("class.col.answer", lang): plain(answer_text(ex, label, lang)),
             t("class.col.students", lang): count,
             t("class.col.share", lang): f"{count / summary.answered:.0%}"}
            for label, count in summary.distribution]


def revealed_view(lesson_id: str, n: int, ex, lang: str) -> None:
    """Under a joined student's exercise: the class's aggregate once the teacher revealed
    it (never the answers of others, only counts)."""
    joined = member()
    if joined is None:
        return
    try:
        summary = store().answer_summary(joined["code"], lesson_id, n)
    except MetaRepError:  # not revealed (or the class is gone): nothing of the class is shown
        st.caption(t("class.not_revealed"))
        return
    st.markdown(f"**{t('class.revealed_title')}**")
    st.caption(t("class.answered", answered=summary.answered, students=summary.students,
                 correct=summary.correct))
    if summary.answered:
        table(distribution_rows(ex, summary, lang), t("class.col.answer", lang))
