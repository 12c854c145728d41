"""Meta-training: the loop the CLI and the app's Train page share.

:class:`Trainer` samples ``meta_batch`` training episodes per meta-step, calls
``learner.meta_step``, validates every ``val_every`` steps on fixed validation
episodes, keeps the best-on-validation weights (in memory, and on disk when a
checkpoint path is given), reports progress through a callback, stops when asked,
and stops by itself when the loss or the weights become NaN/inf, restoring the
last good weights.

It holds no global state, so several trainers may run in background threads (the
app runs one per user session). ``torch.set_num_threads`` and the torch seed used
to initialise the learner are the caller's business.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .episodes import EpisodeSampler
from .errors import MetaRepError, check_positive_int
from .evaluation import episode_scores, summarize

# Validation episodes use their own seed stream, the same whatever the training
# seed, so runs with different seeds are validated on identical episodes.
VAL_SEED = 7_777


@dataclass
class TrainResult:
    """What a training run did.

    ``history``: one dict per step (``step``, ``loss``, ``accuracy`` (percent, on the
    step's query sets before the update) or ``mse``);
    ``val_curve``: one dict per validation (``step``, ``val_loss`` (= val MSE for
    regression), ``val_accuracy`` (percent) or ``val_mse``, ``val_ci95``).
    ``best_metric`` is ``"val_accuracy"`` (higher is better) or ``"val_mse"`` (lower).
    """

    history: list[dict] = field(default_factory=list)
    val_curve: list[dict] = field(default_factory=list)
    best_metric: str = "val_accuracy"
    best_value: float | None = None
    best_step: int | None = None
    steps_done: int = 0
    steps: int = 0
    stopped_early: bool = False
    nan_detected: bool = False
    nan_step: int | None = None
    message: str = ""
    elapsed_s: float = 0.0
    checkpoint_path: str | None = None
    best_state: dict | None = field(default=None, repr=False)

    def metrics(self) -> dict:
        """The figures worth saving with a checkpoint."""
        out = {"steps_done": self.steps_done, "elapsed_s": round(self.elapsed_s, 2)}
        if self.best_value is not None:
            out[self.best_metric] = self.best_value
            out["best_step"] = self.best_step
        if self.history:
            last = self.history[-1]
            out["train_loss"] = last["loss"]
            if "accuracy" in last:
                out["train_accuracy"] = last["accuracy"]
        return out


def check_device(device) -> torch.device:
    """``device`` as a torch.device, refusing what this machine cannot run."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise MetaRepError(f"device must be cpu or cuda, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise MetaRepError(f"device must be cpu or cuda, got {str(device)!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MetaRepError(f"device {str(device)!r} was asked for but CUDA is not available "
                           "here; use --device cpu")
    return dev


def _finite_state(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in module.parameters())


class Trainer:
    """Meta-train ``learner`` on ``dataset``'s train split.

    ``steps`` meta-steps, each on ``learner.hp["meta_batch"]`` episodes
    (``n_way``-way ``k_shot``-shot, ``n_query`` queries per class). Every
    ``val_every`` steps (and after the last) the learner is evaluated on
    ``val_episodes`` fixed episodes of the val split; ``val_every=0`` disables
    validation (then the last weights are the "best").

    ``callback(info)`` is called after every step with a dict: ``step``, ``steps``,
    ``loss``, ``accuracy`` (or ``mse``), ``val_loss``/``val_accuracy``/``val_mse``
    (the latest validation, when any), ``elapsed_s``, ``eta_s``, ``steps_per_s``;
    returning ``False`` stops training. With ``checkpoint_path`` the best weights
    are saved there (with ``checkpoint_meta`` and the run's figures) whenever
    validation improves, and once at the end.
    """

    def __init__(self, learner, dataset, *, n_way: int, k_shot: int, n_query: int, steps: int,
                 seed: int = 0, val_every: int = 100, val_episodes: int = 100, device="cpu",
                 callback: Callable[[dict], object] | None = None, checkpoint_path=None,
                 checkpoint_meta: dict | None = None, restore_best: bool = True):
        self.learner = learner
        self.dataset = dataset
        self.regression = getattr(dataset, "task", "classification") == "regression"
        self.steps = check_positive_int("steps", steps, high=10_000_000)
        self.val_every = check_positive_int("val_every", val_every, low=0)
        self.val_episodes = check_positive_int("val_episodes", val_episodes)
        self.seed = int(seed)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.device = check_device(device)
        self.callback = callback
        self.checkpoint_path = checkpoint_path
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.restore_best = restore_best
        if getattr(learner, "task", "classification") != getattr(dataset, "task", "classification"):
            raise MetaRepError(f"the learner was built for {learner.task} but dataset "
                               f"{dataset.name!r} is a {dataset.task} dataset")
        if not self.regression and int(n_way) != learner.n_way:
            raise MetaRepError(f"the learner was built for {learner.n_way}-way episodes, got "
                               f"n_way = {n_way}; build it with n_way = {n_way}")
        # Validates n_way/k_shot/n_query against the split, with the data's own message.
        self.train_sampler = EpisodeSampler(dataset, "train", n_way, k_shot, n_query, seed)
        self.val_note = ""
        if self.val_every:
            try:
                EpisodeSampler(dataset, "val", n_way, k_shot, n_query, VAL_SEED)
            except MetaRepError as err:
                # A small folder may have no usable val split; train anyway, say so.
                self.val_every = 0
                self.val_note = f"validation skipped: {err}"
        self.meta_batch = int(learner.hp.get("meta_batch", 1))

    # ------------------------------------------------------------------ pieces
    def _train_seed(self, step: int, j: int) -> int:
        # Distinct episode streams per training seed (as evaluation.episode_seed).
        return self.seed * 1_000_003 + step * self.meta_batch + j

    def validate(self) -> dict:
        """Evaluate the current weights on the fixed validation episodes."""
        was_training = self.learner.training
        self.learner.eval()
        try:
            scores = episode_scores(self.learner, self.dataset, "val", n_way=self.n_way,
                                    k_shot=self.k_shot, n_query=self.n_query,
                                    episodes=self.val_episodes, seed=VAL_SEED)
        finally:
            self.learner.train(was_training)
        s = summarize(scores, regression=self.regression)
        if self.regression:
            return {"val_mse": s["mse"], "val_loss": s["mse"], "val_ci95": s["ci95"]}
        return {"val_accuracy": s["accuracy"], "val_ci95": s["ci95"]}

    def _is_better(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        return best is None or (value < best if self.regression else value > best)

    def _snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.learner.state_dict().items()}

    def _save(self, result: TrainResult) -> None:
        if self.checkpoint_path is None or result.best_state is None:
            return
        from .checkpoints import save_checkpoint
        current = self._snapshot()
        self.learner.load_state_dict(result.best_state)
        try:
            meta = dict(self.checkpoint_meta)
            meta.setdefault("n_way", self.n_way)
            meta.setdefault("k_shot", self.k_shot)
            meta.setdefault("n_query", self.n_query)
            meta.setdefault("seed", self.seed)
            meta["steps"] = result.best_step if result.best_step is not None else result.steps_done
            meta["metrics"] = {**result.metrics(), **meta.get("metrics", {})}
            save_checkpoint(self.learner, self.checkpoint_path, **meta)
        finally:
            self.learner.load_state_dict(current)
        result.checkpoint_path = str(self.checkpoint_path)

    # ------------------------------------------------------------------ the loop
    def run(self, stop_event: threading.Event | None = None) -> TrainResult:
        learner = self.learner.to(self.device)
        learner.train()
        metric = "val_mse" if self.regression else "val_accuracy"
        result = TrainResult(best_metric=metric, steps=self.steps, message=self.val_note)
        last_good = self._snapshot()
        latest_val: dict = {}
        start = time.perf_counter()
        for step in range(1, self.steps + 1):
            if stop_event is not None and stop_event.is_set():
                result.stopped_early = True
                break
            episodes = [self.train_sampler.sample(self._train_seed(step - 1, j)).to(self.device)
                        for j in range(self.meta_batch)]
            learner.set_progress(step - 1, self.steps)  # schedules over the run (Reptile's eps)
            out = learner.meta_step(episodes)
            loss = float(out["loss"])
            if not math.isfinite(loss) or not _finite_state(learner):
                # The update that made things blow up has been applied: go back to the
                # weights before it and drop the optimizer's (now poisoned) moments.
                learner.load_state_dict(last_good)
                learner.reset_optimizer()
                result.nan_detected, result.nan_step = True, step
                result.message = (f"training stopped at step {step}: the loss became {loss} "
                                  f"(or the weights non-finite); the last good weights (before step "
                                  f"{step}) were kept. Try a smaller meta_lr.")
                break
            last_good = self._snapshot()
            record = {"step": step, "loss": loss}
            # Percent, like every accuracy the trainer reports (learners give [0, 1]).
            if "accuracy" in out:
                record["accuracy"] = 100.0 * float(out["accuracy"])
            if "mse" in out:
                record["mse"] = float(out["mse"])
            result.history.append(record)
            result.steps_done = step

            if self.val_every and (step % self.val_every == 0 or step == self.steps):
                latest_val = self.validate()
                result.val_curve.append({"step": step, **latest_val})
                value = latest_val[metric]
                if self._is_better(value, result.best_value):
                    result.best_value, result.best_step = value, step
                    result.best_state = self._snapshot()
                    result.elapsed_s = time.perf_counter() - start
                    self._save(result)

            elapsed = time.perf_counter() - start
            rate = step / elapsed if elapsed > 0 else 0.0
            if self.callback is not None:
                info = {**record, "steps": self.steps, **latest_val, "elapsed_s": elapsed,
                        "eta_s": (self.steps - step) / rate if rate > 0 else None,
                        "steps_per_s": rate}
                if self.callback(info) is False:
                    result.stopped_early = step < self.steps
                    break
        result.elapsed_s = time.perf_counter() - start
        if result.stopped_early and not result.message:
            result.message = f"training stopped on request after {result.steps_done} steps"

        if result.best_state is None and result.steps_done > 0:
            # No validation ran (disabled, or stopped first): the last good weights stand in.
            result.best_state = self._snapshot()
            result.best_step = result.steps_done
        if result.best_state is not None:
            self._save(result)
            if self.restore_best and not result.nan_detected:
                learner.load_state_dict(result.best_state)
        return result
