"""The faster formulations of the optimization learners give the same numbers as the
plain ones (float64, to 1e-10): values, gradients and, where a learner takes them,
second derivatives."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from metarep_core.learners._functional import BodyHead


@pytest.mark.parametrize("channels_last", [True, None])
@pytest.mark.parametrize("n", [5, 40])
def test_body_head_fast_forward_matches_the_plain_modules(channels_last, n):
    """BodyHead runs its Conv-4 body through conv4_forward (channels_last, pool before
    ReLU): output and weight gradients equal head(body(x)) computed module by module."""
    torch.manual_seed(0)
    net = BodyHead((1, 28, 28), 5, hidden=8, channels_last=channels_last).double()
    x = torch.randn(n, 1, 28, 28, dtype=torch.float64)
    params = dict(net.named_parameters())
    fast = net.output(params, x)
    plain = net.head(net.body(x))   # Conv4.forward: nn.Sequential, NCHW, ReLU then pool
    assert fast.shape == (n, 5)
    assert torch.allclose(fast, plain, atol=1e-10, rtol=0)
    w = torch.randn(n, 5, dtype=torch.float64)
    g_fast = torch.autograd.grad((fast * w).sum(), list(params.values()))
    g_plain = torch.autograd.grad((plain * w).sum(), list(params.values()))
    for a, b in zip(g_fast, g_plain):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
    # features() is the body's embedding under functional_call too (fast weights)
    shifted = {k: v + 0.01 for k, v in params.items()}
    body = {k[5:]: v for k, v in shifted.items() if k.startswith("body.")}
    assert torch.allclose(functional_call(net.body, body, (x,)),
                          net.embed(shifted, x), atol=1e-10, rtol=0)
    assert torch.allclose(net.head(net.body(x)), net(x), atol=1e-10, rtol=0)


def test_channels_last_weights_same_values_and_gradients_with_one_input_channel():
    """Conv weights re-laid-out channels_last (also the ambiguous 1-input-channel one,
    which contiguous() would keep as it is): equal values, channels_last strides, and
    gradients that reach the original weights unchanged."""
    from metarep_core.learners._functional import channels_last_weights
    w1 = torch.randn(8, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(8, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, requires_grad=True)
    out = channels_last_weights({"w1": w1, "w2": w2, "b": b})
    assert out["w1"].stride() == (9, 1, 3, 1) and out["w2"].stride() == (72, 1, 24, 8)
    assert out["b"] is b
    for k, v in (("w1", w1), ("w2", w2)):
        assert torch.equal(out[k], v)
        c = torch.randn_like(v)
        assert torch.equal(torch.autograd.grad((out[k] * c).sum(), v)[0], c)


@pytest.mark.parametrize("first_order", [True, False])
def test_maml_channels_last_weights_give_the_same_meta_gradient_and_adaptation(first_order, monkeypatch):
    """MAML keeps its conv weights channels_last through the inner loop of first-order
    meta-training and of adaptation: the meta-gradient and the adapted predictions are
    those of the plain layout to 1e-10 (float64)."""
    from metarep_core.bench.meta_learning import episode_pool
    from metarep_core.learners import _functional, build_learner
    from metarep_core.learners import maml as maml_module

    torch.manual_seed(0)
    learner = build_learner("maml", (1, 28, 28), 5, inner_steps=2, inner_lr=0.4, eval_steps=3,
                            first_order=first_order).double()
    eps = [e for e in episode_pool(2, 5, 1, 3)]
    for e in eps:
        e.support_x, e.query_x = e.support_x.double(), e.query_x.double()

    def run():
        learner.zero_grad(set_to_none=True)
        learner.accumulate_meta_gradient(eps)
        grads = [p.grad.clone() for p in learner.parameters()]
        learner.eval()
        with torch.no_grad():
            probs = learner.adapt(eps[0]).predict(eps[0].query_x)
        learner.train()
        return grads, probs

    grads_cl, probs_cl = run()
    plain = lambda params: dict(params)  # noqa: E731 - the layout change switched off
    monkeypatch.setattr(_functional, "channels_last_weights", plain)
    monkeypatch.setattr(maml_module, "channels_last_weights", plain)
    grads_plain, probs_plain = run()
    for a, b in zip(grads_cl, grads_plain):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
    assert torch.allclose(probs_cl, probs_plain, atol=1e-10, rtol=0)
