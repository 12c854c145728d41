"""Gaussian weight posteriors over a linear classifier head, shared by VERSA and ABML.

A head has, per class ``c``, weights ``w_c`` (d,) and a bias ``b_c`` packed as one
vector of size d+1 with a diagonal Gaussian ``N(mean_c, exp(logvar_c))``. With the
*local reparameterization trick* (Kingma, Salimans & Welling 2015) the logit of input
``e`` is itself Gaussian, ``N(e~ . mean_c, e~^2 . var_c)`` with ``e~ = [e, 1]``, so we
sample logits rather than weight matrices: cheaper, and lower-variance gradients.
"""
from __future__ import annotations

import math

import torch


def augment(emb: torch.Tensor) -> torch.Tensor:
    """Append the constant 1 that multiplies the bias: (n, d) -> (n, d+1)."""
    return torch.cat([emb, torch.ones_like(emb[:, :1])], -1)


def logit_samples(emb: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, n_samples: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of the logits: emb (n, d), mean/logvar (n_way, d+1) -> (S, n, n_way)."""
    x = augment(emb)
    mu = x @ mean.t()
    var = (x * x) @ logvar.exp().t()
    eps = torch.randn((n_samples, *mu.shape), generator=generator, dtype=mu.dtype,
                      device="cpu" if generator is not None else mu.device).to(mu.device)
    return mu + var.clamp_min(1e-12).sqrt() * eps


def predictive(samples: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo predictive: mean of the softmax over samples (S, n, k) -> (n, k)."""
    return torch.softmax(samples, -1).mean(0)


def predictive_nll(samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``-log (1/S sum_s p_s(y))``, averaged over examples: the VERSA training loss
    (the negative log of the Monte-Carlo predictive). samples (S, n, k), labels (n,)."""
    logp = torch.log_softmax(samples, -1).gather(-1, labels.view(1, -1, 1).expand(samples.shape[0], -1, 1))
    return -(torch.logsumexp(logp.squeeze(-1), 0) - math.log(samples.shape[0])).mean()


def expected_nll(samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``1/S sum_s -log p_s(y)``, averaged over examples: the Monte-Carlo estimate of
    ``E_q[-log p(y | x, w)]``, the likelihood term of an ELBO. samples (S, n, k), labels (n,).

    By Jensen's inequality it is >= :func:`predictive_nll` on the same samples: the
    ELBO scores each weight sample on its own, so a posterior cannot buy a low loss by
    averaging confident, disagreeing samples."""
    logp = torch.log_softmax(samples, -1).gather(-1, labels.view(1, -1, 1).expand(samples.shape[0], -1, 1))
    return -logp.mean()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy in nats per row: (n, k) -> (n,)."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def gaussian_kl(mean_q, logvar_q, mean_p, logvar_p) -> torch.Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) summed over all entries (a scalar)."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p) ** 2) / logvar_p.exp() - 1).sum()


def weight_samples(mean: torch.Tensor, logvar: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """``n`` samples of each class's weight vector (bias dropped): (n_way, d+1) -> (n_way*n, d),
    rows grouped by class, for drawing."""
    eps = torch.randn((mean.shape[0], n, mean.shape[1]), generator=generator).to(mean)
    w = mean.unsqueeze(1) + (0.5 * logvar).exp().unsqueeze(1) * eps
    return w[..., :-1].reshape(-1, mean.shape[1] - 1)
