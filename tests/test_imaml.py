"""iMAML as the paper states it (issue 9): the proximal inner problem solved to a stated
tolerance, a well-posed implicit linear system whose conjugate-gradient residual goes
down, both visible in the trace; the Gauss-Newton implicit gradient against a float64
finite difference of the proximal meta-objective (where G equals H: a linear model)."""
from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metarep_core.checkpoints import load_checkpoint
from metarep_core.data import load_dataset
from metarep_core.episodes import EpisodeSampler
from metarep_core.learners._implicit import implicit_meta_gradient, proximal_inner

CHECKPOINT = "assets/checkpoints/imaml_glyphs_5w1s.safetensors"


def proximal_grad_norm(learner, episode, phi, theta) -> float:
    """||grad L_support(phi) + lam (phi - theta)||, recomputed here from phi."""
    p = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(learner._loss_fn(episode.support_x, episode.support_y)(p), list(p.values()))
    lam = learner.hp["lam"]
    return float(torch.sqrt(sum(((g + lam * (p[k].detach() - theta[k])).double() ** 2).sum()
                                for k, g in zip(p, grads))))


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    learner, _ = load_checkpoint(CHECKPOINT)
    sampler = EpisodeSampler(load_dataset("glyphs"), "test", 5, 1, 15, 0)
    return learner, [sampler.sample(i) for i in range(10)]


def test_shipped_checkpoint_inner_problem_meets_the_tolerance_and_cg_lowers_its_residual(shipped):
    """On the shipped glyphs checkpoint (its own hyper-parameters: lam 2, at most 5 inner
    steps in meta-training), over 10 test episodes: median of
    ||grad L(phi) + lam (phi - theta)|| / ||grad L(theta)|| <= 0.1 for the phi meta_step
    uses (fixed-step GD at lr 0.1, as before, gave 0.13), and the implicit system's CG
    residual ends below its start in every episode at 10 iterations (with the exact
    Hessian it ended above in 6 of 10)."""
    learner, episodes = shipped
    assert learner.hp["inner_tol"] == 0.1 and learner.hp["curvature"] == "gauss_newton"
    learner.hp["cg_steps"] = 10
    theta = {k: v.detach() for k, v in learner.net.named_parameters()}
    ratios, cg = [], []
    for ep in episodes:
        phi, norms = learner.solve_inner(ep, learner.hp["inner_steps"])
        start = proximal_grad_norm(learner, ep, theta, theta)
        ratios.append(proximal_grad_norm(learner, ep, phi, theta) / start)
        assert norms[-1] == pytest.approx(ratios[-1] * start, rel=1e-4)  # the solver's own figure
        _, residuals, _ = learner.implicit_gradient(ep, phi)
        cg.append((residuals[0], residuals[-1]))
    print("\ninner relative gradient:", np.round(ratios, 3), "CG first/last:", np.round(cg, 4))
    assert statistics.median(ratios) <= 0.1
    assert all(last < first for first, last in cg)


def test_trace_shows_both_residuals(shipped):
    learner, episodes = shipped
    trace = learner.adapt(episodes[0], record=True).trace
    norms = [s.extras["proximal_grad_norm"] for s in trace]
    # one inner-problem gradient norm per step so far; the solver stopped at the tolerance
    assert [len(n) for n in norms] == list(range(1, len(trace) + 1))
    assert 1 < len(trace) <= learner.hp["eval_steps"] + 1
    final = norms[-1]
    assert final[-1] <= learner.hp["inner_tol"] * final[0] < final[-2]
    res = trace[-1].extras["cg_residuals"]
    assert len(res) == learner.hp["cg_steps"] + 1 and res[-1] < res[0]


def test_proximal_solver_stops_at_the_tolerance():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 20, generator=gen, dtype=torch.float64)
    h = a @ a.T / 20
    theta = {"w": torch.randn(20, generator=gen, dtype=torch.float64)}
    loss = lambda p: 0.5 * p["w"] @ h @ p["w"]  # noqa: E731
    phi, norms = proximal_inner(loss, theta, 1.0, steps=100, lr=0.1, tol=1e-3)
    assert norms[-1] <= 1e-3 * norms[0] < norms[-2] and len(norms) < 100
    exact = torch.linalg.solve(h + torch.eye(20, dtype=torch.float64), theta["w"])
    # the stated tolerance bounds the error: ||phi - phi*|| <= ||g|| / lam
    assert float((phi["w"] - exact).norm()) <= norms[-1] + 1e-12


def test_gauss_newton_implicit_gradient_matches_finite_difference_on_a_linear_model():
    """Softmax regression (linear in its weights: G = H exactly), float64: the implicit
    gradient with the Gauss-Newton product equals a central difference of
    L_test(phi*(theta)), phi* the proximal solution to machine precision."""
    gen = torch.Generator().manual_seed(4)
    d = torch.float64
    xs, xq = torch.randn(9, 4, generator=gen, dtype=d), torch.randn(12, 4, generator=gen, dtype=d)
    ys, yq = torch.arange(3).repeat(3), torch.arange(3).repeat(4)
    theta = {"w": torch.randn(4, 3, generator=gen, dtype=d), "b": torch.zeros(3, dtype=d)}
    out = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    train = lambda p: F.cross_entropy(out(p, xs), ys)  # noqa: E731
    test = lambda p: F.cross_entropy(out(p, xq), yq)  # noqa: E731
    lam = 0.5

    def solve(th):
        return proximal_inner(train, th, lam, steps=500, lr=0.3)[0]

    phi = solve(theta)
    g, res, _ = implicit_meta_gradient(train, test, phi, lam, cg_steps=15, tol=1e-14, curvature="gauss_newton",
                                       train_output_fn=lambda p: out(p, xs),
                                       output_loss_fn=lambda o: F.cross_entropy(o, ys))
    g_h, _, _ = implicit_meta_gradient(train, test, phi, lam, cg_steps=15, tol=1e-14)
    for k in g:
        torch.testing.assert_close(g[k], g_h[k], rtol=1e-9, atol=1e-12)
    assert res[-1] < 1e-10 * res[0]
    v = {k: torch.randn(t.shape, generator=gen, dtype=d) for k, t in theta.items()}
    eps = 1e-5
    lp = test(solve({k: theta[k] + eps * v[k] for k in theta})).item()
    lm = test(solve({k: theta[k] - eps * v[k] for k in theta})).item()
    fd = (lp - lm) / (2 * eps)
    analytic = sum(float((g[k] * v[k]).sum()) for k in theta)
    assert abs(analytic - fd) < 1e-7 * max(1.0, abs(fd)), (analytic, fd)
