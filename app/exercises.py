"""The checks behind the lessons' exercises, and the record of a student's answer.

Each check kind (``app.lessons.KINDS``) computes its answer from the model on the
step's episode — nothing in a lesson file says what is right. :func:`solve` gives a
:class:`Solution`: the options offered, the accepted ones (several when there is a tie)
and the numbers to show as feedback; :func:`check_target` scores a value the student
tries for a hyper-parameter. The models come from a ``model_for(algorithm)`` function
(in the app, the session's own model through :mod:`app.services`), so a student who
trained a model is checked against that model.

Kinds:

- ``best_learner``: which of ``algorithms`` has the highest query accuracy (in %, the mean
  over ``episodes`` episodes)?
- ``trace_change``: is ``metric`` at trace step ``to_step`` higher, lower or the same as at
  ``from_step`` (``hyperparams`` overriding the learner's, e.g. ``eval_steps``)?
- ``reach_target``: a value of ``hyperparam`` with which ``metric`` reaches ``at_least``
  (or stays ``at_most``) after adapting (with ``hyperparams`` overriding, e.g. one step);
- ``query_class``: which class will the model give query number ``query``?
- ``presentation_accuracy``: Santoro et al.'s accuracy by presentation (the core's
  ``online_predictions``: each support label predicted as it is streamed), presentation
  ``then`` vs presentation ``first``, pooled over ``episodes`` episodes;
- ``unseen_uncertainty``: is the predictive entropy higher on queries of classes that are
  not in the support set than on queries of the support's classes?
- ``meta_training_gain``: is the query accuracy after meta-training higher than a fresh
  initialisation's?
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from app.lessons import Exercise
from app.state import SessionModel, Settings
from metarep_core.episodes import Episode, EpisodeSampler
from metarep_core.errors import MetaRepError
from metarep_core.learners.base import episode_metrics

DIRECTIONS = ("higher", "lower", "same")
ModelFor = Callable[[str], SessionModel]


@dataclass(frozen=True)
class Solution:
    """``options`` offered (strings), ``accepted`` the ones the model makes right,
    ``detail`` the numbers behind it ({label: value}) to show once answered."""

    options: tuple[str, ...]
    accepted: frozenset[str]
    detail: dict = field(default_factory=dict)

    def is_correct(self, answer: str) -> bool:
        return str(answer) in self.accepted


@dataclass(frozen=True)
class Situation:
    """What a check runs on: the step's settings, the dataset and the session's models."""

    settings: Settings
    dataset: object
    model_for: ModelFor
    fresh_for: ModelFor | None = None   # a fresh init (meta_training_gain)

    def episode(self, seed: int | None = None, n_way: int | None = None) -> Episode:
        s = self.settings
        sampler = EpisodeSampler(self.dataset, s.split, n_way or s.n_way, s.k_shot,
                                 s.n_query, s.seed)
        return sampler.sample(s.seed if seed is None else seed)


def direction(before: float, after: float, tolerance: float = 0.0) -> str:
    """"higher", "lower" or "same" (within ``tolerance``) for ``after`` against ``before``."""
    if abs(after - before) <= tolerance + 1e-9:
        return "same"
    return "higher" if after > before else "lower"


def _adapted(learner, episode: Episode):
    learner.eval()
    return learner.adapt(episode)


def query_accuracy(model: SessionModel, episode: Episode) -> float:
    """Query accuracy in percent of ``model`` adapted to ``episode``."""
    from app.services import episode_key

    def compute():
        probs = _adapted(model.learner, episode).predict(episode.query_x)
        return float((probs.argmax(1) == episode.query_y).float().mean()) * 100
    return model.remember(("lesson_accuracy", episode_key(episode)), compute)


def with_hyperparams(model: SessionModel, hp: dict) -> object:
    """A copy of ``model``'s learner using ``hp`` at adaptation (each value validated
    against the learner's declaration: MetaRepError naming the value and the range).
    The session's model is never changed."""
    cls = type(model.learner)
    declared = {h.name: h for h in cls.all_hyperparams()}
    unknown = sorted(set(hp) - set(declared))
    if unknown:
        raise MetaRepError(f"{cls.name} has no hyper-parameter {unknown[0]!r}")
    learner = copy.deepcopy(model.learner)
    learner.hp = {**learner.hp, **{k: declared[k].validate(v) for k, v in hp.items()}}
    return learner


# ------------------------------------------------------------------ the kinds
def _best_learner(ex: Exercise, sit: Situation) -> Solution:
    episodes = [sit.episode(sit.settings.seed + i) for i in range(ex.params.get("episodes", 1))]
    scores = {a: float(np.mean([query_accuracy(sit.model_for(a), e) for e in episodes]))
              for a in ex.params["algorithms"]}
    best = max(scores.values())
    return Solution(tuple(scores), frozenset(a for a, s in scores.items() if s == best),
                    {a: round(s, 1) for a, s in scores.items()})


def trace_values(learner, episode: Episode, metric: str) -> dict[int, float]:
    """``{trace step number: metric}`` of ``learner`` adapting to ``episode``."""
    learner.eval()
    trace = learner.adapt(episode, record=True).trace or []
    return {s.step: getattr(s, metric) for s in trace if getattr(s, metric) is not None}


def _trace_change(ex: Exercise, sit: Situation) -> Solution:
    p = ex.params
    model = sit.model_for(sit.settings.algorithm)
    learner = with_hyperparams(model, p.get("hyperparams", {}))
    values = trace_values(learner, sit.episode(), p["metric"])
    for name in ("from_step", "to_step"):
        if p[name] not in values:
            raise MetaRepError(f"{name} = {p[name]}: this trace has the steps "
                               f"{', '.join(map(str, sorted(values)))}")
    before, after = values[p["from_step"]], values[p["to_step"]]
    scale = 100 if p["metric"].endswith("accuracy") else 1
    answer = direction(before * scale, after * scale, p.get("tolerance", 0.0))
    return Solution(DIRECTIONS, frozenset({answer}),
                    {f"{p['metric']}@{p['from_step']}": round(before * scale, 3),
                     f"{p['metric']}@{p['to_step']}": round(after * scale, 3)})


def target_value(ex: Exercise, sit: Situation, value: float) -> float:
    """The exercise's metric (accuracy in %, or the loss) after adapting with
    ``hyperparam = value`` (and the exercise's other ``hyperparams``)."""
    p = ex.params
    model = sit.model_for(sit.settings.algorithm)
    learner = with_hyperparams(model, {**p.get("hyperparams", {}), p["hyperparam"]: value})
    episode = sit.episode()
    metrics = episode_metrics(_adapted(learner, episode).predict(episode.query_x), episode)
    return metrics["accuracy"] * 100 if p["metric"] == "query_accuracy" else metrics["loss"]


def check_target(ex: Exercise, sit: Situation, value: float) -> tuple[bool, float]:
    """(reached, the metric's value) for the student's ``value``."""
    reached_value = target_value(ex, sit, value)
    p = ex.params
    ok = reached_value >= p["at_least"] if "at_least" in p else reached_value <= p["at_most"]
    return ok, reached_value


def _query_class(ex: Exercise, sit: Situation) -> Solution:
    episode = sit.episode()
    q = ex.params["query"]
    if q >= len(episode.query_y):
        raise MetaRepError(f"query = {q}, but the episode has {len(episode.query_y)} queries "
                           f"(0 to {len(episode.query_y) - 1})")
    model = sit.model_for(sit.settings.algorithm)
    probs = _adapted(model.learner, episode).predict(episode.query_x[q:q + 1])[0]
    options = tuple(str(i) for i in range(episode.n_way))
    top = float(probs.max())
    return Solution(options, frozenset(str(i) for i in range(episode.n_way) if float(probs[i]) == top),
                    {episode.class_names[i]: round(float(probs[i]) * 100, 1)
                     for i in range(episode.n_way)})


def prototype_map(model: SessionModel, episode: Episode, query: int):
    """Where the prototypes (n_way, 2) and query ``query`` (2,) lie in a 2-D PCA of the
    adapted embedding (fitted on the prototypes and all queries); None for a learner
    without prototypes. The projection only approximates the distances the model uses."""
    from metarep_core.projection import project
    adapted = _adapted(model.learner, episode)
    if adapted.prototypes is None:
        return None
    protos = adapted.prototypes.detach().cpu().numpy()
    queries = adapted.embed(episode.query_x).detach().cpu().numpy()
    xy = project(np.concatenate([protos, queries]), method="pca", dim=2, seed=0)
    return xy[:len(protos)], xy[len(protos) + query]


def picked_class(points: list[dict]) -> str | None:
    """The class a click on :func:`app.figures.lessons.prototype_choice` chose (the
    prototype's ``customdata``), or None when no prototype was clicked."""
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list):  # Plotly sends customdata as a one-element list at times
            data = data[0] if data else None
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return str(int(data))
    return None


def presentation_accuracy(learner, episodes: list[Episode]) -> dict[int, float]:
    """Santoro et al.'s accuracy (in %) by presentation number, pooled over ``episodes``:
    ``{1: accuracy on each class's first showing, 2: on its second, ...}``, from the
    learner's ``online_predictions`` (the label predicted as each support example is
    streamed, before its label is shown)."""
    right: dict[int, list] = {}
    for episode in episodes:
        pred, true, instance = learner.online_predictions(episode)
        for p, y, k in zip(pred.tolist(), true.tolist(), instance.tolist()):
            right.setdefault(k, []).append(p == y)
    return {k: 100 * float(np.mean(v)) for k, v in sorted(right.items())}


def _presentation_accuracy(ex: Exercise, sit: Situation) -> Solution:
    p = ex.params
    model = sit.model_for(sit.settings.algorithm)
    episodes = [sit.episode(sit.settings.seed + i) for i in range(p.get("episodes", 1))]
    acc = presentation_accuracy(model.learner.eval(), episodes)
    for name in ("first", "then"):
        if p[name] not in acc:
            raise MetaRepError(f"{name} = {p[name]}: with K = {sit.settings.k_shot} shots a class "
                               f"is presented {max(acc)} times")
    answer = direction(acc[p["first"]], acc[p["then"]], p.get("tolerance", 0.0))
    return Solution(DIRECTIONS, frozenset({answer}), {k: round(v, 1) for k, v in acc.items()})


def unseen_split(episode: Episode, n_way: int) -> tuple[Episode, torch.Tensor, torch.Tensor]:
    """From a ``2 * n_way``-way ``episode``: the ``n_way``-way episode of its first classes,
    the queries of those classes (seen) and the queries of the others (unseen)."""
    seen_s = episode.support_y < n_way
    seen_q = episode.query_y < n_way
    small = Episode(episode.support_x[seen_s], episode.support_y[seen_s],
                    episode.query_x[seen_q], episode.query_y[seen_q],
                    episode.class_names[:n_way], n_way, episode.k_shot, episode.n_query,
                    episode.seed, episode.task, episode.info)
    return small, episode.query_x[seen_q], episode.query_x[~seen_q]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy in nats per row: (n, k) -> (n,)."""
    p = probs.clamp_min(1e-12)
    return -(p * p.log()).sum(1)


def _unseen_uncertainty(ex: Exercise, sit: Situation) -> Solution:
    p = ex.params
    n = sit.settings.n_way
    model = sit.model_for(sit.settings.algorithm)
    seen, unseen = [], []
    for i in range(p.get("episodes", 1)):
        episode, seen_x, unseen_x = unseen_split(sit.episode(sit.settings.seed + i, n_way=2 * n), n)
        adapted = _adapted(model.learner, episode)
        seen.append(entropy(adapted.predict(seen_x)))
        unseen.append(entropy(adapted.predict(unseen_x)))
    h_seen, h_unseen = float(torch.cat(seen).mean()), float(torch.cat(unseen).mean())
    answer = direction(h_seen, h_unseen, p.get("tolerance", 0.0))
    return Solution(DIRECTIONS, frozenset({answer}),
                    {"seen": round(h_seen, 3), "unseen": round(h_unseen, 3)})


def _meta_training_gain(ex: Exercise, sit: Situation) -> Solution:
    if sit.fresh_for is None:
        raise MetaRepError("meta_training_gain needs a fresh model to compare with")
    episode = sit.episode()
    after = query_accuracy(sit.model_for(sit.settings.algorithm), episode)
    before = query_accuracy(sit.fresh_for(sit.settings.algorithm), episode)
    answer = direction(before, after, ex.params.get("tolerance", 0.0))
    return Solution(DIRECTIONS, frozenset({answer}),
                    {"before": round(before, 1), "after": round(after, 1)})


SOLVERS = {"best_learner": _best_learner, "trace_change": _trace_change,
           "query_class": _query_class, "presentation_accuracy": _presentation_accuracy,
           "unseen_uncertainty": _unseen_uncertainty, "meta_training_gain": _meta_training_gain}


def solve(ex: Exercise, sit: Situation) -> Solution:
    """The exercise's options and the answers the model makes right (not for
    ``reach_target``, which scores a value: :func:`check_target`)."""
    if ex.kind not in SOLVERS:
        raise MetaRepError(f"{ex.kind} is checked by check_target, not solve")
    return SOLVERS[ex.kind](ex, sit)


# ------------------------------------------------------------------ the answer record
ANSWERS_KEY = "lesson_answers"  # st.session_state[ANSWERS_KEY]: list[Answer]


@dataclass(frozen=True)
class Answer:
    """One answer a student gave: which lesson and step (1-based), the check kind, what
    they answered, the accepted answers the model computed, whether it was right, when
    (UTC, ISO 8601) and in which language. Plain values only, so a run store can keep
    it as a row or a JSON document (:meth:`to_json` / :meth:`from_json`)."""

    lesson: str
    step: int
    kind: str
    answer: str
    accepted: tuple[str, ...]
    correct: bool
    time: str
    lang: str

    @classmethod
    def now(cls, lesson: str, step: int, kind: str, answer, accepted, correct: bool,
            lang: str) -> "Answer":
        return cls(lesson, int(step), kind, str(answer), tuple(sorted(map(str, accepted))),
                   bool(correct), datetime.now(timezone.utc).isoformat(timespec="seconds"), lang)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Answer":
        data = json.loads(text)
        fields = set(cls.__dataclass_fields__)
        if set(data) != fields:
            raise MetaRepError(f"an answer record has the fields {', '.join(sorted(fields))}; "
                               f"got {', '.join(sorted(data))}")
        data["accepted"] = tuple(data["accepted"])
        return cls(**data)
