"""Several learners on identical episodes, and the student's own row beside them:
the data work of the Compare page (no Streamlit; tested in tests/test_app_services.py
and tests/test_human.py)."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from app import state
from metarep_core.evaluation import episode_scores, paired_difference, summarize


def compare(models: dict[str, state.SessionModel], dataset, settings: state.Settings,
            episodes: int, on_progress: Callable[[str, float, int, int], object] | None = None
            ) -> dict[str, dict]:
    """Each model scored on the same ``episodes`` episodes (seeds ``settings.seed``...):
    ``{name: {"scores": (episodes,), "summary": {metric, "ci95"}, "source": ...}}``.
    ``on_progress(name, fraction of all, done, total)`` after each episode."""
    regression = dataset.task == "regression"
    s, out = settings, {}
    for j, (name, model) in enumerate(models.items()):
        def tick(done, total, j=j, name=name):
            if on_progress is not None:
                on_progress(name, (j + done / total) / len(models), done, total)
        started = time.perf_counter()
        scores = episode_scores(model.learner.eval(), dataset, s.split, n_way=s.n_way,
                                k_shot=s.k_shot, n_query=s.n_query, episodes=episodes,
                                seed=s.seed, callback=tick)
        queries = len(scores) * s.n_way * s.n_query
        out[name] = {"scores": scores, "summary": summarize(scores, regression=regression),
                     "source": model.source,
                     "seconds_per_query": (time.perf_counter() - started) / max(queries, 1)}
    return out


YOU = "you"  # the student's row in a comparison (app/human.py's record)


def with_human(results: dict, record, settings: state.Settings, dataset_id: str) -> dict:
    """``results`` (of :func:`compare`) with the student's row :data:`YOU` added when the
    session's :class:`~app.human.HumanRecord` is for the same episodes: its episode ``i``
    is the comparison's episode ``i``; only the first ``len(scores)`` count (the
    episodes the learners ran). ``results`` itself is not changed."""
    s = settings
    if (record is None or not record.episodes or not results
            or not record.matches(dataset_id, s.split, s.n_way, s.k_shot, s.n_query, s.seed)):
        return results
    n = len(next(iter(results.values()))["scores"])
    kept = record.episodes[:n]
    scores = record.scores()[:n]
    seconds = sum(e.seconds for e in kept) / sum(len(e.answers) for e in kept)
    return {**results, YOU: {"scores": scores, "summary": summarize(scores, regression=False),
                             "source": YOU, "seconds_per_query": seconds}}


def best_learner(results: dict, regression: bool) -> str:
    """The learner with the best mean (highest accuracy, lowest MSE); the student's own
    row is never picked (a student may stop after one lucky episode)."""
    metric = "mse" if regression else "accuracy"
    names = [n for n in results if n != YOU]
    pick = min if regression else max
    return pick(names, key=lambda n: results[n]["summary"][metric])


def paired_differences(results: dict, reference: str, regression: bool) -> list[dict]:
    """Each other row of ``results`` against ``reference`` on their shared episodes (the
    first ``min`` of the two counts): ``{"learner", "reference", "mean", "ci95", "low",
    "high", "wins", "ties", "losses", "episodes"}``, accuracy differences in percentage
    points (or MSE differences), "wins" counted for ``learner``."""
    ref = np.asarray(results[reference]["scores"])
    rows = []
    for name, r in results.items():
        if name == reference:
            continue
        mine = np.asarray(r["scores"])
        n = min(len(mine), len(ref))
        if n == 0:
            continue
        rows.append({"learner": name, "reference": reference,
                     **paired_difference(mine[:n], ref[:n], higher_is_better=not regression,
                                         scale=1.0 if regression else 100.0)})
    return rows
