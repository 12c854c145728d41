"""You vs the model: label each query of an episode by choosing its support class, timed
(Lake et al.'s human one-shot benchmark, in class). The episodes are the ones Compare
scores the learners on, so Compare shows "You" beside them (app/human.py)."""
import time

import numpy as np
import streamlit as st

from app import classroom, human, persistence, ui
from app.figures.adaptation import query_predictions
from app.i18n import t
from app.safe_text import show
from metarep_core.errors import MetaRepError

STARTED = "human_started"  # (setting, episode index, time.monotonic() when queries were shown)
IMAGE_PX = 84


def class_label(i: int) -> str:
    """A, B, C, ... (the real class names mean nothing to a student and may give hints)."""
    return chr(ord("A") + i) if i < 26 else str(i + 1)


def paper(x, px: int = IMAGE_PX) -> np.ndarray:
    """One image (C, H, W) in [0, 1], ink 1, as dark ink on white paper (H', W'[, 3])
    uint8, enlarged by whole pixels to about ``px`` wide (8x8 digits stay readable)."""
    arr = x.detach().cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    scale = max(1, px // arr.shape[1])
    arr = np.repeat(np.repeat(arr, scale, 0), scale, 1)
    return (255 * (1.0 - np.clip(arr, 0, 1))).astype(np.uint8)


def current_record(ctx) -> human.HumanRecord:
    """The session's record if it is for the sidebar's setting, else a new (unsaved) one."""
    s = ctx.settings
    setting = (ctx.dataset_id, s.split, s.n_way, s.k_shot, s.n_query, s.seed)
    record = st.session_state.get(human.STATE_KEY)
    if record is not None and record.matches(*setting):
        return record
    if record is not None and record.episodes:
        st.warning(t("human.other_setting", episodes=len(record.episodes)))
    return human.new_record(*setting)


def scoreboard(record: human.HumanRecord) -> None:
    if not record.episodes:
        st.info(t("human.how"))
        return
    st.success(t("human.so_far", episodes=len(record.episodes),
                 accuracy=f"{100 * record.scores().mean():.0f}",
                 seconds=f"{record.seconds_per_query:.1f}"))
    st.page_link("views/compare.py", label=t("human.to_compare"), icon=":material/compare_arrows:")


def last_answers(dataset, record: human.HumanRecord) -> None:
    """The last episode's queries, each framed green or red by the student's answer."""
    last = record.episodes[-1]
    episode = human.comparison_episode(dataset, record, last.index)
    with st.expander(t("human.last_answers", n=last.index + 1)):
        st.plotly_chart(query_predictions(ui.image_array(episode.query_x), episode.query_y.numpy(),
                                          np.eye(episode.n_way)[list(last.answers)],
                                          episode.class_names), key="human_last")


def support_set(episode) -> None:
    """The support images, one column per class, headed by the class's letter."""
    st.subheader(t("human.support"))
    cols = st.columns(episode.n_way)
    for c, col in enumerate(cols):
        col.markdown(f"**{t('human.class', label=class_label(c))}**")
        for x in episode.support_x[episode.support_y == c]:
            col.image(paper(x))


def queries(episode, record: human.HumanRecord, order: np.ndarray) -> list:
    """One radio per query (shown shuffled); the answers in the episode's query order."""
    st.subheader(t("human.queries", n=len(order)))
    per_row = min(5, len(order))
    cols = st.columns(per_row)
    answers = [None] * len(order)
    for shown, j in enumerate(order):
        with cols[shown % per_row]:
            st.image(paper(episode.query_x[j]))
            answers[j] = st.radio(t("human.query", n=shown + 1), list(range(episode.n_way)),
                                  index=None, horizontal=True, format_func=class_label,
                                  key=f"human_answer_{record.next_index}_{j}")
    return answers


def hand_in(record: human.HumanRecord, episode, answers: list, started: float) -> None:
    """Score the answers, keep them in the record (and the student's class) and say how it went."""
    seconds = time.monotonic() - started
    record = record.with_answers(answers, episode.query_y.tolist(), seconds)
    st.session_state[human.STATE_KEY] = record
    st.session_state.pop(STARTED, None)
    last = record.episodes[-1]
    classroom.record_human_round(ctx, episode, last)
    st.session_state["human_feedback"] = t(
        "human.result", right=int(round(last.accuracy * len(answers))), total=len(answers),
        seconds=f"{last.seconds:.1f}")
    st.rerun()


ctx = ui.page("human")
if ctx.task != "classification":
    st.info(t("human.needs_classes"))
    st.stop()
record = current_record(ctx)
persistence.keep_human_record(st.session_state.get(human.STATE_KEY))  # the kept one, not a new empty one
if st.session_state.get("human_feedback"):
    st.success(st.session_state.pop("human_feedback"))
scoreboard(record)
if record.episodes:
    last_answers(ctx.dataset, record)
if record.episodes and st.button(t("human.reset"), key="human_reset"):
    st.session_state.pop(human.STATE_KEY, None)
    st.session_state.pop(STARTED, None)
    st.rerun()
try:
    episode = human.comparison_episode(ctx.dataset, record, record.next_index)
except MetaRepError as exc:
    show("error", exc)
    st.stop()
st.caption(t("human.episode", n=record.next_index + 1))
support_set(episode)
started = st.session_state.get(STARTED)
if started is None or started[:2] != (record.setting(), record.next_index):
    if st.button(t("human.start"), key="human_start", type="primary"):
        st.session_state[STARTED] = (record.setting(), record.next_index, time.monotonic())
        st.rerun()
    st.stop()
order = human.query_order(len(episode.query_y), record.seed * 1_000_003 + record.next_index)
answers = queries(episode, record, order)
missing = sum(a is None for a in answers)
if st.button(t("human.hand_in"), key="human_submit", type="primary"):
    if missing:
        st.warning(t("human.unanswered", n=missing))
    else:
        hand_in(record, episode, answers, started[2])
