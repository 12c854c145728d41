"""The app's side of the run store (:mod:`metarep_core.store`): what a session makes is
kept under a run token, ``?run=<token>`` in the URL, and comes back after a reload or
when the link is opened in another browser.

What is kept, and where it is written:

- the sidebar's settings (:func:`keep_settings`, main.py after the sidebar);
- each page's widget state (:func:`keep_page` after the page drew its widgets, and
  :func:`restore_page` before it draws them; keyed by the page's stable widget keys);
- trained and uploaded checkpoints (:func:`keep_checkpoint`, at the job's adoption and
  the checkpoint upload), given back through the store's ``get_checkpoint`` with the
  algorithm, N, input shape and task the page expects (:func:`stored_model`);
- the uploaded (or drawn) zip (:func:`keep_upload`), read back through the same checks
  as a fresh upload;
- exercise answers (:func:`record_answer`, called by ``lesson_state.record``);
- the last Compare run's results (:func:`keep_comparison` after the run,
  :func:`stored_comparison` when the page finds none in the session), checked by the
  store when written and when read: a row that fails is said and never shown;
- the rounds of "You vs the model" (:func:`keep_human_record`, the page state of page
  ``human``; back into the session at :func:`restore`, so Compare shows "You" too).

Nothing of this is kept in one server's memory or on its disk beyond the session that
made it: with ``METAREP_DB_URL`` naming a PostgreSQL database shared by several app
servers, a run saved through one server reopens through any other (the README's
"Deploying for a school"). What stays in a server's memory is only what a session is
doing right now (its widgets, a training job while it runs: the proxy's sticky
sessions keep a browser on the server that runs them).

When the run is made: lazily, at the first thing worth keeping (settings other than the
defaults, a page state changed from what the page first showed, a checkpoint, an
upload, an answer). A visitor who only looks leaves no row in the database and keeps a
clean URL; from the first change on, the URL carries the token.

A store that cannot be opened or written (no database, disk full) is said once, in the
sidebar (:func:`notice`), and the session carries on without persistence: every
function here then does nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from app import state
from metarep_core.errors import MetaRepError
from metarep_core.store import RunStore, database_url

RUN_PARAM = "run"
TOKEN = "_run_token"          # this session's run token (None until something is kept)
OFF = "_run_store_off"        # the store failed: no more attempts in this session
ERROR = "_run_store_error"    # why (shown once, in the sidebar)
NOTE = "_run_store_note"      # a refusal that leaves the store on (a limit, a bad link)
PAGES = "_run_pages"          # {page: {widget key: value}} as last kept
FIRST = "_run_pages_first"    # {page: values} as the page first showed them
SAVED_SETTINGS = "_run_settings_saved"
PENDING = "_run_checkpoints"  # checkpoint slots of a restored run not yet loaded
PENDING_RESULTS = "_run_results"  # result slots of a restored run not yet loaded
UPLOAD_SLOT = "upload"
COMPARE_SLOT = "compare"      # the run's last comparison
HUMAN_PAGE = "human"          # the page state that keeps the "You vs the model" record
RESERVED_META = ("format", "format_version", "algorithm", "config")  # checkpoint_to_bytes writes them
UNAVAILABLE = (SQLAlchemyError, OSError)  # the database, not the value, is the problem

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def _open(url: str) -> RunStore:
    """One store per database URL for the server (it pools its connections)."""
    return RunStore(url)


def open_store() -> RunStore:
    """The server's run store for ``METAREP_DB_URL`` (one per URL: it pools its
    connections); raises when it cannot be opened. The teacher's page and the class
    tables use this one too (:mod:`app.classroom`)."""
    return _open(database_url())


def store() -> RunStore | None:
    """The server's run store, or None when it failed for this session (said once in
    the sidebar). Other app modules (the teacher's page) use it through here too."""
    ss = st.session_state
    if ss.get(OFF):
        return None
    try:
        return open_store()
    except (MetaRepError, *UNAVAILABLE) as exc:
        _fail(exc)
        return None


def _fail(exc: Exception) -> None:
    """The store is unusable: say so once and stop trying for this session."""
    ss = st.session_state
    ss[OFF] = True
    ss[ERROR] = str(exc).splitlines()[0][:300]
    log.warning("run store unavailable, this session continues without it: %s", exc)


def _call(method: str, *args, **kwargs):
    """``store.<method>(*args)``; None when the store is off or fails. A refusal of the
    value (a limit) is kept as a note and leaves the store on."""
    opened = store()
    if opened is None:
        return None
    try:
        return getattr(opened, method)(*args, **kwargs)
    except MetaRepError as exc:
        st.session_state[NOTE] = str(exc)
        return None
    except UNAVAILABLE as exc:
        _fail(exc)
        return None


def available() -> bool:
    return not st.session_state.get(OFF)


def token(create: bool = False) -> str | None:
    """This session's run token; made now when ``create`` (and the store works)."""
    ss = st.session_state
    if ss.get(TOKEN) is None and create:
        made = _call("create_run")
        if made:
            ss[TOKEN] = made
            _flush()
            write_url()  # now: a page (or fragment) run made it after main.py wrote the URL
    return ss.get(TOKEN)


def use_run(run_token: str) -> None:
    """Make ``run_token`` this session's run from now on (e.g. a student's run made by
    ``RunStore.join_class``): what is kept next goes there."""
    st.session_state[TOKEN] = run_token
    _flush()
    write_url()


def _flush() -> None:
    """A run was just made: write what the session already has (settings, page states)."""
    ss, run = st.session_state, st.session_state.get(TOKEN)
    settings = ss.get(SAVED_SETTINGS)
    if settings is not None:
        _call("save_settings", run, settings)
    for page, values in ss.get(PAGES, {}).items():
        _call("save_page_state", run, page, values)


def write_url() -> None:
    """Keep ``?run=`` in the URL while the session has a run (page switches drop it)."""
    run = st.session_state.get(TOKEN)
    if run and st.query_params.get(RUN_PARAM) != run:
        st.query_params[RUN_PARAM] = run


# ------------------------------------------------------------------ restore
def restore() -> None:
    """Once per session, before the sidebar: the run named by ``?run=`` back into the
    session (settings the URL does not state, page states, the upload, the answers; the
    checkpoints are loaded when a page asks for their model, see :func:`stored_model`)."""
    ss = st.session_state
    if ss.get("_run_restored"):
        return
    ss["_run_restored"] = True
    wanted = st.query_params.get(RUN_PARAM)
    if not wanted:
        return
    run = _call("load_run", wanted)
    if run is None:
        if available():  # the store works; the link names no run it has (said in notice())
            ss["_run_not_found"] = True
        del st.query_params[RUN_PARAM]
        return
    ss[TOKEN] = run.token
    for key in state.FIELDS:  # the link's own settings win (as state.init_from_url read them)
        if key in run.settings and state._parse(key, st.query_params.get(key)) is None:
            value = state._parse(key, run.settings[key])
            if value is not None:
                ss[key] = value
    ss[SAVED_SETTINGS] = run.settings
    ss[PAGES] = {page: dict(values) for page, values in run.page_state.items() if isinstance(values, dict)}
    ss[FIRST] = {page: dict(values) for page, values in ss[PAGES].items()}
    ss[PENDING] = {b.slot for b in run.blobs if b.kind == "checkpoint"}
    ss[PENDING_RESULTS] = {b.slot for b in run.blobs if b.kind == "result"}
    if any(b.kind == "dataset" and b.slot == UPLOAD_SLOT for b in run.blobs):
        _restore_upload(run.token)
    _restore_human_record(ss[PAGES].get(HUMAN_PAGE, {}).get("record"))
    from app import exercises  # late: exercises imports services, which imports this module
    answers = _call("run_answers", run.token) or []
    ss[exercises.ANSWERS_KEY] = [
        exercises.Answer(a.lesson, a.step, "", str(a.answer), (), bool(a.correct),
                         a.time.isoformat(timespec="seconds"), "") for a in answers]


def _restore_upload(run: str) -> None:
    from app import uploads
    stored = _call("get_dataset", run, UPLOAD_SLOT)
    if stored is None:
        return
    try:  # the same checks as a fresh upload: the stored bytes are the user's file
        uploads.accept_dataset_upload(stored.name, stored.data)
    except MetaRepError as exc:
        st.session_state["_upload_error"] = str(exc)


# ------------------------------------------------------------------ settings and pages
def keep_settings(settings: state.Settings) -> None:
    """The sidebar's chosen settings, written when they changed (a run is made the first
    time they differ from the defaults)."""
    ss = st.session_state
    values = asdict(settings)
    if values == ss.get(SAVED_SETTINGS):
        return
    ss[SAVED_SETTINGS] = values
    run = token(create=settings != state.DEFAULTS)
    if run:
        _call("save_settings", run, values)


def restore_page(page: str, **allowed) -> None:
    """Before page ``page`` draws its widgets: each widget key in ``allowed`` not in the
    session yet gets its kept value, when ``allowed[key](value)`` says it is one the
    widget can show now (the options may differ from when it was kept)."""
    ss = st.session_state
    kept = ss.get(PAGES, {}).get(page, {})
    for key, fits in allowed.items():
        if key in kept and key not in ss:
            try:
                ok = fits(kept[key])
            except (TypeError, ValueError):
                ok = False
            if ok:
                ss[key] = kept[key]


def keep_page(page: str, **values) -> None:
    """After page ``page`` drew its widgets: their values (JSON values), written when
    they changed. The values a page first shows make no run; a change does."""
    ss = st.session_state
    pages, first = ss.setdefault(PAGES, {}), ss.setdefault(FIRST, {})
    merged = {**pages.get(page, {}), **values}
    if pages.get(page) == merged:
        return
    pages[page] = merged
    first.setdefault(page, dict(merged))
    run = token(create=merged != first[page])
    if run:
        _call("save_page_state", run, page, merged)


def keep_human_record(record) -> None:
    """The session's "You vs the model" record (an :class:`app.human.HumanRecord`, or None
    when there is none), kept as page ``human``'s state whenever it changed; called on
    every run of that page so that the first round answered makes the run."""
    keep_page(HUMAN_PAGE, record=None if record is None else json.loads(record.to_json()))


def _restore_human_record(kept) -> None:
    """The kept record back under ``human.STATE_KEY`` (read through its own checks: a
    record of another format, or a damaged one, is dropped, as a fresh page would be)."""
    from app import human
    if not isinstance(kept, dict):
        return
    try:
        st.session_state[human.STATE_KEY] = human.HumanRecord.from_json(json.dumps(kept))
    except MetaRepError as exc:
        log.warning("a kept human-vs-model record was not restored: %s", exc)


# ------------------------------------------------------------------ checkpoints, data, answers
def slot(key: tuple) -> str:
    """The store slot of a :func:`state.model_key`: ``algorithm/dataset id/N/CxHxW``."""
    algorithm, dataset_id, n_way, shape = key
    return f"{algorithm}/{dataset_id}/{n_way}/{'x'.join(map(str, shape))}"


def keep_checkpoint(key: tuple, model: state.SessionModel) -> None:
    """Keep ``model`` (trained or uploaded) as the run's checkpoint for ``key``."""
    from metarep_core.checkpoints import checkpoint_to_bytes
    meta = {k: v for k, v in model.meta.items()  # an uploaded file's own header included
            if isinstance(v, (str, int, float, bool)) and k not in RESERVED_META}
    run = token(create=True)
    if run:
        data = checkpoint_to_bytes(model.learner, **{**meta, "dataset": key[1], "source": model.source})
        _call("put_checkpoint", run, slot(key), data)
        st.session_state.get(PENDING, set()).discard(slot(key))


def stored_model(key: tuple, task: str) -> state.SessionModel | None:
    """The run's kept model for ``key``, rebuilt by the store's ``get_checkpoint`` (never
    unpickled; refused unless it is ``key``'s algorithm, N and input shape, and
    ``task``); None when the run keeps none. Asked once per key and session."""
    pending = st.session_state.get(PENDING)
    run = st.session_state.get(TOKEN)
    if not pending or slot(key) not in pending or not run:
        return None
    pending.discard(slot(key))
    algorithm, _, n_way, shape = key
    got = _call("get_checkpoint", run, slot(key), algorithm=algorithm, n_way=n_way,
                input_shape=shape, task=task)
    if got is None:
        if st.session_state.get(NOTE):  # said where the model was asked for, this run
            _show_note(st.session_state.pop(NOTE))
        return None
    learner, meta = got
    source = meta.get("source") if meta.get("source") in ("trained", "uploaded") else "trained"
    shown = {k: meta[k] for k in ("steps", "file") if meta.get(k) is not None}
    return state.new_model(learner.eval(), source, shown)


def keep_comparison(record: dict) -> None:
    """Keep a Compare run's record (:func:`app.comparison.to_record`) as the run's
    comparison, replacing the one before."""
    run = token(create=True)
    if run:
        _call("put_comparison", run, COMPARE_SLOT, record)
        st.session_state.get(PENDING_RESULTS, set()).discard(COMPARE_SLOT)


def stored_comparison() -> dict | None:
    """The restored run's kept comparison record, checked again by the store's
    ``get_comparison``; None when it keeps none, and None with a warning when the row
    was altered, damaged or written in another format. Asked once per session."""
    pending = st.session_state.get(PENDING_RESULTS)
    run = st.session_state.get(TOKEN)
    if not pending or COMPARE_SLOT not in pending or not run:
        return None
    pending.discard(COMPARE_SLOT)
    record = _call("get_comparison", run, COMPARE_SLOT)
    if record is None and st.session_state.get(NOTE):
        from app.i18n import t
        from app.messages import user_message
        from app.safe_text import plain
        st.warning(t("compare.stored_refused", error=plain(user_message(st.session_state.pop(NOTE)))))
    return record


def keep_upload(name: str, data: bytes) -> None:
    """Keep an accepted upload's (or drawing's) zip as sent, within the store's limits."""
    run = token(create=True)
    if run:
        _call("put_dataset", run, UPLOAD_SLOT, name, data)


def record_answer(answer) -> None:
    """Keep one exercise answer (an :class:`app.exercises.Answer`) in the session's run:
    the answer as the student gave it (the text a teacher's distribution counts) and
    whether it was right. Called by ``lesson_state.record``, the one way answers are kept."""
    run = token(create=True)
    if run:
        _call("record_answer", run, answer.lesson, answer.step, answer.answer, correct=answer.correct)


# ------------------------------------------------------------------ what the sidebar says
def notice() -> None:
    """In the sidebar: the store's failure (once, for the session) or a refused value,
    else where the work is kept."""
    from app.i18n import t
    from app.safe_text import plain
    ss = st.session_state
    if ss.get(ERROR):
        st.warning(t("run.store_unavailable", error=plain(ss[ERROR])))
        return
    if ss.pop("_run_not_found", False):
        st.warning(t("run.not_found"))
        ss.pop(NOTE, None)
    elif ss.get(NOTE):
        _show_note(ss.pop(NOTE))
    if ss.get(TOKEN):
        st.caption(t("run.saved"))


def _show_note(text: str) -> None:
    from app.i18n import t
    from app.messages import user_message
    from app.safe_text import plain
    st.warning(t("run.note", error=plain(user_message(text))))
