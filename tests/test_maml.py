"""MAML: the second-order meta-gradient against float64 finite differences (through
batch norm, as meta_step runs it), the trace contract, layer CKA, and the sinusoid
learning test (glyphs: test_family_opt_metric_learning.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metarep_core.backbones import Conv4
from metarep_core.episodes import Episode, EpisodeSampler
from metarep_core.errors import MetaRepError
from metarep_core.learners import build_learner
from metarep_core.learners._functional import split_state


def random_episode(n_way, k_shot, n_query, shape, gen, dtype=torch.float64, seed=0):
    """Random images/vectors with class-major labels (the peers' benchmark data)."""
    return Episode(
        torch.randn(n_way * k_shot, *shape, generator=gen, dtype=dtype),
        torch.arange(n_way).repeat_interleave(k_shot),
        torch.randn(n_way * n_query, *shape, generator=gen, dtype=dtype),
        torch.arange(n_way).repeat_interleave(n_query),
        [f"c{i}" for i in range(n_way)], n_way, k_shot, n_query, seed)


def sine_episode(gen, k=10, q=10, dtype=torch.float64):
    amp = 0.1 + 4.9 * torch.rand((), generator=gen, dtype=dtype)
    phase = np.pi * torch.rand((), generator=gen, dtype=dtype)
    sx = torch.rand(k, 1, generator=gen, dtype=dtype) * 10 - 5
    qx = torch.rand(q, 1, generator=gen, dtype=dtype) * 10 - 5
    return Episode(sx, amp * torch.sin(sx - phase), qx, amp * torch.sin(qx - phase),
                   ["task"], 1, k, q, 0, task="regression")


def analytic_and_fd(learner, episodes, directions, eps):
    """(meta-gradient . v, finite difference along v) for each unit direction v, and
    the flat meta-gradient from meta_step's accumulation path."""
    params, _ = split_state(learner.net)
    names = list(params)
    learner.zero_grad(set_to_none=True)
    learner.accumulate_meta_gradient(episodes)
    grad = {n: params[n].grad.detach().clone() for n in names}
    rows = []
    for v in directions:
        with torch.no_grad():
            plus = {n: params[n] + eps * v[n] for n in names}
            minus = {n: params[n] - eps * v[n] for n in names}
        with torch.enable_grad():  # the inner loop needs gradients even for plain evaluation
            lp = learner.meta_loss(episodes, plus).item()
            lm = learner.meta_loss(episodes, minus).item()
        rows.append((sum(float((grad[n] * v[n]).sum()) for n in names), (lp - lm) / (2 * eps)))
    return grad, rows


def unit_directions(params, count, seed):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        v = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in params.items()}
        norm = torch.sqrt(sum((t * t).sum() for t in v.values()))
        out.append({n: t / norm for n, t in v.items()})
    return out


@pytest.fixture(scope="module")
def conv_case():
    """Tiny float64 Conv-4 MAML (8x8 inputs, 3-way 1-shot, 2 tasks, 2 inner steps, lr 0.4).

    33 queries per task: above CHANNELS_LAST_MIN_BATCH, so the query pass takes the
    channels_last path and the 3 support images the NCHW one; both are checked."""
    from metarep_core.learners._conv4_fast import CHANNELS_LAST_MIN_BATCH

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(7)
    episodes = [random_episode(3, 1, 11, (1, 8, 8), gen) for _ in range(2)]
    assert 3 < CHANNELS_LAST_MIN_BATCH <= 33
    out = {}
    for fo in (False, True):
        torch.manual_seed(0)
        learner = build_learner("maml", (1, 8, 8), 3, inner_steps=2, inner_lr=0.4, first_order=fo)
        # 8 channels instead of 64 keeps float64 convolutions cheap; same code path
        learner.net.features = Conv4(1, 8, hidden=8, track_running_stats=False)
        learner.net.head = torch.nn.Linear(learner.net.features.out_dim, 3)
        out[fo] = learner.double()
    return out, episodes


def test_second_order_meta_gradient_matches_finite_differences_conv4(conv_case):
    learners, episodes = conv_case
    so, fo = learners[False], learners[True]
    params, _ = split_state(so.net)
    dirs = unit_directions(params, 3, seed=123)
    g_so, rows = analytic_and_fd(so, episodes, dirs, eps=1e-6)
    print("\nconv4 float64 (grad.v, finite difference):", rows)
    for dot, fd in rows:
        assert abs(dot - fd) <= 1e-5 * max(1.0, abs(fd)), (dot, fd)
    # first order is a different vector, and not the finite-difference slope
    g_fo, _ = analytic_and_fd(fo, episodes, [], eps=1e-6)
    flat_so = torch.cat([g.reshape(-1) for g in g_so.values()])
    flat_fo = torch.cat([g.reshape(-1) for g in g_fo.values()])
    rel = float((flat_so - flat_fo).norm() / flat_so.norm())
    fo_dots = [sum(float((g_fo[n] * v[n]).sum()) for n in v) for v in dirs]
    print("first order: grad.v", fo_dots, "relative difference to second order", rel)
    assert rel > 0.05, rel
    assert any(abs(d - fd) > 1e-2 * max(1.0, abs(fd)) for d, (_, fd) in zip(fo_dots, rows))


def test_meta_step_applies_the_checked_gradient(conv_case):
    """The gradient checked above (through Conv-4's batch norm over the support and the
    query batches) is the one meta_step applies: read off with SGD at lr 1 for Adam."""
    learners, episodes = conv_case
    so = build_learner("maml", (1, 8, 8), 3, inner_steps=2, inner_lr=0.4).double()
    so.net.features = Conv4(1, 8, hidden=8, track_running_stats=False).double()
    so.net.head = torch.nn.Linear(so.net.features.out_dim, 3).double()
    so.load_state_dict(learners[False].state_dict())
    params, _ = split_state(so.net)
    so.zero_grad(set_to_none=True)
    so.accumulate_meta_gradient(episodes)
    checked = {n: p.grad.detach().clone() for n, p in params.items()}
    theta = {n: p.detach().clone() for n, p in params.items()}
    so._optimizer = torch.optim.SGD(so.parameters(), lr=1.0)
    so.meta_step(episodes)
    for n, p in params.items():
        torch.testing.assert_close(theta[n] - p.detach(), checked[n], rtol=1e-9, atol=1e-12)


def test_trace_measures_feature_reuse_by_layer_cka():
    """layer_cka (steps so far + 1, 5 layers): CKA of each layer's query representation
    with step 0's — 1 at step 0, then measured: below 1 once the weights move, and the
    head (whose inputs and weights both move) changes more than the first conv block."""
    gen = torch.Generator().manual_seed(0)
    ep = random_episode(5, 1, 3, (1, 28, 28), gen, dtype=torch.float32)
    torch.manual_seed(0)
    learner = build_learner("maml", (1, 28, 28), 5, eval_steps=3, inner_lr=0.4)
    trace = learner.adapt(ep, record=True).trace
    cka = [s.extras["layer_cka"] for s in trace]
    assert [c.shape for c in cka] == [(t + 1, 5) for t in range(4)]
    np.testing.assert_allclose(cka[0][0], 1.0, atol=1e-6)
    last = cka[-1][-1]
    assert np.all(last <= 1.0 + 1e-6) and np.all(last > 0.0) and last.min() < 0.999
    assert last[-1] < last[0]
    np.testing.assert_allclose(cka[-1][:-1], cka[-2])  # earlier rows are kept as measured


def test_per_task_backward_equals_summed_graph(conv_case):
    """meta_step back-propagates task by task; that must equal one backward of the mean."""
    learners, episodes = conv_case
    so = learners[False]
    params, _ = split_state(so.net)
    so.zero_grad(set_to_none=True)
    so.accumulate_meta_gradient(episodes)
    per_task = torch.cat([p.grad.reshape(-1) for p in params.values()])
    summed = torch.autograd.grad(so.meta_loss(episodes), list(params.values()))
    summed = torch.cat([g.reshape(-1) for g in summed])
    assert torch.allclose(per_task, summed, rtol=1e-10, atol=1e-12)


def test_second_order_matches_finite_differences_per_parameter_mlp():
    """Sinusoid MAML net (1-40-40-1), float64: every checked coordinate of the meta-gradient."""
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(3)
    episodes = [sine_episode(gen, k=5, q=5) for _ in range(2)]
    learner = build_learner("maml", (1,), 1, task="regression", inner_steps=3, inner_lr=0.02).double()
    params, _ = split_state(learner.net)
    learner.zero_grad(set_to_none=True)
    learner.accumulate_meta_gradient(episodes)
    flat_idx = [(n, i) for n, p in params.items() for i in range(p.numel())]
    pick = torch.randperm(len(flat_idx), generator=torch.Generator().manual_seed(0))[:120].tolist()
    pick += [len(flat_idx) - 1, 0]  # the output bias and the first weight, always
    eps = 1e-6
    worst = 0.0
    for j in pick:
        n, i = flat_idx[j]
        analytic = float(params[n].grad.reshape(-1)[i])
        vals = []
        for sign in (1, -1):
            w = {k: p.detach().clone() for k, p in params.items()}
            w[n].view(-1)[i] += sign * eps
            with torch.enable_grad():
                vals.append(learner.meta_loss(episodes, w).item())
        fd = (vals[0] - vals[1]) / (2 * eps)
        worst = max(worst, abs(analytic - fd) / max(1e-3, abs(fd)))
    print(f"\nMLP float64: worst relative error over {len(pick)} coordinates: {worst:.2e}")
    assert worst < 1e-5, worst
    # and first order differs
    fo = build_learner("maml", (1,), 1, task="regression", inner_steps=3, inner_lr=0.02,
                       first_order=True).double()
    fo.load_state_dict(learner.state_dict())
    fo.accumulate_meta_gradient(episodes)
    g_so = torch.cat([p.grad.reshape(-1) for p in params.values()])
    g_fo = torch.cat([p.grad.reshape(-1) for p in fo.parameters()])
    assert float((g_so - g_fo).norm() / g_so.norm()) > 1e-3


def test_adapt_trace_contract_classification():
    gen = torch.Generator().manual_seed(0)
    ep = random_episode(5, 2, 3, (1, 28, 28), gen, dtype=torch.float32)
    torch.manual_seed(0)
    learner = build_learner("maml", (1, 28, 28), 5, eval_steps=4)
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    with torch.no_grad():  # as evaluate_episode calls it
        adapted = learner.adapt(ep, record=True)
    assert [s.step for s in adapted.trace] == [0, 1, 2, 3, 4]
    assert adapted.trace[0].label == "before adaptation"
    s = adapted.trace[-1]
    assert s.query_probs.shape == (15, 5) and np.allclose(s.query_probs.sum(1), 1, atol=1e-5)
    assert s.support_emb.shape == (10, 64) and s.query_emb.shape == (15, 64)
    # inner steps fit the support set: support loss goes down from step 0
    assert adapted.trace[-1].support_loss < adapted.trace[0].support_loss
    assert all(p.grad is None for p in learner.parameters())
    assert all(torch.equal(before[n], p) for n, p in learner.named_parameters())
    assert adapted.predict(ep.query_x).shape == (15, 5)


def test_adapt_trace_regression_curve():
    gen = torch.Generator().manual_seed(0)
    ep = sine_episode(gen, dtype=torch.float32)
    learner = build_learner("maml", (1,), 1, task="regression", eval_steps=3)
    assert learner.hp["inner_lr"] == 0.01  # the paper's sinusoid step size, when not given
    adapted = learner.adapt(ep, record=True)
    s = adapted.trace[-1]
    assert s.query_probs.shape == (10,)
    assert s.extras["curve_x"].shape == (100,) and s.extras["curve_y"].shape == (100,)
    assert s.extras["curve_x"][0] == -5 and s.extras["curve_x"][-1] == 5
    assert adapted.predict(ep.query_x).shape == (10, 1)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(MetaRepError, match="inner_lr"):
        build_learner("maml", (1, 28, 28), 5, inner_lr=-0.1)
    with pytest.raises(MetaRepError, match="inner_steps"):
        build_learner("maml", (1, 28, 28), 5, inner_steps=float("nan"))


# ----------------------------------------------------------------- learning tests
def _pre_post_mse(learner, tasks):
    pre = post = 0.0
    for ep in tasks:
        trace = learner.adapt(ep, record=True).trace
        pre += trace[0].query_loss
        post += trace[-1].query_loss
    return pre / len(tasks), post / len(tasks)


def test_maml_sinusoid_beats_pre_adaptation_and_non_meta_learned_baselines():
    """400 meta-steps (meta-batch 4, 1 inner step, as the paper trains); 10 steps at test.

    Baselines over the same 40 fixed test tasks, adapted with the same 10 inner steps:
    the same net at its random initialisation, and the paper's "pretrained" net,
    trained with Adam to regress all training tasks at once (as many updates on the
    same data)."""
    from metarep_core.data import load_dataset

    ds = load_dataset("sinusoid")
    hp = dict(inner_steps=1, eval_steps=10, inner_lr=0.01)
    torch.manual_seed(0)
    learner = build_learner("maml", (1,), 1, task="regression", meta_lr=3e-3, **hp)
    torch.manual_seed(0)
    random_init = build_learner("maml", (1,), 1, task="regression", **hp)
    torch.manual_seed(0)
    pretrained = build_learner("maml", (1,), 1, task="regression", **hp)
    opt = torch.optim.Adam(pretrained.parameters(), lr=3e-3)
    train = iter(EpisodeSampler(ds, "train", 1, 10, 10, seed=0))
    for _ in range(400):
        batch = [next(train) for _ in range(4)]
        learner.meta_step(batch)
        x = torch.cat([t for ep in batch for t in (ep.support_x, ep.query_x)])
        y = torch.cat([t for ep in batch for t in (ep.support_y, ep.query_y)])
        opt.zero_grad()
        torch.nn.functional.mse_loss(pretrained.net(x), y).backward()
        opt.step()
    test = EpisodeSampler(ds, "test", 1, 10, 100, seed=0)
    tasks = [test.sample(i) for i in range(40)]
    pre, post = _pre_post_mse(learner, tasks)
    _, rand_post = _pre_post_mse(random_init, tasks)
    _, pre_train_post = _pre_post_mse(pretrained, tasks)
    print(f"\nsinusoid MSE: MAML pre {pre:.3f} post {post:.3f}; random init post {rand_post:.3f}; "
          f"pretrained-on-all-tasks post {pre_train_post:.3f}")
    assert post < 0.7 * pre
    assert post < 0.7 * rand_post
    assert post < 0.7 * pre_train_post


# MAML on glyphs against its own untrained start: test_family_opt_metric_learning.py
# (test_optimization_learner_gains_clearly_over_its_untrained_start[maml]).


def test_bench_maml_train_record():
    from metarep_core.bench.meta_learning import maml_train_one

    rec = maml_train_one(1, {"warmup": 0, "windows": 1, "per_window": 1, "threads": 1})
    assert rec["bench"] == "maml-train" and rec["order"] == "first"
    assert rec["tasks_per_s"] > 0 and rec["peak_rss_mb"] > 0
