"""ABML's mechanism (Ravi & Beatson 2019): the ELBO it optimises, an inner step whose size
does not depend on the number of shots, a posterior variance that adapts to the support
set, more shots scoring at least as well as one, and its second-order meta-gradient
against float64 finite differences."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metarep_core.checkpoints import load_checkpoint
from metarep_core.data import load_dataset
from metarep_core.episodes import EpisodeSampler
from metarep_core.learners import build_learner
from metarep_core.learners._bayes import expected_nll, gaussian_kl, logit_samples, predictive_nll

CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "abml_glyphs_5w1s.safetensors"


def tiny_abml(**hp):
    """ABML on 3-dimensional vectors, 2 ways (the head's math does not need images)."""
    torch.manual_seed(0)
    return build_learner("abml", (3,), 2, **hp).double()


def softplus_expectation(mu: float, var: float) -> float:
    """E[log(1 + exp(z))] for z ~ N(mu, var), by 80-point Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w * np.logaddexp(0.0, mu + math.sqrt(var) * x)) / math.sqrt(2 * math.pi))


def sigmoid_expectation(mu: float, var: float) -> float:
    """E[1 / (1 + exp(-z))] for z ~ N(mu, var), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w / (1 + np.exp(-(mu + math.sqrt(var) * x)))) / math.sqrt(2 * math.pi))


# --------------------------------------------------------------------------- the ELBO
def test_expected_nll_is_the_sample_average_of_minus_log_p():
    # two samples of one example: p(y=0) = 0.5, then 0.75
    samples = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    y = torch.tensor([0])
    assert expected_nll(samples, y).item() == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    # -log of the averaged probability is smaller (Jensen): not the ELBO's term
    assert predictive_nll(samples, y).item() == pytest.approx(-math.log(0.625))
    assert expected_nll(samples, y).item() > predictive_nll(samples, y).item() + 0.01


def test_neg_elbo_by_hand_on_a_tiny_model():
    """Embeddings of zeros leave only the biases: logit_c ~ N(b_c, v). With two classes,
    -log p(y=0) = softplus(l_1 - l_0), l_1 - l_0 ~ N(b_1 - b_0, 2v): a 1-D integral.
    The weights' entries of q equal the prior's (no KL); the biases' KL is by hand."""
    learner = tiny_abml(kl_weight=0.5)
    d = learner.encoder.out_dim
    v, b = 4.0, (0.5, -0.5)
    mean = torch.zeros(2, d + 1, dtype=torch.float64)
    mean[:, -1] = torch.tensor(b)
    logvar = torch.full((2, d + 1), -30.0, dtype=torch.float64)
    logvar[:, -1] = math.log(v)
    learner.prior_mean.data = torch.zeros(2, d + 1, dtype=torch.float64)
    learner.prior_logvar.data = torch.full((2, d + 1), -30.0, dtype=torch.float64)
    learner.prior_logvar.data[:, -1] = 0.0                      # prior N(0, 1) on each bias
    emb, y = torch.zeros(2, d, dtype=torch.float64), torch.tensor([0, 1])
    g = torch.Generator().manual_seed(0)
    got = learner.neg_elbo(emb, y, mean, logvar, 200_000, g).item()

    nll = (softplus_expectation(b[1] - b[0], 2 * v) + softplus_expectation(b[0] - b[1], 2 * v)) / 2
    kl = sum(0.5 * (-math.log(v) + v + bc ** 2 - 1) for bc in b)   # KL(N(b, v) || N(0, 1))
    expected = nll + 0.5 * kl / 2                                  # per example: kl_weight * KL / N
    assert got == pytest.approx(expected, abs=0.01)
    # -log of the averaged probability (the predictive, not the bound) is far below,
    # and a likelihood summed over the N = 2 examples far above
    predictive = -(math.log(sigmoid_expectation(b[0] - b[1], 2 * v))
                   + math.log(sigmoid_expectation(b[1] - b[0], 2 * v))) / 2
    assert nll > predictive + 0.1
    assert abs(2 * nll + 0.5 * kl - got) > 0.5


# --------------------------------------------------------------------------- the inner step
def test_first_inner_step_does_not_grow_with_the_number_of_shots():
    """The same two shots, once (1-shot) and each repeated five times (5-shot): the
    per-example ELBO is the same function, so the first step is the same (up to
    Monte-Carlo noise); a summed likelihood makes it five times larger."""
    learner = tiny_abml(inner_steps=1, kl_weight=1.0)
    g0 = torch.Generator().manual_seed(1)
    learner.prior_mean.data = 0.1 * torch.randn(learner.prior_mean.shape, generator=g0).double()
    emb = torch.randn(2, learner.encoder.out_dim, generator=g0).double()
    y = torch.tensor([0, 1])
    steps = {}
    for k in (1, 5):
        states = learner.inner_loop(emb.repeat_interleave(k, 0), y.repeat_interleave(k), False, 4000,
                                    torch.Generator().manual_seed(2), record=True)
        (m0, v0), (m1, v1) = states
        steps[k] = ((m1 - m0).norm().item(), (v1 - v0).norm().item())
    print(f"\nfirst-step |d mean|, |d logvar|: 1-shot {steps[1]}, 5-shot {steps[5]}")
    for i in (0, 1):
        assert steps[5][i] == pytest.approx(steps[1][i], rel=0.1)
        assert steps[1][i] > 0


# --------------------------------------------------------------------------- meta-gradient
def test_abml_meta_gradient_matches_float64_finite_differences():
    """The outer loss (the query ELBO, as meta_step computes it) through two
    second-order inner steps, against central differences in float64, for entries of
    the prior mean and of the prior log-variance (whose inner step has its own size),
    with the sampling noise fixed by a seeded generator."""
    learner = tiny_abml(inner_steps=2, inner_lr=0.3, inner_lr_logvar=3.0, kl_weight=0.5, train_samples=4)
    g0 = torch.Generator().manual_seed(1)
    s_emb, q_emb = torch.randn(4, 64, generator=g0).double(), torch.randn(6, 64, generator=g0).double()
    s_y, q_y = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 0, 1, 1, 0])
    base_mean = (0.1 * torch.randn(2, 65, generator=g0)).double()
    base_logvar = (math.log(0.1) + 0.1 * torch.randn(2, 65, generator=g0)).double()

    def outer(prior_mean, prior_logvar):
        learner.prior_mean.data, learner.prior_logvar.data = prior_mean, prior_logvar
        g = torch.Generator().manual_seed(2)
        (mean, logvar), = learner.inner_loop(s_emb, s_y, True, 4, g)
        kl = gaussian_kl(mean, logvar, learner.prior_mean, learner.prior_logvar)
        return expected_nll(logit_samples(q_emb, mean, logvar, 4, g), q_y) + 0.5 * kl / q_emb.shape[0]

    g_mean, g_logvar = torch.autograd.grad(outer(base_mean.clone(), base_logvar.clone()),
                                           (learner.prior_mean, learner.prior_logvar))
    eps = 1e-6
    for which, grad in (("mean", g_mean), ("logvar", g_logvar)):
        for idx in [(0, 0), (1, 5), (0, 64), (1, 64)]:
            plus = [base_mean.clone(), base_logvar.clone()]
            minus = [base_mean.clone(), base_logvar.clone()]
            i = 0 if which == "mean" else 1
            plus[i][idx] += eps
            minus[i][idx] -= eps
            with torch.enable_grad():
                fd = (outer(*plus).item() - outer(*minus).item()) / (2 * eps)
            assert grad[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-8), (which, idx)
    assert g_logvar.abs().max() > 0


# --------------------------------------------------------------------------- the shipped model
@pytest.fixture(scope="module")
def shipped():
    learner, _ = load_checkpoint(CHECKPOINT, expected_algorithm="abml")
    learner.eval()
    return learner


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_posterior_variance_adapts_to_the_support_set(shipped, glyphs):
    """Mean absolute change of the head's log-variance over the inner loop, against the
    mean's, on test episodes: the variance must move, not only the mean (before the fix:
    0.001 against 0.12 at 1-shot)."""
    sampler = EpisodeSampler(glyphs, "test", 5, 1, 5, seed=1000)
    d_logvar, d_mean = [], []
    for i in range(10):
        ep = sampler.sample(1000 + i)
        with torch.no_grad():
            s_emb = shipped.encoder(ep.support_x)
        (mean, logvar), = shipped.inner_loop(s_emb, ep.support_y, False, shipped.hp["train_samples"],
                                             torch.Generator().manual_seed(i))
        d_logvar.append((logvar - shipped.prior_logvar).abs().mean().item())
        d_mean.append((mean - shipped.prior_mean).abs().mean().item())
    print(f"\nABML inner loop: mean |d logvar| {np.mean(d_logvar):.4f}, mean |d mean| {np.mean(d_mean):.4f}")
    assert np.mean(d_logvar) > 0.05
    assert min(d_logvar) > 0.01


def test_five_shots_score_at_least_as_well_as_one(shipped, glyphs):
    """The same 30 test episodes (classes and queries) with 1 and with 5 shots per class."""
    sampler = EpisodeSampler(glyphs, "test", 5, 5, 15, seed=1000)
    acc = {1: [], 5: []}
    for i in range(30):
        ep = sampler.sample(1000 + i)
        for k in (1, 5):
            acc[k].append(shipped.evaluate_episode(ep.with_shots(k))["accuracy"])
    print(f"\nABML shipped: 1-shot {100 * np.mean(acc[1]):.1f}%, 5-shot {100 * np.mean(acc[5]):.1f}%")
    assert np.mean(acc[5]) >= np.mean(acc[1])
