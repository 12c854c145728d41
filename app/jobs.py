"""Background meta-training: one bounded worker pool for the whole server.

A page never trains inside its rerun. It makes a :class:`TrainingJob` (kept in
that user's ``st.session_state``) and submits it to :func:`training_pool`, a
``ThreadPoolExecutor`` shared by all sessions with at most ``MAX_WORKERS``
threads, so ten users pressing "start" queue rather than fight for the CPU.
Each job trains its own deep copy of the session's model; pages poll the job
(``st.fragment(run_every=...)``) and read its history, which only the worker
appends to.
"""
from __future__ import annotations

import copy
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import streamlit as st
import torch

from metarep_core.errors import MetaRepError
from metarep_core.training import Trainer  # imported here, not in a worker thread (import races)

MAX_WORKERS = 2
# The first meta-step in a process imports and initialises lazily loaded modules
# (torch.func, a learner's helpers); two workers doing that for the first time at once
# can see a half-initialised module. The first steps therefore take turns.
_FIRST_STEP_LOCK = threading.Lock()
_first_step_done = threading.Event()


@st.cache_resource(show_spinner=False)
def training_pool() -> ThreadPoolExecutor:
    """The server-wide worker pool (read-only from a session's point of view)."""
    return ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="metarep-train")


class TrainingJob:
    """One meta-training run of a copy of ``learner`` on ``dataset``.

    ``status`` goes queued -> running -> done | stopped | failed (a NaN loss, with
    the Trainer's message in ``error``). ``history`` (per step) and ``val_curve``
    (per validation) are filled by the worker from the Trainer's callback.
    """

    def __init__(self, learner, dataset, *, model_key: tuple, n_way: int, k_shot: int,
                 n_query: int, steps: int, seed: int, val_every: int = 0, val_episodes: int = 20):
        self.learner = copy.deepcopy(learner)  # the session's model stays untouched while training
        self.learner.train()
        self.dataset = dataset
        self.model_key = model_key
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.steps, self.seed = int(steps), int(seed)
        # Short runs validate once at the end; longer ones about ten times.
        self.val_every = val_every or (self.steps if self.steps < 20 else self.steps // 10)
        self.val_episodes = val_episodes
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
        self.future = None

    # ----------------------------------------------------------------- control
    def submit(self, pool: ThreadPoolExecutor | None = None) -> "TrainingJob":
        self.future = (pool or training_pool()).submit(self._run)
        return self

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def wait(self, timeout: float | None = None) -> None:
        if self.future is not None:
            self.future.result(timeout=timeout)

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
        if self.stop_event.is_set():
            self.status = "stopped"
            return
        torch.set_num_threads(1)  # two workers on two cores: one thread each
        self.status = "running"
        self.started_at = time.monotonic()
        self._holds_lock = False
        if not _first_step_done.is_set():
            _FIRST_STEP_LOCK.acquire()
            self._holds_lock = True
        try:
            trainer = Trainer(self.learner, self.dataset, n_way=self.n_way, k_shot=self.k_shot,
                              n_query=self.n_query, steps=self.steps, seed=self.seed,
                              val_every=self.val_every, val_episodes=self.val_episodes,
                              callback=self._on_progress)
            result = trainer.run(stop_event=self.stop_event)
            self.result = result.metrics()
            self.message = result.message
            if result.nan_detected:
                self.status = "failed"
                self.error = result.message
            else:
                self.status = "stopped" if result.stopped_early else "done"
        except MetaRepError as exc:
            self.status, self.error = "failed", str(exc)
        except Exception as exc:  # surfaced on the page, not swallowed
            self.status = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            self._release_first_step()
            self.learner.eval()
            self.finished_at = time.monotonic()

    def _release_first_step(self) -> None:
        if getattr(self, "_holds_lock", False):
            self._holds_lock = False
            _first_step_done.set()
            _FIRST_STEP_LOCK.release()


def adopt_result(job: TrainingJob) -> None:
    """Make a finished (or stopped) job's model the session's model for its key."""
    from app import state
    if job.collected or job.status not in ("done", "stopped") or job.step == 0:
        job.collected = True
        return
    meta = {"steps": job.step, "history_len": len(job.history), **(job.result or {})}
    state.set_model(job.model_key, job.learner, "trained", meta)
    job.collected = True
