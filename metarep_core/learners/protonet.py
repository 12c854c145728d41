"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

A class is represented by its prototype, the mean embedding of its support
examples; a query is scored by minus its squared euclidean distance to each
prototype (a softmax over those gives the class probabilities). Meta-training
learns the embedding (Conv-4 for images, an MLP for vectors) end to end with the
query cross-entropy; adaptation is only "compute the prototypes", so it needs no
gradient step.

Trace (capability "shots_trace"): ``adapt(record=True)`` gives one step per shot
added to every class: step ``k`` (k = 1..k_shot, label "1 shot", "2 shots", ...)
uses the first ``k`` shots of each class. There is no step 0: with no shot there
is no prototype, hence nothing to draw. ``support_emb`` always holds the whole
support set (rows aligned with ``episode.support_y``), so its shape is the same at
every step; ``support_loss``/``support_accuracy`` are on the shots used at that
step. Embeddings are taken in eval mode (batch-norm running statistics), so an
example's embedding does not depend on the rest of its batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import make_backbone
from ..episodes import Episode
from . import register
from .base import Adapted, MetaLearner, TraceStep, episode_metrics, to_numpy
from ._conv4_fast import FusedEval, conv4_forward
from ._metric import first_shots


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
class ProtoNet(MetaLearner):
    name = "protonet"
    title = "Prototypical Networks"
    family = "metric"
    paper = "Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning"
    summary = "classes are the mean embeddings of their shots; queries go to the nearest prototype"
    hyperparams = ()
    capabilities = frozenset({"prototypes", "shots_trace"})
    tasks = frozenset({"classification"})
    order = 30

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.backbone = make_backbone(self.input_shape)
        # eval-mode Conv-4 with batch norm folded into the convolutions, rebuilt
        # whenever the weights change (adaptation and embedding only; see _conv4_fast)
        self._fused = FusedEval(self.backbone)

    # ------------------------------------------------------------ meta-training
    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        """One Adam step on the mean query cross-entropy of ``episodes``.

        Every support and query example of the batch goes through the backbone in
        ONE forward pass (batch-norm statistics over all of them), which is faster
        than separate support and query passes.
        """
        self.train()
        xs = [ep.support_x for ep in episodes] + [ep.query_x for ep in episodes]
        z = conv4_forward(self.backbone, torch.cat(xs))
        sizes = [x.shape[0] for x in xs]
        parts = torch.split(z, sizes)
        n = len(episodes)
        loss, correct, total = 0.0, 0, 0
        for i, ep in enumerate(episodes):
            protos = class_prototypes(parts[i], ep.support_y, ep.n_way)
            logits = prototype_logits(parts[n + i], protos)
            loss = loss + F.cross_entropy(logits, ep.query_y)
            correct += (logits.argmax(1) == ep.query_y).sum()
            total += ep.query_y.numel()
        loss = loss / n
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), "accuracy": float(correct) / total}

    # -------------------------------------------------------------- adaptation
    def _embed_eval(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._fused(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *input_shape) -> (n, d) embeddings, eval mode."""
        return self._embed_eval(x)

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        """Prototypes of the support set; with ``record`` one trace step per shot."""
        n_s = episode.support_x.shape[0]
        if record:
            z = self._embed_eval(torch.cat([episode.support_x, episode.query_x]))
            support_emb, query_emb = z[:n_s], z[n_s:]
        else:
            support_emb = self._embed_eval(episode.support_x)
        protos = class_prototypes(support_emb, episode.support_y, episode.n_way)

        def predict(x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(prototype_logits(self._embed_eval(x), protos), dim=1)

        trace = None
        if record:
            trace = [self._trace_step(k, episode, support_emb, query_emb)
                     for k in range(1, episode.k_shot + 1)]
        return Adapted(predict, self._embed_eval, trace, protos)

    def _trace_step(self, k: int, episode: Episode, support_emb: torch.Tensor,
                    query_emb: torch.Tensor) -> TraceStep:
        used = first_shots(episode.support_y, k)
        protos = class_prototypes(support_emb[used], episode.support_y[used], episode.n_way)
        q_probs = torch.softmax(prototype_logits(query_emb, protos), dim=1)
        s_probs = torch.softmax(prototype_logits(support_emb[used], protos), dim=1)
        s_y = episode.support_y[used]
        q = episode_metrics(q_probs, episode, "query")
        s_acc = (s_probs.argmax(1) == s_y).float().mean().item()
        s_loss = -torch.log(s_probs.clamp_min(1e-12)).gather(1, s_y.view(-1, 1)).mean().item()
        return TraceStep(
            step=k, label=f"{k} shot" + ("" if k == 1 else "s"),
            support_loss=s_loss, support_accuracy=s_acc,
            query_loss=q["loss"], query_accuracy=q["accuracy"],
            query_probs=to_numpy(q_probs), support_emb=to_numpy(support_emb),
            query_emb=to_numpy(query_emb), prototypes=to_numpy(protos))
