"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

A class is represented by its prototype, the mean embedding of its support
examples; a query is scored by minus its squared euclidean distance to each
prototype (a softmax over those gives the class probabilities). Meta-training
learns the embedding (Conv-4 for images, an MLP for vectors) end to end with the
query cross-entropy; adaptation is only "compute the prototypes", so it needs no
gradient step.

Trace (capabilities "prototypes", "shots_trace"): the metric family's per-shot
trace (:mod:`._metric`), with the prototypes of the shots used at each step.
Embeddings are taken in eval mode (batch-norm running statistics), with batch norm
folded into the convolutions (:class:`._conv4_fast.FusedEval`).
"""
from __future__ import annotations

import torch

from ..backbones import make_backbone
from . import register
from ._conv4_fast import FusedEval, conv4_forward
from ._metric import MetricLearner


def class_prototypes(support_emb: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of the support embeddings: (n_s, d), labels (n_s,) in 0..n_way-1 -> (n_way, d)."""
    protos = torch.zeros(n_way, support_emb.shape[1], dtype=support_emb.dtype, device=support_emb.device)
    protos.index_add_(0, support_y, support_emb)
    counts = torch.bincount(support_y, minlength=n_way).clamp_min(1).to(support_emb.dtype)
    return protos / counts.unsqueeze(1)


def prototype_logits(query_emb: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Minus squared euclidean distances: (n_q, d), (n_way, d) -> (n_q, n_way)."""
    return -(query_emb.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)


@register
class ProtoNet(MetricLearner):
    name = "protonet"
    title = "Prototypical Networks"
    paper = "Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning"
    summary = "classes are the mean embeddings of their shots; queries go to the nearest prototype"
    hyperparams = ()
    capabilities = frozenset({"prototypes", "shots_trace"})
    order = 30

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.backbone = make_backbone(self.input_shape)
        # eval-mode Conv-4 with batch norm folded into the convolutions, rebuilt
        # whenever the weights change (adaptation and embedding only; see _conv4_fast)
        self._fused = FusedEval(self.backbone)

    def prototypes(self, support_emb, support_y, n_way):
        return class_prototypes(support_emb, support_y, n_way)

    def score(self, support_emb, support_y, query_emb, n_way):
        """Minus squared distances to the prototypes (n_q, n_way); no extras."""
        return prototype_logits(query_emb, class_prototypes(support_emb, support_y, n_way)), {}

    def train_embed(self, x: torch.Tensor) -> torch.Tensor:
        return conv4_forward(self.backbone, x)  # = self.backbone(x), faster

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *input_shape) -> (n, d) embeddings, eval mode."""
        with torch.no_grad():
            return self._fused(x)
