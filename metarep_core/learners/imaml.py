"""iMAML (Rajeswaran, Finn, Kakade & Levine 2019, "Meta-Learning with Implicit Gradients").

The inner problem is regularised toward the meta-parameters:

    phi*(theta) = argmin_phi  L_support(phi) + lam/2 ||phi - theta||^2

and the meta-gradient of the query loss comes from the implicit function theorem,

    d L_query(phi*) / d theta = (I + H / lam)^-1 grad_phi L_query(phi*),
    H = Hessian of L_support at phi*,

solved by conjugate gradient with Hessian-vector products (double backward at
``phi*``). The inner loop is never back-propagated through, so memory does not
grow with the number of inner steps. The outer update is Adam on the averaged
implicit gradients (``meta_lr``).

Variant and simplifications: the paper's "iMAML, GD" — the inner problem is solved
by ``inner_steps`` of plain gradient descent (the paper also offers Hessian-free
inner solvers); the implicit gradient uses the Hessian at the approximate ``phi``.
Math in :mod:`._implicit`; tested against a float64 finite difference of the
proximal meta-objective.
"""
from __future__ import annotations

import torch

from ..episodes import Episode
from . import register
from ._functional import (BodyHead, detached_params, flat_norm, output_trace_step, query_metrics,
                          regression_curve, split_state, step_label, task_loss)
from ._implicit import implicit_meta_gradient, proximal_inner
from .base import Adapted, HyperParam, MetaLearner


@register
class IMAML(MetaLearner):
    name = "imaml"
    title = "iMAML (implicit MAML)"
    family = "optimization"
    paper = "Rajeswaran, Finn, Kakade & Levine 2019, Meta-Learning with Implicit Gradients"
    summary = "proximal inner loop; meta-gradient by the implicit function theorem and conjugate gradient"
    hyperparams = (
        HyperParam("meta_batch", 4, "int", 1, 32, help="tasks per meta-update"),
        HyperParam("lam", 2.0, "float", 1e-2, 100.0, log=True,
                   help="proximal regularisation lambda: pull of phi toward theta"),
        HyperParam("inner_steps", 10, "int", 1, 100, help="gradient steps on the proximal inner problem"),
        HyperParam("eval_steps", 10, "int", 1, 200, help="inner steps when adapting at test time"),
        HyperParam("inner_lr", 0.1, "float", 1e-4, 2.0, log=True, per_task={"regression": 0.01},
                   help="inner-loop learning rate (regression default: 0.01)"),
        HyperParam("cg_steps", 5, "int", 1, 50, help="conjugate-gradient iterations for the implicit gradient"),
        HyperParam("hidden", 64, "int", 8, 128, help="channels of the Conv-4 body"),
    )
    capabilities = frozenset({"inner_loop", "regression"})
    tasks = frozenset({"classification", "regression"})
    order = 30

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.net = BodyHead(self.input_shape, 1 if task == "regression" else self.n_way, self.hp["hidden"])

    def _loss_fn(self, x, y):
        return lambda phi: task_loss(self.net.output(phi, x), y, self.task)

    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        theta = dict(self.net.named_parameters())
        meta_grad = {k: torch.zeros_like(v) for k, v in theta.items()}
        losses, accs, res = [], [], []
        for ep in episodes:
            train_fn = self._loss_fn(ep.support_x, ep.support_y)
            test_fn = self._loss_fn(ep.query_x, ep.query_y)
            phi = proximal_inner(train_fn, theta, self.hp["lam"], self.hp["inner_steps"], self.hp["inner_lr"])
            g, residuals, _ = implicit_meta_gradient(train_fn, test_fn, phi, self.hp["lam"], self.hp["cg_steps"])
            for k in meta_grad:
                meta_grad[k] += g[k] / len(episodes)
            with torch.no_grad():
                m = query_metrics(self.net.output(phi, ep.query_x), ep)
            losses.append(m["loss"])
            accs.append(m.get("accuracy", 0.0))
            res.append(residuals[-1] / max(residuals[0], 1e-12))
        self.optimizer.zero_grad(set_to_none=True)
        for k, p in theta.items():
            p.grad = meta_grad[k]
        self.optimizer.step()
        out = {"loss": sum(losses) / len(losses), "cg_relative_residual": sum(res) / len(res)}
        if self.task != "regression":
            out["accuracy"] = sum(accs) / len(accs)
        return out

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        theta = detached_params(split_state(self.net)[0])
        lam = self.hp["lam"]
        trace = [] if record else None
        dist: list[float] = []
        g_dev = episode.support_x.device
        train_fn = self._loss_fn(episode.support_x, episode.support_y)

        def record_step(t, phi):
            with torch.no_grad():
                d = flat_norm(phi[k] - theta[k] for k in phi)
                dist.append(d)
                s_out, q_out = self.net.output(phi, episode.support_x), self.net.output(phi, episode.query_x)
                extras = {
                    "distance_to_init": torch.tensor(dist).numpy(),
                    # the pull toward theta that the proximal inner problem pays, per step
                    "proximal_term": (0.5 * lam * torch.tensor(dist) ** 2).numpy(),
                }
                if self.task == "regression":
                    extras.update(regression_curve(lambda g: self.net.output(phi, g), g_dev))
                trace.append(output_trace_step(
                    t, step_label(t, "proximal step"), episode, s_out, q_out,
                    self.net.embed(phi, episode.support_x),
                    self.net.embed(phi, episode.query_x), extras))

        with torch.enable_grad():
            phi = proximal_inner(train_fn, theta, lam, self.hp["eval_steps"], self.hp["inner_lr"],
                                 callback=record_step if record else None)
            if record:
                # The implicit meta-gradient this episode would contribute (the query set
                # scores it; it does not change the adaptation): CG residuals per iteration.
                test_fn = self._loss_fn(episode.query_x, episode.query_y)
                _, residuals, _ = implicit_meta_gradient(train_fn, test_fn, phi, lam, self.hp["cg_steps"])
                trace[-1].extras["cg_residuals"] = torch.tensor(residuals).numpy()
        net, task = self.net, self.task

        def predict(x):
            out = net.output(phi, x)
            return out if task == "regression" else out.softmax(-1)

        return Adapted(predict, lambda x: net.embed(phi, x), trace)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.body(x)
