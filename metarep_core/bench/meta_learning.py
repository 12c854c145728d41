"""ProtoNet and MAML workloads: the peers' benchmark (../shared/bench/peers/) run with
this project's learners, with the same names and fields.

* ``protonet-train``: meta-training steps/s, 5-way 5-shot 15 queries/class, Conv-4,
  random data (a pool of 8 episodes, cycled), 5 warm-up steps then 5 windows of 20
  steps; the figure is the median of the window rates.
* ``maml-train``: tasks/s, 5-way 1-shot 15 queries/class, meta-batch 4, 5 inner
  steps at lr 0.4, second order (``order`` 2) and first order (``order`` 1), each in
  a fresh process so that ``peak_rss_mb`` (ru_maxrss, imports included) is its own.
  5 warm-up meta-steps, 5 windows of 3 meta-steps.
* ``adapt-latency``: ms to adapt to one 5-way 1-shot episode and predict its 75
  queries (ProtoNet; MAML with 10 inner steps), median of 20 after 3 warm-ups.

``torch.set_num_threads(2)`` as the peers. Run a single one with
``python -m metarep_core.bench.meta_learning maml-train --order 2``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from ..episodes import Episode
from ..learners import build_learner
from ._timing import median, peak_rss_mb, rss_now_mb, setup, time_calls_ms, time_windows

INPUT_SHAPE = (1, 28, 28)
MAML_WAY, MAML_SHOT, MAML_QUERY, META_BATCH = 5, 1, 15, 4
INNER_LR, INNER_STEPS, ADAPT_STEPS_TEST = 0.4, 5, 10
PN_WAY, PN_SHOT, PN_QUERY = 5, 5, 15


def random_episode(n_way: int, k_shot: int, n_query: int, gen: torch.Generator) -> Episode:
    """The peers' data: torch.randn images (1x28x28), class-major labels."""
    xs = torch.randn(n_way * k_shot, *INPUT_SHAPE, generator=gen)
    xq = torch.randn(n_way * n_query, *INPUT_SHAPE, generator=gen)
    return Episode(xs, torch.arange(n_way).repeat_interleave(k_shot), xq,
                   torch.arange(n_way).repeat_interleave(n_query),
                   [str(i) for i in range(n_way)], n_way, k_shot, n_query, seed=0)


def episode_pool(n: int, n_way: int, k_shot: int, n_query: int, seed: int = 1) -> list[Episode]:
    gen = torch.Generator().manual_seed(seed)
    return [random_episode(n_way, k_shot, n_query, gen) for _ in range(n)]


def _base(record: dict) -> dict:
    record.setdefault("torch", torch.__version__)
    record.setdefault("threads", torch.get_num_threads())
    return record


def learner_adapt_latency(name: str, opts: dict, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                          **hp) -> dict:
    """ms to adapt learner ``name`` (fresh init, eval mode, hyper-parameters ``hp``) to one
    random ``n_way``-way ``k_shot``-shot episode and predict its queries; median of
    ``opts["repeats"]`` (20) after ``opts["warmup"]`` (3). The family bench modules share it."""
    setup()
    gen = torch.Generator().manual_seed(5)
    episodes = [random_episode(n_way, k_shot, n_query, gen) for _ in range(4)]
    learner = build_learner(name, INPUT_SHAPE, n_way, **hp)
    learner.eval()

    def fn(i):
        ep = episodes[i % len(episodes)]
        return learner.adapt(ep).predict(ep.query_x).argmax(1)

    warmup, repeats = opts.get("warmup", 3), opts.get("repeats", 20)
    ts = time_calls_ms(fn, warmup, repeats)
    assert all(p.grad is None for p in learner.parameters()), "meta-parameters received a gradient"
    rec = {"bench": f"adapt-latency-{name}", "ms": round(median(ts), 3),
           "ms_min_max": [round(min(ts), 3), round(max(ts), 3)],
           "episode": f"{n_way}-way {k_shot}-shot, {n_way * n_query} queries", "repeats": repeats,
           "warmup": warmup}
    if "eval_steps" in learner.hp:
        rec["inner_steps"] = learner.hp["eval_steps"]
    return _base(rec)


def protonet_train(opts: dict) -> dict:
    setup(threads=opts.get("threads"))
    learner = build_learner("protonet", INPUT_SHAPE, PN_WAY)
    learner.train()
    pool = episode_pool(8, PN_WAY, PN_SHOT, PN_QUERY)
    state = {"i": 0, "loss": None}

    def step():
        ep = pool[state["i"] % len(pool)]
        state["i"] += 1
        state["loss"] = learner.meta_step([ep])["loss"]

    rss0 = rss_now_mb()
    rates = time_windows(step, opts.get("warmup", 5), opts.get("windows", 5), opts.get("per_window", 20))
    return _base({
        "bench": "protonet-train", "steps_per_s": round(median(rates), 3),
        "window_steps_per_s": [round(r, 3) for r in rates],
        "episode": f"{PN_WAY}-way {PN_SHOT}-shot {PN_QUERY} queries/class",
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_timing_mb": round(rss0, 1),
        "last_loss": round(state["loss"], 4)})


ORDER_NAMES = {1: "first", 2: "second"}  # bench_peers.py's "order" values


def maml_train_one(order: int, opts: dict) -> dict:
    """One order, in this process (``maml_train`` runs each in a fresh one)."""
    setup(threads=opts.get("threads"))
    learner = build_learner("maml", INPUT_SHAPE, MAML_WAY, inner_steps=INNER_STEPS, inner_lr=INNER_LR,
                            meta_batch=META_BATCH, first_order=(order == 1))
    learner.train()
    flat = episode_pool(4 * META_BATCH, MAML_WAY, MAML_SHOT, MAML_QUERY)
    pool = [flat[i * META_BATCH:(i + 1) * META_BATCH] for i in range(4)]
    state = {"i": 0, "loss": None}

    def step():
        tasks = pool[state["i"] % len(pool)]
        state["i"] += 1
        state["loss"] = learner.meta_step(tasks)["loss"]

    rss0 = rss_now_mb()
    rates = time_windows(step, opts.get("warmup", 5), opts.get("windows", 5), opts.get("per_window", 3))
    return _base({
        "bench": "maml-train", "order": ORDER_NAMES[order],  # the peers' harness's field values
        "tasks_per_s": round(META_BATCH * median(rates), 3),
        "meta_steps_per_s": round(median(rates), 4),
        "window_tasks_per_s": [round(META_BATCH * r, 3) for r in rates],
        "task": f"{MAML_WAY}-way {MAML_SHOT}-shot {MAML_QUERY} queries/class, meta-batch {META_BATCH}, "
                f"inner lr {INNER_LR}, {INNER_STEPS} inner steps",
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_timing_mb": round(rss0, 1),
        "last_meta_loss": round(state["loss"], 4)})


def maml_train(opts: dict) -> list[dict]:
    """Second then first order, each in a fresh subprocess (separate peak RSS)."""
    records = []
    for order in (2, 1):
        cmd = [sys.executable, "-m", __name__, "maml-train", "--order", str(order),
               "--options", json.dumps(opts)]
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            records.append({"bench": "maml-train", "order": ORDER_NAMES[order],
                            "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]})
            continue
        records.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return records


def adapt_latency(opts: dict) -> dict:
    setup(threads=opts.get("threads"))
    gen = torch.Generator().manual_seed(5)
    episodes = [random_episode(5, 1, 15, gen) for _ in range(4)]
    warmup, repeats = opts.get("warmup", 3), opts.get("repeats", 20)
    out = {"bench": "adapt-latency", "episode": "5-way 1-shot, 75 queries", "repeats": repeats,
           "warmup": warmup}
    for name, hp in (("protonet", {}), ("maml", {"eval_steps": ADAPT_STEPS_TEST, "inner_lr": INNER_LR})):
        learner = build_learner(name, INPUT_SHAPE, 5, **hp)
        learner.eval()

        def fn(i, learner=learner):
            ep = episodes[i % len(episodes)]
            return learner.adapt(ep).predict(ep.query_x).argmax(1)

        ts = time_calls_ms(fn, warmup, repeats)
        assert all(p.grad is None for p in learner.parameters()), "meta-parameters received a gradient"
        out[f"{name}_ms"] = round(median(ts), 3)
        out[f"{name}_ms_min_max"] = [round(min(ts), 3), round(max(ts), 3)]
    out["maml_inner_steps"] = ADAPT_STEPS_TEST
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return _base(out)


WORKLOADS = {"protonet-train": protonet_train, "maml-train": maml_train, "adapt-latency": adapt_latency}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="run one workload in this process")
    ap.add_argument("workload", choices=["protonet-train", "maml-train", "adapt-latency"])
    ap.add_argument("--order", type=int, choices=(1, 2), default=2, help="maml-train only")
    ap.add_argument("--options", default="{}", help="JSON options (warmup, windows, per_window, repeats, threads)")
    args = ap.parse_args(argv)
    opts = json.loads(args.options)
    rec = maml_train_one(args.order, opts) if args.workload == "maml-train" else WORKLOADS[args.workload](opts)
    sys.stdout.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
