"""Shared parts of the gradient-based learners of this package's second wave
(Reptile, iMAML, ANIL): a body (Conv-4 or MLP) with a linear head, run
functionally so that adapted weights live in plain ``{name: tensor}`` dicts and the
module's own parameters stay the meta-parameters ``theta``.

BatchNorm is built with ``track_running_stats=False`` — batch statistics in every
mode, as in MAML's and Reptile's reference code (transductive within a support or
query batch) — so a functional forward never writes to buffers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..backbones import make_backbone
from ..episodes import Episode
from ._functional import functional_forward, sgd_update
from .base import TraceStep, episode_metrics, to_numpy

Params = dict[str, torch.Tensor]


class BodyHead(nn.Module):
    """``body`` (n, *input_shape) -> (n, d), then ``head`` Linear(d, out): (n, out)."""

    def __init__(self, input_shape, out_dim: int, hidden: int = 64):
        super().__init__()
        self.body = make_backbone(tuple(input_shape), hidden=hidden, track_running_stats=False,
                                  mlp_hidden=(40, 40) if len(input_shape) == 1 else (64, 64))
        self.head = nn.Linear(self.body.out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def params_of(module: nn.Module, detach: bool = True, requires_grad: bool = False) -> Params:
    """A dict copy of the module's parameters (leaves, optionally requiring grad)."""
    out = {}
    for name, p in module.named_parameters():
        t = p.detach().clone() if detach else p
        if detach and requires_grad:
            t.requires_grad_(True)
        out[name] = t
    return out


def fwd(net: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """``net`` evaluated with ``params`` instead of its own: (n, out)."""
    return functional_forward(net, params, {}, x)


def embed_with(net: BodyHead, params: Params, x: torch.Tensor) -> torch.Tensor:
    """The body's embedding (n, d) under ``params`` (the ``body.*`` entries)."""
    body = {k[5:]: v for k, v in params.items() if k.startswith("body.")}
    return functional_call(net.body, body, (x,))


def task_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy on logits (classification) or MSE on (n, 1) outputs (regression)."""
    if task == "regression":
        return F.mse_loss(out.reshape(-1), y.reshape(-1).to(out))
    return F.cross_entropy(out, y)


def to_probs(out: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities (n, n_way) from logits; regression outputs pass as (n, 1)."""
    return out if task == "regression" else out.softmax(-1)


def flat_norm(tensors) -> float:
    return float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)))


def sq_distance(a: Params, b: Params) -> torch.Tensor:
    """||a - b||^2 summed over every tensor of the two dicts (same keys)."""
    return sum(((a[k] - b[k]) ** 2).sum() for k in a)


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


def regression_curve(predict: Callable[[torch.Tensor], torch.Tensor], device) -> dict:
    """``curve_x``/``curve_y`` (G,) on the sinusoid's input range, for the trace."""
    grid = torch.linspace(-5, 5, 100, device=device).view(-1, 1)
    with torch.no_grad():
        y = predict(grid).reshape(-1)
    return {"curve_x": to_numpy(grid.view(-1)), "curve_y": to_numpy(y)}


def trace_step(step: int, label: str, episode: Episode, s_out: torch.Tensor, q_out: torch.Tensor,
               s_emb: torch.Tensor | None, q_emb: torch.Tensor | None,
               extras: dict[str, np.ndarray] | None = None) -> TraceStep:
    """A :class:`TraceStep` from support/query outputs (logits or (n,1) predictions)."""
    task = episode.task
    s_p, q_p = to_probs(s_out.detach(), task), to_probs(q_out.detach(), task)
    sm, qm = episode_metrics(s_p, episode, "support"), episode_metrics(q_p, episode, "query")
    return TraceStep(
        step=step, label=label,
        support_loss=sm["loss"], support_accuracy=sm.get("accuracy"),
        query_loss=qm["loss"], query_accuracy=qm.get("accuracy"),
        query_probs=to_numpy(q_p.reshape(-1) if task == "regression" else q_p),
        support_emb=to_numpy(s_emb), query_emb=to_numpy(q_emb),
        extras=dict(extras or {}),
    )


def query_metrics(out: torch.Tensor, episode: Episode) -> dict[str, float]:
    """Loss and accuracy (or MSE) on the query set from outputs (n_q, out)."""
    m = episode_metrics(to_probs(out.detach(), episode.task), episode, "query")
    return {k: v for k, v in m.items() if k in ("loss", "accuracy", "mse")}
