"""The evaluation protocol of the few-shot literature.

Mean query accuracy over ``episodes`` (600 by default) test episodes with a 95%
confidence interval, ``1.96 * std / sqrt(episodes)``, both in percent; for a
regression task family, the mean query MSE and its interval instead.

Episode ``i`` is sampled with seed :func:`episode_seed` ``(seed, i)``, which depends
only on ``seed`` and ``i``: two learners evaluated with the same arguments see
identical episodes, so their numbers can be compared (and paired).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .episodes import EpisodeSampler
from .errors import MetaRepError, check_positive_int

MAX_EPISODES = 100_000


def episode_seed(seed: int, i: int) -> int:
    """Seed of the ``i``-th evaluation episode for base ``seed`` (disjoint streams per
    seed for any run shorter than a million episodes)."""
    return int(seed) * 1_000_003 + int(i)


def episode_scores(learner, dataset, split: str = "test", *, n_way: int, k_shot: int,
                   n_query: int = 15, episodes: int = 600, seed: int = 0,
                   callback: Callable[[int, int], object] | None = None,
                   stop_event=None, first: int = 0) -> np.ndarray:
    """Per-episode query accuracy in [0, 1] (or MSE for regression), shape (episodes,):
    episodes ``first`` ... ``first + episodes - 1`` (a run split into pieces gives the
    scores of the whole, piece by piece: :mod:`metarep_core.parallel_eval`).

    ``callback(done, total)`` is called after each episode; returning ``False`` (or
    setting ``stop_event``) stops early, and the scores so far are returned."""
    episodes = check_positive_int("episodes", episodes, high=MAX_EPISODES)
    first = check_positive_int("first", first, low=0, high=MAX_EPISODES)
    sampler = EpisodeSampler(dataset, split, n_way, k_shot, n_query, seed)
    device = learner.device
    regression = getattr(dataset, "task", "classification") == "regression"
    key = "mse" if regression else "accuracy"
    scores = []
    for i in range(episodes):
        if stop_event is not None and stop_event.is_set():
            break
        episode = sampler.sample(episode_seed(seed, first + i)).to(device)
        metrics = learner.evaluate_episode(episode)
        scores.append(float(metrics[key]))
        if callback is not None and callback(i + 1, episodes) is False:
            break
    return np.asarray(scores, dtype=np.float64)


def check_n_way(learner, dataset, split: str, n_way: int, k_shot: int, n_query: int) -> None:
    """Refuse an ``n_way`` the learner cannot answer: a learner with a fixed-size output
    head (MAML's linear layer) trained for 5 classes cannot score 3 or 10."""
    if getattr(dataset, "task", "classification") == "regression" or n_way == learner.n_way:
        return
    episode = EpisodeSampler(dataset, split, n_way, k_shot, n_query, 0).sample().to(learner.device)
    was_training = learner.training
    learner.eval()
    try:
        probs = learner.adapt(episode).predict(episode.query_x)
    except (RuntimeError, IndexError):  # a label past the head's size (torch raises either)
        probs = None
    finally:
        learner.train(was_training)
    if probs is None or tuple(probs.shape) != (episode.query_x.shape[0], n_way):
        raise MetaRepError(f"this {learner.name} model was trained for {learner.n_way}-way episodes and "
                           f"cannot score {n_way}-way ones; use n_way = {learner.n_way}")


def summarize(scores: np.ndarray, *, regression: bool) -> dict:
    """Mean and 95% interval of per-episode scores (accuracy -> percent)."""
    n = len(scores)
    scale = 1.0 if regression else 100.0
    mean = float(scores.mean()) * scale if n else math.nan
    ci95 = float(1.96 * scores.std() / math.sqrt(n)) * scale if n else math.nan
    return {("mse" if regression else "accuracy"): mean, "ci95": ci95}


def checked_request(learner, dataset, split: str, n_way: int | None, k_shot: int, n_query: int,
                    episodes: int, seed: int) -> tuple[bool, int, int]:
    """An evaluation's arguments checked before any episode runs (here or on a cluster):
    ``(regression, n_way, episodes)`` with ``n_way`` defaulted to the learner's (1 for
    regression); MetaRepError with the data's own message when the split cannot give
    such episodes, or the learner cannot answer ``n_way`` classes."""
    regression = getattr(dataset, "task", "classification") == "regression"
    if n_way is None:
        n_way = 1 if regression else learner.n_way
    requested = check_positive_int("episodes", episodes, high=MAX_EPISODES)
    EpisodeSampler(dataset, split, n_way, k_shot, n_query, seed)  # validates, with the data's message
    check_n_way(learner, dataset, split, n_way, k_shot, n_query)
    return regression, n_way, requested


def evaluate(learner, dataset, split: str = "test", n_way: int | None = None,
             k_shot: int = 1, n_query: int = 15, episodes: int = 600, seed: int = 0,
             callback: Callable[[int, int], object] | None = None, stop_event=None) -> dict:
    """Evaluate ``learner`` on ``episodes`` episodes of ``split``.

    Returns ``{"accuracy": percent, "ci95": percent, "episodes", "n_way", "k_shot",
    "n_query", "split", "seed"}``; for regression ``"mse"`` replaces ``"accuracy"``
    (and ``n_way`` is 1). ``n_way`` defaults to the learner's. ``"episodes"`` is the
    number actually run (fewer when stopped; then ``"stopped": True``).
    """
    regression, n_way, requested = checked_request(learner, dataset, split, n_way, k_shot, n_query,
                                                   episodes, seed)
    was_training = learner.training
    learner.eval()
    try:
        # No torch.no_grad() here: optimization-based learners need gradients in
        # their inner loop; evaluate_episode manages autograd itself.
        scores = episode_scores(learner, dataset, split, n_way=n_way, k_shot=k_shot,
                                n_query=n_query, episodes=requested, seed=seed,
                                callback=callback, stop_event=stop_event)
    finally:
        learner.train(was_training)
    return report(scores, regression=regression, requested=requested, n_way=n_way, k_shot=k_shot,
                  n_query=n_query, split=split, seed=seed)


def report(scores: np.ndarray, *, regression: bool, requested: int, n_way: int, k_shot: int,
           n_query: int, split: str, seed: int) -> dict:
    """:func:`evaluate`'s result from per-episode ``scores`` (episodes,), wherever they
    were computed (here, or on a Ray cluster: :mod:`metarep_core.cluster.evaluate`)."""
    if len(scores) == 0:
        raise MetaRepError("evaluation was stopped before the first episode")
    out = summarize(scores, regression=regression)
    out.update(episodes=len(scores), n_way=int(n_way), k_shot=int(k_shot), n_query=int(n_query),
               split=split, seed=int(seed))
    if len(scores) < requested:
        out["stopped"] = True
    return out


def paired_difference(a, b, *, higher_is_better: bool = True, scale: float = 1.0,
                      tie_tol: float = 1e-9) -> dict:
    """Learner A against learner B on the same episodes: the paired comparison.

    ``a``, ``b``: per-episode scores (E,) of the two, episode ``i`` the same task for
    both (what :func:`episode_scores` gives for the same ``seed``). Because the episodes
    are shared, the spread that matters is that of the per-episode differences
    ``d = a - b``, not each learner's own: an easy episode is easy for both.

    Returns ``{"mean": mean(d) * scale, "ci95": t-interval half-width * scale, "low",
    "high", "wins", "ties", "losses", "episodes"}``: the 95% interval is Student's
    ``t(0.975, E - 1) * std(d, ddof=1) / sqrt(E)`` (NaN for one episode); a win is an
    episode where A is better (higher accuracy, or lower MSE with
    ``higher_is_better=False``), a tie one where ``|d| <= tie_tol``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(a) != len(b):
        raise MetaRepError(f"a paired difference needs scores on the same episodes; got {len(a)} "
                           f"and {len(b)} episodes")
    if len(a) == 0:
        raise MetaRepError("a paired difference needs at least one episode, got none")
    d = a - b
    n = len(d)
    mean = float(d.mean())
    if n > 1:
        from scipy.stats import t as student_t  # scipy comes with scikit-learn
        half = float(student_t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    else:
        half = math.nan
    better = d if higher_is_better else -d
    ties = int((np.abs(d) <= tie_tol).sum())
    wins = int((better > tie_tol).sum())
    return {"mean": mean * scale, "ci95": half * scale, "low": (mean - half) * scale,
            "high": (mean + half) * scale, "wins": wins, "ties": ties,
            "losses": n - wins - ties, "episodes": n}
