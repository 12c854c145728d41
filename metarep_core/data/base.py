"""Dataset contracts.

A :class:`ClassDataset` is a pool of labelled classes of images (or vectors) with
disjoint meta-train / meta-val / meta-test class splits. A :class:`TaskFamily` is a
distribution over regression tasks (the sinusoid). Both sample :class:`Episode`s.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..episodes import Episode
from ..errors import MetaRepError

SPLITS = ("train", "val", "test", "all")


def _split_sizes(n: int, fractions) -> tuple[int, int]:
    """(n_train, n_val) of ``n`` items; with 3 or more, every split gets at least one
    (so 4 alphabets give 2/1/1, not 3/1/0 with an empty test split)."""
    n_tr, n_va = round(fractions[0] * n), round(fractions[1] * n)
    if n >= 3:
        n_tr = max(1, min(n_tr, n - 2))
        n_va = max(1, min(n_va, n - n_tr - 1))
    return n_tr, n_va


def split_classes(n_classes: int, seed: int, fractions=(0.64, 0.16, 0.20),
                  groups: list[str] | None = None) -> dict[str, list[int]]:
    """Disjoint train/val/test class indices, deterministic in ``seed``.

    With ``groups`` (alphabets), whole groups go to one split, as in Omniglot's
    protocol, so test classes come from alphabets never seen in training.
    """
    rng = np.random.default_rng(seed)
    if groups is not None and len(set(groups)) >= 3:
        names = sorted(set(groups))
        order = [names[i] for i in rng.permutation(len(names))]
        n_tr, n_va = _split_sizes(len(names), fractions)
        parts = {"train": set(order[:n_tr]), "val": set(order[n_tr:n_tr + n_va]),
                 "test": set(order[n_tr + n_va:])}
        out = {k: [i for i, g in enumerate(groups) if g in v] for k, v in parts.items()}
    else:
        perm = rng.permutation(n_classes).tolist()
        n_tr, n_va = _split_sizes(n_classes, fractions)
        out = {"train": sorted(perm[:n_tr]), "val": sorted(perm[n_tr:n_tr + n_va]),
               "test": sorted(perm[n_tr + n_va:])}
    out["all"] = list(range(n_classes))
    return out


@dataclass
class ClassDataset:
    """Classes of examples.

    ``images[c]`` is a float32 tensor (n_c, C, H, W) in [0, 1] (or (n_c, D) for
    vectors), or a uint8 one in 0..255 (user folders and uploads: a quarter of the
    memory); episodes and :meth:`class_images` always give float32 in [0, 1].
    ``class_names[c]`` is its name; ``groups[c]`` its alphabet (or None).
    ``params`` records how it was made, so a checkpoint can name its dataset.
    """

    name: str
    class_names: list[str]
    images: list[torch.Tensor]
    splits: dict[str, list[int]]
    groups: list[str] | None = None
    params: dict = field(default_factory=dict)
    task: str = "classification"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.images[0].shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_images(self, c: int, index=None) -> torch.Tensor:
        """Class ``c``'s images (or those at ``index``) as float32 in [0, 1]: (n, C, H, W)."""
        x = self.images[c] if index is None else self.images[c][index]
        return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x

    def split_indices(self, split: str) -> list[int]:
        if split not in self.splits:
            raise MetaRepError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.splits[split]

    def check_episode(self, split: str, n_way: int, k_shot: int, n_query: int) -> None:
        """Raise :class:`MetaRepError` when this split cannot give such an episode."""
        classes = self.split_indices(split)
        if n_way > len(classes):
            raise MetaRepError(
                f"n_way = {n_way} but the {split!r} split of {self.name!r} has "
                f"{len(classes)} classes; choose n_way <= {len(classes)}")
        need = k_shot + n_query
        small = [c for c in classes if self.images[c].shape[0] < need]
        # Small classes are skipped when sampling; refuse only when too few remain.
        if len(classes) - len(small) < n_way:
            c = small[0]
            raise MetaRepError(
                f"k_shot + n_query = {need} but class {self.class_names[c]!r} has "
                f"{self.images[c].shape[0]} images (and {len(classes) - len(small)} classes "
                f"of the {split!r} split have enough for n_way = {n_way})")

    def sample_episode(self, rng: np.random.Generator, split: str, n_way: int, k_shot: int,
                       n_query: int, seed: int) -> Episode:
        need = k_shot + n_query
        pool = [c for c in self.split_indices(split) if self.images[c].shape[0] >= need]
        chosen = rng.choice(len(pool), size=n_way, replace=False)
        class_ids = [pool[i] for i in chosen]
        sx, qx = [], []
        for c in class_ids:
            pick = torch.from_numpy(rng.choice(self.images[c].shape[0], size=need, replace=False))
            sx.append(self.class_images(c, pick[:k_shot]))
            qx.append(self.class_images(c, pick[k_shot:]))
        labels = torch.arange(n_way)
        return Episode(
            support_x=torch.cat(sx), support_y=labels.repeat_interleave(k_shot),
            query_x=torch.cat(qx), query_y=labels.repeat_interleave(n_query),
            class_names=[self.class_names[c] for c in class_ids],
            n_way=n_way, k_shot=k_shot, n_query=n_query, seed=seed,
            info={"class_ids": class_ids,
                  "groups": [self.groups[c] for c in class_ids] if self.groups else None},
        )

    def samples(self, split: str, n: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
        """``n`` random examples from the split (for embedding views): (x, class ids)."""
        rng = np.random.default_rng(seed)
        classes = self.split_indices(split)
        xs, ys = [], []
        for _ in range(n):
            c = classes[rng.integers(len(classes))]
            xs.append(self.class_images(c, rng.integers(self.images[c].shape[0])))
            ys.append(c)
        return torch.stack(xs), ys


class TaskFamily:
    """A distribution over regression tasks; subclasses implement ``sample_task``."""

    name = "task-family"
    task = "regression"
    input_shape = (1,)
    params: dict = {}

    # Regression "splits" are disjoint streams of task seeds, so that test tasks
    # are never the ones trained on (the family itself is shared, as in MAML).
    _split_offset = {"train": 0, "val": 1_000_003, "test": 2_000_003, "all": 3_000_017}

    def check_episode(self, split: str, n_way: int, k_shot: int, n_query: int) -> None:
        if split not in self._split_offset:
            raise MetaRepError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if n_way != 1:
            raise MetaRepError(f"n_way must be 1 for the regression dataset {self.name!r}, got {n_way}")

    def sample_task(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def evaluate(self, task: dict, x: torch.Tensor) -> torch.Tensor:
        """True outputs (n, 1) of ``task`` at inputs ``x`` (n, 1)."""
        raise NotImplementedError

    def sample_inputs(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        raise NotImplementedError

    def grid(self, n: int = 200) -> torch.Tensor:
        """(n, 1) evenly spaced inputs over the family's input range, to draw curves
        (the app draws a task's true curve and the model's on it)."""
        raise NotImplementedError

    def sample_episode(self, rng, split, n_way, k_shot, n_query, seed) -> Episode:
        rng = np.random.default_rng(seed + self._split_offset[split])
        task = self.sample_task(rng)
        sx = self.sample_inputs(rng, k_shot)
        qx = self.sample_inputs(rng, n_query)
        return Episode(sx, self.evaluate(task, sx), qx, self.evaluate(task, qx),
                       class_names=["task"], n_way=1, k_shot=k_shot, n_query=n_query,
                       seed=seed, task="regression", info=dict(task))
