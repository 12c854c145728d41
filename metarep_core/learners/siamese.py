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

Trace (capabilities "pairwise", "shots_trace"): one step per shot added to every
class (step k uses the first k shots; no step 0), with ``extras["similarity"]``
(n_q, n_way * k) = p(same) of each query with each support example used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import make_backbone
from ..episodes import Episode
from . import register
from ._gbml import trace_step
from .base import Adapted, HyperParam, MetaLearner
from ._metric import eval_mode, first_shots


def class_scores(pair_logits: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Max over each class's shots: (n_q, n_s) pair logits, (n_s,) labels -> (n_q, n_way)."""
    masked = pair_logits.unsqueeze(1).masked_fill(
        support_y.view(1, 1, -1) != torch.arange(n_way, device=pair_logits.device).view(1, -1, 1),
        float("-inf"))
    return masked.amax(-1)


@register
class Siamese(MetaLearner):
    name = "siamese"
    title = "Siamese Networks"
    family = "metric"
    paper = "Koch, Zemel & Salakhutdinov 2015, Siamese Neural Networks for One-shot Image Recognition"
    summary = "twin networks score same/different pairs (weighted L1); a query takes its nearest support's class"
    hyperparams = (
        HyperParam("hidden", 64, "int", 8, 128, help="channels of the Conv-4 twin"),
    )
    capabilities = frozenset({"pairwise", "shots_trace"})
    tasks = frozenset({"classification"})
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

    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.train()
        xs = [torch.cat([ep.support_x, ep.query_x]) for ep in episodes]
        z = torch.split(self.backbone(torch.cat(xs)), [x.shape[0] for x in xs])
        loss, correct, total = 0.0, 0, 0
        for e, ep in zip(z, episodes):
            y = torch.cat([ep.support_y, ep.query_y])
            i, j = torch.triu_indices(len(y), len(y), offset=1, device=y.device)
            logits = self.distance((e[i] - e[j]).abs()).squeeze(-1)
            same = (y[i] == y[j]).to(logits.dtype)
            pos_weight = (same.numel() - same.sum()) / same.sum().clamp_min(1)
            loss = loss + F.binary_cross_entropy_with_logits(logits, same, pos_weight=pos_weight)
            with torch.no_grad():
                n_s = ep.support_y.numel()
                scores = class_scores(self.pair_logits(e[n_s:], e[:n_s]), ep.support_y, ep.n_way)
                correct += int((scores.argmax(1) == ep.query_y).sum())
                total += ep.query_y.numel()
        loss = loss / len(episodes)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), "accuracy": correct / total}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(x)

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        support_emb = self.embed(episode.support_x)
        support_y, n_way = episode.support_y, episode.n_way

        def predict(x):
            with torch.no_grad():
                return class_scores(self.pair_logits(self.embed(x), support_emb), support_y, n_way).softmax(-1)

        trace = None
        if record:
            query_emb = self.embed(episode.query_x)
            trace = []
            with torch.no_grad():
                for k in range(1, episode.k_shot + 1):
                    used = first_shots(support_y, k)
                    q_logits = self.pair_logits(query_emb, support_emb[used])
                    q_scores = class_scores(q_logits, support_y[used], n_way)
                    s_scores = class_scores(self.pair_logits(support_emb[used], support_emb[used]),
                                            support_y[used], n_way)
                    step = trace_step(k, f"{k} shot" + ("" if k == 1 else "s"), episode.with_shots(k),
                                      s_scores, q_scores, support_emb, query_emb,
                                      {"similarity": torch.sigmoid(q_logits).cpu().numpy()})
                    trace.append(step)
        return Adapted(predict, self.embed, trace)
