"""Projection workloads (``python -m metarep_core bench projection-umap ...``).

* ``projection-umap``: UMAP of 1,000 random 64-d points, 2-D, as the Embedding page
  runs it: in a fresh process with an empty numba cache (a first server start), in
  a fresh process with the disk cache filled (a restarted server), and again in
  that process (warm). Wall and CPU seconds each; the CPU figures say what the wall
  figures would be on an idle core.
* ``projection-tsne``, ``projection-pca``: the same points, ms, median of 5 after one warm-up.
* ``projection``: what the Embedding page projects (issue 13): 1,000 embeddings (64-d)
  of glyphs test images by the shipped ProtoNet, each method in 2-D and 3-D, warm
  (UMAP compiled first). One record per method and dim with p50/p95 of wall and CPU
  seconds over ``repeats`` seeds (default 5), the quality of the last seed's map
  (trustworthiness at k=10, leave-one-out 5-NN class accuracy in the map) and the
  load average (``loadavg``: 1, 5, 15 minutes), since on a shared machine only the CPU figures compare across runs.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

from .. import projection


def _bench_child(n: int, d: int) -> dict:
    """Times (wall seconds, and CPU seconds of this process) of importing umap, the
    first UMAP of ``n`` random points in ``d`` dimensions, and a second one."""
    clock = lambda: (time.perf_counter(), time.process_time())  # noqa: E731
    t0 = clock()
    projection._umap()
    t1 = clock()
    X = np.random.default_rng(1).normal(size=(n, d))
    projection.project(X, "umap", 2, seed=0)
    t2 = clock()
    projection.project(X, "umap", 2, seed=1)
    t3 = clock()
    out = {}
    for name, (a, b) in {"import": (t0, t1), "first_umap": (t1, t2), "first_total": (t0, t2),
                         "warm_umap": (t2, t3)}.items():
        out[name + "_s"] = round(b[0] - a[0], 2)
        out[name + "_cpu_s"] = round(b[1] - a[1], 2)
    return out


def _bench(n: int = 1000, d: int = 64) -> dict:
    """UMAP of n points in a fresh process with a cold numba cache, then again in a
    fresh process with the warm disk cache (a restarted server), plus in-process."""
    import json
    import subprocess
    import tempfile
    code = (f"import json; from metarep_core.bench.projection import _bench_child; "
            f"print(json.dumps(_bench_child({n}, {d})))")
    out = {"n_points": n, "n_features": d}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env["METAREP_CACHE"] = tmp
        for label in ("cold_cache", "warm_cache"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True, cwd=Path(__file__).resolve().parents[2])
            out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def _umap(opts: dict) -> dict:
    out = _bench(int(opts.get("n_points", 1000)), int(opts.get("n_features", 64)))
    return {"bench": "projection-umap", **out}


def _timed(method: str, repeats: int = 5):
    def run(opts: dict) -> dict:
        X = np.random.default_rng(1).normal(size=(int(opts.get("n_points", 1000)), 64))
        projection.project(X, method, 2)
        wall, cpu = [], []
        for i in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            projection.project(X, method, 2, seed=i)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        return {"bench": f"projection-{method}", "n_points": len(X), "ms": round(median(wall), 1),
                "cpu_ms": round(median(cpu), 1)}
    return run


def page_embeddings(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (n, 64) float64 of ``n`` glyphs test images by the shipped ProtoNet
    (a fresh ProtoNet if the checkpoint is missing) and their class ids (n,)."""
    import torch
    from ..data import load_dataset
    ds = load_dataset("glyphs", seed=0)
    path = Path(__file__).resolve().parents[2] / "assets" / "checkpoints" / "protonet_glyphs_5w1s.safetensors"
    if path.is_file():
        from ..checkpoints import load_checkpoint
        learner = load_checkpoint(str(path))[0]
    else:
        from ..learners import build_learner
        learner = build_learner("protonet", ds.input_shape, 5, task="classification")
    x, classes = ds.samples("test", n, seed=seed)
    with torch.no_grad():
        emb = learner.eval().embed(x)
    return emb.double().numpy(), np.asarray(classes)


def knn_accuracy(Y: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN class accuracy of points ``Y`` (n, dim) with ``labels`` (n,):
    the share of points whose k nearest others mostly (ties: lowest id) share their class."""
    d = projection._distance_matrix(Y)
    np.fill_diagonal(d, np.inf)
    votes = labels[np.argsort(d, axis=1, kind="stable")[:, :k]]
    predicted = np.array([np.bincount(v).argmax() for v in votes])
    return float((predicted == labels).mean())


def _page(opts: dict) -> list[dict]:
    from sklearn.manifold import trustworthiness
    n, repeats = int(opts.get("n_points", 1000)), int(opts.get("repeats", 5))
    X, labels = page_embeddings(n)
    projection.warm_up()
    projection.project(X[:100], "umap", 2)      # the full-size code path compiled too
    records = []
    for method in projection.METHODS:
        for dim in projection.DIMS:
            wall, cpu = [], []
            for seed in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                Y = projection.project(X, method, dim, seed=seed)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            load = os.getloadavg()   # 1, 5 and 15 minutes, as the runs end
            pct = lambda v, q: round(float(np.percentile(v, q)), 3)  # noqa: E731
            records.append({
                "bench": "projection", "method": method, "dim": dim, "n_points": len(X),
                "n_features": X.shape[1], "repeats": repeats,
                "wall_p50_s": pct(wall, 50), "wall_p95_s": pct(wall, 95),
                "cpu_p50_s": pct(cpu, 50), "cpu_p95_s": pct(cpu, 95),
                "trustworthiness": round(float(trustworthiness(X, Y, n_neighbors=10)), 4),
                "knn5_accuracy": round(knn_accuracy(Y, labels), 4),
                "loadavg": [round(v, 2) for v in load]})
    return records


WORKLOADS = {"projection-umap": _umap, "projection-tsne": _timed("tsne"), "projection-pca": _timed("pca"),
             "projection": _page}
