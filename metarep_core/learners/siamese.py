"""Siamese networks (Koch, Zemel & Salakhutdinov 2015, "Siamese Neural Networks for
One-shot Image Recognition").

Twin embedding networks with shared weights (here Conv-4, the field's common
backbone, instead of the paper's larger 4-layer conv net with a 4096-d sigmoid
layer) and a learned weighted L1 distance:

    p(same | x1, x2) = sigmoid( sum_j w_j |e(x1)_j - e(x2)_j| + b )

trained with binary cross-entropy on same/different pairs. Used one-shot by
nearest support: a query takes the class of the support example it is most similar
to. With K > 1 shots a class scores the MAX pair logit over its shots (the nearest
shot wins); the class probabilities are a softmax over these class scores.

Pairs (simplification of the paper's fixed pair sets): every unordered pair of the
episode's support + query examples; the few "same" pairs are up-weighted so both
kinds weigh equally in the loss (``pos_weight`` = n_different / n_same).
``meta_step`` returns the pair loss and the one-shot query accuracy (nearest support).
The paper's affine-distortion augmentation and layer-wise learning-rate schedule
are left out; the outer optimizer is Adam (``meta_lr``). The weights ``w`` start
equal and negative (a plain L1 distance) instead of random, which speeds up early
training.

Trace (capabilities "pairwise", "shots_trace"): the metric family's per-shot trace
(:mod:`._metric`; step k uses the first k shots of each class), with
``extras["similarity"]`` (n_q, n_way * k) = p(same) of each query with each support
example used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import make_backbone
from . import register
from ._metric import MetricLearner
from .base import HyperParam


def class_scores(pair_logits: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Max over each class's shots: (n_q, n_s) pair logits, (n_s,) labels -> (n_q, n_way)."""
    masked = pair_logits.unsqueeze(1).masked_fill(
        support_y.view(1, 1, -1) != torch.arange(n_way, device=pair_logits.device).view(1, -1, 1),
        float("-inf"))
    return masked.amax(-1)


@register
class Siamese(MetricLearner):
    name = "siamese"
    title = "Siamese Networks"
    paper = "Koch, Zemel & Salakhutdinov 2015, Siamese Neural Networks for One-shot Image Recognition"
    summary = "twin networks score same/different pairs (weighted L1); a query takes its nearest support's class"
    hyperparams = (
        HyperParam("hidden", 64, "int", 8, 128, help="channels of the Conv-4 twin"),
    )
    capabilities = frozenset({"pairwise", "shots_trace"})
    order = 40

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.backbone = make_backbone(self.input_shape, hidden=self.hp["hidden"])
        d = self.backbone.out_dim
        self.distance = nn.Linear(d, 1)  # the weighted L1 component weights w and bias b
        # Start as a plain (negated, scaled) L1 distance, so that similarity falls with
        # distance from the first step; training then re-weights the components.
        with torch.no_grad():
            self.distance.weight.fill_(-4.0 / d)
            self.distance.bias.fill_(1.0)

    def pair_logits(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """Logit of p(same) for every pair: (n1, d), (n2, d) -> (n1, n2)."""
        return self.distance((e1.unsqueeze(1) - e2.unsqueeze(0)).abs()).squeeze(-1)

    def score(self, support_emb, support_y, query_emb, n_way):
        """Each class's best pair logit (n_q, n_way), and ``similarity`` = p(same) (n_q, n_s)."""
        logits = self.pair_logits(query_emb, support_emb)
        return class_scores(logits, support_y, n_way), {"similarity": torch.sigmoid(logits)}

    def episode_loss(self, support_emb, support_y, query_emb, query_y, n_way):
        """Binary cross-entropy over every unordered pair of support + query examples
        ("same" pairs up-weighted); the scores are the nearest-support class scores."""
        e = torch.cat([support_emb, query_emb])
        y = torch.cat([support_y, query_y])
        i, j = torch.triu_indices(len(y), len(y), offset=1, device=y.device)
        logits = self.distance((e[i] - e[j]).abs()).squeeze(-1)
        same = (y[i] == y[j]).to(logits.dtype)
        pos_weight = (same.numel() - same.sum()) / same.sum().clamp_min(1)
        loss = F.binary_cross_entropy_with_logits(logits, same, pos_weight=pos_weight)
        with torch.no_grad():
            scores, _ = self.score(support_emb, support_y, query_emb, n_way)
        return loss, scores
