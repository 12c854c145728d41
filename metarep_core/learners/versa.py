"""VERSA: amortized inference of the classifier weights (ML-PIP).

Gordon, Bronskill, Bauer, Nowozin & Turner 2019, "Meta-Learning Probabilistic
Inference for Prediction" (ICLR).

A shared feature extractor ``e = f(x)``; an *amortization network* maps the features
of each class's shots to a Gaussian posterior over that class's head weights: each
shot goes through an instance network, the results are mean-pooled over the class's
shots (permutation-invariant, any number of shots), and two small heads output the
mean and the log-variance of ``w_c`` (with its bias). Classes are handled
independently, so any number of ways works. The predictive distribution is the Monte
Carlo average of the softmax over weight samples (sampled by local
reparameterization, as logits); training maximises the query predictive
log-likelihood ``log 1/L sum_l p(y | x, w_l)`` end to end, with no inner loop.

Scaled down for a CPU: a Conv-4 body with 32 channels by default (paper: 64), an
amortization network of width 64, 10 samples for training and 50 for adaptation.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import make_backbone
from ..episodes import Episode
from . import register
from ._bayes import entropy, logit_samples, predictive, predictive_nll, weight_samples
from ._metric import first_shots
from .base import Adapted, HyperParam, MetaLearner, TraceStep, shots_label, trace_step


class Amortizer(nn.Module):
    """Class posterior from its shots: features (k, d) -> mean, logvar (d+1,) each."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.instance = nn.Sequential(nn.Linear(d, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU())
        self.mean = nn.Sequential(nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, d + 1))
        self.logvar = nn.Sequential(nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, d + 1))
        nn.init.constant_(self.logvar[2].bias, -3.0)   # start from a confident head

    def forward(self, s_emb: torch.Tensor, s_y: torch.Tensor, n_way: int):
        """s_emb (n_s, d), s_y (n_s,) -> posterior mean and logvar, each (n_way, d+1)."""
        h = self.instance(s_emb)
        pooled = torch.zeros(n_way, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, s_y, h)
        pooled = pooled / torch.bincount(s_y, minlength=n_way).clamp_min(1).unsqueeze(1).to(h)
        return self.mean(pooled), self.logvar(pooled).clamp(-10.0, 5.0)


@register
class VERSA(MetaLearner):
    name = "versa"
    title = "VERSA (amortized weight posterior, ML-PIP)"
    family = "generation"
    paper = "Gordon et al. 2019, Meta-Learning Probabilistic Inference for Prediction (ICLR)"
    summary = ("an amortization network maps each class's shots to a Gaussian posterior over its "
               "head weights; Monte-Carlo predictive")
    capabilities = frozenset({"probabilistic", "fast_weights", "shots_trace"})
    order = 90
    hyperparams = (
        HyperParam("meta_lr", 1e-3, "float", 1e-5, 1.0, log=True, help="outer-loop (Adam) learning rate"),
        HyperParam("meta_batch", 4, "int", 1, 32, help="episodes per meta-update"),
        HyperParam("conv_channels", 32, "int", 8, 64, help="channels of the Conv-4 feature extractor"),
        HyperParam("amortizer_hidden", 64, "int", 8, 512, help="width of the amortization network"),
        HyperParam("train_samples", 10, "int", 1, 100, help="weight samples per query in training"),
        HyperParam("test_samples", 50, "int", 1, 1000, help="weight samples per query when adapted"),
    )

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.encoder = make_backbone(self.input_shape, hidden=self.hp["conv_channels"])
        self.amortizer = Amortizer(self.encoder.out_dim, self.hp["amortizer_hidden"])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def posterior(self, s_emb: torch.Tensor, s_y: torch.Tensor):
        """The amortized posterior of the head: mean, logvar (n_way, d+1)."""
        return self.amortizer(s_emb, s_y, self.n_way)

    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.train()
        losses, accs = [], []
        for ep in episodes:
            n_s = ep.support_x.shape[0]
            emb = self.encoder(torch.cat([ep.support_x, ep.query_x]))
            mean, logvar = self.posterior(emb[:n_s], ep.support_y)
            samples = logit_samples(emb[n_s:], mean, logvar, self.hp["train_samples"])
            losses.append(predictive_nll(samples, ep.query_y))
            accs.append((predictive(samples).argmax(-1) == ep.query_y).float().mean())
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "accuracy": torch.stack(accs).mean().item()}

    @torch.no_grad()
    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        s_emb = self.encoder(episode.support_x)
        mean, logvar = self.posterior(s_emb, episode.support_y)
        seed = int(episode.seed)

        def predict(x):
            g = torch.Generator().manual_seed(seed)   # the same samples for the same episode
            return predictive(logit_samples(self.encoder(x), mean, logvar, self.hp["test_samples"], g))

        trace = self._trace(episode, s_emb) if record else None
        return Adapted(predict, embed=self.encoder, trace=trace)

    def _trace(self, episode: Episode, s_emb: torch.Tensor) -> list[TraceStep]:
        """Step k (k = 1..k_shot): the posteriors from the first k shots of each class.

        There is no step 0: with no shot the amortization network has nothing to pool
        (a "posterior" from an empty set would be its output on a zero vector, a
        convention rather than a prior the model was trained to give), and a
        hard-coded uniform prediction would be a figure not measured on the episode.
        """
        q_emb = self.encoder(episode.query_x)
        trace = []
        for k in range(1, episode.k_shot + 1):
            idx = first_shots(episode.support_y, k)
            shot_y = episode.support_y[idx]
            mean, logvar = self.posterior(s_emb[idx], shot_y)
            g = torch.Generator().manual_seed(int(episode.seed))
            q_probs = predictive(logit_samples(q_emb, mean, logvar, self.hp["test_samples"], g))
            s_probs = predictive(logit_samples(s_emb[idx], mean, logvar, self.hp["test_samples"], g))
            trace.append(trace_step(
                k, shots_label(k) + " per class", episode, q_probs, s_probs, support_y=shot_y,
                support_emb=s_emb, query_emb=q_emb,
                extras={"uncertainty": entropy(q_probs),
                        "posterior_mean": mean[:, :-1],
                        "posterior_std": (0.5 * logvar[:, :-1]).exp(),
                        "weight_samples": weight_samples(mean, logvar, 4, g)}))
        return trace
