"""Server-side cost of the app's figures: build + serialise (``fig.to_json()``, what
Streamlit sends), in ms, median and p95 of 20 after 2 warm-ups, one JSON line each.

The issue's goal is a new episode / an adaptation step on screen in <= 300 ms;
this is the part of that budget the figure functions spend.

    .venv/bin/python benchmarks/figure_latency.py
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from app.figures.adaptation import embedding_motion, query_predictions, trace_extras  # noqa: E402
from app.figures.curves import trace_curves, training_curves  # noqa: E402
from app.figures.embedding import embedding_figure  # noqa: E402
from app.figures.episodes import episode_grid  # noqa: E402
from metarep_core.data import load_dataset  # noqa: E402
from metarep_core.episodes import EpisodeSampler  # noqa: E402
from metarep_core.learners.base import TraceStep  # noqa: E402


def timed(name: str, make, repeats: int = 20, warmup: int = 2) -> dict:
    for _ in range(warmup):
        make().to_json()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        payload = make().to_json()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    return {"bench": f"figure-{name}", "ms_median": round(statistics.median(ms), 1),
            "ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 1), "json_kb": round(len(payload) / 1024, 1)}


def main() -> None:
    rng = np.random.default_rng(0)
    data = load_dataset("glyphs")
    ep = EpisodeSampler(data, "test", 5, 1, 15, seed=0).sample()
    n_q = len(ep.query_y)
    probs = rng.dirichlet(np.ones(5), n_q)
    trace = [TraceStep(step=s, label="", support_loss=1 / (s + 1), support_accuracy=0.2 + 0.08 * s,
                       query_loss=1.1 / (s + 1), query_accuracy=0.2 + 0.07 * s, query_probs=probs,
                       extras={"attention": rng.random((n_q, 5)), "uncertainty": rng.random(n_q)})
             for s in range(11)]
    pool = np.concatenate([data.images[c].numpy() for c in data.splits["test"][:50]])[:1000]
    pts = rng.normal(size=(1000, 2))
    y = rng.integers(0, 50, 1000)
    kinds = np.array(["sample"] * 920 + ["support"] * 5 + ["query"] * 75)
    wrong = np.zeros(1000, bool)
    wrong[-20:] = True
    history = [{"step": s, "loss": 1.0 / s, "accuracy": 50.0} for s in range(1, 2001)]
    motion = rng.normal(size=(11, 80, 2)).cumsum(0)
    cases = {
        "support-grid-5w1s": lambda: episode_grid(ep.support_x, ep.support_y, ep.class_names),
        "query-predictions-75": lambda: query_predictions(ep.query_x, ep.query_y, probs, ep.class_names),
        "trace-curves-11-steps": lambda: trace_curves(trace, 5),
        "trace-extras": lambda: trace_extras(trace[5], n_query=n_q)[0],
        "embedding-motion-80x11": lambda: embedding_motion(motion, np.arange(80) % 5, upto=10),
        "embedding-1000-points": lambda: embedding_figure(pts, y, class_names=[str(i) for i in range(50)],
                                                          kinds=kinds, wrong=wrong, images=pool),
        "training-curves-2000-steps": lambda: training_curves(history, []),
    }
    for name, make in cases.items():
        print(json.dumps(timed(name, make)), flush=True)


if __name__ == "__main__":
    main()
