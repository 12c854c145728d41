"""Background meta-training jobs.

A page never trains inside its rerun. It makes a :class:`TrainingJob` and submits it to
the server's :class:`~app.job_board.JobBoard` (bounded queue, daemon workers, one job
per session, stopped when its session is gone: see that module). Each job trains its
own deep copy of the session's model; pages poll the job (``st.fragment(run_every=...)``)
and read its history, which only the worker appends to. The job's random ``token`` is
kept in the page's URL (``?job=<token>``): a reload is a new Streamlit session, and
:func:`session_job` finds the job again through it.

With ``METAREP_RAY_ADDRESS`` set, :meth:`TrainingJob.submit` sends the job to that Ray
cluster (:mod:`metarep_core.cluster`): a driver thread replays the remote Trainer's
steps into the same ``history``/``val_curve``/``eta_s`` and adopts the remote result,
so a page cannot tell where it ran except by ``where``. A head that does not answer
at submit leaves the job in the local pool with a ``notice`` saying why. A worker lost
mid-run fails the job with a readable ``error``; the best weights fetched so far
become its ``learner`` (``best_kept`` is their step) and are adopted like a result.
"""
from __future__ import annotations

import copy
import os
import secrets
import threading
import time
import traceback

import streamlit as st
import torch

from app.i18n import current_lang, t
from app.job_board import GRACE_S, MAX_WAITING, MAX_WORKERS, JobBoard, current_session_id, job_board
from metarep_core.cluster import ClusterUnavailable, check_reachable, connect, ray_address
from metarep_core.errors import MetaRepError
from metarep_core.training import Trainer  # imported here, not in a worker thread (import races)

__all__ = ["GRACE_S", "MAX_WAITING", "MAX_WORKERS", "TrainingJob", "adopt_result", "job_board",
           "session_job"]

# Local runs train in a child process of their own (metarep_core/process_runner.py):
# a training thread held the GIL against every page run (issue 13). "0" trains in the
# worker thread itself, as before.
TRAIN_IN_PROCESS = os.environ.get("METAREP_TRAIN_PROCESS", "1") != "0"

# The first meta-step in a process imports and initialises lazily loaded modules
# (torch.func, a learner's helpers); two workers doing that for the first time at once
# can see a half-initialised module. The first steps therefore take turns.
_FIRST_STEP_LOCK = threading.Lock()
_first_step_done = threading.Event()


class TrainingJob:
    """One meta-training run of a copy of ``learner`` on ``dataset``.

    ``status`` goes queued -> running -> done | stopped | failed (a NaN loss, with
    the Trainer's message in ``error``). ``history`` (per step) and ``val_curve``
    (per validation) are filled by the worker from the Trainer's callback.
    ``token`` names the job in the URL; ``owner`` is the Streamlit session it belongs
    to; ``keep`` spares it when that session ends; ``stop_reason`` says who stopped it
    ("user", "session_ended", "server_stopping").
    ``where`` is "local" or the Ray cluster's address (set at submit); ``notice`` says
    why a cluster job fell back to the local pool; ``best_kept`` is the step of the
    best weights kept from a failed cluster run (None otherwise). ``device`` is for
    cluster runs ("cuda" asks Ray for a GPU node; ``METAREP_RAY_DEVICE``, default cpu).
    """

    def __init__(self, learner, dataset, *, model_key: tuple, n_way: int, k_shot: int,
                 n_query: int, steps: int, seed: int, val_every: int = 0, val_episodes: int = 20,
                 keep: bool = False, device: str | None = None):
        self.learner = copy.deepcopy(learner)  # the session's model stays untouched while training
        self.learner.train()
        self.dataset = dataset
        self.model_key = model_key
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.steps, self.seed = int(steps), int(seed)
        # Short runs validate once at the end; longer ones about ten times.
        self.val_every = val_every or (self.steps if self.steps < 20 else self.steps // 10)
        self.val_episodes = val_episodes
        self.token = secrets.token_urlsafe(16)  # unguessable: it grants control of the job
        self.owner: str | None = None
        self.keep = bool(keep)
        self.gone_since: float | None = None  # when the owner's browser was last seen gone
        self.stop_reason: str | None = None
        self.stop_event = threading.Event()
        self.history: list[dict] = []   # per step: step, loss, accuracy (percent) or mse
        self.val_curve: list[dict] = []  # per validation: step, val_accuracy or val_mse, val_ci95
        self.eta_s: float | None = None
        self.message = ""
        self.status = "queued"
        self.error: str | None = None
        self.step = 0
        self.result: dict = {}
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.collected = False  # has the session adopted the result as its model?
        self.where = "local"
        self.notice: str | None = None
        self.best_kept: int | None = None
        self.device = device or os.environ.get("METAREP_RAY_DEVICE", "cpu")
        self.remote = None  # the RemoteTraining handle of a cluster run
        self.board: JobBoard | None = None  # set by JobBoard.submit
        self.lang = current_lang()  # the driver thread words its messages in the page's language
        self._ended = threading.Event()
        self._lock = threading.Lock()  # the queued -> running | stopped transition

    # ----------------------------------------------------------------- control
    def submit(self, board: "JobBoard | None" = None) -> "TrainingJob":
        """Queue this job for the current session (MetaRepError when it may not): on the
        Ray cluster when ``METAREP_RAY_ADDRESS`` names one that answers, else here."""
        self.route()
        (board or job_board()).submit(self, current_session_id())
        return self

    def route(self, address: str | None = None) -> None:
        """Decide where the job runs: the cluster at ``address`` (default
        ``METAREP_RAY_ADDRESS``) when its head answers a TCP connect within seconds,
        else this server, with ``notice`` saying why. (Ray itself is joined later, in
        the job's driver thread: ``ray.init`` can take long on a busy head, and no page
        waits for it; a refusal there also falls back to the local pool.)"""
        address = address if address is not None else ray_address()
        if not address:
            return
        try:
            check_reachable(address)
        except ClusterUnavailable as exc:
            self._fall_back(exc)
        else:
            self.where = address.strip()

    def _fall_back(self, exc: Exception) -> None:
        self.where = "local"
        from app.messages import user_message  # the core's English, in the page's language
        self.notice = t("jobs.cluster_fallback", self.lang, reason=user_message(exc, self.lang))

    @property
    def on_cluster(self) -> bool:
        return self.where != "local"

    def stop(self, reason: str = "user") -> None:
        if self.active and self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()
        with self._lock:
            # Never started: no worker will run it now. (A cluster job's driver thread
            # is already waiting for its actor; it ends the job itself.)
            if self.status == "queued" and not self.on_cluster:
                self._finish("stopped")

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the job has ended (TimeoutError after ``timeout`` seconds)."""
        if not self._ended.wait(timeout):
            raise TimeoutError(f"training job still {self.status} after {timeout} s")

    def _finish(self, status: str) -> None:
        self.status = status
        self.finished_at = time.monotonic()
        self._ended.set()

    # ----------------------------------------------------------------- progress
    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.steps))

    def seconds_left(self) -> float | None:
        if self.started_at is None or self.step == 0 or not self.active:
            return None
        if self.eta_s is not None:
            return float(self.eta_s)
        elapsed = time.monotonic() - self.started_at
        return elapsed / self.step * (self.steps - self.step)

    def _on_progress(self, info: dict) -> None:
        """The Trainer's callback (worker thread): one dict per step; validation
        figures repeat until the next validation, so they are kept once each."""
        self._release_first_step()
        self.step = int(info.get("step", self.step))
        row = {k: info[k] for k in ("step", "loss", "accuracy", "mse") if k in info}
        self.history.append(row)
        if any(k in info for k in ("val_accuracy", "val_mse")) and (
                self.step % self.val_every == 0 or self.step == self.steps):
            self.val_curve.append({k: info[k] for k in
                                   ("step", "val_accuracy", "val_mse", "val_loss", "val_ci95")
                                   if k in info})
        self.eta_s = info.get("eta_s")

    # ----------------------------------------------------------------- worker
    def _run(self) -> None:
        if self.on_cluster:
            return self._run_on_cluster()
        with self._lock:
            if self.status != "queued":  # stopped while it waited
                return
            self.status = "running"
        if TRAIN_IN_PROCESS:
            return self._run_in_process()
        torch.set_num_threads(1)  # two workers on two cores: one thread each
        self.started_at = time.monotonic()
        self._holds_lock = False
        if not _first_step_done.is_set():
            _FIRST_STEP_LOCK.acquire()
            self._holds_lock = True
        status = "failed"
        try:
            trainer = Trainer(self.learner, self.dataset, n_way=self.n_way, k_shot=self.k_shot,
                              n_query=self.n_query, steps=self.steps, seed=self.seed,
                              val_every=self.val_every, val_episodes=self.val_episodes,
                              callback=self._on_progress)
            result = trainer.run(stop_event=self.stop_event)
            self.result = result.metrics()
            self.message = result.message
            if result.nan_detected:
                self.error = result.message
            else:
                status = "stopped" if result.stopped_early else "done"
        except Exception as exc:
            self._failed(exc)
        finally:
            self._release_first_step()
            self.learner.eval()
            self._finish(status)

    def _trainer_args(self) -> dict:
        return {"n_way": self.n_way, "k_shot": self.k_shot, "n_query": self.n_query,
                "steps": self.steps, "seed": self.seed, "val_every": self.val_every,
                "val_episodes": self.val_episodes}

    def _started(self) -> None:
        with self._lock:
            if self.status == "queued":
                self.status = "running"
                self.started_at = time.monotonic()

    def _run_on_cluster(self) -> None:
        """The driver thread of a cluster run: the remote Trainer's steps come back
        through ``_on_progress``, its best weights become ``learner``."""
        from metarep_core.cluster.runner import RemoteTraining
        try:
            connect(self.where)
        except ClusterUnavailable as exc:
            self._fall_back(exc)
            if self.board is None:  # run by hand, not through a board: train here, now
                return self._run()
            return self.board.run_locally(self)
        self._drive(lambda: RemoteTraining(
            self.learner, self.dataset, self._trainer_args(), device=self.device,
            meta={"dataset": self.model_key[1], "seed": self.seed}))

    def _run_in_process(self) -> None:
        """A local run in a child process (the worker thread drives it): no GIL taken
        from the page runs, and the child runs at the workers' lower priority."""
        from app.job_board import WORKER_NICE
        from metarep_core.process_runner import LocalProcessTraining
        self.started_at = time.monotonic()
        self._drive(lambda: LocalProcessTraining(
            self.learner, self.dataset, self._trainer_args(),
            meta={"dataset": self.model_key[1], "seed": self.seed}, nice=WORKER_NICE))

    def _drive(self, make_driver) -> None:
        """Run the job through a driver (a Ray actor's handle or a child process's, both
        with ``drive(callback, stop_event, on_start)``): its steps come back through
        ``_on_progress``, its best weights become ``learner``; a lost worker fails the
        job and keeps the best weights received."""
        from metarep_core.checkpoints import load_checkpoint
        from metarep_core.cluster.runner import WorkerLost
        status = "failed"
        remote = None
        try:
            remote = self.remote = make_driver()
            result = remote.drive(self._on_progress, self.stop_event, on_start=self._started)
            self.result = dict(result.get("metrics") or {})
            self.message = result.get("message") or ""
            if result.get("checkpoint") is not None:
                self.learner, _ = load_checkpoint(result["checkpoint"])
            if result.get("nan_detected"):
                self.error = self.message
            else:
                status = "stopped" if result.get("stopped_early") else "done"
        except WorkerLost as exc:
            kept = remote is not None and remote.best is not None
            if kept:
                self.learner, meta = load_checkpoint(remote.best)
                self.best_kept = int(meta.get("steps") or remote.best_step or self.step)
                self.result = dict(meta.get("metrics") or {})
            key = "jobs.worker_lost" if self.on_cluster else "jobs.process_lost"
            self.error = t(key + "_kept" if kept else key, self.lang, reason=str(exc),
                           step=self.best_kept, address=self.where)
        except Exception as exc:
            self._failed(exc)
        finally:
            self.learner.eval()
            self._finish(status)

    def _failed(self, exc: Exception) -> None:
        """The job's ``error`` for an exception that ended it: a MetaRepError's own
        words; anything else by its type too, and its traceback in the server log
        (surfaced on the page, not swallowed)."""
        if isinstance(exc, MetaRepError):
            self.error = str(exc)
        else:
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exception(exc)

    def _release_first_step(self) -> None:
        if getattr(self, "_holds_lock", False):
            self._holds_lock = False
            _first_step_done.set()
            _FIRST_STEP_LOCK.release()


# ----------------------------------------------------------------- page helpers
def session_job() -> TrainingJob | None:
    """This session's job: the one it started, or after a reload the one named by the
    URL's ``?job=`` token. Keeps the token in the URL while the session has a job (so a
    reload finds it again) and drops a token that names nothing usable."""
    ss = st.session_state
    job: TrainingJob | None = ss.get("job")
    if job is None and st.query_params.get("job"):
        job = job_board().attach(st.query_params["job"], current_session_id())
        if job is None:
            ss["_job_lost"] = True
            del st.query_params["job"]
        else:
            ss["job"] = job
    if job is not None and st.query_params.get("job") != job.token:
        st.query_params["job"] = job.token
    return job


def adopt_result(job: TrainingJob) -> None:
    """Make a finished (or stopped) job's model the session's model for its key; a
    failed cluster run's best weights too (``best_kept``: the user trains on from them)."""
    from app import state
    recovered = job.status == "failed" and job.best_kept is not None
    if job.collected or (job.status not in ("done", "stopped") and not recovered) or job.step == 0:
        job.collected = True
        return
    steps = job.best_kept if recovered else job.step
    meta = {"steps": steps, "history_len": len(job.history), **(job.result or {})}
    state.set_model(job.model_key, job.learner, "trained", meta)
    job.collected = True
