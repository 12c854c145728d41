"""Reptile, iMAML, ANIL, Siamese and Matching Networks workloads, on the peers'
conventions (../shared/bench/peers/README.md): random 1x28x28 data (a small pool of
episodes made before timing and cycled), Conv-4, 5-way 1-shot with 15 queries per
class, ``torch.set_num_threads(2)``, warm-up then windows, median of window rates.

* ``reptile-train``, ``imaml-train``, ``anil-train``: meta-training tasks/s at
  meta-batch 4 with 5 inner steps (ANIL: on the head, lr 0.4, second order, as the
  MAML workload; Reptile: SGD lr 0.1 on support + query as in meta-training;
  iMAML: 5 proximal steps and 5 conjugate-gradient iterations). Windows of 3
  meta-steps (12 tasks).
* ``siamese-train``, ``matching-train``: meta-training steps/s, one episode per step,
  windows of 20 steps.
* ``adapt-latency-<name>``: ms to adapt to one episode and predict its 75 queries
  (10 inner steps for the optimization learners), median of 20 after 3 warm-ups.
"""
from __future__ import annotations


from ..learners import build_learner
from ._timing import median, peak_rss_mb, rss_now_mb, setup, time_windows
from .meta_learning import INPUT_SHAPE, _base, episode_pool, learner_adapt_latency

WAY, SHOT, QUERY, META_BATCH, INNER_STEPS = 5, 1, 15, 4, 5

TRAIN_HP = {
    "reptile": {"inner_steps": INNER_STEPS, "meta_batch": META_BATCH},
    "imaml": {"inner_steps": INNER_STEPS, "cg_steps": 5, "meta_batch": META_BATCH},
    "anil": {"inner_steps": INNER_STEPS, "inner_lr": 0.4, "meta_batch": META_BATCH},
    "siamese": {},
    "matching": {},
}
ADAPT_HP = {"reptile": {"eval_steps": 10}, "imaml": {"eval_steps": 10}, "anil": {"eval_steps": 10},
            "siamese": {}, "matching": {}}


def _train(name: str, opts: dict) -> dict:
    setup()
    learner = build_learner(name, INPUT_SHAPE, WAY, **TRAIN_HP[name])
    learner.train()
    batch = learner.hp["meta_batch"]
    flat = episode_pool(4 * batch, WAY, SHOT, QUERY)
    pool = [flat[i * batch:(i + 1) * batch] for i in range(4)]
    state = {"i": 0, "loss": None}

    def step():
        state["loss"] = learner.meta_step(pool[state["i"] % len(pool)])["loss"]
        state["i"] += 1

    per_window = opts.get("per_window", 3 if batch > 1 else 20)
    rss0 = rss_now_mb()
    rates = time_windows(step, opts.get("warmup", 5), opts.get("windows", 5), per_window)
    rec = {"bench": f"{name}-train"}
    if batch > 1:
        rec.update(tasks_per_s=round(batch * median(rates), 3),
                   window_tasks_per_s=[round(batch * r, 3) for r in rates])
    else:
        rec.update(steps_per_s=round(median(rates), 3), window_steps_per_s=[round(r, 3) for r in rates])
    rec.update(task=f"{WAY}-way {SHOT}-shot {QUERY} queries/class, meta-batch {batch}",
               hyperparams={k: v for k, v in learner.hp.items() if k in TRAIN_HP[name] or k == "inner_lr"},
               peak_rss_mb=round(peak_rss_mb(), 1), rss_before_timing_mb=round(rss0, 1),
               last_loss=round(state["loss"], 4))
    return _base(rec)


def _adapt_latency(name: str, opts: dict) -> dict:
    return learner_adapt_latency(name, opts, WAY, SHOT, QUERY, **ADAPT_HP[name])


WORKLOADS = {}
for _name in ("reptile", "imaml", "anil", "siamese", "matching"):
    WORKLOADS[f"{_name}-train"] = (lambda opts, n=_name: _train(n, opts))
for _name in ("reptile", "imaml", "anil", "siamese", "matching"):
    WORKLOADS[f"adapt-latency-{_name}"] = (lambda opts, n=_name: _adapt_latency(n, opts))
