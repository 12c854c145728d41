"""The one helper layer of the optimization family (MAML, Reptile, iMAML, ANIL).

A model's weights are handled as a plain ``dict[str, Tensor]`` ("params") so that
an adapted copy ("fast weights") is just another dict, run through the *same*
module with :func:`torch.func.functional_call` — no module cloning per task (the
memory growth learn2learn's ``clone_module`` is known for). Every function is pure:
it never modifies a module or the dicts it is given.

Weights and forward
    ``split_state(model) -> (params, buffers)``: the live tensors (gradients of a
    loss computed from ``params`` reach ``model``'s ``.grad``).
    ``detached_params(params)``: leaf copies that require grad, the start of a
    test-time adaptation whose result must not reach the meta-parameters.
    ``functional_forward(model, params, buffers, x, **kwargs)``: ``model(x)`` with
    the given weights (missing names come from ``model``).
    ``BodyHead``: body (Conv-4 or MLP) + linear head, the network of Reptile, iMAML
    and ANIL (MAML keeps its own ``MamlNet``, whose checkpoints name ``features``).

Inner loop
    ``sgd_update(params, grads, lr)``: ``{n: params[n] - lr * grads[n]}`` for the
    names in ``grads``; the others pass through (learn2learn's ``maml_update``).
    ``inner_adapt(model, params, buffers, x, y, loss_fn, steps, lr, create_graph,
    params_to_adapt=None, callback=None)``: ``steps`` SGD steps on the support loss.
    ``create_graph=True`` keeps the graph of every inner gradient (second-order
    MAML); ``False`` treats the inner gradients as constants while the fast weights
    still depend on ``params`` through the identity path (first order, FOMAML).
    ``params_to_adapt`` restricts the update (ANIL: the head only).
    ``InnerOptimizer``: SGD, or Adam with beta1 = 0 (Reptile's reference code).

Batch norm at test time
    ``TEST_BN``: the declared hyper-parameter ``test_bn`` ("transductive" | "support").
    ``support_stats_forward(model, params, buffers, support_x, x)``: ``model(x)`` with
    every batch-norm layer normalising by the *support set's* statistics.

Task figures and the trace
    ``task_loss(out, y, task)``, ``to_probs(out, task)``, ``query_metrics(out,
    episode)``, ``flat_norm``; ``regression_curve(predict, ...)`` draws the model's
    curve over the sinusoid's input range (``Sinusoid.x_range``, one place);
    ``output_trace_step(...)`` turns support/query outputs into a trace step through
    :func:`.base.trace_step`.

Why a Python loop over tasks and not ``torch.func.vmap``: on torch 2.13 vmap over
tasks was slower on CPU and gave a wrong second-order gradient through training-
mode batch norm (measured while building MAML); the float64 finite-difference tests
in tests/test_maml.py check whatever path is used here.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..backbones import make_backbone
from ..data.sinusoid import Sinusoid
from ..episodes import Episode
from ._conv4_fast import as_channels_last, conv4_forward
from .base import HyperParam, TraceStep, episode_metrics, to_numpy, trace_step

Params = dict[str, torch.Tensor]

CURVE_POINTS = 100  # points of the regression curve drawn at each trace step


# ------------------------------------------------------------------ weights and forward
def split_state(model: nn.Module) -> tuple[Params, Params]:
    """(params, buffers) of ``model`` as name -> tensor dicts (live tensors, not copies)."""
    return dict(model.named_parameters()), dict(model.named_buffers())


def detached_params(params: Params) -> Params:
    """Leaf copies of ``params`` that require grad (nothing flows back to the originals)."""
    return {n: p.detach().requires_grad_(True) for n, p in params.items()}


def channels_last_weights(params: Params) -> Params:
    """``params`` with every 4-d (convolution) weight in channels_last memory format: the
    same values (differentiably: gradients reach the originals unchanged), but oneDNN's
    channels_last convolutions then take the weight as it is instead of converting it at
    every call, forward and backward (and the first convolution writes channels_last
    output directly). For the passes that run channels_last (see ``_conv4_fast``)."""
    return {n: as_channels_last(p) if p.dim() == 4 else p for n, p in params.items()}




def functional_forward(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, **kwargs):
    """``model(x, **kwargs)`` with the weights in ``params`` (+ ``buffers``).

    ``x``: (n, *input_shape). Returns whatever ``model.forward`` returns.
    """
    return functional_call(model, (params, buffers), (x,), kwargs)


class BodyHead(nn.Module):
    """``body`` (n, *input_shape) -> (n, d), then ``head`` Linear(d, out): (n, out).

    BatchNorm is built with ``track_running_stats=False`` — batch statistics in every
    mode, as in MAML's and Reptile's reference code (transductive within a support or
    query batch) — so a functional forward never writes to buffers.
    """

    def __init__(self, input_shape, out_dim: int, hidden: int = 64, channels_last: bool | None = None):
        super().__init__()
        self.body = make_backbone(tuple(input_shape), hidden=hidden, track_running_stats=False,
                                  mlp_hidden=(40, 40) if len(input_shape) == 1 else (64, 64))
        self.head = nn.Linear(self.body.out_dim, out_dim)
        # Conv-4 layout (same values, see _conv4_fast): True where the body is never
        # differentiated twice (ANIL, Reptile); None picks by batch size, which suits
        # iMAML's Hessian-vector products through the body
        self.channels_last = channels_last

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``body(x)``: (n, *input_shape) -> (n, d), computed by the faster Conv-4 path
        (:func:`._conv4_fast.conv4_forward`; same values and gradients)."""
        return conv4_forward(self.body, x, self.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def output(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The network's output (n, out) under ``params`` instead of its own weights."""
        return functional_call(self, params, (x,))

    def embed(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The body's embedding (n, d) under ``params`` (its ``body.*`` entries)."""
        body = {k[5:]: v for k, v in params.items() if k.startswith("body.")}
        return functional_call(self.body, body, (x,))


# ------------------------------------------------------------ batch norm at test time
# These nets keep no running statistics (track_running_stats=False, as in MAML's and
# Reptile's reference code): batch norm always uses the statistics of the batch it is
# given. At test time the batch is the query set, so each query's prediction depends on
# the other queries (transductive; Nichol et al. 2018 measure the gain it gives). With
# no running statistics, the non-transductive alternative is the support set's
# statistics: the only data a learner may see before a query arrives.
TEST_BN = HyperParam(
    "test_bn", "transductive", "choice", choices=("transductive", "support"),
    help="batch norm of query predictions at test time: the query batch's own statistics "
         "(transductive, as the reference code) or the support set's (each query on its own)")


def _batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def support_stats_forward(model: nn.Module, params: Params, buffers: Params, support_x: torch.Tensor,
                          x: torch.Tensor, **kwargs):
    """``model(x)`` under ``params`` with each batch-norm layer normalising by the mean and
    (biased) variance its input had on ``support_x`` (n_s, *input_shape) — not on ``x``.

    Each row of ``x`` is then predicted independently of the others (one row alone
    works too). Returns whatever ``model.forward`` returns. The layers' affine weights
    are those in ``params``.
    """
    bns = _batch_norms(model)
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(m, inputs):
        h = inputs[0]
        dims = [0] + list(range(2, h.dim()))
        stats[m] = (h.mean(dims), h.var(dims, unbiased=False))

    handles = [m.register_forward_pre_hook(record) for m in bns]
    try:
        functional_forward(model, params, buffers, support_x, **kwargs)
    finally:
        for h in handles:
            h.remove()

    def frozen(m):
        def forward(h):
            # written out (not F.batch_norm, whose running statistics may not carry a
            # gradient); m.weight is read at call time: under functional_call, params'
            shape = (1, -1) + (1,) * (h.dim() - 2)
            mean, var = stats[m]
            out = (h - mean.view(shape)) / torch.sqrt(var.view(shape) + m.eps)
            return out * m.weight.view(shape) + m.bias.view(shape) if m.affine else out
        return forward

    for m in bns:   # an instance attribute shadows the class's forward for this call
        m.forward = frozen(m)
    try:
        return functional_forward(model, params, buffers, x, **kwargs)
    finally:
        for m in bns:
            del m.forward


# ------------------------------------------------------------------------- inner loop
def sgd_update(params: Params, grads: Params, lr: float) -> Params:
    """One SGD step on the names in ``grads``; other entries of ``params`` are kept."""
    out = dict(params)
    for n, g in grads.items():
        out[n] = params[n] - lr * g
    return out


def inner_adapt(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int, lr: float,
                create_graph: bool, params_to_adapt: list[str] | None = None,
                callback: Callable[[int, Params], None] | None = None,
                channels_last: bool = False) -> Params:
    """Fast weights after ``steps`` SGD steps on ``loss_fn(model_params(x), y)``.

    ``x``: (n, *input_shape) support inputs; ``y``: their targets ((n,) class
    indices or (n, 1) values — whatever ``loss_fn`` takes). See the module
    docstring for ``create_graph`` and ``params_to_adapt``. ``callback(step, fast)``
    runs after each step (step = 1..steps). ``channels_last``: keep 4-d weights in
    channels_last memory format across steps (same values; for channels_last passes).
    Needs gradients enabled.
    """
    names = list(params_to_adapt) if params_to_adapt is not None else list(params)
    fast = dict(params)
    for step in range(1, steps + 1):
        loss = loss_fn(functional_forward(model, fast, buffers, x), y)
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=create_graph,
                                    allow_unused=True)
        # a weight the loss does not use (allow_unused) has no gradient: it stays put
        fast = sgd_update(fast, {n: g for n, g in zip(names, grads) if g is not None}, lr)
        if channels_last:  # keep the weights' layout (a free view or no-op; see channels_last_weights)
            fast = channels_last_weights(fast)
        if callback is not None:
            callback(step, fast)
    return fast


class InnerOptimizer:
    """Plain SGD, or Adam with beta1 = 0 as in Reptile's reference code, on a dict of
    tensors; fresh state per task. ``step(params, grads)`` returns new tensors."""

    def __init__(self, kind: str, lr: float, betas=(0.0, 0.999), eps: float = 1e-8):
        self.kind, self.lr, self.betas, self.eps = kind, lr, betas, eps
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    def step(self, params: Params, grads: Params) -> Params:
        if self.kind == "sgd":
            return sgd_update(params, grads, self.lr)
        b1, b2 = self.betas
        self.t += 1
        out = {}
        for k in params:
            g = grads[k]
            self.m[k] = b1 * self.m.get(k, torch.zeros_like(g)) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, torch.zeros_like(g)) + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            out[k] = params[k] - self.lr * m_hat / (v_hat.sqrt() + self.eps)
        return out


# -------------------------------------------------------------- task figures and trace
def task_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy of logits (n, n_way) vs labels (n,), or MSE of (n, 1) outputs vs (n, 1)."""
    if task == "regression":
        return F.mse_loss(out.reshape(-1), y.reshape(-1).to(out))
    return F.cross_entropy(out, y)


def to_probs(out: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities (n, n_way) from logits; regression outputs pass as (n, 1)."""
    return out if task == "regression" else out.softmax(-1)


def query_metrics(out: torch.Tensor, episode: Episode) -> dict[str, float]:
    """Loss and accuracy (or MSE) on the query set from outputs (n_q, out)."""
    m = episode_metrics(to_probs(out.detach(), episode.task), episode, "query")
    return {k: v for k, v in m.items() if k in ("loss", "accuracy", "mse")}


def flat_norm(tensors) -> float:
    """Euclidean norm of all the given tensors taken as one vector (float64 sum)."""
    return float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)))


def regression_curve(predict: Callable[[torch.Tensor], torch.Tensor], device,
                     dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """``curve_x``/``curve_y`` (CURVE_POINTS,) over the sinusoid's input range, for the trace."""
    grid = torch.linspace(*Sinusoid.x_range, CURVE_POINTS, device=device, dtype=dtype).view(-1, 1)
    with torch.no_grad():
        y = predict(grid).reshape(-1)
    return {"curve_x": to_numpy(grid.view(-1)), "curve_y": to_numpy(y)}


def step_label(step: int, what: str = "step") -> str:
    """"before adaptation" for step 0, else e.g. "inner step 3"."""
    return "before adaptation" if step == 0 else f"{what} {step}"


def output_trace_step(step: int, label: str, episode: Episode, s_out: torch.Tensor, q_out: torch.Tensor,
                      s_emb: torch.Tensor | None, q_emb: torch.Tensor | None,
                      extras: dict | None = None) -> TraceStep:
    """A trace step from support/query outputs (logits (n, n_way) or (n, 1) predictions)."""
    task = episode.task
    return trace_step(step, label, episode, to_probs(q_out.detach(), task), to_probs(s_out.detach(), task),
                      support_emb=s_emb, query_emb=q_emb, extras=extras)
