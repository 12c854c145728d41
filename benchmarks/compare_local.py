"""A local Compare (the Compare page's work, no browser): the shipped Omniglot 5-way
1-shot models of ProtoNet, Matching, MAML, ANIL and Reptile on the same episodes,
first in this thread one after another (``METAREP_COMPARE_PROCESSES=0``, the path before
issue 13's change), then in child processes (metarep_core/parallel_eval.py). Prints one
JSON object: per learner the CPU and wall seconds of each path, the totals, this
process's own CPU during the parallel run (what the app server's page thread spends),
the load average before and after, and whether the scores were equal.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/compare_local.py --episodes 100
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

LEARNERS = ("protonet", "matching", "maml", "anil", "reptile")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--learners", default=",".join(LEARNERS))
    ap.add_argument("--processes", type=int, default=2, help="METAREP_COMPARE_PROCESSES of the parallel run")
    ap.add_argument("--nice", type=int, default=None,
                    help="the children's niceness above this process (default: the app's, "
                         "parallel_eval.NICE; 0 to compare at the in-thread run's priority on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread per process, as the children
    from app import state
    from metarep_core import parallel_eval, process_runner
    from metarep_core.checkpoints import checkpoint_to_bytes, load_checkpoint
    from metarep_core.data import load_dataset
    from metarep_core.evaluation import episode_scores

    dataset = load_dataset("omniglot")
    names = args.learners.split(",")
    models = {n: state.SessionModel(load_checkpoint(f"assets/checkpoints/{n}_omniglot_5w1s.safetensors")[0].eval(),
                                    source="shipped") for n in names}
    process_runner.preload()  # as app/serve.py does at server start
    out = {"episodes": args.episodes, "nice": parallel_eval.NICE if args.nice is None else args.nice, "learners": names, "loadavg_before": loadavg(), "in_thread": {},
           "processes": {}}

    # 1. In this thread, one after another (episode_scores as comparison.compare calls it).
    sequential = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for n in names:
        w, c = time.perf_counter(), time.process_time()
        sequential[n] = episode_scores(models[n].learner, dataset, "test", n_way=5, k_shot=1, n_query=15,
                                       episodes=args.episodes, seed=0)
        out["in_thread"][n] = {"cpu_s": round(time.process_time() - c, 3), "wall_s": round(time.perf_counter() - w, 3)}
    out["in_thread"]["total"] = {"cpu_s": round(time.process_time() - cpu0, 3),
                                 "wall_s": round(time.perf_counter() - wall0, 3)}
    out["loadavg_mid"] = loadavg()

    # 2. In child processes, at most ``--processes`` at once.
    os.environ[parallel_eval.ENV] = str(args.processes)
    checkpoints = {n: checkpoint_to_bytes(models[n].learner) for n in names}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    got = parallel_eval.parallel_episode_scores(checkpoints, dataset, split="test", n_way=5, k_shot=1,
                                                n_query=15, episodes=args.episodes, seed=0,
                                                nice=parallel_eval.NICE if args.nice is None else args.nice)
    for n in names:
        out["processes"][n] = {"cpu_s": round(got[n]["cpu_seconds"], 3), "wall_s": round(got[n]["seconds"], 3)}
    out["processes"]["total"] = {"cpu_s_children": round(sum(g["cpu_seconds"] for g in got.values()), 3),
                                 "cpu_s_this_process": round(time.process_time() - cpu0, 3),
                                 "wall_s": round(time.perf_counter() - wall0, 3)}
    out["loadavg_after"] = loadavg()
    out["scores_equal"] = all(np.array_equal(got[n]["scores"], sequential[n]) for n in names)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
