"""The one contract every meta-learner fills: :class:`MetaLearner`.

The trainer, the CLI and every page of the app use only what is here: they read a
learner's declared metadata (name, family, paper, hyper-parameters, capabilities)
and call ``meta_step``, ``adapt`` (optionally recording a trace), ``predict`` on the
adapted result and ``embed``. Nothing outside ``learners/`` names an algorithm.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ..episodes import Episode
from ..errors import MetaRepError

FAMILIES = ("optimization", "metric", "memory", "generation")

# Capabilities a learner may declare. They are metadata (``algorithms --json``, the
# CLI listing) and a promise about the trace that tests/test_learner_contract.py
# checks for every registered learner; the app itself draws whatever the trace
# carries (TraceStep fields and ``extras`` keys), not these names.
CAPABILITIES = {
    "prototypes",     # trace steps carry class prototypes in embedding space
    "inner_loop",     # adaptation is gradient steps; trace = one entry per step
    "shots_trace",    # trace = one entry per shot added to the support set
    "attention",      # trace extras["attention"]: (n_query, n_support) weights
    "pairwise",       # trace extras["similarity"]: (n_query, n_support) scores
    "memory",         # trace extras carry memory read/write weightings, usage
    "fast_weights",   # generates task-specific weights from the support set
    "probabilistic",  # predictions carry uncertainty (extras["uncertainty"])
    "regression",     # supports regression task families (the sinusoid)
}


TASKS = ("classification", "regression")

# Hyper-parameters renamed since checkpoints were first shipped: old name -> new name.
# Checkpoint metadata (and scripts) written with an old name keep loading; the learner
# then reports the new name. MAML called its test-time step count ``test_inner_steps``
# while Reptile, iMAML and ANIL call it ``eval_steps``.
RENAMED_HYPERPARAMS = {"test_inner_steps": "eval_steps"}


@dataclass(frozen=True)
class HyperParam:
    """A declared hyper-parameter: the app builds its control, the CLI its flag.

    ``per_task`` overrides ``default`` for some task families, e.g.
    ``per_task={"regression": 0.01}`` for an inner learning rate that suits images
    but diverges on the sinusoid's MSE; :meth:`default_for` resolves it.
    """

    name: str
    default: Any
    kind: str = "float"          # "int" | "float" | "bool" | "choice"
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    log: bool = False            # a log-scale slider suits learning rates
    help: str = ""
    per_task: dict = field(default_factory=dict, hash=False)

    def default_for(self, task: str) -> Any:
        """The default value for a learner built for ``task``."""
        return self.per_task.get(task, self.default)

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise MetaRepError."""
        name = self.name
        if self.kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise MetaRepError(f"{name} must be true or false, got {value!r}")
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise MetaRepError(f"{name} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
            return value
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise MetaRepError(f"{name} must be a number, got {value!r}") from None
        if math.isnan(num) or math.isinf(num):
            raise MetaRepError(f"{name} must be a finite number, got {value!r}")
        if self.kind == "int":
            if num != int(num):
                raise MetaRepError(f"{name} must be an integer, got {value!r}")
            num = int(num)
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if not lo <= num <= hi:
            raise MetaRepError(f"{name} must be between {self.low} and {self.high}, got {value!r}")
        return num

    def to_json(self) -> dict:
        d = asdict(self)
        d["choices"] = list(self.choices)
        d["per_task"] = dict(self.per_task)
        return d


# Every learner has these; its own list is appended.
COMMON_HYPERPARAMS = (
    HyperParam("meta_lr", 1e-3, "float", 1e-5, 1.0, log=True, help="outer-loop (Adam) learning rate"),
    HyperParam("meta_batch", 1, "int", 1, 32, help="episodes per meta-update"),
)


@dataclass
class TraceStep:
    """One step of an adaptation: an inner gradient step, a shot added, a memory write...

    Arrays are numpy, detached, on the CPU, ready to draw. Shapes for an episode with
    ``n_s`` support and ``n_q`` query examples, embedding size ``d``:
    ``query_probs`` (n_q, n_way) — for regression, the query predictions (n_q,);
    ``support_emb`` (n_s, d); ``query_emb`` (n_q, d); ``prototypes`` (n_way, d).
    ``extras`` holds family-specific arrays named in the learner's capabilities
    (``attention`` (n_q, n_s), ``similarity`` (n_q, n_s), ``read_weights``
    (steps, slots), ``uncertainty`` (n_q,), ``curve_x``/``curve_y`` for regression ...).
    """

    step: int
    label: str
    support_loss: float | None = None
    support_accuracy: float | None = None
    query_loss: float | None = None
    query_accuracy: float | None = None
    query_probs: np.ndarray | None = None
    support_emb: np.ndarray | None = None
    query_emb: np.ndarray | None = None
    prototypes: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def trace_step(step: int, label: str, episode: Episode, query_probs: torch.Tensor | None,
               support_probs: torch.Tensor | None = None, *, support_y: torch.Tensor | None = None,
               support_emb: torch.Tensor | None = None, query_emb: torch.Tensor | None = None,
               prototypes: torch.Tensor | None = None, extras: dict[str, Any] | None = None,
               **figures: float | None) -> TraceStep:
    """The one way to build a :class:`TraceStep`: scores become numpy arrays and figures.

    ``query_probs``: (n_q, n_way) class probabilities, or regression predictions
    (n_q,) / (n_q, 1); query loss and accuracy (MSE) are taken against
    ``episode.query_y``. ``support_probs`` (n_s', n_way) likewise against
    ``support_y`` (default ``episode.support_y``; pass the labels of the shots used
    when only some are). ``support_emb`` (n_s, d), ``query_emb`` (n_q, d),
    ``prototypes`` (n_way, d) and ``extras`` values may be tensors or arrays.
    ``figures`` (``support_loss=``, ``support_accuracy=``, ...) set or override a
    figure directly, for learners whose figures are not those of a probability table.
    """
    out = TraceStep(step=step, label=label)
    regression = episode.is_regression
    if query_probs is not None:
        q = _metrics(query_probs, episode.query_y, regression)
        out.query_loss, out.query_accuracy = q["loss"], q.get("accuracy")
        out.query_probs = to_numpy(query_probs.reshape(-1) if regression else query_probs)
    if support_probs is not None:
        s = _metrics(support_probs, episode.support_y if support_y is None else support_y, regression)
        out.support_loss, out.support_accuracy = s["loss"], s.get("accuracy")
    out.support_emb, out.query_emb = _as_numpy(support_emb), _as_numpy(query_emb)
    out.prototypes = _as_numpy(prototypes)
    out.extras = {k: _as_numpy(v) for k, v in (extras or {}).items()}
    for name, value in figures.items():
        if not hasattr(out, name):
            raise TypeError(f"TraceStep has no field {name!r}")
        setattr(out, name, value)
    return out


def shots_label(k: int) -> str:
    """The label of a trace step that uses ``k`` shots of each class."""
    return f"{k} shot" + ("" if k == 1 else "s")


class Adapted:
    """A learner adapted to one support set.

    ``predict(x)`` gives class probabilities (n, n_way) — or predictions (n, 1) for
    regression; ``embed(x)`` gives embeddings (n, d) in the adapted representation.
    ``trace`` is the list of :class:`TraceStep` when ``adapt(record=True)``.
    """

    def __init__(self, predict: Callable[[torch.Tensor], torch.Tensor],
                 embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 trace: list[TraceStep] | None = None,
                 prototypes: torch.Tensor | None = None):
        self._predict = predict
        self._embed = embed
        self.trace = trace
        self.prototypes = prototypes

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._predict(x)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self._embed is None:
            raise NotImplementedError("this learner has no embedding")
        return self._embed(x)


def to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().float().cpu().numpy()


def _as_numpy(v):
    return to_numpy(v) if isinstance(v, torch.Tensor) else v


def _metrics(probs_or_pred: torch.Tensor, y: torch.Tensor, regression: bool) -> dict:
    if regression:
        mse = torch.mean((probs_or_pred.reshape(-1) - y.reshape(-1).to(probs_or_pred)) ** 2).item()
        return {"loss": mse, "mse": mse}
    y = y.to(probs_or_pred.device)
    nll = -torch.log(probs_or_pred.clamp_min(1e-12)).gather(1, y.view(-1, 1)).mean().item()
    acc = (probs_or_pred.argmax(1) == y).float().mean().item()
    return {"loss": nll, "accuracy": acc}


def episode_metrics(probs_or_pred: torch.Tensor, episode: Episode, which: str = "query") -> dict:
    """Loss and accuracy (or MSE) of predictions on the episode's support or query set.

    ``probs_or_pred``: (n, n_way) class probabilities, or (n,) / (n, 1) predictions.
    """
    y = episode.query_y if which == "query" else episode.support_y
    return _metrics(probs_or_pred, y, episode.is_regression)


class MetaLearner(nn.Module):
    """Base class of all learners. Subclasses set the class attributes and implement
    ``meta_step``, ``adapt`` and ``embed``.

    ``input_shape`` is one example's shape ((C, H, W) for images, (D,) for vectors),
    ``n_way`` the number of classes per episode (1 for regression), ``task`` either
    "classification" or "regression"; the remaining keyword arguments are
    hyper-parameters, validated against the declared ones.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""          # display name, e.g. "Prototypical Networks"
    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""          # "Snell, Swersky & Zemel 2017, Prototypical Networks ..."
    summary: ClassVar[str] = ""        # one line for `algorithms`
    hyperparams: ClassVar[tuple[HyperParam, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})
    order: ClassVar[int] = 50          # display order within the family
    # Fraction of the training run done before the current meta-step, in [0, 1): set by
    # the Trainer through set_progress; 0 when meta_step is called on its own.
    progress: float = 0.0

    def __init__(self, input_shape: tuple[int, ...], n_way: int, task: str = "classification", **hp):
        super().__init__()
        if task not in self.tasks:
            raise MetaRepError(
                f"{self.name} does not support {task} tasks; it supports {', '.join(sorted(self.tasks))}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_way = int(n_way)
        self.task = task
        self.hp = self.validate_hyperparams(hp, task)
        self._optimizer: torch.optim.Optimizer | None = None

    # ----------------------------------------------------------------- metadata
    @classmethod
    def all_hyperparams(cls) -> tuple[HyperParam, ...]:
        own = {h.name for h in cls.hyperparams}
        return tuple(h for h in COMMON_HYPERPARAMS if h.name not in own) + tuple(cls.hyperparams)

    @classmethod
    def validate_hyperparams(cls, hp: dict, task: str = "classification") -> dict:
        """Every declared hyper-parameter, validated: given values converted and
        range-checked, missing ones at their default for ``task``. Old names in
        ``RENAMED_HYPERPARAMS`` are accepted (checkpoints made before a rename)."""
        declared = {h.name: h for h in cls.all_hyperparams()}
        hp = dict(hp)
        for old, new in RENAMED_HYPERPARAMS.items():
            if old in hp and old not in declared and new in declared:
                if new in hp:
                    raise MetaRepError(f"{old!r} is the old name of {new!r}; give only {new!r}")
                hp[new] = hp.pop(old)
        unknown = sorted(set(hp) - set(declared))
        if unknown:
            raise MetaRepError(
                f"unknown hyper-parameter {unknown[0]!r} for {cls.name}; allowed: {', '.join(declared)}")
        return {name: h.validate(hp[name] if name in hp else h.default_for(task))
                for name, h in declared.items()}

    @classmethod
    def metadata(cls) -> dict:
        return {
            "name": cls.name, "title": cls.title or cls.name, "family": cls.family,
            "paper": cls.paper, "summary": cls.summary,
            "hyperparams": [h.to_json() for h in cls.all_hyperparams()],
            "capabilities": sorted(cls.capabilities), "tasks": sorted(cls.tasks),
        }

    def config(self) -> dict:
        """Everything needed to rebuild this learner (weights aside)."""
        return {"algorithm": self.name, "input_shape": list(self.input_shape),
                "n_way": self.n_way, "task": self.task, "hyperparams": dict(self.hp)}

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The outer-loop optimizer, made on first use (after ``.to(device)``)."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.parameters(), lr=self.hp["meta_lr"])
        return self._optimizer

    def reset_optimizer(self) -> None:
        """Forget the outer optimizer's state (Adam's moments); the next meta-step
        starts a fresh one. Used after rolling the weights back (a non-finite loss)."""
        self._optimizer = None

    def set_progress(self, step: int, total: int) -> None:
        """Tell the learner that the next meta-step is ``step`` (0-based) of ``total``.

        The Trainer calls it before every ``meta_step``; a learner with a schedule over
        the run (Reptile anneals its outer step size to 0) reads ``self.progress``.
        """
        if total <= 0 or not 0 <= step < total:
            raise MetaRepError(f"progress must be a step in 0..{total - 1}, got {step} of {total}")
        self.progress = step / total

    # ----------------------------------------------------------------- contract
    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        """One meta-update from a batch of episodes (already on ``self.device``).

        Applies the update and returns at least ``{"loss": ...}`` plus ``"accuracy"``
        (classification) — the query-set figures after adaptation, before the update.
        """
        raise NotImplementedError

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        """Adapt to ``episode``'s support set. Only the support set is used to adapt;
        with ``record=True`` the query set is also scored at each step for the trace."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (n, d) of inputs ``x`` (n, *input_shape) by the meta-learned
        (not adapted) representation."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate_episode(self, episode: Episode) -> dict[str, float]:
        """Query-set accuracy (or MSE) after adapting to the support set."""
        was_training = self.training
        self.eval()
        try:
            adapted = self.adapt(episode)
            pred = adapted.predict(episode.query_x)
        finally:
            self.train(was_training)
        return episode_metrics(pred, episode)
