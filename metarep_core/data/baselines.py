"""Non-meta-learned baselines on raw inputs (the bar a meta-learner must clear)."""
from __future__ import annotations

import math

import torch

from ..episodes import EpisodeSampler


def pixel_ncm_accuracy(dataset, split: str = "test", n_way: int = 5, k_shot: int = 1,
                       n_query: int = 15, episodes: int = 600, seed: int = 0) -> tuple[float, float]:
    """Nearest-class-mean in raw pixels: (mean accuracy %, 95% CI half-width %).

    Each query goes to the class whose mean support image is closest in Euclidean
    distance (for 1-shot this is 1-nearest-neighbour). Episodes are seeded
    ``seed, seed+1, ...`` through :class:`EpisodeSampler`, like the evaluation protocol.
    """
    sampler = EpisodeSampler(dataset, split, n_way, k_shot, n_query, seed)
    accs = []
    for i in range(episodes):
        ep = sampler.sample(seed + i)
        s = ep.support_x.flatten(1).view(n_way, k_shot, -1).mean(1)  # (n_way, D)
        q = ep.query_x.flatten(1)                                    # (n_way*n_query, D)
        pred = torch.cdist(q, s).argmin(1)
        accs.append((pred == ep.query_y).float().mean().item())
    acc = torch.tensor(accs, dtype=torch.float64)
    ci = 1.96 * acc.std().item() / math.sqrt(episodes) if episodes > 1 else 0.0
    return 100.0 * acc.mean().item(), 100.0 * ci
