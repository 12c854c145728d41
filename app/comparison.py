"""Several learners on identical episodes, and the student's own row beside them:
the data work of the Compare page (no Streamlit; tested in tests/test_app_services.py,
tests/test_human.py and tests/test_app_compare_store.py).

A comparison's results are kept in the session's run as a record
(:func:`to_record` / :func:`from_record`, checked by the store's
:func:`~metarep_core.store.check_comparison`), under the key of what they were computed
for (:func:`run_key`: learners, episodes, dataset, episode arguments and the SHA-256 of
each model's weights), so that a page shows them only for those same settings and models.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import numpy as np
import torch

from app import state
from metarep_core.evaluation import episode_scores, paired_difference, summarize
from metarep_core.store.results import FORMAT, VERSION


def compare(models: dict[str, state.SessionModel], dataset, settings: state.Settings,
            episodes: int, on_progress: Callable[[str, float, int, int], object] | None = None,
            cluster: str | None = None, on_wait: Callable[[bool], object] | None = None) -> dict[str, dict]:
    """Each model scored on the same ``episodes`` episodes (seeds ``settings.seed``...):
    ``{name: {"scores": (episodes,), "summary": {metric, "ci95"}, "source": ...,
    "seconds_per_query", "model": weights digest}}``. ``on_progress(name, fraction of
    all, done, total)`` after each episode; with ``cluster`` (a Ray address) one Ray task
    per model runs them on that cluster, and ``on_progress`` comes as each model's task
    finishes (``done == total == episodes``). :class:`ClusterUnavailable` when that
    cluster cannot be used.

    Here, the models are scored in child processes, a few at once in the whole server
    (:mod:`metarep_core.parallel_eval`; ``on_wait(True/False)`` while all its slots are
    held by other Compares), unless ``METAREP_COMPARE_PROCESSES=0`` or the Compare is
    too small to pay for children (:func:`metarep_core.parallel_eval.worth_children`):
    then in this thread, one after another. The scores are the same either way."""
    if cluster is not None:
        return _compare_on_cluster(models, dataset, settings, episodes, on_progress, cluster)
    from metarep_core.parallel_eval import process_limit, worth_children
    if process_limit() > 0 and worth_children(list(models), episodes):
        return _compare_in_processes(models, dataset, settings, episodes, on_progress, on_wait)
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
                     "seconds_per_query": (time.perf_counter() - started) / max(queries, 1),
                     "model": weights_digest(model)}
    return out


def _compare_on_cluster(models, dataset, settings, episodes, on_progress, address) -> dict[str, dict]:
    from metarep_core.checkpoints import checkpoint_to_bytes
    from metarep_core.cluster.evaluate import remote_episode_scores
    s, regression = settings, dataset.task == "regression"

    def done(name, n_done, total):
        if on_progress is not None:
            on_progress(name, n_done / total, episodes, episodes)
    got = remote_episode_scores({name: checkpoint_to_bytes(m.learner, source=m.source) for name, m in models.items()},
                                dataset, address=address, on_done=done, split=s.split, n_way=s.n_way,
                                k_shot=s.k_shot, n_query=s.n_query, episodes=episodes, seed=s.seed)
    return _results(models, got, s, regression)


def _results(models: dict, got: dict, s: state.Settings, regression: bool) -> dict[str, dict]:
    """:func:`compare`'s result from scores computed elsewhere (child processes, Ray tasks):
    ``got[name]`` holds ``scores`` and the ``seconds`` they took."""
    out = {}
    for name, model in models.items():
        scores = got[name]["scores"]
        queries = len(scores) * s.n_way * s.n_query
        out[name] = {"scores": scores, "summary": summarize(scores, regression=regression),
                     "source": model.source, "seconds_per_query": got[name]["seconds"] / max(queries, 1),
                     "model": weights_digest(model)}
    return out


def _compare_in_processes(models, dataset, settings, episodes, on_progress, on_wait) -> dict[str, dict]:
    from metarep_core.checkpoints import checkpoint_to_bytes
    from metarep_core.parallel_eval import parallel_episode_scores
    s, regression = settings, dataset.task == "regression"
    done_of = dict.fromkeys(models, 0)

    def tick(name, done, total):
        done_of[name] = done
        if on_progress is not None:
            on_progress(name, sum(done_of.values()) / (total * len(models)), done, total)
    got = parallel_episode_scores({name: checkpoint_to_bytes(m.learner, source=m.source) for name, m in models.items()},
                                  dataset, split=s.split, n_way=s.n_way, k_shot=s.k_shot, n_query=s.n_query,
                                  episodes=episodes, seed=s.seed, on_progress=tick, on_wait=on_wait)
    return _results(models, got, s, regression)


def run_comparison(models: dict[str, state.SessionModel], dataset, settings: state.Settings,
                   episodes: int, on_progress=None, address: str | None = None, on_wait=None
                   ) -> tuple[dict[str, dict], str, str | None]:
    """:func:`compare` where the deployment says: on the Ray cluster of ``address``
    (default ``METAREP_RAY_ADDRESS``) when one is named, else here. Returns ``(results,
    where, why_not_cluster)``: ``where`` "ray" or "local"; ``why_not_cluster`` the
    reason when a named cluster could not be used and the comparison ran here instead
    (said on the page), else None."""
    from metarep_core.cluster import ClusterUnavailable, ray_address
    address = address or ray_address()
    if address:
        try:
            return compare(models, dataset, settings, episodes, on_progress, cluster=address), "ray", None
        except ClusterUnavailable as exc:
            # its first sentence: what failed (the rest tells a CLI user how to train here)
            why = str(exc).split(". ")[0]
            return compare(models, dataset, settings, episodes, on_progress, on_wait=on_wait), "local", why
    return compare(models, dataset, settings, episodes, on_progress, on_wait=on_wait), "local", None


# ------------------------------------------------------------------ what a result was computed for
def weights_digest(model: state.SessionModel) -> str:
    """SHA-256 (hex) of ``model``'s weights: every tensor of its ``state_dict`` by name,
    with its dtype and shape. Two models with equal weights have the same digest, in any
    session or server; remembered on the model (its weights never change in place)."""
    def compute() -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.learner.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
    return model.remember(("weights_sha256",), compute)


EPISODE_ARGS = ("split", "n_way", "k_shot", "n_query", "seed")


def run_key(learners, episodes: int, dataset_id: str, episode_args: dict, digests) -> tuple:
    """What a comparison was computed for: the learners in their order, the episode
    count, the dataset id, :data:`EPISODE_ARGS` and each model's :func:`weights_digest`.
    Results are shown only under the key of the page's current choices."""
    return (tuple(learners), int(episodes), dataset_id,
            tuple(episode_args[k] for k in EPISODE_ARGS), tuple(digests))


def current_key(models: dict[str, state.SessionModel], episodes: int, settings: state.Settings,
                dataset_id: str) -> tuple:
    """The :func:`run_key` of comparing ``models`` now under the (effective) ``settings``."""
    return run_key(models, episodes, dataset_id, {k: getattr(settings, k) for k in EPISODE_ARGS},
                   [weights_digest(m) for m in models.values()])


def to_record(results: dict, settings: state.Settings, dataset_id: str, task: str,
              where: str = "local") -> dict:
    """``results`` (of :func:`compare`, without the student's row) as the JSON record the
    run store keeps (:mod:`metarep_core.store.results`): the order of the learners is
    kept in ``"learners"`` (JSON objects are stored with sorted keys)."""
    names = [n for n in results if n != YOU]
    return {"format": FORMAT, "version": VERSION, "dataset": dataset_id, "task": task,
            "episode_args": {k: getattr(settings, k) for k in EPISODE_ARGS},
            "episodes": len(results[names[0]]["scores"]), "learners": names, "where": where,
            "results": {n: {"scores": [float(v) for v in results[n]["scores"]],
                            "summary": dict(results[n]["summary"]), "source": results[n]["source"],
                            "seconds_per_query": float(results[n]["seconds_per_query"]),
                            "model": results[n]["model"]} for n in names}}


def from_record(record: dict) -> tuple[tuple, dict]:
    """``(run_key, results)`` from a record checked by the store: the results as
    :func:`compare` returned them (scores as float64 arrays, in the chosen order)."""
    names = record["learners"]
    results = {n: {**record["results"][n],
                   "scores": np.asarray(record["results"][n]["scores"], dtype=np.float64)} for n in names}
    key = run_key(names, record["episodes"], record["dataset"], record["episode_args"],
                  [record["results"][n]["model"] for n in names])
    return key, results


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
