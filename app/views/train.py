"""Train: meta-train the session's model in the background worker pool, watch the
curves, download the result as a checkpoint or upload one back."""
import streamlit as st

from app import services, state, ui, uploads, widgets
from app.figures.curves import training_curves
from app.i18n import t
from app.jobs import GRACE_S, TrainingJob, adopt_result, job_board, session_job
from app.safe_text import show
from metarep_core.checkpoints import checkpoint_to_bytes
from metarep_core.episodes import EpisodeSampler
from metarep_core.errors import MetaRepError
from metarep_core.learners import get_learner_class

ctx = ui.page("train")
entry = ui.model_or_stop(ctx)
s = ctx.settings
cls = get_learner_class(s.algorithm)
ss = st.session_state
job: TrainingJob | None = session_job()  # this session's, or a reloaded tab's (?job=)
busy = job is not None and job.active


def start(hp: dict, steps: int, fresh: bool, keep: bool) -> TrainingJob:
    """A job training a learner with ``hp``: the session's weights carried over
    unless ``fresh`` (or unless the new hyper-parameters change the weights' shapes)."""
    EpisodeSampler(ctx.dataset, "train", s.n_way, s.k_shot, s.n_query, s.seed)  # validates N/K/Q
    learner = services.fresh_learner(s.algorithm, ctx.dataset.input_shape, s.n_way, ctx.task,
                                     seed=s.seed, **hp)
    if not fresh:
        try:
            learner.load_state_dict(entry["learner"].state_dict())
        except RuntimeError:
            raise MetaRepError(t("train.hp_changes_shape")) from None
    key = state.model_key(s.algorithm, ctx.dataset_id, s.n_way, ctx.dataset.input_shape)
    return TrainingJob(learner, ctx.dataset, model_key=key, n_way=s.n_way, k_shot=s.k_shot,
                       n_query=s.n_query, steps=steps, seed=s.seed,
                       val_episodes=20, keep=keep).submit()


def keep_changed() -> None:
    """Ticking or unticking "keep training" applies to the run going on, too."""
    if job is not None:
        job.keep = ss["train_keep"]


left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader(t("train.hyperparams"))
    st.caption(t("train.hyperparams_help", family=t("family." + cls.family)))
    hp = widgets.hyperparam_controls(cls, entry["learner"].hp)
    steps = st.number_input(t("train.steps"), 1, 20000, 100, step=10, key="train_steps",
                            help=t("train.steps_help"))
    fresh = st.toggle(t("train.from_fresh"), key="train_fresh", help=t("train.from_fresh_help"))
    if job is not None and job.active and "train_keep" not in ss:
        ss["train_keep"] = job.keep  # the run's choice (after a reload, or another page)
    keep = st.checkbox(t("train.keep"), key="train_keep", on_change=keep_changed,
                       help=t("train.keep_help", grace=f"{GRACE_S:.0f}"))
    c1, c2 = st.columns(2)
    if c1.button(t("train.start"), key="train_start", disabled=busy, type="primary"):
        try:
            ss["job"] = start(hp, int(steps), fresh, keep)
        except MetaRepError as exc:
            show("error", exc)
        else:
            st.rerun()  # redraw the whole page: start disabled, stop enabled, polling on
    if c2.button(t("train.stop"), key="train_stop", disabled=not busy):
        job.stop()

with right:
    st.subheader(t("train.progress_title"))
    if job is None:
        st.info(t("train.job_lost" if ss.pop("_job_lost", False) else "train.no_job"))
    else:
        was_active, was_queued = job.active, job.status == "queued"

        # A queued run only needs its place in the line now and then: with 16 sessions
        # waiting, polling each every second costs the server 16 reruns a second.
        @st.fragment(run_every=(5.0 if was_queued else 1.0) if was_active else None)
        def job_panel():
            status = job.status
            left_s = job.seconds_left()
            text = t("train.status." + status, step=job.step, steps=job.steps,
                     left=f"{left_s:.0f}" if left_s is not None else "?",
                     ahead=job_board().position(job))
            st.progress(job.fraction, text=text)
            st.plotly_chart(training_curves(list(job.history), list(job.val_curve),
                                            regression=ctx.task == "regression",
                                            labels={"loss": t("fig.loss"), "accuracy": t("fig.accuracy"),
                                                    "val": t("fig.validation"), "step": t("fig.step"),
                                                    "train": t("fig.training")}),
                            key="train_curves")
            if job.error:
                show("error", job.error)
            elif job.status == "done" and job.collected:
                st.success(t("train.adopted"))
            if was_active and not job.active:
                adopt_result(job)
                st.rerun()  # a full rerun: stop polling, show the new model everywhere
            if was_queued and job.status != "queued":
                st.rerun()  # it started: poll every second from now on

        job_panel()

st.divider()
st.subheader(t("train.checkpoints"))
d1, d2 = st.columns(2)
with d1:
    data = checkpoint_to_bytes(entry["learner"], dataset=ctx.dataset_id, n_way=s.n_way,
                               k_shot=s.k_shot, n_query=s.n_query, seed=s.seed,
                               source=entry["source"], steps=entry["meta"].get("steps"))
    st.download_button(t("train.download"), data, key="download_checkpoint",
                       file_name=f"{s.algorithm}_{ctx.dataset_id.replace(':', '-')}_"
                                 f"{s.n_way}w{s.k_shot}s.safetensors",
                       mime="application/octet-stream", help=t("train.download_help"))
with d2:
    file = st.file_uploader(t("train.upload"), key="upload_checkpoint", help=t("train.upload_help"))
    if file is not None and ss.get("_ckpt_seen") != (file.name, file.size):
        ss["_ckpt_seen"] = (file.name, file.size)
        try:
            uploads.accept_checkpoint_upload(file.getvalue(), file.name, ctx)
            ss["_ckpt_msg"] = ("success", t("train.upload_ok", name=file.name))
        except MetaRepError as exc:
            ss["_ckpt_msg"] = ("error", str(exc))
        st.rerun()
    if ss.get("_ckpt_msg"):
        kind, msg = ss["_ckpt_msg"]
        show(kind, msg)  # names the user's file, or quotes its metadata
