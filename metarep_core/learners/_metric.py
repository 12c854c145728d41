"""Small helpers shared by the metric learners (ProtoNet, Siamese networks, Matching
Networks): the shots-trace indexing and eval mode."""
from __future__ import annotations

import contextlib

import torch


def first_shots(support_y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (in support order) of the first ``k`` support examples of every class."""
    counts: dict[int, int] = {}
    keep = []
    for i, c in enumerate(support_y.tolist()):
        if counts.get(c, 0) < k:
            keep.append(i)
        counts[c] = counts.get(c, 0) + 1
    return torch.tensor(keep, dtype=torch.long, device=support_y.device)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """Temporarily put ``module`` in eval mode (batch-norm running statistics)."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
