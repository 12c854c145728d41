"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

For each task, run ``inner_steps`` of SGD (default; or Adam with beta1 = 0, as the
paper's code does) from the meta-parameters ``theta`` on the task's data, reaching ``phi``.
The outer update moves ``theta`` toward the adapted weights:

    theta <- theta + eps * mean_i (phi_i - theta)        (batched Reptile)

With ``meta_batch = 1`` this is serial Reptile. No second derivatives, no held-out
query loss in the update: the direction ``phi - theta`` itself is the meta-gradient
surrogate (to second order it contains MAML's gradient plus a term that maximises
the inner product of gradients between minibatches of the same task).

Variant and simplifications:
- The inner loop is full-batch on the task data. Like the paper's ``--train-shots``
  option, meta-training may adapt on support + query together (hp
  ``train_on_query``, default on): Reptile never needs a held-out set during
  training. The ``loss``/``accuracy`` returned by ``meta_step`` are then the query
  figures of the adapted weights (training figures, not held-out ones).
- The outer step size ``eps`` starts at the hyper-parameter ``meta_lr`` (plain
  interpolation, no Adam) and is annealed linearly to 0 over the training run, as in
  the paper's code: ``eps_i = meta_lr * (1 - i / N)`` at meta-step i of N (the Trainer
  tells the learner i and N through ``set_progress``; called on its own,
  ``meta_step`` uses ``meta_lr``). Without it, eps = 1 makes theta the last batch's
  adapted weights.
- Batch norm at test time (hp ``test_bn``): the body keeps no running statistics, so
  query predictions are normalised by the query batch's statistics ("transductive",
  as the paper's code; the paper reports the transductive gain) or by the support
  set's ("support").
- Adaptation at test time uses ``eval_steps`` (the paper uses more steps at test
  time than in training: 50 vs 5 on Omniglot).
"""
from __future__ import annotations

import torch

from ..episodes import Episode
from . import register
from ._functional import (TEST_BN, BodyHead, InnerOptimizer, detached_params, flat_norm,
                          output_trace_step, query_metrics, regression_curve, split_state, step_label,
                          support_stats_forward, task_loss)
from .base import Adapted, HyperParam, MetaLearner


@register
class Reptile(MetaLearner):
    name = "reptile"
    title = "Reptile"
    family = "optimization"
    paper = "Nichol, Achiam & Schulman 2018, On First-Order Meta-Learning Algorithms"
    summary = ("first-order meta-learning: move the initialisation toward each task's adapted weights "
               "(step annealed to 0). Test-time batch norm: query-batch statistics (transductive) "
               "by default, or the support set's (test_bn)")
    hyperparams = (
        HyperParam("meta_lr", 1.0, "float", 1e-4, 1.0, log=True,
                   help="outer step size eps at the first meta-step: theta += eps * mean(phi - theta); "
                        "annealed linearly to 0 over the training run"),
        HyperParam("meta_batch", 4, "int", 1, 32, help="tasks per outer update (batched Reptile)"),
        HyperParam("inner_steps", 5, "int", 1, 100, help="inner gradient steps per task in meta-training"),
        HyperParam("eval_steps", 10, "int", 1, 200, help="inner gradient steps when adapting at test time"),
        HyperParam("inner_lr", 0.1, "float", 1e-5, 2.0, log=True, per_task={"regression": 0.01},
                   help="inner-loop learning rate (regression default: 0.01; the paper's Adam used 0.001)"),
        HyperParam("inner_optimizer", "sgd", "choice", choices=("sgd", "adam"),
                   help="inner optimizer: plain SGD, or Adam with beta1 = 0 as in the paper's code"),
        HyperParam("train_on_query", True, "bool",
                   help="meta-training adapts on support + query (the paper's train-shots)"),
        HyperParam("hidden", 64, "int", 8, 128, help="channels of the Conv-4 body"),
        TEST_BN,
    )
    capabilities = frozenset({"inner_loop", "regression"})
    tasks = frozenset({"classification", "regression"})
    order = 20

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.net = BodyHead(self.input_shape, 1 if task == "regression" else self.n_way, self.hp["hidden"],
                            channels_last=True)

    # ------------------------------------------------------------------ inner loop
    def inner_loop(self, x: torch.Tensor, y: torch.Tensor, steps: int, callback=None):
        """Adapt a copy of ``theta`` on (x, y) for ``steps`` steps; returns ``phi`` (dict).

        ``callback(t, phi)`` is called at t = 0..steps (t = 0 before any step).
        """
        phi = detached_params(split_state(self.net)[0])
        opt = InnerOptimizer(self.hp["inner_optimizer"], self.hp["inner_lr"])
        if callback:
            callback(0, phi)
        for t in range(1, steps + 1):
            loss = task_loss(self.net.output(phi, x), y, self.task)
            grads = dict(zip(phi, torch.autograd.grad(loss, list(phi.values()))))
            with torch.no_grad():
                phi = opt.step(phi, grads)
            phi = {k: v.requires_grad_(True) for k, v in phi.items()}
            if callback:
                callback(t, phi)
        return {k: v.detach() for k, v in phi.items()}

    def outer_step_size(self) -> float:
        """eps at the current point of the run: ``meta_lr * (1 - progress)``."""
        return self.hp["meta_lr"] * (1.0 - self.progress)

    # ------------------------------------------------------------------ contract
    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        theta = dict(self.net.named_parameters())
        direction = {k: torch.zeros_like(v) for k, v in theta.items()}
        losses, accs = [], []
        for ep in episodes:
            if self.hp["train_on_query"]:
                x = torch.cat([ep.support_x, ep.query_x])
                y = torch.cat([ep.support_y, ep.query_y])
            else:
                x, y = ep.support_x, ep.support_y
            phi = self.inner_loop(x, y, self.hp["inner_steps"])
            with torch.no_grad():
                m = query_metrics(self.net.output(phi, ep.query_x), ep)
                for k in direction:
                    direction[k] += (phi[k] - theta[k]) / len(episodes)
            losses.append(m["loss"])
            accs.append(m.get("accuracy", 0.0))
        eps = self.outer_step_size()
        with torch.no_grad():
            for k, p in theta.items():
                p.add_(eps * direction[k])
        self.last_direction_norm = flat_norm(direction.values())
        out = {"loss": sum(losses) / len(losses), "direction_norm": self.last_direction_norm,
               "outer_step_size": eps}
        if self.task != "regression":
            out["accuracy"] = sum(accs) / len(accs)
        return out

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        trace = [] if record else None
        theta = detached_params(split_state(self.net)[0])
        dist: list[float] = []

        def record_step(t, phi):
            with torch.no_grad():
                dist.append(flat_norm(phi[k] - theta[k] for k in phi))
                s_out, q_out = self.net.output(phi, episode.support_x), self._query_out(phi, episode)
                extras = {
                    # how far the inner loop has moved from the initialisation, per step:
                    # Reptile's outer update is eps times this displacement
                    "distance_to_init": torch.tensor(dist).numpy(),
                }
                if self.task == "regression":
                    extras.update(regression_curve(lambda g: self.net.output(phi, g), g_dev))
                trace.append(output_trace_step(
                    t, step_label(t, "inner step"), episode, s_out, q_out,
                    self.net.embed(phi, episode.support_x),
                    self.net.embed(phi, episode.query_x), extras))

        g_dev = episode.support_x.device
        with torch.enable_grad():  # evaluate_episode runs under no_grad
            phi = self.inner_loop(episode.support_x, episode.support_y, self.hp["eval_steps"],
                                  callback=record_step if record else None)
        net, task, support_x = self.net, self.task, episode.support_x
        support_bn = self.hp["test_bn"] == "support" and task != "regression"

        def predict(x):
            out = support_stats_forward(net, phi, {}, support_x, x) if support_bn else net.output(phi, x)
            return out if task == "regression" else out.softmax(-1)

        return Adapted(predict, lambda x: net.embed(phi, x), trace)

    def _query_out(self, phi, episode: Episode):
        """Query outputs (n_q, out) under ``phi`` with the test-time batch norm chosen."""
        if self.hp["test_bn"] == "support" and self.task != "regression":
            return support_stats_forward(self.net, phi, {}, episode.support_x, episode.query_x)
        return self.net.output(phi, episode.query_x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.features(x)
