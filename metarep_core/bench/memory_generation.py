"""MANN, DNC, Meta Networks, VERSA and ABML workloads, on the peers' conventions
(../shared/bench/peers/README.md): random 1x28x28 data (a small pool of episodes made
before timing and cycled), 5-way 1-shot with 15 queries per class,
``torch.set_num_threads(2)``, warm-up then windows, median of window rates.

* ``<name>-train``: meta-training tasks/s with each learner's default hyper-parameters
  (its own encoder and meta-batch: the memory learners' Conv-4 has 32 channels), windows
  of 3 meta-steps; no peer library implements these learners, so there is no ratio.
* ``adapt-latency-<name>``: ms to adapt to one episode (stream the support set into
  memory / store fast weights / infer the posterior / run ABML's inner steps) and
  predict its 75 queries, median of 20 after 3 warm-ups.
"""
from __future__ import annotations


from ..learners import build_learner
from ._timing import median, peak_rss_mb, rss_now_mb, setup, time_windows
from .meta_learning import INPUT_SHAPE, _base, episode_pool, learner_adapt_latency

WAY, SHOT, QUERY = 5, 1, 15
NAMES = ("mann", "dnc", "metanet", "versa", "abml")


def _train(name: str, opts: dict) -> dict:
    setup()
    learner = build_learner(name, INPUT_SHAPE, WAY)
    learner.train()
    batch = learner.hp["meta_batch"]
    flat = episode_pool(4 * batch, WAY, SHOT, QUERY)
    pool = [flat[i * batch:(i + 1) * batch] for i in range(4)]
    state = {"i": 0, "loss": None}

    def step():
        state["loss"] = learner.meta_step(pool[state["i"] % len(pool)])["loss"]
        state["i"] += 1

    rss0 = rss_now_mb()
    rates = time_windows(step, opts.get("warmup", 3), opts.get("windows", 5), opts.get("per_window", 3))
    rec = {"bench": f"{name}-train", "tasks_per_s": round(batch * median(rates), 3),
           "window_tasks_per_s": [round(batch * r, 3) for r in rates],
           "task": f"{WAY}-way {SHOT}-shot {QUERY} queries/class, meta-batch {batch}",
           "hyperparams": dict(learner.hp), "peak_rss_mb": round(peak_rss_mb(), 1),
           "rss_before_timing_mb": round(rss0, 1), "last_loss": round(state["loss"], 4)}
    return _base(rec)


def _adapt_latency(name: str, opts: dict) -> dict:
    return learner_adapt_latency(name, opts, WAY, SHOT, QUERY)


WORKLOADS = {}
for _name in NAMES:
    WORKLOADS[f"{_name}-train"] = (lambda opts, n=_name: _train(n, opts))
for _name in NAMES:
    WORKLOADS[f"adapt-latency-{_name}"] = (lambda opts, n=_name: _adapt_latency(n, opts))
