"""The server's training jobs: a bounded queue, daemon workers, and a reaper that ties
each job to the Streamlit session that started it (issue 12).

``MAX_WORKERS`` daemon worker threads take jobs from a queue of at most ``MAX_WAITING``
waiting jobs, so thirty users pressing "start" queue rather than fight for the CPU,
and the next one is told the queue is full. One session holds at most one queued or
running job (:meth:`JobBoard.submit` refuses a second, whatever the buttons show).

A reaper thread checks once a second whether each job's session still has a browser
connected. A job whose session has been gone for ``GRACE_S`` seconds is stopped, unless
the user ticked "keep training after I close the tab". 6 s: issue 12 asks that a class's
closed tabs free their workers within 10 s (the reaper adds up to a second, the job's
step in progress up to another), and a reload reattaches before that — the reloaded tab
takes the job over by its URL token (:meth:`JobBoard.attach`) on its first script run,
1-3 s after the tab closed on a quiet 2-core machine. A server that reloads slower (a
busy machine, seen at 5-15 s at load 12) raises ``METAREP_JOB_GRACE_S``; a user who
wants the run whatever happens ticks "keep training".

Workers train at a lower CPU priority (nice +10, :func:`_lower_priority`): on two cores,
two runs at full priority made every other tab's page run wait (issue 13: 30 sessions
took minutes to open while two runs trained). The kernel now runs page scripts first;
a run still gets every cycle nobody else wants.

On SIGTERM Streamlit stops its runtime; the reaper sees that and stops every job. The
workers are daemon threads, so the process never waits for a run to finish, and once
Streamlit has stopped the process ends without the slow interpreter finalization.
The jobs themselves (:class:`app.jobs.TrainingJob`) know nothing of sessions.
"""
from __future__ import annotations

import atexit
import logging
import os
import secrets
import sys
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING

import streamlit as st

from app.i18n import t
from metarep_core.errors import MetaRepError

if TYPE_CHECKING:
    from app.jobs import TrainingJob

# Deployment knobs (environment variables), read once per server process.
MAX_WORKERS = int(os.environ.get("METAREP_TRAIN_WORKERS", "2"))   # jobs training at once
MAX_WAITING = int(os.environ.get("METAREP_TRAIN_QUEUE", "16"))    # jobs waiting behind them
GRACE_S = float(os.environ.get("METAREP_JOB_GRACE_S", "6"))       # tab gone -> job stopped
# Cluster jobs (METAREP_RAY_ADDRESS) do not take a local worker: the cluster's scheduler
# queues their actors until it has a CPU (or GPU) for them, and here each costs one
# thread that sleeps between polls. This cap only bounds those threads.
MAX_CLUSTER_JOBS = int(os.environ.get("METAREP_RAY_JOBS", "200"))
WORKER_NICE = 10  # added to a worker thread's niceness (0 = page runs' priority)
KEEP_FINISHED_S = 600.0  # a kept, finished job stays attachable by its token this long
REAP_EVERY_S = 1.0
_log = logging.getLogger("metarep.jobs")


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice``. On Linux a thread is its own
    scheduling entity: ``setpriority`` on its thread id touches that thread only (and the
    threads it starts later); elsewhere, or without permission, nothing changes."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except (OSError, AttributeError):
        pass


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


def current_session_id() -> str | None:
    """The running script's Streamlit session id. Under AppTest every session is called
    "test session id", so a random id kept in the session's state stands in for it."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return None
    if _runtime() is None:
        return st.session_state.setdefault("_job_owner", secrets.token_hex(8))
    return ctx.session_id

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
            on_cluster = [j for j in active if j.on_cluster]
            if job.on_cluster and len(on_cluster) >= MAX_CLUSTER_JOBS:
                raise MetaRepError(t("jobs.cluster_full", running=len(on_cluster)))
            capacity = len(self.workers) + MAX_WAITING
            if not job.on_cluster and len(active) - len(on_cluster) >= capacity:
                raise MetaRepError(t("jobs.queue_full", running=len(self.workers),
                                     waiting=MAX_WAITING))
            # The session's earlier, finished jobs are not reachable any more: its
            # new job takes the URL token's place.
            for old in [j for j in self.jobs.values() if j.owner == owner and owner is not None]:
                self.jobs.pop(old.token, None)
            job.owner = owner
            job.board = self
            self.jobs[job.token] = job
            if job.on_cluster:  # its own driver thread, outside the local pool
                threading.Thread(target=job._run, name=f"metarep-ray-{job.token[:8]}",
                                 daemon=True).start()
                return
            self._waiting.append(job)
            self._cond.notify()

    def run_locally(self, job: TrainingJob) -> None:
        """Queue an already submitted cluster job in the local pool (Ray refused it)."""
        with self._cond:
            if not self._closing:
                self._waiting.append(job)
                self._cond.notify()
                return
        job.stop("server_stopping")

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

    # ----------------------------------------------------------------- threads
    def _work(self) -> None:
        _lower_priority(WORKER_NICE)
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
