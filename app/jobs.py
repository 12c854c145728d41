"""Background meta-training: a bounded, server-wide board of jobs, each owned by a session.

A page never trains inside its rerun. It makes a :class:`TrainingJob` and submits it to
the :class:`JobBoard` (one per server process): ``MAX_WORKERS`` daemon worker threads
take jobs from a queue of at most ``MAX_WAITING`` waiting jobs, so thirty users pressing
"start" queue rather than fight for the CPU, and the thirty-first is told the queue is
full. Each job trains its own deep copy of the session's model; pages poll the job
(``st.fragment(run_every=...)``) and read its history, which only the worker appends to.

A job belongs to the Streamlit session that started it:

* one session holds at most one queued or running job (:meth:`JobBoard.submit` refuses
  a second one, whatever the buttons show);
* the job's random ``token`` is kept in the page's URL (``?job=<token>``). A reload is a
  new Streamlit session; its first run finds the token and takes the job over
  (:func:`session_job`), so a reloaded tab still sees and can stop its training;
* a reaper thread checks once a second whether each job's session still has a browser
  connected. A job whose session has been gone for ``GRACE_S`` seconds is stopped,
  unless the user ticked "keep training after I close the tab". 30 s covers a reload
  on a busy server (page load + first script run, seen at 5-15 s on a loaded 2-core
  machine) and the browser's own websocket reconnects after a network blip, yet a
  closed tab frees its worker within half a minute;
* on SIGTERM, Streamlit stops its runtime; the reaper sees that and stops every job,
  and the workers are daemon threads, so the process never waits for a training run
  to finish before exiting (an ``atexit`` hook also stops them and waits a moment so
  a run ends between two steps rather than mid-step).
"""
from __future__ import annotations

import atexit
import copy
import logging
import os
import secrets
import sys
import threading
import time
import traceback
from collections import deque

import streamlit as st
import torch

from app.i18n import t
from metarep_core.errors import MetaRepError
from metarep_core.training import Trainer  # imported here, not in a worker thread (import races)

# Deployment knobs (environment variables), read once per server process.
MAX_WORKERS = int(os.environ.get("METAREP_TRAIN_WORKERS", "2"))   # jobs training at once
MAX_WAITING = int(os.environ.get("METAREP_TRAIN_QUEUE", "16"))    # jobs waiting behind them
GRACE_S = float(os.environ.get("METAREP_JOB_GRACE_S", "30"))      # tab gone -> job stopped
KEEP_FINISHED_S = 600.0  # a finished job stays attachable by its token this long
REAP_EVERY_S = 1.0
_log = logging.getLogger("metarep.jobs")

# The first meta-step in a process imports and initialises lazily loaded modules
# (torch.func, a learner's helpers); two workers doing that for the first time at once
# can see a half-initialised module. The first steps therefore take turns.
_FIRST_STEP_LOCK = threading.Lock()
_first_step_done = threading.Event()


# ------------------------------------------------------------- Streamlit internals
def _runtime():
    """Streamlit's server runtime, or None outside a real server.

    The only place (with its two callers below) that reads Streamlit's runtime
    internals (1.67). AppTest installs a ``MagicMock(spec=Runtime)`` as the runtime
    while a script runs, hence the exact type check.
    """
    from streamlit.runtime import Runtime

    rt = Runtime._instance
    return rt if type(rt) is Runtime else None


def _session_alive(session_id: str | None) -> bool:
    """Whether a browser is connected to session ``session_id`` right now.

    ``Runtime.is_active_session`` is documented "Threading: SAFE" and turns False once
    the session's websocket has closed (tab closed or reloaded; the session itself
    lingers for ``server.disconnectedSessionTTL``). Without a runtime (AppTest, plain
    Python) sessions never end, so jobs there are never reaped.
    """
    rt = _runtime()
    return session_id is None or rt is None or rt.is_active_session(session_id)


def _server_stopping() -> bool:
    """True once Streamlit's runtime has been asked to stop (SIGTERM/SIGINT -> Server.stop)."""
    from streamlit.runtime import RuntimeState

    rt = _runtime()
    return rt is not None and rt.state in (RuntimeState.STOPPING, RuntimeState.STOPPED)


def _current_session_id() -> str | None:
    """The running script's Streamlit session id. Under AppTest every session is called
    "test session id", so a random id kept in the session's state stands in for it."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return None
    if _runtime() is None:
        return st.session_state.setdefault("_job_owner", secrets.token_hex(8))
    return ctx.session_id


class TrainingJob:
    """One meta-training run of a copy of ``learner`` on ``dataset``.

    ``status`` goes queued -> running -> done | stopped | failed (a NaN loss, with
    the Trainer's message in ``error``). ``history`` (per step) and ``val_curve``
    (per validation) are filled by the worker from the Trainer's callback.
    ``token`` names the job in the URL; ``owner`` is the Streamlit session it belongs
    to; ``keep`` spares it when that session ends; ``stop_reason`` says who stopped it
    ("user", "session_ended", "server_stopping").
    """

    def __init__(self, learner, dataset, *, model_key: tuple, n_way: int, k_shot: int,
                 n_query: int, steps: int, seed: int, val_every: int = 0, val_episodes: int = 20,
                 keep: bool = False):
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
        self._ended = threading.Event()
        self._lock = threading.Lock()  # the queued -> running | stopped transition

    # ----------------------------------------------------------------- control
    def submit(self, board: "JobBoard | None" = None) -> "TrainingJob":
        """Queue this job for the current session (MetaRepError when it may not)."""
        (board or job_board()).submit(self, _current_session_id())
        return self

    def stop(self, reason: str = "user") -> None:
        if self.active and self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()
        with self._lock:
            if self.status == "queued":  # never started: no worker will run it now
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
        with self._lock:
            if self.status != "queued":  # stopped while it waited
                return
            self.status = "running"
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
        except MetaRepError as exc:
            self.error = str(exc)
        except Exception as exc:  # surfaced on the page, not swallowed
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            self._release_first_step()
            self.learner.eval()
            self._finish(status)

    def _release_first_step(self) -> None:
        if getattr(self, "_holds_lock", False):
            self._holds_lock = False
            _first_step_done.set()
            _FIRST_STEP_LOCK.release()


class JobBoard:
    """The server's training jobs: a bounded queue, daemon workers and a reaper.

    ``jobs`` maps token -> job for every job still reachable by its token (active, or
    finished and not yet dropped). All bookkeeping happens under one lock; training
    does not.
    """

    def __init__(self, workers: int = MAX_WORKERS, *, grace_s: float = GRACE_S,
                 reap_every_s: float = REAP_EVERY_S):
        self.grace_s = grace_s
        self.jobs: dict[str, TrainingJob] = {}
        self._waiting: deque[TrainingJob] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.workers = [threading.Thread(target=self._work, name=f"metarep-train-{i}", daemon=True)
                        for i in range(workers)]
        self._reaper = threading.Thread(target=self._reap_loop, args=(reap_every_s,),
                                        name="metarep-reaper", daemon=True)
        for thread in (*self.workers, self._reaper):
            thread.start()

    # ----------------------------------------------------------------- sessions
    def submit(self, job: TrainingJob, owner: str | None) -> None:
        """Queue ``job`` for session ``owner``; MetaRepError (translated, for the page)
        when that session already has an active job or the queue is full."""
        with self._cond:
            if self._closing:
                raise MetaRepError(t("jobs.server_stopping"))
            active = [j for j in self.jobs.values() if j.active]
            if owner is not None and any(j.owner == owner for j in active):
                raise MetaRepError(t("jobs.one_per_session"))
            capacity = len(self.workers) + MAX_WAITING
            if len(active) >= capacity:
                raise MetaRepError(t("jobs.queue_full", running=len(self.workers),
                                     waiting=MAX_WAITING))
            # The session's earlier, finished jobs are not reachable any more: its
            # new job takes the URL token's place.
            for old in [j for j in self.jobs.values() if j.owner == owner and owner is not None]:
                self.jobs.pop(old.token, None)
            job.owner = owner
            self.jobs[job.token] = job
            self._waiting.append(job)
            self._cond.notify()

    def attach(self, token: str, session_id: str | None, wait_s: float = 3.0) -> TrainingJob | None:
        """The job named ``token`` handed over to ``session_id`` (a reloaded tab), or None
        when there is no such job or another open tab still holds it. A reload's old
        websocket may close a moment after the new session's first run starts, hence a
        short wait before refusing."""
        job = self.jobs.get(token)
        if job is None or job.owner == session_id:
            return job
        deadline = time.monotonic() + wait_s
        while _session_alive(job.owner):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        with self._cond:
            job.owner, job.gone_since = session_id, None
        return job

    def position(self, job: TrainingJob) -> int:
        """How many queued jobs are ahead of ``job`` (0 when it is next or running)."""
        with self._cond:
            ahead = 0
            for other in self._waiting:
                if other is job:
                    return ahead
                ahead += other.active
            return 0

    def counts(self) -> dict:
        with self._cond:
            statuses = [j.status for j in self.jobs.values()]
        return {"running": statuses.count("running"), "queued": statuses.count("queued")}

    # ----------------------------------------------------------------- threads
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self._waiting.popleft()
            job._run()

    def _reap_loop(self, every_s: float) -> None:
        while not self._closing:
            time.sleep(every_s)
            try:
                self.reap()
            except Exception:  # the reaper must outlive any one bad job
                traceback.print_exc()

    def reap(self, now: float | None = None) -> None:
        """Stop the jobs whose session has been gone for ``grace_s`` (unless kept); drop
        finished jobs nobody can come back for; stop everything when the server stops."""
        if _server_stopping():
            self.close()
            return
        now = time.monotonic() if now is None else now
        for job in list(self.jobs.values()):
            if _session_alive(job.owner):
                job.gone_since = None
                continue
            if job.gone_since is None:
                job.gone_since = now
            gone_s = now - job.gone_since
            if job.active and not job.keep and gone_s >= self.grace_s:
                job.stop("session_ended")
                _log.warning("metarep: training job %s stopped at step %d/%d: its session "
                             "ended %.0f s ago", job.token[:8], job.step, job.steps, gone_s)
            elif not job.active and gone_s >= self.grace_s and (
                    not job.keep or now - (job.finished_at or now) >= KEEP_FINISHED_S):
                with self._cond:
                    self.jobs.pop(job.token, None)

    def close(self, wait_s: float = 1.0) -> None:
        """Stop every job (server shutting down); wait up to ``wait_s`` for the workers
        to finish their current step."""
        with self._cond:
            first = not self._closing
            self._closing = True
            jobs = list(self.jobs.values())
            self._cond.notify_all()
        if first and any(j.active for j in jobs):
            _log.warning("metarep: server stopping: %d training job(s) stopped",
                         sum(j.active for j in jobs))
        for job in jobs:
            job.stop("server_stopping")
        deadline = time.monotonic() + wait_s
        for thread in self.workers:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))


_board: JobBoard | None = None
_board_lock = threading.Lock()


def _exit_now_when_stopped() -> None:
    """After SIGTERM (Streamlit stopped its runtime and every job is stopped), end the
    process at once. Interpreter finalization of a server holding torch, numba, plotly
    and a few sessions took 3-4 s on a loaded 2-core machine (measured), most of a
    container's stop budget, and nothing is left to save by then. Registered first, so
    it runs last among the atexit hooks; only in a real server (pytest's own exit code
    is never overridden)."""
    if not _server_stopping():
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


atexit.register(_exit_now_when_stopped)


def job_board() -> JobBoard:
    """The server-wide board (a module global rather than st.cache_resource: clearing
    Streamlit's caches must not orphan running jobs)."""
    global _board
    with _board_lock:
        if _board is None:
            _board = JobBoard()
            atexit.register(_board.close)
        return _board


# ----------------------------------------------------------------- page helpers
def session_job() -> TrainingJob | None:
    """This session's job: the one it started, or after a reload the one named by the
    URL's ``?job=`` token. Keeps the token in the URL while the session has a job (so a
    reload finds it again) and drops a token that names nothing usable."""
    ss = st.session_state
    job: TrainingJob | None = ss.get("job")
    if job is None and st.query_params.get("job"):
        job = job_board().attach(st.query_params["job"], _current_session_id())
        if job is None:
            ss["_job_lost"] = True
            del st.query_params["job"]
        else:
            ss["job"] = job
            ss["train_keep"] = job.keep  # the Train page's checkbox starts as the job was left
    if job is not None and st.query_params.get("job") != job.token:
        st.query_params["job"] = job.token
    return job


def adopt_result(job: TrainingJob) -> None:
    """Make a finished (or stopped) job's model the session's model for its key."""
    from app import state
    if job.collected or job.status not in ("done", "stopped") or job.step == 0:
        job.collected = True
        return
    meta = {"steps": job.step, "history_len": len(job.history), **(job.result or {})}
    state.set_model(job.model_key, job.learner, "trained", meta)
    job.collected = True
