"""Reptile, iMAML, ANIL, Siamese networks and Matching Networks: their math on tiny
models with synthetic tensors (float64 finite differences where there is a gradient
to check), and the trace contract each declares. Learning tests on glyphs are in
test_family_opt_metric_learning.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metarep_core.episodes import Episode
from metarep_core.learners import build_learner
from metarep_core.learners._implicit import conjugate_gradient, implicit_meta_gradient, proximal_inner
from metarep_core.learners.matching import attention, label_probs
from metarep_core.learners.siamese import class_scores


def episode(n_way=3, k_shot=1, n_query=2, shape=(1, 8, 8), seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return Episode(
        torch.rand(n_way * k_shot, *shape, generator=gen, dtype=dtype),
        torch.arange(n_way).repeat_interleave(k_shot),
        torch.rand(n_way * n_query, *shape, generator=gen, dtype=dtype),
        torch.arange(n_way).repeat_interleave(n_query),
        [f"c{i}" for i in range(n_way)], n_way, k_shot, n_query, seed)


def flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params])


# ------------------------------------------------------------------ traces
# (the contract every learner fills — metadata, validation, trace shapes, checkpoints —
# is checked for every registered learner in test_learner_contract.py)
@pytest.mark.parametrize("name, key", [("siamese", "similarity"), ("matching", "attention")])
def test_metric_trace_scores_each_query_against_the_shots_used(name, key):
    torch.manual_seed(0)
    learner = build_learner(name, (1, 8, 8), 3, hidden=8)
    ep = episode(k_shot=2, n_query=2)
    trace = learner.adapt(ep, record=True).trace
    assert [s.step for s in trace] == [1, 2] and [s.label for s in trace] == ["1 shot", "2 shots"]
    # (n_q, n_s) with n_s the shots used at that step; the whole support is embedded
    assert [s.extras[key].shape for s in trace] == [(6, 3), (6, 6)]
    assert all(s.support_emb.shape[0] == 6 for s in trace)


# ------------------------------------------------------------------ Reptile
def test_reptile_outer_step_is_interpolation_toward_adapted_weights():
    """Batched Reptile: theta' = theta + eps * mean_i(phi_i - theta), with phi_i the
    result of the inner loop on task i; serial with eps = 1 lands on phi."""
    torch.manual_seed(0)
    learner = build_learner("reptile", (1, 8, 8), 3, hidden=8, meta_lr=0.3, inner_optimizer="sgd",
                            inner_lr=0.5, inner_steps=3).double()
    eps = [episode(seed=s, dtype=torch.float64) for s in (0, 1)]
    theta = flat(learner.net.parameters())
    phis = []
    for ep in eps:
        x, y = torch.cat([ep.support_x, ep.query_x]), torch.cat([ep.support_y, ep.query_y])
        phis.append(flat(learner.inner_loop(x, y, 3).values()))
    assert (phis[0] - theta).norm() > 1e-3  # the inner loop moved
    learner.meta_step(eps)
    expected = theta + 0.3 * ((phis[0] - theta) + (phis[1] - theta)) / 2
    torch.testing.assert_close(flat(learner.net.parameters()), expected, rtol=0, atol=1e-12)

    learner.hp["meta_lr"] = 1.0
    theta = flat(learner.net.parameters())
    ep = eps[0]
    x, y = torch.cat([ep.support_x, ep.query_x]), torch.cat([ep.support_y, ep.query_y])
    phi = flat(learner.inner_loop(x, y, 3).values())
    learner.meta_step([ep])
    torch.testing.assert_close(flat(learner.net.parameters()), phi, rtol=0, atol=1e-12)


def test_reptile_trace_shows_distance_to_init():
    torch.manual_seed(0)
    learner = build_learner("reptile", (1, 8, 8), 3, hidden=8, eval_steps=4, inner_optimizer="sgd", inner_lr=0.3)
    adapted = learner.adapt(episode(), record=True)
    dist = adapted.trace[-1].extras["distance_to_init"]
    assert dist.shape == (5,) and dist[0] == 0.0 and np.all(np.diff(dist) > 0)
    # eps times that distance is not a measurement of its own: not in the trace (issue 9)
    assert "outer_step_norm" not in adapted.trace[-1].extras


def test_reptile_outer_step_is_annealed_linearly_to_zero_over_the_run():
    """Nichol et al.'s schedule: eps_i = meta_lr * (1 - i/N). The Trainer tells the learner
    where it is in the run; the step at the first meta-step is the declared meta_lr and
    at the last about 0 (meta_lr / N), measured as the move of theta over phi - theta."""
    from metarep_core.data import load_dataset
    from metarep_core.training import Trainer

    ds = load_dataset("glyphs")
    torch.manual_seed(0)
    learner = build_learner("reptile", ds.input_shape, 3, hidden=8, meta_lr=0.5, meta_batch=1,
                            inner_steps=1, inner_lr=0.3)
    moves = []
    original = learner.meta_step

    def measured_meta_step(episodes):
        ep = episodes[0]
        theta = flat(learner.net.parameters())
        x, y = torch.cat([ep.support_x, ep.query_x]), torch.cat([ep.support_y, ep.query_y])
        phi = flat(learner.inner_loop(x, y, 1).values())
        out = original(episodes)
        step = flat(learner.net.parameters()) - theta
        moves.append(float(step @ (phi - theta) / (phi - theta).norm() ** 2))
        return out

    learner.meta_step = measured_meta_step
    Trainer(learner, ds, n_way=3, k_shot=1, n_query=1, steps=10, val_every=0).run()
    assert moves[0] == pytest.approx(0.5, rel=1e-4)
    assert moves[-1] == pytest.approx(0.05, rel=1e-3)   # 0.5 * (1 - 9/10): ~0 at the end
    np.testing.assert_allclose(moves, 0.5 * (1 - np.arange(10) / 10), rtol=1e-3)


# ------------------------------------------------------------------ iMAML
def _tiny_problem():
    """A 2-layer tanh network, 2 classes, float64: train/test losses of a params dict."""
    gen = torch.Generator().manual_seed(3)
    d = torch.float64
    xs, xq = torch.randn(6, 3, generator=gen, dtype=d), torch.randn(8, 3, generator=gen, dtype=d)
    ys, yq = torch.tensor([0, 1] * 3), torch.tensor([0, 1] * 4)
    theta = {"w1": 0.7 * torch.randn(3, 4, generator=gen, dtype=d), "b1": torch.zeros(4, dtype=d),
             "w2": 0.7 * torch.randn(4, 2, generator=gen, dtype=d), "b2": torch.zeros(2, dtype=d)}

    def logits(p, x):
        return torch.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return theta, (lambda p: F.cross_entropy(logits(p, xs), ys)), (lambda p: F.cross_entropy(logits(p, xq), yq))


def _solve(train_fn, theta, lam, steps=400):
    """The proximal solution to machine precision (the objective is strongly convex here)."""
    return proximal_inner(train_fn, theta, lam, steps=steps, lr=0.3)[0]


def test_imaml_implicit_gradient_matches_finite_difference():
    """The implicit meta-gradient (CG on I + H/lam with Hessian-vector products) equals
    a float64 central difference of L_test(phi*(theta)), phi* the proximal solution."""
    theta, train_fn, test_fn = _tiny_problem()
    lam = 1.0

    def solve(th):  # to high precision: the proximal objective is strongly convex here
        return _solve(train_fn, th, lam)

    phi = solve(theta)
    # stationarity of the proximal problem at phi: grad L_train + lam (phi - theta) = 0
    p = {k: v.clone().requires_grad_(True) for k, v in phi.items()}
    grads = torch.autograd.grad(train_fn(p), list(p.values()))
    station = max(float((g + lam * (phi[k] - theta[k])).abs().max()) for k, g in zip(p, grads))
    assert station < 1e-12
    n_params = sum(v.numel() for v in theta.values())
    g, residuals, _ = implicit_meta_gradient(train_fn, test_fn, phi, lam, cg_steps=n_params, tol=1e-14)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        v = {k: torch.randn(t.shape, generator=gen, dtype=torch.float64) for k, t in theta.items()}
        eps = 1e-5
        lp = test_fn(solve({k: theta[k] + eps * v[k] for k in theta})).item()
        lm = test_fn(solve({k: theta[k] - eps * v[k] for k in theta})).item()
        fd = (lp - lm) / (2 * eps)
        analytic = sum(float((g[k] * v[k]).sum()) for k in theta)
        assert abs(analytic - fd) < 1e-7 * max(1.0, abs(fd)), (analytic, fd)
    # not the first-order shortcut: the Hessian term matters
    phi_l = {k: v.clone().requires_grad_(True) for k, v in phi.items()}
    v_test = flat(torch.autograd.grad(test_fn(phi_l), list(phi_l.values())))
    assert (flat(g.values()) - v_test).norm() > 1e-3 * v_test.norm()
    # CG residuals go down (to the tolerance)
    assert residuals[-1] < 1e-10 * residuals[0]
    assert residuals[3] < residuals[0]


def test_conjugate_gradient_solves_spd_system():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    x, res = conjugate_gradient(lambda p: a @ p, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    assert len(res) == 7 and res[-1] < 1e-9 * res[0]


def test_imaml_learner_uses_the_implicit_gradient_without_unrolling():
    """The learner's meta-update follows the implicit formula (FD-checked above) on a
    float64 MLP, and the inner loop keeps no graph."""
    torch.manual_seed(0)
    learner = build_learner("imaml", (5,), 3, inner_steps=3, cg_steps=8, lam=50.0, meta_lr=1e-2).double()
    ep = episode(shape=(5,), dtype=torch.float64)
    theta = {k: v.detach().clone() for k, v in learner.net.named_parameters()}
    phi, _ = learner.solve_inner(ep, 3)
    assert all(v.grad_fn is None for v in phi.values())
    g, res, _ = learner.implicit_gradient(ep, phi)
    assert len(res) == 9 and res[-1] < 1e-2 * res[0]
    learner.meta_step([ep])
    # Adam's first step moves every coordinate by -meta_lr * sign(g) (where g is not ~0)
    for k, p in learner.net.named_parameters():
        big = g[k].abs() > 1e-3
        step = (p.detach() - theta[k])[big]
        torch.testing.assert_close(step, -1e-2 * torch.sign(g[k][big]), rtol=1e-4, atol=1e-7)


def test_imaml_trace_has_cg_residuals():
    torch.manual_seed(0)
    learner = build_learner("imaml", (5,), 3, eval_steps=3, cg_steps=8, lam=50.0)
    trace = learner.adapt(episode(shape=(5,)), record=True).trace
    res = trace[-1].extras["cg_residuals"]
    assert res.ndim == 1 and len(res) == 9 and res[-1] < 1e-2 * res[0]
    assert [s.label for s in trace][1] == "proximal step 1"


# ------------------------------------------------------------------ ANIL
def test_anil_meta_step_follows_the_second_order_gradient_through_batch_norm():
    """The gradient meta_step applies (read off with SGD at lr 1 in place of Adam), on a
    float64 Conv-4 with batch norm over the support and the query batches as training
    runs it, equals a central difference of the meta-objective written out here:
    query loss of the head after 2 SGD steps on the support features."""
    torch.manual_seed(0)
    learner = build_learner("anil", (1, 8, 8), 3, hidden=8, inner_steps=2, inner_lr=0.4).double()
    eps_ = [episode(k_shot=1, n_query=3, seed=s, dtype=torch.float64) for s in (0, 1)]
    params = dict(learner.net.named_parameters())

    def meta_objective(p):
        total = 0.0
        body = {k[5:]: v for k, v in p.items() if k.startswith("body.")}
        for ep in eps_:
            fs = torch.func.functional_call(learner.net.body, body, (ep.support_x,))
            fq = torch.func.functional_call(learner.net.body, body, (ep.query_x,))
            w, b = p["head.weight"], p["head.bias"]
            for _ in range(2):
                gw, gb = torch.autograd.grad(F.cross_entropy(fs @ w.T + b, ep.support_y), (w, b),
                                             create_graph=True)
                w, b = w - 0.4 * gw, b - 0.4 * gb
            total = total + F.cross_entropy(fq @ w.T + b, ep.query_y)
        return total / len(eps_)

    theta = {k: v.detach().clone() for k, v in params.items()}
    learner._optimizer = torch.optim.SGD(learner.parameters(), lr=1.0)
    learner.meta_step(eps_)
    grad = {k: theta[k] - params[k].detach() for k in theta}
    assert flat(grad.values()).norm() > 1e-3
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = {k: torch.randn(t.shape, generator=gen, dtype=torch.float64) for k, t in theta.items()}
        h = 1e-6
        with torch.enable_grad():
            lp = meta_objective({k: (theta[k] + h * v[k]).requires_grad_(True) for k in theta}).item()
            lm = meta_objective({k: (theta[k] - h * v[k]).requires_grad_(True) for k in theta}).item()
        fd = (lp - lm) / (2 * h)
        analytic = sum(float((grad[k] * v[k]).sum()) for k in theta)
        assert abs(analytic - fd) <= 1e-6 * max(1.0, abs(fd)), (analytic, fd)


def test_anil_adapts_only_the_head_and_its_meta_gradient_matches_fd():
    torch.manual_seed(0)
    learner = build_learner("anil", (5,), 3, inner_steps=2, inner_lr=0.5).double()
    ep = episode(shape=(5,), dtype=torch.float64)
    body0 = flat(learner.net.body.parameters())
    trace = learner.adapt(ep, record=True).trace
    # feature reuse: the same embeddings at every step, the head moving
    for s in trace[1:]:
        np.testing.assert_array_equal(s.query_emb, trace[0].query_emb)
    change = trace[-1].extras["head_weight_change"]
    assert change[0] == 0 and change[-1] > 0
    assert "embedding_change" not in trace[-1].extras  # zeros by construction: not a measurement
    assert not np.allclose(trace[-1].query_probs, trace[0].query_probs)
    torch.testing.assert_close(flat(learner.net.body.parameters()), body0)

    # second-order meta-gradient (through the head steps, into the body) vs float64 FD
    def meta_loss():
        head = dict(learner.net.head.named_parameters())
        fs, fq = learner.net.body(ep.support_x), learner.net.body(ep.query_x)
        fast = learner._adapt_head(head, fs, ep.support_y, 2, create_graph=True)
        return F.cross_entropy(torch.func.functional_call(learner.net.head, fast, (fq,)), ep.query_y)

    params = list(learner.net.parameters())
    grads = torch.autograd.grad(meta_loss(), params)
    gen = torch.Generator().manual_seed(5)
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, v):
            p.add_(eps * d)
    lp = meta_loss().item()
    with torch.no_grad():
        for p, d in zip(params, v):
            p.sub_(2 * eps * d)
    lm = meta_loss().item()
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, v))
    assert abs(analytic - (lp - lm) / (2 * eps)) < 1e-6 * max(1.0, abs(analytic))
    assert any(float(g.abs().sum()) > 0 for g in grads[:-2])  # the body gets a meta-gradient


# ------------------------------------------------------------------ Siamese
def test_siamese_weighted_l1_similarity_and_nearest_support():
    torch.manual_seed(0)
    learner = build_learner("siamese", (1, 8, 8), 3, hidden=8)
    e1, e2 = torch.randn(4, learner.backbone.out_dim), torch.randn(5, learner.backbone.out_dim)
    w, b = learner.distance.weight.view(-1), learner.distance.bias
    logits = learner.pair_logits(e1, e2)
    torch.testing.assert_close(logits[2, 3], (w * (e1[2] - e2[3]).abs()).sum() + b[0])
    torch.testing.assert_close(learner.pair_logits(e2, e1), logits.T)
    # K > 1: a class scores its best (max) shot
    pair = torch.tensor([[0.1, 2.0, -1.0, 0.5]])
    torch.testing.assert_close(class_scores(pair, torch.tensor([0, 0, 1, 1]), 2), torch.tensor([[2.0, 0.5]]))


def clustered_episode(n_way=3, k_shot=1, n_query=4, seed=0, noise=0.15):
    """Each class a random 8x8 pattern; its examples the pattern plus noise."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(n_way, 1, 8, 8, generator=gen)

    def draw(k):
        x = protos.repeat_interleave(k, 0)
        return (x + noise * torch.randn(x.shape, generator=gen)).clamp(0, 1)

    return Episode(draw(k_shot), torch.arange(n_way).repeat_interleave(k_shot), draw(n_query),
                   torch.arange(n_way).repeat_interleave(n_query), [f"c{i}" for i in range(n_way)],
                   n_way, k_shot, n_query, seed)


def test_siamese_learns_same_different_pairs_and_nearest_support_wins():
    """Trained on same/different pairs of new classes each episode, its pair loss
    falls; a query identical to a support image is most similar to it.
    (Accuracy on real data: test_family_opt_metric_learning.py.)"""
    torch.manual_seed(0)
    learner = build_learner("siamese", (1, 8, 8), 3, hidden=8, meta_lr=1e-2)
    losses = [learner.meta_step([clustered_episode(seed=100 + s)])["loss"] for s in range(40)]
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    ep = clustered_episode(seed=1)
    ep.query_x, ep.query_y = ep.support_x.clone(), ep.support_y.clone()
    sim = learner.adapt(ep, record=True).trace[0].extras["similarity"]
    assert np.all(sim.argmax(1) == np.arange(3))


# ------------------------------------------------------------------ Matching Networks
def test_matching_attention_is_cosine_softmax_and_label_vote():
    gen = torch.Generator().manual_seed(0)
    q, s = torch.randn(4, 6, generator=gen), torch.randn(5, 6, generator=gen)
    attn = attention(q, s)
    cos = torch.stack([torch.stack([F.cosine_similarity(a, c, dim=0) for c in s]) for a in q])
    torch.testing.assert_close(attn, cos.softmax(-1))
    y = torch.tensor([0, 1, 1, 2, 0])
    probs = label_probs(attn, y, 3)
    torch.testing.assert_close(probs[:, 1], attn[:, 1] + attn[:, 2])
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    # cosine: scaling an embedding changes nothing
    torch.testing.assert_close(attention(3 * q, s), attn)


def test_matching_full_context_embeddings_depend_on_the_support_set():
    torch.manual_seed(0)
    learner = build_learner("matching", (1, 8, 8), 3, hidden=8, fce=True)
    ep = episode(k_shot=2)
    a = learner.adapt(ep).predict(ep.query_x)
    ep2 = episode(k_shot=2)
    ep2.support_x = ep.support_x.flip(0)  # the same images, another order: another context
    ep2.support_y = ep.support_y.flip(0)
    b = learner.adapt(ep2).predict(ep.query_x)
    assert not torch.allclose(a, b)
    plain = build_learner("matching", (1, 8, 8), 3, hidden=8)
    pa, pb = plain.adapt(ep).predict(ep.query_x), plain.adapt(ep2).predict(ep.query_x)
    torch.testing.assert_close(pa, pb)  # without FCE the support order does not matter
    stats = learner.meta_step([ep])
    assert np.isfinite(stats["loss"])
    assert learner.context.query_cell.weight_ih.grad is not None


def test_conjugate_gradient_stops_on_negative_curvature():
    a = torch.diag(torch.tensor([2.0, -1.0], dtype=torch.float64))
    b = torch.tensor([0.0, 1.0], dtype=torch.float64)
    x, res = conjugate_gradient(lambda p: a @ p, b, iters=5)
    torch.testing.assert_close(x, b)  # the first-order answer, not a blow-up
    assert len(res) == 1


@pytest.mark.parametrize("name", ["reptile", "imaml", "anil"])
def test_regression_trace_has_curve_and_stays_finite(name):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, generator=gen) * 10 - 5
    y = 3.0 * torch.sin(x - 0.5)
    ep = Episode(x[:10], y[:10], x[10:], y[10:], ["task"], 1, 10, 10, 0, task="regression")
    torch.manual_seed(0)
    learner = build_learner(name, (1,), 1, task="regression")
    assert learner.hp["inner_lr"] == 0.01
    for _ in range(3):
        assert np.isfinite(learner.meta_step([ep])["loss"])
    trace = learner.adapt(ep, record=True).trace
    last = trace[-1]
    assert last.query_probs.shape == (10,) and last.extras["curve_y"].shape == (100,)
    assert np.isfinite(last.query_loss) and last.support_loss < trace[0].support_loss
