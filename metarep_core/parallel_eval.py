"""A local Compare's learners scored in child processes, at most a few at once per
server (issue 13).

Why: scored in the page's own thread, one learner after another, a Compare of five
learners x 100 episodes took ~19 s of the server's CPU with the GIL held the whole time
(every other session's page waited on it), and used one of the two cores. Here each
learner is :func:`~metarep_core.evaluation.episode_scores` in a child forked from
:mod:`~metarep_core.process_runner`'s fork server (torch already imported: a child starts
in tens of milliseconds), one torch thread each.

At most :func:`process_limit` children (``METAREP_COMPARE_PROCESSES``, default 2) run at
once in the whole server, however many Compares are waiting: thirty users pressing
"Run" must not start 150 processes on two cores. The slots are taken in the order the
Compares asked for them (:class:`_Slots`), so a waiting Compare is not starved by one
that keeps starting its next learner. ``METAREP_COMPARE_PROCESSES=0`` turns this off (the
caller scores in its own thread).

What crosses to a child is what crosses to a Ray task
(:mod:`~metarep_core.cluster.evaluate`): the learner as checkpoint bytes (our safetensors
format, rebuilt with all its checks), the dataset as a
:func:`~metarep_core.cluster.runner.dataset_payload` pickled here with the plain pickler
(see :mod:`~metarep_core.process_runner` for why), and the episode arguments. Episode
``i`` is sampled from ``episode_seed(seed, i)`` in the child as it is here, so the scores
equal the in-thread ones (tests/test_parallel_eval.py).
"""
from __future__ import annotations

import collections
import os
import pickle
import queue as queue_module
import threading
import time
from collections.abc import Callable

import numpy as np

from .errors import MetaRepError

ENV = "METAREP_COMPARE_PROCESSES"
DEFAULT_PROCESSES = 2
POLL_S = 0.2  # how often the driver looks at its children when none sends anything
NICE = 5  # below the page runs (which wait on nothing here), above training (+10)


# CPU milliseconds per Omniglot 5-way 1-shot episode of each learner (shipped models, one
# thread; episode_scores on 10 episodes each, measured at load ~7). Only the order counts:
# the costliest learners start first, so that with two slots the last one to finish is
# not Reptile started late, and Reptile's 100 episodes are split between the two.
EPISODE_CPU_MS = {"imaml": 152, "reptile": 146, "maml": 64, "anil": 62, "matching": 54, "siamese": 50,
                  "dnc": 43, "protonet": 40, "mann": 37, "abml": 23, "versa": 21, "metanet": 19}


MIN_PIECE_MS = 1500  # a child's own start costs ~0.25 s of CPU (checkpoint, dataset): pieces no smaller
# A Compare whose estimated CPU (EPISODE_CPU_MS x episodes, summed) is under this is scored
# in the page's thread: its children's start would cost as much as they save. Measured on
# 2 cores under AppTest, the fork server ready (two runs each): ProtoNet and ANIL x 10
# Omniglot episodes (1020 ms estimated) 0.39-0.42 s in the thread, 0.38-0.42 s in children;
# x 20 (2040 ms) 0.70-0.73 s against 0.51-0.57 s.
IN_THREAD_BELOW_MS = 1500


def estimated_cpu_ms(names, episodes: int) -> float:
    """The CPU a Compare of ``names`` (algorithm names) x ``episodes`` should take in one
    thread, from :data:`EPISODE_CPU_MS` (an unknown name counts as a middling one)."""
    middle = sorted(EPISODE_CPU_MS.values())[len(EPISODE_CPU_MS) // 2]
    return float(sum(EPISODE_CPU_MS.get(n, middle) for n in names) * episodes)


def worth_children(names, episodes: int) -> bool:
    """True when a Compare is big enough to pay for child processes (:data:`IN_THREAD_BELOW_MS`)."""
    return estimated_cpu_ms(names, episodes) >= IN_THREAD_BELOW_MS


def plan(names, episodes: int, slots: int) -> list[tuple[str, int, int]]:
    """The children a Compare of ``names`` (algorithm names) x ``episodes`` starts, as
    ``(name, first episode, episodes)``, in the order they start: a learner whose work
    (:data:`EPISODE_CPU_MS`; an unknown name counts as a middling one) is over a third of
    a slot's fair share is split into consecutive pieces of episodes (so that one slow
    learner does not run alone on one core while the other idles), each piece at least
    :data:`MIN_PIECE_MS`; then the costliest pieces first (with ``slots`` slots the last
    to finish is not a long one started late). Ties keep the order of ``names``."""
    cost = {n: estimated_cpu_ms([n], episodes) for n in names}
    share = sum(cost.values()) / (3 * max(1, slots))
    pieces = []
    for n in names:
        k = max(1, min(episodes, round(cost[n] / share), int(cost[n] // MIN_PIECE_MS)))
        sizes = [episodes // k + (1 if j < episodes % k else 0) for j in range(k)]
        first = 0
        for size in sizes:
            pieces.append((n, first, size))
            first += size
    return sorted(pieces, key=lambda p: -cost[p[0]] * p[2] / episodes)


def process_limit() -> int:
    """How many evaluation children the server runs at once (``METAREP_COMPARE_PROCESSES``;
    0: none, score in the caller's thread)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_PROCESSES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise MetaRepError(f"{ENV} must be a whole number >= 0 (0: score in the server's thread), got {raw!r}")
    return value


class _Slots:
    """A counting semaphore whose waiters are served first come, first served (Python's
    Semaphore lets a thread that releases and re-acquires at once jump the queue)."""

    def __init__(self, n: int):
        self.n, self.used = int(n), 0
        self._waiting: collections.deque = collections.deque()
        self._cond = threading.Condition()

    def acquire(self, timeout: float) -> bool:
        """Take a slot within ``timeout`` seconds (0: only if free and nobody waits before)."""
        me = object()
        with self._cond:
            self._waiting.append(me)
            try:
                got = self._cond.wait_for(lambda: self._waiting[0] is me and self.used < self.n, timeout)
                if got:
                    self.used += 1
                return got
            finally:
                self._waiting.remove(me)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self.used -= 1
            self._cond.notify_all()


_slots: _Slots | None = None
_slots_lock = threading.Lock()


def _server_slots() -> _Slots:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = _Slots(max(1, process_limit()))
        return _slots


def _child(name: str, first: int, checkpoint: bytes, payload: bytes, episode_args: dict, nice: int,
           out) -> None:
    """Episodes ``first`` ... ``first + episode_args["episodes"] - 1`` of one learner, in a
    child: ``("tick", (name, first), done)`` after each episode, then ``("result", (name,
    first), {"scores", "seconds", "cpu_seconds", "pid", "started", "ended"})`` (``started``
    and ``ended``: ``time.monotonic()``, one clock for all processes of the machine), or
    ``("error", (name, first), exception type, text)``."""
    started = time.monotonic()
    key = (name, first)
    try:  # an absolute niceness: the fork server may itself run niced
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    try:
        import torch
        torch.set_num_threads(1)  # two children share two cores
        from .checkpoints import load_checkpoint
        from .cluster.runner import dataset_from_payload
        from .evaluation import episode_scores
        learner, _ = load_checkpoint(checkpoint)
        dataset = dataset_from_payload(pickle.loads(payload))
        begun, cpu = time.perf_counter(), time.process_time()
        scores = episode_scores(learner.eval(), dataset, **episode_args, first=first,
                                callback=lambda done, total: out.put(("tick", key, done)))
        seconds, cpu = time.perf_counter() - begun, time.process_time() - cpu
    except Exception as exc:
        out.put(("error", key, "MetaRepError" if isinstance(exc, MetaRepError) else type(exc).__name__, str(exc)))
        return
    out.put(("result", key, {"scores": np.asarray(scores, dtype=np.float64), "seconds": seconds,
                             "cpu_seconds": cpu, "pid": os.getpid(), "started": started, "ended": time.monotonic()}))


def parallel_episode_scores(checkpoints: dict[str, bytes], dataset, *, split: str, n_way: int, k_shot: int,
                            n_query: int, episodes: int, seed: int,
                            on_progress: Callable[[str, int, int], object] | None = None,
                            on_wait: Callable[[bool], object] | None = None,
                            nice: int = NICE) -> dict[str, dict]:
    """Each learner of ``checkpoints`` (``{name: checkpoint bytes}``) scored on the same
    episodes of ``dataset`` in child processes (a slow learner's episodes split between
    several: :func:`plan`), at most :func:`process_limit` children at once in this server:
    ``{name: {"scores": (episodes,) float64 (the pieces put back in order), "seconds": the
    pieces' time in their episodes, "cpu_seconds": their CPU time, "pieces": [{"first",
    "episodes", "pid", "started", "ended", "seconds", "cpu_seconds"}]}}`` in the order
    of ``checkpoints``.

    ``on_progress(name, done, total)`` after each episode of each learner (in this
    thread; ``done`` counts all of that learner's pieces); ``on_wait(True)`` when no slot
    is free and none of this Compare's children runs (other Compares hold them all),
    ``on_wait(False)`` when it starts again. Any exception here (a stopped page) ends
    this Compare's children and frees their slots. MetaRepError when a child refuses
    (its own message) or dies."""
    from .cluster.runner import dataset_payload
    from .process_runner import mp_context

    limit = process_limit()
    if limit == 0:
        raise MetaRepError(f"{ENV}=0: evaluation children are turned off")
    args = {"split": split, "n_way": int(n_way), "k_shot": int(k_shot), "n_query": int(n_query),
            "seed": int(seed)}
    # The plain pickler: multiprocessing's would send each class tensor of an upload as
    # a file descriptor (see process_runner). Our own object, made in this process.
    payload = pickle.dumps(dataset_payload(dataset), protocol=pickle.HIGHEST_PROTOCOL)
    nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + int(nice))
    ctx = mp_context()
    out = ctx.Queue()
    slots = _server_slots()
    pending = plan(list(checkpoints), int(episodes), limit)
    running: dict[tuple[str, int], object] = {}
    pieces: dict[tuple[str, int], dict] = {}
    done: dict[tuple[str, int], int] = {}
    waiting = False
    try:
        while pending or running:
            # Start what the free slots allow; with nothing running, wait in the queue.
            while pending and slots.acquire(0 if running else POLL_S):
                name, first, count = pending.pop(0)
                try:
                    proc = ctx.Process(target=_child, name="metarep-eval", daemon=True,
                                       args=(name, first, checkpoints[name], payload,
                                             {**args, "episodes": count}, nice, out))
                    proc.start()
                except BaseException:
                    slots.release()
                    raise
                running[(name, first)] = proc
            if pending and not running:
                if not waiting and on_wait is not None:
                    on_wait(True)
                waiting = True
                continue
            if waiting and on_wait is not None:
                on_wait(False)
            waiting = False
            try:
                kind, key, *rest = out.get(timeout=POLL_S)
            except queue_module.Empty:
                for (name, _), proc in list(running.items()):
                    if not proc.is_alive() and out.empty():
                        proc.join(1)
                        raise MetaRepError(f"the evaluation process of {name} ended (exit code "
                                           f"{proc.exitcode}) without a result")
                continue
            key = tuple(key)
            if kind == "tick":
                done[key] = rest[0]
                if on_progress is not None:
                    on_progress(key[0], sum(d for k, d in done.items() if k[0] == key[0]), int(episodes))
                continue
            proc = running.pop(key)
            proc.join(5)
            slots.release()
            if kind == "error":
                kind_name, text = rest
                if kind_name == "MetaRepError":
                    raise MetaRepError(text)
                raise MetaRepError(f"evaluating {key[0]} failed: {kind_name}: {text.splitlines()[0][:300] if text else ''}")
            pieces[key] = dict(rest[0], first=key[1], episodes=len(rest[0]["scores"]))
    finally:
        for proc in running.values():  # a stopped page, an error: end the rest and free their slots
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            slots.release()
        out.close()
    results = {}
    for name in checkpoints:
        mine = sorted((p for k, p in pieces.items() if k[0] == name), key=lambda p: p["first"])
        results[name] = {"scores": np.concatenate([p.pop("scores") for p in mine]),
                         "seconds": sum(p["seconds"] for p in mine),
                         "cpu_seconds": sum(p["cpu_seconds"] for p in mine), "pieces": mine}
    return results
