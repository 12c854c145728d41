"""Episodes: one N-way K-shot task (or one regression task) and the sampler that makes them.

Support examples are ordered class-major: the ``k_shot`` shots of class 0, then
class 1, ... so ``support_y == arange(n_way).repeat_interleave(k_shot)``. The same
for queries with ``n_query`` per class. Sampling is deterministic in the seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import check_positive_int


@dataclass
class Episode:
    """One task.

    Classification: ``support_x`` (n_way*k_shot, C, H, W) or (n_way*k_shot, D) float32,
    ``support_y`` (n_way*k_shot,) int64 in 0..n_way-1; the same for ``query_*`` with
    n_way*n_query rows. Regression: ``support_x``/``support_y`` are (k_shot, 1) float32,
    ``query_*`` (n_query, 1); ``n_way`` is 1.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    class_names: list[str]
    n_way: int
    k_shot: int
    n_query: int
    seed: int
    task: str = "classification"  # or "regression"
    # Free-form facts about the task: "groups" (alphabet per class), "class_ids"
    # (indices in the dataset), "amplitude"/"phase" for the sinusoid, ...
    info: dict = field(default_factory=dict)

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    def to(self, device) -> "Episode":
        """A copy with every tensor on ``device``."""
        return Episode(
            self.support_x.to(device), self.support_y.to(device),
            self.query_x.to(device), self.query_y.to(device),
            self.class_names, self.n_way, self.k_shot, self.n_query, self.seed,
            self.task, self.info,
        )

    def with_shots(self, k: int) -> "Episode":
        """The same episode with only the first ``k`` shots of each class in the support."""
        if self.is_regression:
            return Episode(self.support_x[:k], self.support_y[:k], self.query_x, self.query_y,
                           self.class_names, self.n_way, k, self.n_query, self.seed,
                           self.task, self.info)
        idx = torch.arange(self.n_way * self.k_shot).view(self.n_way, self.k_shot)[:, :k].reshape(-1)
        return Episode(self.support_x[idx], self.support_y[idx], self.query_x, self.query_y,
                       self.class_names, self.n_way, k, self.n_query, self.seed,
                       self.task, self.info)


class EpisodeSampler:
    """Samples episodes from one split of a dataset.

    ``sample(seed)`` gives the same episode for the same seed; iterating gives
    episodes seeded ``seed, seed+1, ...``. Parameters are validated here, at the
    boundary, with messages that name the value and what is allowed.
    """

    def __init__(self, dataset, split: str = "train", n_way: int = 5, k_shot: int = 1,
                 n_query: int = 15, seed: int = 0):
        self.dataset = dataset
        self.split = split
        self.n_way = check_positive_int("n_way", n_way)
        self.k_shot = check_positive_int("k_shot", k_shot)
        self.n_query = check_positive_int("n_query", n_query)
        self.seed = int(seed)
        dataset.check_episode(split, self.n_way, self.k_shot, self.n_query)

    def sample(self, seed: int | None = None) -> Episode:
        seed = self.seed if seed is None else int(seed)
        rng = np.random.default_rng(seed)
        return self.dataset.sample_episode(rng, self.split, self.n_way, self.k_shot,
                                           self.n_query, seed)

    def __iter__(self):
        i = 0
        while True:
            yield self.sample(self.seed + i)
            i += 1
