"""learn2learn's ANIL and Reptile on the workloads of ``metarep_core/bench/opt_metric.py``
(the peers' conventions: random 1x28x28 data, Conv-4, 5-way 1-shot, 15 queries/class,
meta-batch 4, 2 threads, 5 warm-up meta-steps then 5 windows of 3 meta-steps).

Run it in the peers' environment (../shared/bench/peers/setup_peers.sh):

    ~/.venv-peers/bin/python benchmarks/peers_opt_metric.py anil-l2l
    ~/.venv-peers/bin/python benchmarks/peers_opt_metric.py reptile-l2l

* ``anil-l2l``: learn2learn's ANIL recipe (examples/vision/anil_fc100.py): the body
  embeds the task's images once, ``l2l.algorithms.MAML(Linear(64, 5), lr=0.4)`` is
  cloned per task and adapted 5 times on the support features, the query losses are
  summed over the meta-batch, one backward, Adam(1e-3) on body + head.
* ``reptile-l2l``: learn2learn's Reptile recipe (examples/vision/reptile_miniimagenet.py):
  ``deepcopy`` of the model per task, 5 inner SGD steps (lr 0.1) on support + query,
  ``grad = theta - phi`` accumulated and averaged, then SGD(lr=1.0) on theta —
  the same update as this project's Reptile with ``meta_lr`` 1.

One JSON line per workload, with ``tasks_per_s`` as in ``anil-train``/``reptile-train``.
"""
from __future__ import annotations

import copy
import json
import os
import sys

PEERS = os.environ.get("PEERS_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "peers"))
sys.path.insert(0, os.path.abspath(PEERS))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import bench_peers as bp  # noqa: E402

WAY, SHOT, QUERY, META_BATCH, STEPS = 5, 1, 15, 4, 5


def pool():
    flat = bp.episode_pool(4 * META_BATCH, WAY, SHOT, QUERY)
    return [flat[i * META_BATCH:(i + 1) * META_BATCH] for i in range(4)]


def anil_l2l(args) -> dict:
    bp.setup()
    l2l = bp.import_peer("learn2learn")
    features = bp.conv4()
    head = l2l["module"].algorithms.MAML(nn.Linear(64, WAY), lr=0.4)
    opt = torch.optim.Adam(list(features.parameters()) + list(head.parameters()), lr=1e-3)
    batches = pool()
    state = {"i": 0, "loss": None}

    def step():
        opt.zero_grad()
        total = 0.0
        for xs, ys, xq, yq in batches[state["i"] % len(batches)]:
            z = features(torch.cat([xs, xq]))  # the recipe embeds the task's data in one pass
            zs, zq = z[:xs.shape[0]], z[xs.shape[0]:]
            learner = head.clone()
            for _ in range(STEPS):
                learner.adapt(F.cross_entropy(learner(zs), ys))
            total = total + F.cross_entropy(learner(zq), yq)
        (total / META_BATCH).backward()
        opt.step()
        state["i"] += 1
        state["loss"] = float(total.detach()) / META_BATCH

    rates = bp.time_windows(step, args.warmup, args.windows, args.per_window)
    return {"bench": "anil-l2l", "lib": "learn2learn " + l2l["version"],
            "tasks_per_s": round(META_BATCH * bp.statistics.median(rates), 3),
            "window_tasks_per_s": [round(META_BATCH * r, 3) for r in rates],
            "peak_rss_mb": round(bp.peak_rss_mb(), 1), "last_loss": round(state["loss"], 4)}


def reptile_l2l(args) -> dict:
    bp.setup()
    l2l = bp.import_peer("learn2learn")  # the recipe is plain PyTorch; imported for parity
    model = bp.maml_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batches = pool()
    state = {"i": 0, "loss": None}

    def step():
        opt.zero_grad()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        for xs, ys, xq, yq in batches[state["i"] % len(batches)]:
            learner = copy.deepcopy(model)
            inner = torch.optim.SGD(learner.parameters(), lr=0.1)
            x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
            for _ in range(STEPS):
                inner.zero_grad()
                loss = F.cross_entropy(learner(x), y)
                loss.backward()
                inner.step()
            for p, q in zip(model.parameters(), learner.parameters()):
                p.grad.data.add_(q.data, alpha=-1.0)
            state["loss"] = float(loss.detach())
        for p in model.parameters():
            p.grad.data.mul_(1.0 / META_BATCH).add_(p.data)  # grad = theta - mean(phi)
        opt.step()
        state["i"] += 1

    rates = bp.time_windows(step, args.warmup, args.windows, args.per_window)
    return {"bench": "reptile-l2l", "lib": "plain PyTorch, learn2learn " + l2l["version"] + " recipe",
            "tasks_per_s": round(META_BATCH * bp.statistics.median(rates), 3),
            "window_tasks_per_s": [round(META_BATCH * r, 3) for r in rates],
            "peak_rss_mb": round(bp.peak_rss_mb(), 1), "last_loss": round(state["loss"], 4)}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workload", choices=["anil-l2l", "reptile-l2l"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--per-window", type=int, default=3)
    args = ap.parse_args()
    rec = (anil_l2l if args.workload == "anil-l2l" else reptile_l2l)(args)
    rec.setdefault("torch", torch.__version__)
    rec.setdefault("threads", torch.get_num_threads())
    sys.stdout.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
