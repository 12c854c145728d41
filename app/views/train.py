"""Train: meta-train the session's model in the background worker pool, watch the
curves, download the result as a checkpoint or upload one back. A finished job
becomes the session's model in main.py (``services.adopt_finished_job``)."""
import streamlit as st

from app import persistence, services, state, ui, uploads, widgets
from app.figures.curves import training_curves
from app.i18n import t
from app.jobs import GRACE_S, TrainingJob, job_board, session_job
from app.safe_text import show
from metarep_core.checkpoints import checkpoint_to_bytes
from metarep_core.errors import MetaRepError
from metarep_core.learners import get_learner_class


def controls(ctx, model, job: TrainingJob | None) -> None:
    """Hyper-parameters (from the learner's declarations), steps, start and stop."""
    cls = get_learner_class(ctx.settings.algorithm)
    busy = job is not None and job.active
    st.subheader(t("train.hyperparams"))
    st.caption(t("train.hyperparams_help", family=t("family." + cls.family)))
    hp = widgets.hyperparam_controls(cls, model.learner.hp)
    steps = st.number_input(t("train.steps"), 1, 20000, 100, step=10, key="train_steps",
                            help=t("train.steps_help"))
    # A shipped checkpoint is already meta-trained: training on from it shows flat curves,
    # so a student's first run starts from random weights (the curves show learning);
    # a model the student trained or uploaded is continued unless they ask otherwise.
    # (set through the key, not value=, so a lesson may set it too without a warning)
    st.session_state.setdefault("train_fresh", model.source in ("shipped", "fresh"))
    fresh = st.toggle(t("train.from_fresh"), key="train_fresh", help=t("train.from_fresh_help"))
    ss = st.session_state
    if busy and "train_keep" not in ss:
        ss["train_keep"] = job.keep  # the run's choice (after a reload, or another page)
    keep = st.checkbox(t("train.keep"), key="train_keep", on_change=keep_changed, args=(job,),
                       help=t("train.keep_help", grace=f"{GRACE_S:.0f}"))
    c1, c2 = st.columns(2)
    if c1.button(t("train.start"), key="train_start", disabled=busy, type="primary"):
        try:
            st.session_state["job"] = services.start_training(
                model, ctx.settings, ctx.dataset, ctx.dataset_id, hp=hp, steps=int(steps),
                fresh=fresh, keep=keep)
        except MetaRepError as exc:
            show("error", exc)
        else:
            st.rerun()  # redraw the whole page: start disabled, stop enabled, polling on
    if c2.button(t("train.stop"), key="train_stop", disabled=not busy):
        job.stop()


def keep_changed(job: TrainingJob | None) -> None:
    """Ticking or unticking "keep training" applies to the run going on, too."""
    if job is not None:
        job.keep = st.session_state["train_keep"]


def job_panel(job: TrainingJob, regression: bool, was_queued: bool) -> None:
    """Progress and curves of ``job`` (a fragment polling until the session has
    adopted its result)."""
    left_s = job.seconds_left()
    status = "queued_cluster" if job.status == "queued" and job.on_cluster else job.status
    text = t("train.status." + status, step=job.step, steps=job.steps,
             left=f"{left_s:.0f}" if left_s is not None else "?",
             ahead=job_board().position(job))
    st.progress(job.fraction, text=text)
    st.caption(t("train.where_cluster", address=job.where) if job.on_cluster
               else t("train.where_local"))
    if job.notice:
        show("warning", job.notice)  # the cluster could not be used: it trains here
    ui.chart(training_curves(list(job.history), list(job.val_curve), regression=regression,
                             labels={"loss": t("fig.loss"), "accuracy": t("fig.accuracy"),
                                     "val": t("fig.validation"), "step": t("fig.step"),
                                     "train": t("fig.training")}),
             key="train_curves")
    if job.error:
        show("error", job.error)
    elif job.status == "done" and job.collected:
        st.success(t("train.adopted"))
    if not job.active and not job.collected:
        st.rerun()  # a full run adopts the result and shows the new model everywhere
    if was_queued and job.status != "queued":
        st.rerun()  # it started: poll every second from now on


def progress(ctx, job: TrainingJob | None) -> None:
    st.subheader(t("train.progress_title"))
    if job is None:
        st.info(t("train.job_lost" if st.session_state.pop("_job_lost", False) else "train.no_job"))
        return
    queued = job.status == "queued"
    polling = job.active or not job.collected
    # A queued run only needs its place in the line now and then: with 16 sessions
    # waiting, polling each every second costs the server 16 reruns a second.
    every = (5.0 if queued else 1.0) if polling else None
    st.fragment(job_panel, run_every=every)(job, ctx.task == "regression", queued)


def checkpoints(ctx, model) -> None:
    """Download the session's model as a checkpoint; upload one to replace it."""
    s = ctx.settings
    st.subheader(t("train.checkpoints"))
    d1, d2 = st.columns(2)
    data = checkpoint_to_bytes(model.learner, dataset=ctx.dataset_id, n_way=s.n_way,
                               k_shot=s.k_shot, n_query=s.n_query, seed=s.seed,
                               source=model.source, steps=model.meta.get("steps"))
    d1.download_button(t("train.download"), data, key="download_checkpoint",
                       file_name=f"{s.algorithm}_{ctx.dataset_id.replace(':', '-')}_"
                                 f"{s.n_way}w{s.k_shot}s.safetensors",
                       mime="application/octet-stream", help=t("train.download_help"))
    with d2:
        checkpoint_upload(ctx)


def checkpoint_upload(ctx) -> None:
    ss = st.session_state
    file = st.file_uploader(t("train.upload"), key="upload_checkpoint", help=t("train.upload_help"))
    if file is not None and ss.get("_ckpt_seen") != (file.name, file.size):
        ss["_ckpt_seen"] = (file.name, file.size)
        try:
            model = uploads.accept_checkpoint_upload(file.getvalue(), file.name, ctx)
            s = ctx.settings
            persistence.keep_checkpoint(state.model_key(s.algorithm, ctx.dataset_id, s.n_way,
                                                        ctx.dataset.input_shape), model)
            ss["_ckpt_msg"] = ("success", t("train.upload_ok", name=file.name))
        except MetaRepError as exc:
            ss["_ckpt_msg"] = ("error", str(exc))
        st.rerun()
    if ss.get("_ckpt_msg"):
        kind, msg = ss["_ckpt_msg"]
        show(kind, msg)  # names the user's file, or quotes its metadata


ctx = ui.page("train")
model = ui.model_or_stop(ctx)
job: TrainingJob | None = session_job()  # this session's, or a reloaded tab's (?job=)
left, right = st.columns([1, 2], gap="large")
with left:
    controls(ctx, model, job)
with right:
    progress(ctx, job)
st.divider()
checkpoints(ctx, model)
