"""Meta-training in a Ray actor, driven from the app or the CLI.

:class:`TrainingRunner` is the actor (a threaded one: ``progress``/``stop`` answer while
``run`` trains). It receives the learner as checkpoint bytes (our safetensors format:
no pickled model crosses the wire), the dataset as a :func:`dataset_payload` (a built-in
dataset by name, rebuilt on the node; anything else as a compact copy of its tensors),
and the :class:`~metarep_core.training.Trainer`'s arguments. It records the Trainer's
callback dicts (``progress`` hands out the new ones) and, at each validation that
improves, the weights as checkpoint bytes: the driver fetches them as they come, so a
worker killed mid-run still leaves the best checkpoint so far on the driver's side.

:class:`RemoteTraining` is the driver's handle: ``start()``, then ``drive(callback,
stop_event)`` replays every step's dict into ``callback`` (the same callback a local
Trainer calls: the CLI's progress bar, the app's job) until the run ends, and returns
the result dict (``checkpoint`` bytes of the best weights, ``metrics``, ``message``,
``stopped_early``, ``nan_detected``, ``steps_done``). A lost worker raises
:class:`WorkerLost` (its message readable; ``best`` still holds the best checkpoint).
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading
import time

DATASET_MAX_BYTES = 1 << 30  # a copied (uploaded/folder) dataset: 1 GiB of tensors at most
POLL_S = 0.5          # how often the driver asks for new steps
ANSWER_TIMEOUT_S = 60.0  # a progress() call unanswered this long: the worker is lost
BUILTIN = ("glyphs", "omniglot", "digits", "sinusoid")


class WorkerLost(RuntimeError):
    """The Ray worker running a job died or stopped answering; ``str()`` says why, for a page."""


# ----------------------------------------------------------------------------- the dataset
def dataset_payload(dataset) -> tuple:
    """What the actor needs to get ``dataset`` back: ``("builtin", name, seed, image_size,
    channels, input_shape)`` for a built-in one (rebuilt, and cached, on the node), else
    ``("copy", dataset)`` with each class's images in their own storage (the built-ins'
    per-class tensors are views of one big tensor: pickling the views would copy it once
    per class, 165 GB for glyphs). MetaRepError when a copy would be over 1 GiB."""
    from ..errors import MetaRepError
    params = dict(getattr(dataset, "params", None) or {})
    name = params.get("dataset")
    if name in BUILTIN and getattr(dataset, "name", None) == name:
        shape = tuple(dataset.input_shape) if hasattr(dataset, "input_shape") else None
        image_size = params.get("image_size") if name != "sinusoid" else None
        return ("builtin", name, int(params.get("seed", 0)), image_size,
                int(params.get("channels", 1)), shape)
    images = getattr(dataset, "images", None)
    if images is None or not dataclasses.is_dataclass(dataset):
        raise MetaRepError(f"dataset {getattr(dataset, 'name', dataset)!r} cannot be sent to a "
                           "Ray cluster; train on this machine")
    size = sum(x.numel() * x.element_size() for x in images)
    if size > DATASET_MAX_BYTES:
        raise MetaRepError(f"dataset {dataset.name!r} holds {size / 2**20:.0f} MB of images; at most "
                           f"{DATASET_MAX_BYTES // 2**20} MB are sent to a Ray cluster")
    return ("copy", dataclasses.replace(dataset, images=[x.contiguous().clone() for x in images]))


def dataset_from_payload(payload: tuple):
    """The dataset a :func:`dataset_payload` describes (on the worker)."""
    if payload[0] == "copy":
        return payload[1]
    from ..data import load_dataset
    from ..errors import MetaRepError
    _, name, seed, image_size, channels, shape = payload
    dataset = load_dataset(name, seed=seed, image_size=image_size, channels=channels)
    got = tuple(dataset.input_shape) if hasattr(dataset, "input_shape") else None
    if got != shape:
        raise MetaRepError(f"dataset {name!r} gives inputs of shape {got} on the Ray node but "
                           f"{shape} here; the node runs another version of metarep_core")
    return dataset


# ----------------------------------------------------------------------------- the actor
class TrainingRunner:
    """A Trainer run inside a Ray worker (see the module docstring).

    ``checkpoint``: the learner as checkpoint bytes; ``payload``: :func:`dataset_payload`;
    ``trainer_args``: the Trainer's keyword arguments (n_way, k_shot, n_query, steps,
    seed, val_every, val_episodes); ``meta``: metadata written into the checkpoints it
    makes; ``threads``: torch threads (the actor's CPU share); ``on_update``: called
    after each step with the step's dict and the new best checkpoint's bytes (None when
    this step did not improve it); a local training process streams both from it.
    """

    def __init__(self, checkpoint: bytes, payload: tuple, trainer_args: dict, *,
                 device: str = "cpu", meta: dict | None = None, threads: int = 1, on_update=None):
        import torch

        from ..checkpoints import load_checkpoint
        torch.set_num_threads(max(1, int(threads)))
        self.learner, _ = load_checkpoint(checkpoint)
        self.learner.train()
        self.dataset = dataset_from_payload(payload)
        self.trainer_args = dict(trainer_args)
        self.device = device
        self.meta = dict(meta or {})
        self._infos: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._best: bytes | None = None
        self._best_version = 0
        self._best_value: float | None = None
        self._regression = getattr(self.dataset, "task", "classification") == "regression"
        self._on_update = on_update

    def pid(self) -> int:
        """The worker's process id (the fault tests kill it)."""
        return os.getpid()

    def stop(self) -> None:
        self._stop.set()

    def progress(self, since: int = 0) -> dict:
        """The Trainer's step dicts from index ``since`` on, and the best checkpoint's
        version (it changes whenever validation improved)."""
        with self._lock:
            return {"infos": self._infos[since:], "best_version": self._best_version}

    def best(self) -> tuple[int, bytes | None]:
        """``(version, checkpoint bytes)`` of the best weights so far."""
        with self._lock:
            return self._best_version, self._best

    def _snapshot(self, step: int, info: dict) -> bytes:
        from ..checkpoints import checkpoint_to_bytes
        figures = {k: info[k] for k in ("val_accuracy", "val_mse", "val_ci95") if k in info}
        return checkpoint_to_bytes(self.learner, **{**self.meta, "steps": step,
                                                    "metrics": {**figures, "best_step": step}})

    def _on_step(self, info: dict) -> None:
        # The Trainer validates before its callback, so a validation at this step has
        # measured exactly the weights the learner holds now.
        info = {k: (float(v) if isinstance(v, float) else v) for k, v in info.items()}
        step, steps = int(info["step"]), int(info["steps"])
        every = int(self.trainer_args.get("val_every", 0) or 0)
        key = "val_mse" if self._regression else "val_accuracy"
        validated = every and key in info and (step % every == 0 or step == steps)
        data = None
        if validated and math.isfinite(info[key]) and (
                self._best_value is None or (info[key] < self._best_value if self._regression
                                             else info[key] > self._best_value)):
            self._best_value = info[key]
            data = self._snapshot(step, info)
        with self._lock:
            self._infos.append(info)
            if data is not None:
                self._best, self._best_version = data, self._best_version + 1
        if self._on_update is not None:
            self._on_update(info, data)

    def run(self) -> dict:
        """Train; the result dict (module docstring), with the best weights as checkpoint bytes."""
        from ..checkpoints import checkpoint_to_bytes
        from ..training import Trainer
        trainer = Trainer(self.learner, self.dataset, device=self.device, callback=self._on_step,
                          **self.trainer_args)
        result = trainer.run(self._stop)  # ends holding the best weights (or the last good)
        self.learner.to("cpu").eval()
        metrics = result.metrics()
        steps = result.best_step if result.best_step is not None else result.steps_done
        data = (checkpoint_to_bytes(self.learner, **{**self.meta, "steps": steps, "metrics": metrics})
                if result.steps_done else None)
        return {"checkpoint": data, "metrics": metrics, "message": result.message,
                "stopped_early": result.stopped_early, "nan_detected": result.nan_detected,
                "steps_done": result.steps_done, "best_step": result.best_step,
                "history": result.history, "val_curve": result.val_curve}


# ----------------------------------------------------------------------------- the driver
class RemoteTraining:
    """The driver's side of one run on the connected cluster (``connect()`` first).

    ``learner`` and ``dataset`` as for a Trainer; ``trainer_args`` its keyword
    arguments; ``device`` "cpu" or "cuda" (a GPU is then asked of Ray for the actor);
    ``meta`` goes into the checkpoints. ``best`` is the latest best checkpoint fetched
    (bytes or None), ``best_step`` its step.
    """

    def __init__(self, learner, dataset, trainer_args: dict, *, device: str = "cpu",
                 meta: dict | None = None, num_cpus: int = 1):
        from ..checkpoints import checkpoint_to_bytes
        self.checkpoint = checkpoint_to_bytes(learner, **dict(meta or {}))
        self.payload = dataset_payload(dataset)
        self.trainer_args = dict(trainer_args)
        self.device = str(device)
        self.meta = dict(meta or {})
        self.num_cpus = int(num_cpus)
        self.actor = None
        self.best: bytes | None = None
        self.best_step: int | None = None
        self._best_version = 0
        self._seen = 0
        self._run_ref = None
        self._ready_ref = None
        self.started = False  # the actor answered (it was placed on a node)

    def start(self) -> "RemoteTraining":
        """Create the actor and start its run (returns at once; the cluster may queue it)."""
        import ray
        cls = ray.remote(TrainingRunner)
        gpus = 1 if self.device.startswith("cuda") else 0
        if gpus and ray.cluster_resources().get("GPU", 0) < gpus:
            # Ray would queue the actor until a GPU node joins: say so now instead.
            from ..errors import MetaRepError
            from .connect import connected_address
            raise MetaRepError(f"device {self.device!r} was asked for but the Ray cluster at "
                               f"{connected_address()} has no GPU; use --device cpu, or add a "
                               "GPU node (ray start --num-gpus 1 ...)")
        # max_concurrency > 1 makes it a threaded actor: progress() and stop() are
        # answered while run() trains. max_restarts=0: a lost worker fails the job
        # (a restarted actor would start training over from the first weights).
        self.actor = cls.options(num_cpus=self.num_cpus, num_gpus=gpus, max_concurrency=4,
                                 max_restarts=0).remote(
            self.checkpoint, self.payload, self.trainer_args, device=self.device, meta=self.meta,
            threads=self.num_cpus)
        self._ready_ref = self.actor.pid.remote()
        self._run_ref = self.actor.run.remote()
        return self

    def _get(self, ref, timeout: float = ANSWER_TIMEOUT_S):
        import ray
        try:
            return ray.get(ref, timeout=timeout)
        except (ray.exceptions.RayError, ConnectionError) as exc:
            from .connect import describe_error
            from ..errors import MetaRepError
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MetaRepError):  # the Trainer's own refusal, said as locally
                raise MetaRepError(str(cause)) from None
            raise WorkerLost(describe_error(exc)) from None

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the actor has been placed and answers (False while the cluster queues it)."""
        import ray
        if not self.started:
            done, _ = ray.wait([self._ready_ref], timeout=timeout)
            if done:
                self._get(self._ready_ref)  # raises WorkerLost when it died being made
                self.started = True
        return self.started

    def pid(self) -> int:
        return self._get(self.actor.pid.remote())

    def poll(self) -> list[dict]:
        """The step dicts since the last poll; fetches a newer best checkpoint."""
        got = self._get(self.actor.progress.remote(self._seen))
        self._seen += len(got["infos"])
        if got["best_version"] != self._best_version:
            version, data = self._get(self.actor.best.remote())
            if data is not None:
                from ..checkpoints import read_metadata
                self._best_version, self.best = version, data
                self.best_step = read_metadata(data).get("steps")
        return got["infos"]

    def finished(self) -> bool:
        import ray
        done, _ = ray.wait([self._run_ref], timeout=0)
        return bool(done)

    def stop(self) -> None:
        """Ask the run to stop after its current step (it still returns a result)."""
        if self.actor is not None:
            self.actor.stop.remote()

    def close(self) -> None:
        """Release the actor (its CPU/GPU go back to the cluster)."""
        import ray
        if self.actor is not None:
            try:
                ray.kill(self.actor)
            except Exception:  # already gone with its worker
                pass

    def drive(self, callback=None, stop_event: threading.Event | None = None,
              poll_s: float = POLL_S, on_start=None) -> dict:
        """Start (when not yet), replay every step dict into ``callback`` until the run
        ends, pass a set ``stop_event`` on to the actor, and return the result dict.
        ``on_start()`` is called once the actor answers. WorkerLost when the worker dies
        (``best`` then holds the best checkpoint fetched so far). The actor is released
        at the end either way."""
        if self.actor is None:
            self.start()
        stop_sent = False
        try:
            while not self.ready(timeout=poll_s):
                if stop_event is not None and stop_event.is_set():
                    return {"checkpoint": None, "metrics": {}, "message": "", "stopped_early": True,
                            "nan_detected": False, "steps_done": 0, "best_step": None}
            if on_start is not None:
                on_start()
            while True:
                finished = self.finished()  # before the poll: no step is missed after it
                for info in self.poll():
                    if callback is not None:
                        callback(info)
                if finished:
                    break
                if stop_event is not None and stop_event.is_set() and not stop_sent:
                    self.stop()
                    stop_sent = True
                time.sleep(poll_s)
            result = self._get(self._run_ref)
            if result.get("checkpoint") is not None:
                self.best, self.best_step = result["checkpoint"], result.get("best_step")
            return result
        finally:
            self.close()


def train_result(got: dict):
    """A remote run's result dict as a :class:`~metarep_core.training.TrainResult`
    (without ``best_state``: the caller loads ``got["checkpoint"]``)."""
    from ..training import TrainResult
    metrics = dict(got.get("metrics") or {})
    metric = "val_mse" if "val_mse" in metrics else "val_accuracy"
    history = list(got.get("history") or [])
    return TrainResult(history=history, val_curve=list(got.get("val_curve") or []),
                       best_metric=metric, best_value=metrics.get(metric),
                       best_step=got.get("best_step"), steps_done=int(got.get("steps_done") or 0),
                       steps=int(history[-1]["step"]) if history else 0,
                       stopped_early=bool(got.get("stopped_early")),
                       nan_detected=bool(got.get("nan_detected")), message=got.get("message") or "",
                       elapsed_s=float(metrics.get("elapsed_s") or 0.0))
