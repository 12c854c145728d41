"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017).

MAML meta-learns an initialisation ``theta`` from which a few SGD steps on a new
task's support set give good weights for that task:
``theta'_i = theta - alpha * grad L_support_i(theta)`` (repeated ``inner_steps``
times), and the meta-update descends the query loss of the adapted weights,
``sum_i L_query_i(theta'_i)``, with respect to ``theta``. Second order
differentiates through the inner steps (Hessian-vector products); first order
(FOMAML, ``first_order=True``) treats the inner gradients as constants.

Model: Conv-4 + linear head (n_way outputs) for images, an MLP (1-40-40-1 with
ReLU, as in the paper's sinusoid experiment) + linear head for vectors and
regression. Batch norm uses batch statistics always (no running statistics), as
in the MAML reference implementation, so adaptation behaves the same at
meta-training and at test time. At test time the query predictions are therefore
normalised by the query batch's own statistics (transductive: each prediction
depends on the other queries), as Finn's code does; hp ``test_bn="support"``
normalises them by the support set's statistics instead (each query on its own).

Trace (capability "inner_loop"): ``adapt(record=True)`` gives step 0 (before
adaptation, the meta-learned weights) then one step per inner SGD step
(``eval_steps`` of them), each with support/query loss and accuracy, query
probabilities (regression: predictions (n_q,)), and the penultimate features of
support and query under the weights of that step. Regression steps add
``extras["curve_x"]``/``["curve_y"]``: the model's curve on 100 points of the
sinusoid's input range [-5, 5]. Every step adds ``extras["layer_cka"]``
(steps so far + 1, layers): the linear CKA (:mod:`._cka`) of each layer's
representation of the query set at that step with the one at step 0 (layers: the
four Conv-4 blocks then the head's logits; for the MLP, each hidden layer then the
output) — Raghu et al.'s measurement of feature reuse: near 1 in the body, lower in
the head. (ANIL's body does not move, so its CKA would be 1 by construction.)

The inner-loop math (functional forward, SGD steps) is :mod:`._functional`, shared
with Reptile, iMAML and ANIL.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..backbones import MLP, Conv4
from ..episodes import Episode
from . import register
from ._cka import linear_cka
from ._conv4_fast import _blocks, conv4_forward
from ._functional import (TEST_BN, channels_last_weights, detached_params, functional_forward, inner_adapt,
                          output_trace_step, regression_curve, split_state, step_label, support_stats_forward,
                          task_loss, to_probs)
from .base import Adapted, HyperParam, MetaLearner, TraceStep


class MamlNet(nn.Module):
    """Features then a linear head: (n, *input_shape) -> (n, n_out) [, features (n, d)]."""

    def __init__(self, input_shape: tuple[int, ...], n_out: int, mlp_hidden: tuple[int, ...]):
        super().__init__()
        # Conv-4 layout choice (results are the same): channels_last for every batch,
        # except while second-order meta-gradients are taken (see _conv4_fast)
        self.double_backward = False
        if len(input_shape) == 3:
            # batch statistics only: no running stats, so no in-place buffer updates
            self.features = Conv4(input_shape[0], input_shape[1], track_running_stats=False)
            dim = self.features.out_dim
        else:
            mlp = MLP(math.prod(input_shape), mlp_hidden)
            # the MLP backbone has no ReLU after its last layer; MAML's net does
            self.features = nn.Sequential(mlp, nn.ReLU())
            dim = mlp.out_dim
        self.head = nn.Linear(dim, n_out)

    def forward(self, x: torch.Tensor, return_features: bool = False, return_layers: bool = False):
        if return_layers:
            return self.layers(x)
        # = self.features(x), faster (see _conv4_fast)
        z = conv4_forward(self.features, x, None if self.double_backward else True)
        out = self.head(z)
        return (out, z) if return_features else out

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's output for ``x``: Conv-4 blocks (n, C, H, W) x 4 then the logits
        (n, n_out); for the MLP, each hidden layer (after its ReLU) then the output."""
        outs = []
        if isinstance(self.features, Conv4):
            h = x
            for conv, bn, pool in _blocks(self.features):
                h = bn(conv(h))
                h = torch.relu(pool(h) if pool is not None else h)
                outs.append(h)
        else:
            h = x.flatten(1)
            for m in self.features.modules():
                if isinstance(m, nn.Linear):
                    h = m(h)
                elif isinstance(m, nn.ReLU):
                    h = m(h)
                    outs.append(h)
        outs.append(self.head(h.flatten(1)))
        return outs


@register
class MAML(MetaLearner):
    name = "maml"
    title = "MAML"
    family = "optimization"
    paper = "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks"
    summary = ("meta-learns an initialisation from which a few gradient steps solve a new task. "
               "Test-time batch norm: query-batch statistics (transductive) by default, or the "
               "support set's (test_bn)")
    hyperparams = (
        HyperParam("meta_batch", 4, "int", 1, 32, help="tasks per meta-update"),
        HyperParam("inner_steps", 5, "int", 1, 50, help="inner SGD steps during meta-training"),
        HyperParam("eval_steps", 10, "int", 0, 100, help="inner SGD steps when adapting to a new task"),
        # the paper's inner learning rates: 0.4 for Omniglot-like images with Conv-4,
        # 0.01 for the sinusoid
        HyperParam("inner_lr", 0.4, "float", 1e-4, 2.0, log=True, per_task={"regression": 0.01},
                   help="inner-loop SGD step size (0.4 suits Conv-4 on images; regression default: 0.01)"),
        HyperParam("first_order", False, "bool",
                   help="first-order MAML: ignore the second derivatives through the inner loop"),
        TEST_BN,
    )
    capabilities = frozenset({"inner_loop", "regression"})
    tasks = frozenset({"classification", "regression"})
    order = 10

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        hidden = (40, 40) if task == "regression" else (64, 64)
        self.net = MamlNet(self.input_shape, 1 if task == "regression" else self.n_way, hidden)

    # ------------------------------------------------------------------ pieces
    def loss_fn(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits (n, n_way) vs labels (n,), or MSE of (n, 1) vs (n, 1)."""
        return task_loss(out, y, self.task)

    def _adapt_params(self, episode: Episode, params, steps: int, create_graph: bool, callback=None):
        _, buffers = split_state(self.net)
        # without double backward every pass runs channels_last (MamlNet.forward): keep the
        # conv weights in that layout too, so no convolution converts them at each call
        channels_last = not self.net.double_backward and self.task != "regression"
        if channels_last:
            params = channels_last_weights(params)
        return inner_adapt(self.net, params, buffers, episode.support_x, episode.support_y,
                           self.loss_fn, steps, self.hp["inner_lr"], create_graph, callback=callback,
                           channels_last=channels_last)

    def _forward(self, params, x: torch.Tensor, return_features: bool = False, return_layers: bool = False):
        _, buffers = split_state(self.net)
        if return_layers:
            return functional_forward(self.net, params, buffers, x, return_layers=True)
        return functional_forward(self.net, params, buffers, x, return_features=return_features)

    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        return to_probs(out, self.task)

    def _query_forward(self, params, episode: Episode, x: torch.Tensor, return_features: bool = False):
        """``x``'s outputs under ``params`` with the chosen test-time batch norm: the batch's
        own statistics (transductive), or the support set's (``test_bn="support"``)."""
        if self.hp["test_bn"] == "support" and self.task != "regression":
            _, buffers = split_state(self.net)
            return support_stats_forward(self.net, params, buffers, episode.support_x, x,
                                         return_features=return_features)
        return self._forward(params, x, return_features=return_features)

    # ------------------------------------------------------------ meta-training
    def accumulate_meta_gradient(self, episodes: list[Episode]) -> dict[str, float]:
        """Add the meta-gradient of the mean post-adaptation query loss to ``.grad``.

        Each task's loss is back-propagated on its own (the gradient of a mean is the
        mean of the gradients), so only one task's unrolled inner loop is in memory
        at a time. Returns the mean query loss (and accuracy) before the update.
        """
        params, _ = split_state(self.net)
        create_graph = not self.hp["first_order"]
        n = len(episodes)
        loss_sum, acc_sum = 0.0, 0.0
        self.net.double_backward = create_graph
        try:
            for ep in episodes:
                fast = self._adapt_params(ep, params, self.hp["inner_steps"], create_graph)
                out = self._forward(fast, ep.query_x)
                loss = self.loss_fn(out, ep.query_y)
                (loss / n).backward()
                loss_sum += float(loss.detach())
                if self.task != "regression":
                    acc_sum += float((out.detach().argmax(1) == ep.query_y).float().mean())
        finally:
            self.net.double_backward = False
        stats = {"loss": loss_sum / n}
        if self.task != "regression":
            stats["accuracy"] = acc_sum / n
        return stats

    def meta_loss(self, episodes: list[Episode], params=None) -> torch.Tensor:
        """Mean post-adaptation query loss as a function of ``params`` (default: the
        current weights). Differentiable (second order) when ``first_order`` is false."""
        params = split_state(self.net)[0] if params is None else params
        # plain tensors (e.g. perturbed weights for a finite difference) become leaves,
        # since the inner loop differentiates the support loss with respect to them
        params = {n: p if p.requires_grad else p.detach().requires_grad_(True) for n, p in params.items()}
        total = 0.0
        self.net.double_backward = not self.hp["first_order"]
        try:
            with torch.enable_grad():
                for ep in episodes:
                    fast = self._adapt_params(ep, params, self.hp["inner_steps"], not self.hp["first_order"])
                    total = total + self.loss_fn(self._forward(fast, ep.query_x), ep.query_y)
        finally:
            self.net.double_backward = False
        return total / len(episodes)

    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.train()
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        stats = self.accumulate_meta_gradient(episodes)
        opt.step()
        return stats

    # -------------------------------------------------------------- adaptation
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (n, d) under the meta-learned weights (batch statistics over ``x``)."""
        with torch.no_grad():
            return self.net(x, return_features=True)[1]

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        """``eval_steps`` SGD steps on the support loss from the meta-learned weights.

        Nothing reaches the meta-parameters: adaptation starts from detached copies
        and needs only first derivatives (no graph through the inner steps).
        """
        trace: list[TraceStep] | None = [] if record else None
        # conv weights in the layout of the channels_last passes that adaptation runs
        start = detached_params(channels_last_weights(split_state(self.net)[0]))
        cka_rows: list[list[float]] = []
        if record:
            with torch.no_grad():
                layers0 = self._forward(start, episode.query_x, return_layers=True)
            trace.append(self._trace_step(0, start, episode, layers0, cka_rows))

        def callback(step, fast):
            trace.append(self._trace_step(step, fast, episode, layers0, cka_rows))

        # evaluate_episode runs under no_grad; the inner loop needs gradients
        with torch.enable_grad():
            fast = self._adapt_params(episode, start, self.hp["eval_steps"], False,
                                      callback if record else None)
        fast = {n: p.detach() for n, p in fast.items()}

        def predict(x: torch.Tensor) -> torch.Tensor:
            return self._scores(self._query_forward(fast, episode, x))

        def embed(x: torch.Tensor) -> torch.Tensor:
            return self._query_forward(fast, episode, x, return_features=True)[1]

        return Adapted(predict, embed, trace)

    @torch.no_grad()
    def _trace_step(self, step: int, params, episode: Episode, layers0: list[torch.Tensor],
                    cka_rows: list[list[float]]) -> TraceStep:
        s_out, s_emb = self._forward(params, episode.support_x, return_features=True)
        q_out, q_emb = self._query_forward(params, episode, episode.query_x, return_features=True)
        # feature reuse, measured: each layer's query representation vs step 0's
        layers = self._forward(params, episode.query_x, return_layers=True)
        cka_rows.append([linear_cka(a, b) for a, b in zip(layers0, layers)])
        extras = {"layer_cka": torch.tensor(cka_rows).numpy()}
        if self.task == "regression":
            extras.update(regression_curve(lambda g: self._forward(params, g), q_out.device, q_out.dtype))
        return output_trace_step(step, step_label(step), episode, s_out, q_out, s_emb, q_emb, extras)
