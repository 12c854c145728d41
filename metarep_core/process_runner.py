"""Meta-training in a process of its own on this machine (issue 13), driven like a run
on a Ray cluster (:class:`~metarep_core.cluster.runner.RemoteTraining`).

Why a process: a training thread in the app server holds Python's GIL for most of every
meta-step (the learners' steps are many small tensor operations). On a 2-core server,
page runs then waited on it: with two runs training, 9 of 30 sessions opened within
150 s (issue 12's benchmark). A process of its own, at a lower CPU priority, takes no
GIL from the pages and leaves them the CPU first.

The child is forked from a multiprocessing *forkserver* that imported torch and the
learners once and took a first step of each kind (:func:`preload`,
:mod:`metarep_core.process_warm`): a new run starts at once and shares those pages with
its siblings, where a fresh interpreter would import torch again
(~2 s of CPU, ~250 MB). Fork from the server itself is avoided: it has many threads,
and a child forked from one may inherit a lock another thread held.

What crosses between the processes is the same as for Ray: the learner as checkpoint
bytes (our safetensors format), the dataset as a :func:`dataset_payload` (built-ins by
name; an upload as a compact copy of its tensors, our own objects), each step's dict,
the best weights at each validation that improved (checkpoint bytes, so a killed child
still leaves them), and the result dict.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import pickle
import queue as queue_module
import threading
from multiprocessing import popen_forkserver, spawn

from .cluster.runner import TrainingRunner, WorkerLost, dataset_payload

PRELOAD = ("torch", "metarep_core.training", "metarep_core.learners", "metarep_core.checkpoints",
           "metarep_core.data", "metarep_core.cluster.runner", "metarep_core.evaluation",
           "metarep_core.parallel_eval",  # Compare's children too
           "metarep_core.process_warm")   # last: it takes a first training step
POLL_S = 0.25  # how often the driver looks at a child that sends nothing (its liveness)

_context = None
_context_lock = threading.Lock()

# Streamlit runs each page script as a fresh module installed as sys.modules["__main__"]
# (with __file__ = app/main.py) and never puts the real one back. multiprocessing hands
# a child the parent's __main__ to import again ("init_main_from_path"), so every child
# started after the first page run executed the whole page script first, in bare mode:
# 3.1 s of a training's start here (measured under AppTest). Our children's targets are
# module functions; none needs __main__. The flag is per thread, so only processes
# started through this module's context go without it.
_launching = threading.local()
_get_preparation_data = spawn.get_preparation_data


def _preparation_data_without_main(name):
    data = _get_preparation_data(name)
    if getattr(_launching, "without_main", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


spawn.get_preparation_data = _preparation_data_without_main


class _Popen(popen_forkserver.Popen):
    def _launch(self, process_obj):
        _launching.without_main = True
        try:
            super()._launch(process_obj)
        finally:
            _launching.without_main = False


class _Process(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _Popen(process_obj)


class _Context(multiprocessing.context.ForkServerContext):
    Process = _Process


def mp_context():
    """The forkserver context, its server preloaded with torch and the learners: one per
    process, shared by training (here), Compare's children (parallel_eval) and the tests'
    measuring children. Its children do not import the parent's ``__main__`` (above)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = _Context()
            ctx.set_forkserver_preload(list(PRELOAD))
            _context = ctx
        return _context


def preload() -> None:
    """Start the fork server now; it imports torch and the learners and takes a warm step
    (:mod:`metarep_core.process_warm`; 3-5 s of CPU on this machine, torch._dynamo, which
    torch imports on the first optimiser, among them) in its own process, beside whatever
    this process does meanwhile. Returns at once; safe to call more than once."""
    mp_context()
    from multiprocessing import forkserver
    forkserver.ensure_running()


def _noop() -> None:
    pass


def wait_ready(timeout_s: float = 120.0) -> None:
    """Block until the fork server has finished its imports (it forks a first, empty
    child only after them), so that they do not compete with the first page for the CPU."""
    child = mp_context().Process(target=_noop, name="metarep-forkserver-ready", daemon=True)
    child.start()
    child.join(timeout_s)


def _child(checkpoint: bytes, payload: bytes, trainer_args: dict, meta: dict, device: str,
           nice: int, out, stop) -> None:
    """The training process: a :class:`TrainingRunner` whose steps and best weights are
    sent to the driver through ``out`` (a multiprocessing queue) as they come."""
    try:  # an absolute niceness: the fork server may itself run niced (started by a worker)
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    from .errors import MetaRepError

    def refused(exc: Exception):  # said on the page like a Trainer's refusal
        out.put(("error", "MetaRepError" if isinstance(exc, MetaRepError) else type(exc).__name__,
                 str(exc)))

    def on_update(info: dict, best: bytes | None) -> None:
        out.put(("step", info))
        if best is not None:
            out.put(("best", best))

    try:
        runner = TrainingRunner(checkpoint, pickle.loads(payload), trainer_args, device=device, meta=meta,
                                threads=1, on_update=on_update)
    except Exception as exc:
        refused(exc)
        return
    threading.Thread(target=lambda: (stop.wait(), runner.stop()), daemon=True).start()
    try:
        result = runner.run()
    except Exception as exc:
        refused(exc)
        return
    out.put(("result", result))


class LocalProcessTraining:
    """One run in a child process; the driver's side (the app's job thread, or a test).

    ``learner`` and ``dataset`` as for a Trainer; ``trainer_args`` its keyword arguments;
    ``meta`` goes into the checkpoints; the child runs ``nice`` steps below the priority of
    this process's main thread (where Streamlit's page runs start).
    ``best`` is the latest best checkpoint received (bytes or None), ``best_step`` its step,
    ``process`` the child (``pid`` once started).
    """

    def __init__(self, learner, dataset, trainer_args: dict, *, device: str = "cpu",
                 meta: dict | None = None, nice: int = 0):
        from .checkpoints import checkpoint_to_bytes
        self.checkpoint = checkpoint_to_bytes(learner, **dict(meta or {}))
        # Pickled here with the plain pickler: multiprocessing's would hand each tensor
        # over as a shared-memory file descriptor, and an upload has one per class (the
        # fork server passes at most 256). Our own object, made in this process.
        self.payload = pickle.dumps(dataset_payload(dataset), protocol=pickle.HIGHEST_PROTOCOL)
        self.trainer_args = dict(trainer_args)
        self.device, self.meta = str(device), dict(meta or {})
        # Relative to the process's main thread (the page runs' priority), whichever
        # thread drives the run (the app's workers are niced themselves).
        self.nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + int(nice))
        self.best: bytes | None = None
        self.best_step: int | None = None
        self.process = None

    def start(self) -> "LocalProcessTraining":
        ctx = mp_context()
        self._out = ctx.Queue()
        self._stop = ctx.Event()
        self.process = ctx.Process(
            target=_child, name="metarep-train", daemon=True,
            args=(self.checkpoint, self.payload, self.trainer_args, self.meta, self.device,
                  self.nice, self._out, self._stop))
        self.process.start()
        return self

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Ask the run to stop after its current step (it still returns a result)."""
        if self.process is not None:
            self._stop.set()

    def close(self) -> None:
        """End the child if it is still there (a stopped page, a server going down)."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def drive(self, callback=None, stop_event: threading.Event | None = None,
              poll_s: float = POLL_S, on_start=None) -> dict:
        """Start, replay each step dict into ``callback`` until the run ends, pass a set
        ``stop_event`` on to the child, and return the result dict (as
        :meth:`RemoteTraining.drive`). :class:`WorkerLost` when the child dies without a
        result (``best`` then holds the best checkpoint received)."""
        from .errors import MetaRepError
        from .checkpoints import read_metadata
        if self.process is None:
            self.start()
        if on_start is not None:
            on_start()
        try:
            while True:
                if stop_event is not None and stop_event.is_set():
                    self.stop()
                try:
                    kind, *rest = self._out.get(timeout=poll_s)
                except queue_module.Empty:
                    if not self.process.is_alive():
                        self.process.join(1)
                        raise WorkerLost(f"the training process {self.process.pid} ended "
                                         f"(exit code {self.process.exitcode}) without a result")
                    continue
                if kind == "step":
                    if callback is not None:
                        callback(rest[0])
                elif kind == "best":
                    self.best = rest[0]
                    self.best_step = read_metadata(self.best).get("steps")
                elif kind == "error":
                    name, text = rest
                    if name == "MetaRepError":
                        raise MetaRepError(text)
                    raise RuntimeError(f"{name}: {text}")
                else:  # the result
                    result = rest[0]
                    if result.get("checkpoint") is not None:
                        self.best, self.best_step = result["checkpoint"], result.get("best_step")
                    return result
        finally:
            self.close()
