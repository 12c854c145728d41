"""Functional inner-loop math shared by the optimization-family learners.

MAML uses it now; Reptile, iMAML and ANIL can build on the same few functions.
A model's weights are handled as a plain ``dict[str, Tensor]`` ("params") so that
an adapted copy ("fast weights") is just another dict, run through the *same*
module with :func:`torch.func.functional_call` — no module cloning per task.

API (every function is pure: it never modifies ``model`` or the dicts it is given)
-------------------------------------------------------------------------------
``split_state(model) -> (params, buffers)``
    The module's parameters and buffers as name -> tensor dicts (the live
    tensors: gradients of a loss computed from ``params`` reach ``model``'s ``.grad``).

``detached_params(params) -> params``
    Fresh leaf copies that require grad: the starting point of a test-time
    adaptation whose result must not reach the meta-parameters.

``functional_forward(model, params, buffers, x, **kwargs) -> output``
    ``model.forward(x, **kwargs)`` evaluated with the given weights. ``params`` may
    hold a subset of the parameter names; missing ones come from ``model``.

``sgd_update(params, grads, lr) -> params``
    ``{n: params[n] - lr * grads[n]}`` for the names in ``grads``; the other
    entries are passed through unchanged.

``inner_adapt(model, params, buffers, x, y, loss_fn, steps, lr, create_graph,
              params_to_adapt=None, callback=None) -> fast params``
    ``steps`` plain SGD steps on ``loss_fn(functional_forward(...x), y)``.
    ``create_graph=True`` keeps the graph of every inner gradient, so a loss of the
    returned fast weights differentiates *through* the inner loop (second-order
    MAML). ``create_graph=False`` treats each inner gradient as a constant: the
    fast weights still depend on ``params`` through the identity path, so
    back-propagating a loss of them gives the first-order (FOMAML) meta-gradient.
    ``params_to_adapt`` (names) restricts the update to those weights (ANIL: the
    head only); the others stay as given. ``callback(step, fast)`` is called after
    each step (step = 1..steps), e.g. to record a trace.

Why a Python loop over tasks and not ``torch.func.vmap``: on torch 2.13 vmap over
tasks was slower on CPU and gave a wrong second-order gradient through training-
mode batch norm (see ../shared/bench/peers/vmap_bn_repro.py); the float64
finite-difference tests in tests/test_maml.py check whatever path is used here.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]


def split_state(model: nn.Module) -> tuple[Params, Params]:
    """(params, buffers) of ``model`` as name -> tensor dicts (live tensors, not copies)."""
    return dict(model.named_parameters()), dict(model.named_buffers())


def detached_params(params: Params) -> Params:
    """Leaf copies of ``params`` that require grad (nothing flows back to the originals)."""
    return {n: p.detach().requires_grad_(True) for n, p in params.items()}


def functional_forward(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, **kwargs):
    """``model(x, **kwargs)`` with the weights in ``params`` (+ ``buffers``).

    ``x``: (n, *input_shape). Returns whatever ``model.forward`` returns.
    """
    return functional_call(model, (params, buffers), (x,), kwargs)


def sgd_update(params: Params, grads: Params, lr: float) -> Params:
    """One SGD step on the names in ``grads``; other entries of ``params`` are kept."""
    out = dict(params)
    for n, g in grads.items():
        out[n] = params[n] - lr * g
    return out


def inner_adapt(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int, lr: float,
                create_graph: bool, params_to_adapt: list[str] | None = None,
                callback: Callable[[int, Params], None] | None = None) -> Params:
    """Fast weights after ``steps`` SGD steps on ``loss_fn(model_params(x), y)``.

    ``x``: (n, *input_shape) support inputs; ``y``: their targets ((n,) class
    indices or (n, 1) values — whatever ``loss_fn`` takes). See the module
    docstring for ``create_graph`` (second vs first order) and ``params_to_adapt``.
    Must be called with gradients enabled (``torch.enable_grad()``).
    """
    names = list(params_to_adapt) if params_to_adapt is not None else list(params)
    fast = dict(params)
    for step in range(1, steps + 1):
        loss = loss_fn(functional_forward(model, fast, buffers, x), y)
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=create_graph,
                                    allow_unused=True)
        # a weight the loss does not use (allow_unused) has no gradient: it stays put
        fast = sgd_update(fast, {n: g for n, g in zip(names, grads) if g is not None}, lr)
        if callback is not None:
            callback(step, fast)
    return fast
