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
