"""Evaluation episodes on a Ray cluster: one Ray task per learner (issue 14).

A Compare of five learners, or a full 600-episode evaluation from the CLI, runs as
Ray tasks instead of in the app server's process: each task gets

- the learner as checkpoint bytes (our safetensors format, rebuilt on the node by
  :func:`~metarep_core.checkpoints.load_checkpoint` with all its checks: no pickled
  model crosses the wire);
- the dataset as :func:`~metarep_core.cluster.runner.dataset_payload` (a built-in
  dataset by name, rebuilt on the node; an upload as a compact copy of its tensors),
  put in Ray's object store once and shared by all the tasks;
- :func:`~metarep_core.evaluation.episode_scores`'s episode arguments (split, n_way,
  k_shot, n_query, episodes, seed),

and returns the per-episode scores, shape (episodes,), with the seconds the node spent
on them. Episode ``i`` is sampled from :func:`~metarep_core.evaluation.episode_seed`
``(seed, i)`` on the node exactly as it is here, so the scores are the ones a local run
gives (the tests check it with a real Ray head).

The tasks run in parallel as far as the cluster's CPUs (or GPUs, ``device="cuda"``)
allow; ``on_done(name, done, total)`` is called as each learner's task finishes, in the
order they finish. Failures: an unreachable head is :class:`ClusterUnavailable` (the
caller may fall back to the local pool); a task's own refusal (a
:class:`~metarep_core.errors.MetaRepError` on the node) comes back as one; a lost worker
or connection is a MetaRepError whose message says what happened
(:func:`~metarep_core.cluster.connect.describe_error`), and the other tasks are cancelled.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import MetaRepError, check_positive_int
from .connect import ClusterUnavailable, connect, describe_error

WAIT_S = 1.0  # how often the driver looks at the tasks (and at stop_event)
EPISODE_ARGS = ("split", "n_way", "k_shot", "n_query", "episodes", "seed")

_task_lock = threading.Lock()
_task = None


def scores_on_node(checkpoint: bytes, payload: tuple, episode_args: dict, device: str = "cpu") -> dict:
    """The body of one Ray task (runs on a worker; callable here too): ``{"scores":
    (episodes,) float64, "seconds": time spent in the episodes, "pid": the worker's
    process}`` of the learner in ``checkpoint`` on the dataset of ``payload``."""
    from ..checkpoints import load_checkpoint
    from ..evaluation import episode_scores
    from .runner import dataset_from_payload

    learner, _ = load_checkpoint(checkpoint, map_location=device)
    dataset = dataset_from_payload(payload)
    started = time.perf_counter()
    # eval() as the local callers do; no torch.no_grad(): the optimization-based learners
    # need gradients in their inner loop (evaluate_episode manages autograd itself).
    scores = episode_scores(learner.eval(), dataset, **episode_args)
    return {"scores": np.asarray(scores, dtype=np.float64), "seconds": time.perf_counter() - started,
            "pid": os.getpid()}


def _remote(ray):
    """``scores_on_node`` as a Ray remote function (made once per process: Ray ships a
    remote function's definition to the cluster once)."""
    global _task
    with _task_lock:
        if _task is None:
            # max_retries=0: a worker that died once on a learner (out of memory) would die again.
            _task = ray.remote(max_retries=0)(scores_on_node)
        return _task


def check_episode_args(episode_args: dict) -> dict:
    """The episode arguments :func:`remote_episode_scores` sends, checked here (a typo is
    refused before anything is sent to the cluster)."""
    missing = [k for k in EPISODE_ARGS if k not in episode_args]
    extra = [k for k in episode_args if k not in EPISODE_ARGS]
    if missing or extra:
        raise MetaRepError(f"the episode arguments must be {', '.join(EPISODE_ARGS)}"
                           + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
    from ..evaluation import MAX_EPISODES
    for name in ("n_way", "k_shot", "n_query"):
        check_positive_int(name, episode_args[name])
    check_positive_int("episodes", episode_args["episodes"], high=MAX_EPISODES)
    check_positive_int("seed", episode_args["seed"], low=0)
    return dict(episode_args)


def remote_episode_scores(checkpoints: dict[str, bytes], dataset, *, address: str | None = None,
                          device: str = "cpu", on_done: Callable[[str, int, int], object] | None = None,
                          stop_event=None, **episode_args) -> dict[str, dict]:
    """Each learner of ``checkpoints`` (``{name: checkpoint bytes}``) scored on the same
    episodes of ``dataset`` by its own Ray task on the cluster at ``address`` (default
    ``METAREP_RAY_ADDRESS``): ``{name: {"scores": (episodes,), "seconds", "pid"}}`` in the
    order of ``checkpoints``. ``episode_args``: split, n_way, k_shot, n_query, episodes,
    seed (as :func:`~metarep_core.evaluation.episode_scores` takes them); ``"pid"``: the
    worker process that ran them. ``device``
    "cuda" asks the cluster for one GPU per task. ``stop_event`` set: the tasks are
    cancelled and a MetaRepError says so. Raises :class:`ClusterUnavailable` when the
    cluster cannot be used (before anything ran)."""
    from .runner import dataset_payload

    if not checkpoints:
        raise MetaRepError("no learner to evaluate on the Ray cluster")
    args = check_episode_args(episode_args)
    payload = dataset_payload(dataset)  # refuses a dataset too large to send, before connecting
    connected = connect(address)
    import ray
    gpus = 1 if str(device).startswith("cuda") else 0
    if gpus and ray.cluster_resources().get("GPU", 0) < gpus:
        # Ray would queue the tasks until a GPU node joins: say so now instead.
        raise MetaRepError(f"device {device!r} was asked for but the Ray cluster at {connected} has no GPU; "
                           "use --device cpu, or add a GPU node (ray start --num-gpus 1 ...)")
    task = _remote(ray).options(num_cpus=1, num_gpus=gpus)
    try:
        shared = ray.put(payload)
        names = {task.remote(data, shared, args, device): name for name, data in checkpoints.items()}
    except Exception as exc:  # the connection went between connect() and here
        raise ClusterUnavailable(f"the Ray cluster did not take the evaluation ({describe_error(exc)})") from None
    out: dict[str, dict] = {}
    pending = list(names)
    try:
        while pending:
            if stop_event is not None and stop_event.is_set():
                raise MetaRepError("the evaluation on the Ray cluster was stopped")
            try:
                ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_S)
            except Exception as exc:  # the head or the connection went mid-run
                raise MetaRepError(f"the Ray cluster stopped answering during the evaluation "
                                   f"({describe_error(exc)})") from None
            for ref in ready:
                out[names[ref]] = _result(ray, ref, names[ref])
                if on_done is not None:
                    on_done(names[ref], len(out), len(names))
    except BaseException:
        for ref in pending:  # nobody will read them: free the cluster's CPUs
            try:
                ray.cancel(ref, force=True)
            except Exception:  # the connection itself may be what failed
                pass
        raise
    return {name: out[name] for name in checkpoints}


def _result(ray, ref, name: str) -> dict:
    """One finished task's result, or a MetaRepError saying why there is none."""
    try:
        got = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MetaRepError):  # the node refused, as a local run would have
            raise MetaRepError(str(cause)) from None
        raise MetaRepError(f"evaluating {name} on the Ray cluster failed: "
                           f"{type(cause).__name__ if cause else 'error'}: {str(cause or exc).splitlines()[0][:300]}") from None
    except Exception as exc:  # a lost worker, node or connection
        raise MetaRepError(f"evaluating {name} on the Ray cluster failed: {describe_error(exc)}") from None
    return {"scores": np.asarray(got["scores"], dtype=np.float64), "seconds": float(got["seconds"]),
            "pid": int(got["pid"])}


def evaluate_on_cluster(learner, dataset, split: str = "test", n_way: int | None = None, k_shot: int = 1,
                        n_query: int = 15, episodes: int = 600, seed: int = 0, *, address: str | None = None,
                        device: str = "cpu") -> dict:
    """:func:`~metarep_core.evaluation.evaluate` with the episodes run by one Ray task on
    the cluster at ``address``: the same checks here first (the arguments, the data's
    own message, an ``n_way`` the learner cannot answer), then the same result dict."""
    from ..checkpoints import checkpoint_to_bytes
    from ..evaluation import checked_request, report

    regression, n_way, requested = checked_request(learner, dataset, split, n_way, k_shot, n_query,
                                                   episodes, seed)
    got = remote_episode_scores({learner.name: checkpoint_to_bytes(learner)}, dataset, address=address,
                                device=device, split=split, n_way=n_way, k_shot=k_shot, n_query=n_query,
                                episodes=requested, seed=seed)
    return report(got[learner.name]["scores"], regression=regression, requested=requested, n_way=n_way,
                  k_shot=k_shot, n_query=n_query, split=split, seed=seed)
