"""Meta Networks (MetaNet): fast weights generated from loss gradients, kept in a memory.

Munkhdalai & Yu 2017, "Meta Networks" (ICML).

A *base learner* (an embedding network and a softmax layer with slow weights ``W``)
and a *meta learner* ``G``. For each support example ``i`` the base learner's loss
gradient with respect to its output layer, ``g_i = dL_i/dW = (p_i - y_i) e_i^T``
(the paper's "meta information"), is mapped by ``G`` to example-level fast weights
``W*_i = G(g_i)``, stored in a memory under the key ``r_i = K(e_i)``. A query reads the
memory by attention, ``a_q = softmax(beta * cos(r_q, r_i))``, gets its fast weights
``W*_q = sum_i a_qi W*_i`` and combines slow and fast weights by layer augmentation:
``logits_q = W e_q + b + W*_q e_q``. The whole system is trained on the query loss.

Scaled down / simplified for a CPU, and why:
- a Conv-4 (32 channels by default) is the base learner's body and fast weights are
  generated for its output layer only; the paper also makes task-level fast weights
  for the representation network from an embedding loss (its "dynamic representation
  learning"), which we leave out: it needs a second loss network and doubles the cost;
- ``G`` is a small MLP applied to each gradient coordinate (shared across coordinates,
  as in the coordinate-wise meta learners of that period) rather than a network on the
  whole gradient, which would have n_way * d inputs; it is the sum of a learned
  gradient step ``-eta * g`` and that MLP, started at zero, so training does not begin
  from fast weights that are pure noise;
- the gradient ``g_i`` is computed in closed form (the softmax-linear layer's exact
  gradient; it equals autograd's, see tests), so meta-training differentiates through
  it without a double backward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import make_backbone
from ..episodes import Episode
from . import register
from ._memory import cosine_similarity
from ._sequence import support_order
from .base import Adapted, HyperParam, MetaLearner, TraceStep, trace_step


def output_layer_gradients(emb: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor) -> torch.Tensor:
    """Per-example gradient of the cross-entropy of ``softmax(W e + b)`` w.r.t. ``W``.

    emb (n, d), labels (n,), weight (n_way, d), bias (n_way,) -> (n, n_way, d).
    """
    p = torch.softmax(emb @ weight.t() + bias, -1)
    err = p - F.one_hot(labels, weight.shape[0]).to(p)
    return err.unsqueeze(-1) * emb.unsqueeze(1)


@register
class MetaNetworks(MetaLearner):
    name = "metanet"
    title = "Meta Networks (MetaNet)"
    family = "memory"
    paper = "Munkhdalai & Yu 2017, Meta Networks (ICML)"
    summary = ("fast weights generated from each support example's loss gradient, stored in a "
               "memory and read by attention; slow + fast weights")
    capabilities = frozenset({"memory", "fast_weights", "attention"})
    order = 80
    hyperparams = (
        HyperParam("meta_lr", 2e-3, "float", 1e-5, 1.0, log=True, help="outer-loop (Adam) learning rate"),
        HyperParam("meta_batch", 4, "int", 1, 32, help="episodes per meta-update"),
        HyperParam("conv_channels", 32, "int", 8, 64, help="channels of the Conv-4 body"),
        HyperParam("key_size", 32, "int", 4, 256, help="width of the memory keys r_i"),
        HyperParam("meta_hidden", 16, "int", 2, 128, help="hidden units of the meta learner G"),
    )

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.encoder = make_backbone(self.input_shape, hidden=self.hp["conv_channels"])
        d = self.encoder.out_dim
        self.slow = nn.Linear(d, n_way)                                  # base learner's output layer
        self.key = nn.Linear(d, self.hp["key_size"])                     # memory keys r = K(e)
        self.meta = nn.Sequential(nn.Linear(1, self.hp["meta_hidden"]), nn.Tanh(),
                                  nn.Linear(self.hp["meta_hidden"], 1))   # G, per coordinate
        self.log_beta = nn.Parameter(torch.tensor(2.3))                  # attention sharpness ~10
        # G starts as a plain gradient step, W* = -eta * g, plus a learned correction that
        # starts at zero: from a random G the fast weights are noise and training stalls.
        self.log_eta = nn.Parameter(torch.tensor(0.0))
        nn.init.zeros_(self.meta[2].weight)
        nn.init.zeros_(self.meta[2].bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    # ----------------------------------------------------------------- the model
    def fast_weights(self, s_emb: torch.Tensor, s_y: torch.Tensor) -> torch.Tensor:
        """Example-level fast weights W*_i = G(g_i): (n_s, d), (n_s,) -> (n_s, n_way, d)."""
        g = output_layer_gradients(s_emb, s_y, self.slow.weight, self.slow.bias)
        # Gradients are small; scale them to the meta learner's working range.
        return -self.log_eta.exp() * g + self.meta((g * 10.0).unsqueeze(-1)).squeeze(-1)

    def attention(self, q_emb: torch.Tensor, s_emb: torch.Tensor, mask: torch.Tensor | None = None):
        """Read weights over stored examples: (n_q, d), (n_s, d) -> (n_q, n_s)."""
        sim = cosine_similarity(self.key(s_emb).unsqueeze(0), self.key(q_emb).unsqueeze(0))[0]
        logits = self.log_beta.exp() * sim
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return torch.softmax(logits, -1)

    def logits(self, q_emb, s_emb, fast, mask=None):
        """Slow + fast output layer: logits (n_q, n_way) and the attention (n_q, n_s)."""
        att = self.attention(q_emb, s_emb, mask)
        fast_q = torch.einsum("qs,swd->qwd", att, fast)
        return self.slow(q_emb) + torch.einsum("qwd,qd->qw", fast_q, q_emb), att

    # ----------------------------------------------------------------- contract
    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.train()
        losses, accs = [], []
        for ep in episodes:
            n_s = ep.support_x.shape[0]
            emb = self.encoder(torch.cat([ep.support_x, ep.query_x]))
            s_emb, q_emb = emb[:n_s], emb[n_s:]
            logits, _ = self.logits(q_emb, s_emb, self.fast_weights(s_emb, ep.support_y))
            losses.append(F.cross_entropy(logits, ep.query_y))
            accs.append((logits.argmax(-1) == ep.query_y).float().mean())
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "accuracy": torch.stack(accs).mean().item()}

    @torch.no_grad()
    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        s_emb = self.encoder(episode.support_x)
        fast = self.fast_weights(s_emb, episode.support_y)

        def predict(x):
            return torch.softmax(self.logits(self.encoder(x), s_emb, fast)[0], -1)

        trace = self._trace(episode, s_emb, fast) if record else None
        return Adapted(predict, embed=self.encoder, trace=trace)

    def _trace(self, episode: Episode, s_emb, fast) -> list[TraceStep]:
        """Step 0: slow weights only (empty memory); step k: k support examples stored,
        in the same shuffled order the sequence learners stream them."""
        q_emb = self.encoder(episode.query_x)
        n_s = s_emb.shape[0]
        order = support_order(episode)
        norms = fast.flatten(1).norm(dim=1)
        trace = []
        for k in range(n_s + 1):
            mask = torch.zeros(n_s, dtype=torch.bool, device=s_emb.device)
            mask[order[:k].to(s_emb.device)] = True
            if k == 0:
                q_logits, s_logits = self.slow(q_emb), self.slow(s_emb)
                att = torch.zeros(q_emb.shape[0], n_s)
            else:
                q_logits, att = self.logits(q_emb, s_emb, fast, mask.unsqueeze(0))
                s_logits, _ = self.logits(s_emb, s_emb, fast, mask.unsqueeze(0))
            q_probs, s_probs = torch.softmax(q_logits, -1), torch.softmax(s_logits, -1)
            i = int(order[k - 1]) if k else None
            label = ("before any support example (slow weights only)" if k == 0 else
                     f"stored fast weights of support {k}/{n_s} (class {episode.class_names[int(episode.support_y[i])]})")
            trace.append(trace_step(
                k, label, episode, q_probs, s_probs, support_emb=s_emb, query_emb=q_emb,
                extras={"attention": att, "fast_weight_norm": norms * mask.float()}))
        return trace
