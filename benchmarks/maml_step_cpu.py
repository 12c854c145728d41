"""CPU time of one meta-step (or one adaptation) of an optimization learner, on one
thread: a figure that, unlike tasks/s, a loaded machine barely moves. Prints one JSON
object. The workloads are those of `metarep_core bench` (`maml-train`, `anil-train`,
`reptile-train`, `imaml-train`, `adapt-latency[-<name>]`). Run it on two checkouts to
compare versions:

    PYTHONPATH=. .venv/bin/python benchmarks/maml_step_cpu.py --order 2
    PYTHONPATH=. .venv/bin/python benchmarks/maml_step_cpu.py --learner anil
    PYTHONPATH=. .venv/bin/python benchmarks/maml_step_cpu.py --learner maml --adapt
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics

import torch

from metarep_core.bench.meta_learning import (ADAPT_STEPS_TEST, INNER_LR, INNER_STEPS, INPUT_SHAPE,
                                              MAML_QUERY, MAML_SHOT, MAML_WAY, META_BATCH, episode_pool)
from metarep_core.bench.opt_metric import ADAPT_HP, TRAIN_HP
from metarep_core.learners import build_learner


def cpu_s() -> float:
    """User + system CPU time of this process so far (s)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learner", choices=("maml", "anil", "reptile", "imaml"), default="maml")
    ap.add_argument("--order", type=int, choices=(1, 2), default=2, help="MAML only")
    ap.add_argument("--adapt", action="store_true",
                    help="time one adaptation + prediction of 75 queries (eval mode, 10 steps)")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--per-window", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.learner == "maml":
        hp = ({"eval_steps": ADAPT_STEPS_TEST} if args.adapt else
              {"inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "meta_batch": META_BATCH,
               "first_order": args.order == 1})
    else:
        hp = (ADAPT_HP if args.adapt else TRAIN_HP)[args.learner]
    learner = build_learner(args.learner, INPUT_SHAPE, MAML_WAY, **hp)
    batch = 1 if args.adapt else learner.hp["meta_batch"]
    flat = episode_pool(4 * batch, MAML_WAY, MAML_SHOT, MAML_QUERY)
    pool = [flat[i * batch:(i + 1) * batch] for i in range(4)]
    if args.adapt:
        learner.eval()

        def work(tasks):
            with torch.no_grad():  # as evaluate_episode calls it
                return learner.adapt(tasks[0]).predict(tasks[0].query_x).argmax(1)
    else:
        learner.train()
        work = learner.meta_step
    for i in range(3):  # warm-up: allocator, autograd caches
        work(pool[i % 4])
    per_call = []
    for _ in range(args.windows):
        t0 = cpu_s()
        for i in range(args.per_window):
            work(pool[i % 4])
        per_call.append((cpu_s() - t0) / args.per_window)
    rec = {"bench": f"{args.learner}-{'adapt' if args.adapt else 'step'}-cpu"}
    if args.learner == "maml" and not args.adapt:
        rec["order"] = "second" if args.order == 2 else "first"
    rec.update({"cpu_s_p50": round(statistics.median(per_call), 4),
                "windows": [round(s, 4) for s in per_call], "meta_batch": batch,
                "loadavg": [round(x, 2) for x in os.getloadavg()]})
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
