"""Expected calibration error of checkpoints on the same test episodes (issue 9: ABML's
calibration next to VERSA's).

    python scripts/calibration.py assets/checkpoints/versa_omniglot_5w1s.safetensors \
        assets/checkpoints/abml_omniglot_5w1s.safetensors --episodes 600

Each checkpoint adapts to each 5-way episode of its dataset's test split (1 shot, 15
queries per class, episode seeds 0, 1, ...) and predicts the queries; the predictions of
all episodes are pooled and scored by :func:`metarep_core.calibration.expected_calibration_error`
(10 equal-width confidence bins). Prints one JSON line per checkpoint: accuracy, mean
confidence (below the accuracy: under-confident), ECE, in %.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run as a file from the repository root

from metarep_core.calibration import expected_calibration_error  # noqa: E402
from metarep_core.checkpoints import load_checkpoint  # noqa: E402
from metarep_core.data import load_dataset  # noqa: E402
from metarep_core.episodes import EpisodeSampler  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--k-shot", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for path in args.checkpoints:
        learner, meta = load_checkpoint(path)
        learner.eval()
        data = load_dataset(meta.get("dataset", "glyphs"))
        test = EpisodeSampler(data, "test", 5, args.k_shot, 15, seed=0)
        probs, labels = [], []
        for i in range(args.episodes):
            ep = test.sample(i)
            probs.append(learner.adapt(ep).predict(ep.query_x).detach())
            labels.append(ep.query_y)
        p, y = torch.cat(probs), torch.cat(labels)
        print(json.dumps({
            "checkpoint": path, "episodes": args.episodes, "k_shot": args.k_shot,
            "accuracy": round(100 * float((p.argmax(1) == y).float().mean()), 2),
            "mean_confidence": round(100 * float(p.max(1).values.mean()), 2),
            "ece": round(100 * expected_calibration_error(p, y), 2)}), flush=True)


if __name__ == "__main__":
    main()
