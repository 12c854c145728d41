"""Santoro et al.'s figure for a MANN/DNC checkpoint: accuracy at the 1st, 2nd, 5th and
10th presentation of a class, and the 5-way 1-shot accuracy with the memory reads zeroed.

    python scripts/presentation_accuracy.py assets/checkpoints/mann_glyphs_5w1s.safetensors --episodes 600

Each test episode (5-way, 1 support + 9 queries per class by default: Santoro et al.'s
50-step episodes, 10 presentations of each class) is streamed whole, one image at a time
with the previous label (``presentation_accuracy``); means over episodes, with a 95%
interval (1.96 standard errors).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run as a file from the repository root

from metarep_core.checkpoints import load_checkpoint  # noqa: E402
from metarep_core.data import load_dataset  # noqa: E402
from metarep_core.episodes import EpisodeSampler  # noqa: E402
from metarep_core.learners._sequence import (MAX_PRESENTATION, accuracy_by_presentation,  # noqa: E402
                                              reads_zeroed)


GAP_MAX = 6  # gaps of 6 steps or more are pooled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-query", type=int, default=9,
                    help="queries per class streamed after the support (default 9: 50-step streams)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    learner, meta = load_checkpoint(args.checkpoint)
    learner.eval()
    data = load_dataset(meta.get("dataset", "glyphs"))
    test = EpisodeSampler(data, "test", 5, 1, args.n_query, seed=args.seed)
    episodes = [test.sample(args.seed + i) for i in range(args.episodes)]
    streams = [learner.stream_predictions(ep) for ep in episodes]  # each episode streamed once
    curves = np.stack([accuracy_by_presentation(*s, MAX_PRESENTATION) for s in streams])
    for p in (1, 2, 5, 10):
        c = curves[:, p - 1]
        print(f"presentation {p:2d}: {100 * c.mean():.2f} ± {196 * c.std() / np.sqrt(len(c)):.2f}")
    # The 2nd presentation by how many steps after the 1st it comes: at 1 step, the 1st
    # one's label arrives with the 2nd image itself.
    by_gap: dict[int, list[bool]] = {}
    for predicted, y, inst in streams:
        first: dict[int, int] = {}
        for t, (c, k) in enumerate(zip(y.tolist(), inst.tolist())):
            if k == 1:
                first[c] = t
            elif k == 2:
                by_gap.setdefault(min(t - first[c], GAP_MAX), []).append(bool(predicted[t] == c))
    print("presentation 2 by steps since the 1st: " + ", ".join(
        f"{g}{'+' if g == GAP_MAX else ''}: {100 * np.mean(v):.1f}% (n={len(v)})" for g, v in sorted(by_gap.items())))
    with reads_zeroed(learner):
        ablated = np.array([learner.evaluate_episode(ep)["accuracy"] for ep in episodes])
    print(f"5-way 1-shot with the memory reads zeroed: {100 * ablated.mean():.2f} ± "
          f"{196 * ablated.std() / np.sqrt(len(ablated)):.2f} (chance 20)")


if __name__ == "__main__":
    main()
