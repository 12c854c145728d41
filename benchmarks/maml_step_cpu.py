"""CPU time of one MAML meta-step (the `maml-train` workload of `metarep_core bench`),
on one thread: a figure that, unlike tasks/s, a loaded machine barely moves. Prints
one JSON object. Run it on two checkouts to compare versions:

    PYTHONPATH=. .venv/bin/python benchmarks/maml_step_cpu.py --order 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from metarep_core.bench.meta_learning import (INNER_LR, INNER_STEPS, INPUT_SHAPE, MAML_QUERY,
                                              MAML_SHOT, MAML_WAY, META_BATCH, episode_pool)
from metarep_core.learners import build_learner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, choices=(1, 2), default=2)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--per-window", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    learner = build_learner("maml", INPUT_SHAPE, MAML_WAY, inner_steps=INNER_STEPS, inner_lr=INNER_LR,
                            meta_batch=META_BATCH, first_order=(args.order == 1))
    learner.train()
    flat = episode_pool(4 * META_BATCH, MAML_WAY, MAML_SHOT, MAML_QUERY)
    pool = [flat[i * META_BATCH:(i + 1) * META_BATCH] for i in range(4)]
    for i in range(3):  # warm-up: allocator, autograd caches
        learner.meta_step(pool[i % 4])
    per_step = []
    for _ in range(args.windows):
        t0 = time.process_time()
        for i in range(args.per_window):
            learner.meta_step(pool[i % 4])
        per_step.append((time.process_time() - t0) / args.per_window)
    print(json.dumps({"bench": "maml-step-cpu", "order": "second" if args.order == 2 else "first",
                      "cpu_s_per_meta_step_p50": round(statistics.median(per_step), 4),
                      "windows": [round(s, 4) for s in per_step],
                      "meta_batch": META_BATCH, "inner_steps": INNER_STEPS,
                      "loadavg": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
