"""The metric family's base class (ProtoNet, Matching Networks, Siamese networks).

In easyfsl's shape: :class:`MetricLearner` carries the meta-training loop, the
adaptation and the per-shot trace; a subclass writes only how queries are scored
against an embedded support set, :meth:`MetricLearner.score`
(support embeddings (n_s, d), support labels (n_s,), query embeddings (n_q, d) ->
class scores (n_q, n_way) and extras), plus, where its paper says so, the
probabilities of those scores (default softmax) and the episode loss (default the
query cross-entropy of the scores).

Shared behaviour:
- ``meta_step``: every support and query example of the batch goes through the
  backbone in ONE training-mode forward pass (batch-norm statistics over all of
  them, faster than separate passes), then one Adam step on the mean episode loss.
- ``adapt``: embeds the support set (eval mode: batch-norm running statistics, so an
  example's embedding does not depend on the rest of its batch); needs no gradient.
- Trace (capability "shots_trace"): one step per shot added to every class: step k
  (k = 1..k_shot, label "1 shot", "2 shots", ...) uses the first k shots of each
  class. There is no step 0: with no shot there is nothing to score.
  ``support_emb`` always holds the whole support set (rows aligned with
  ``episode.support_y``); the support figures are on the shots used at that step;
  ``extras`` are those of the query scoring at that step.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..episodes import Episode
from .base import Adapted, MetaLearner, TraceStep, shots_label, trace_step


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


class MetricLearner(MetaLearner):
    """A learner that embeds examples with ``self.backbone`` and scores queries
    against the embedded support set. Subclasses set ``self.backbone`` and write
    :meth:`score`."""

    family = "metric"
    capabilities = frozenset({"shots_trace"})
    tasks = frozenset({"classification"})

    # ----------------------------------------------------------- what a subclass writes
    def score(self, support_emb: torch.Tensor, support_y: torch.Tensor, query_emb: torch.Tensor,
              n_way: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class scores (n_q, n_way) of the queries, and extras for the trace (e.g.
        ``attention`` (n_q, n_s)). Must be differentiable (meta-training uses it)."""
        raise NotImplementedError

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n, n_way) from :meth:`score`'s scores (softmax: they are logits)."""
        return scores.softmax(-1)

    def episode_loss(self, support_emb: torch.Tensor, support_y: torch.Tensor, query_emb: torch.Tensor,
                     query_y: torch.Tensor, n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, query scores (n_q, n_way)) of one episode; default: query cross-entropy."""
        scores, _ = self.score(support_emb, support_y, query_emb, n_way)
        return F.cross_entropy(scores, query_y), scores

    def prototypes(self, support_emb: torch.Tensor, support_y: torch.Tensor, n_way: int) -> torch.Tensor | None:
        """Class prototypes (n_way, d) if the learner has them (drawn in embedding space)."""
        return None

    # ---------------------------------------------------------------------- embeddings
    def train_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode embeddings (n, d), with gradients."""
        return self.backbone(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *input_shape) -> (n, d) embeddings, eval mode, no gradient."""
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(x)

    # ------------------------------------------------------------------------ contract
    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        """One Adam step on the mean episode loss of ``episodes`` (one backbone pass)."""
        self.train()
        xs = [ep.support_x for ep in episodes] + [ep.query_x for ep in episodes]
        parts = torch.split(self.train_embed(torch.cat(xs)), [x.shape[0] for x in xs])
        n = len(episodes)
        loss, correct, total = 0.0, 0, 0
        for i, ep in enumerate(episodes):
            ep_loss, scores = self.episode_loss(parts[i], ep.support_y, parts[n + i], ep.query_y, ep.n_way)
            loss = loss + ep_loss
            correct += int((scores.argmax(1) == ep.query_y).sum())
            total += ep.query_y.numel()
        loss = loss / n
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), "accuracy": correct / total}

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        """Embed the support set; with ``record`` one trace step per shot."""
        support_emb = self.embed(episode.support_x)
        support_y, n_way = episode.support_y, episode.n_way
        with torch.no_grad():
            protos = self.prototypes(support_emb, support_y, n_way)
            trace = self._shots_trace(episode, support_emb) if record else None

        def predict(x: torch.Tensor) -> torch.Tensor:
            scores, _ = self.score(support_emb, support_y, self.embed(x), n_way)
            return self.probabilities(scores)

        return Adapted(predict, self.embed, trace, protos)

    def _shots_trace(self, episode: Episode, support_emb: torch.Tensor) -> list[TraceStep]:
        query_emb = self.embed(episode.query_x)
        trace = []
        for k in range(1, episode.k_shot + 1):
            used = first_shots(episode.support_y, k)
            s_emb, s_y = support_emb[used], episode.support_y[used]
            q_scores, extras = self.score(s_emb, s_y, query_emb, episode.n_way)
            s_scores, _ = self.score(s_emb, s_y, s_emb, episode.n_way)
            trace.append(trace_step(
                k, shots_label(k), episode, self.probabilities(q_scores), self.probabilities(s_scores),
                support_y=s_y, support_emb=support_emb, query_emb=query_emb,
                prototypes=self.prototypes(s_emb, s_y, episode.n_way), extras=extras))
        return trace
