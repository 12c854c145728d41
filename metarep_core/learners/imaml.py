"""iMAML (Rajeswaran, Finn, Kakade & Levine 2019, "Meta-Learning with Implicit Gradients").

The inner problem is regularised toward the meta-parameters:

    phi*(theta) = argmin_phi  L_support(phi) + lam/2 ||phi - theta||^2

and the meta-gradient of the query loss comes from the implicit function theorem,

    d L_query(phi*) / d theta = (I + H / lam)^-1 grad_phi L_query(phi*),
    H = Hessian of L_support at phi*,

solved by conjugate gradient with curvature-vector products at ``phi*`` (which
curvature: below). The inner loop is never back-propagated through, so memory does not
grow with the number of inner steps. The outer update is Adam on the averaged
implicit gradients (``meta_lr``).

The inner problem is solved to a stated tolerance (hp ``inner_tol``):
``||grad L_support(phi) + lam (phi - theta)|| <= inner_tol * ||grad L_support(theta)||``,
by gradient descent with Barzilai-Borwein steps (:func:`._implicit.proximal_inner`),
at most ``inner_steps`` steps in meta-training and ``eval_steps`` at test time. The
paper's Algorithm 2 asks for an approximate solution of this kind ("iMAML, GD"; it
also offers Hessian-free inner solvers).

The linear system is made well posed with the Gauss-Newton product (hp
``curvature``, default ``gauss_newton``): ``(I + G/lam) g = grad L_query(phi)`` with
``G = J^T H_out J`` positive semi-definite, so every eigenvalue of the system is >= 1
and conjugate gradient converges. With the exact Hessian (``curvature=hessian``) the
system is indefinite at an approximate ``phi`` on a batch-normed Conv-4 and CG's
residual grew in 6 of 10 episodes on the shipped checkpoint. The paper allows
any approximate solver of this system; G is the standard positive semi-definite
surrogate of H (exact for a model linear in its weights).

Batch norm at test time (hp ``test_bn``): the body keeps no running statistics, so
query predictions are normalised by the query batch's own statistics
("transductive", as MAML's reference code) or by the support set's ("support").

Trace: per proximal step, ``proximal_grad_norm`` (the inner-problem gradient norm at
every step so far) and ``distance_to_init``; the last step adds ``cg_residuals``
(the CG residual norm per iteration of the implicit gradient that episode would give).
Math in :mod:`._implicit`; tested against a float64 finite difference of the
proximal meta-objective.
"""
from __future__ import annotations

import torch

from ..episodes import Episode
from . import register
from ._functional import (TEST_BN, BodyHead, detached_params, flat_norm, output_trace_step,
                          query_metrics, regression_curve, split_state, step_label,
                          support_stats_forward, task_loss)
from ._implicit import implicit_meta_gradient, proximal_inner
from .base import Adapted, HyperParam, MetaLearner


@register
class IMAML(MetaLearner):
    name = "imaml"
    title = "iMAML (implicit MAML)"
    family = "optimization"
    paper = "Rajeswaran, Finn, Kakade & Levine 2019, Meta-Learning with Implicit Gradients"
    summary = ("proximal inner loop solved to a tolerance; meta-gradient by the implicit function "
               "theorem and conjugate gradient. Test-time batch norm: query-batch statistics "
               "(transductive) by default, or the support set's (test_bn)")
    hyperparams = (
        HyperParam("meta_batch", 4, "int", 1, 32, help="tasks per meta-update"),
        HyperParam("lam", 2.0, "float", 1e-2, 100.0, log=True,
                   help="proximal regularisation lambda: pull of phi toward theta"),
        HyperParam("inner_steps", 10, "int", 1, 100,
                   help="most gradient steps on the proximal inner problem (fewer once inner_tol is met)"),
        HyperParam("eval_steps", 10, "int", 1, 200, help="most inner steps when adapting at test time"),
        HyperParam("inner_tol", 0.1, "float", 0.0, 1.0,
                   help="stop the inner solver once ||grad L(phi) + lam (phi - theta)|| <= "
                        "inner_tol * ||grad L(theta)|| (0: always take every step)"),
        HyperParam("inner_lr", 0.1, "float", 1e-4, 2.0, log=True, per_task={"regression": 0.01},
                   help="inner-loop learning rate (regression default: 0.01)"),
        HyperParam("cg_steps", 5, "int", 1, 50, help="conjugate-gradient iterations for the implicit gradient"),
        HyperParam("curvature", "gauss_newton", "choice", choices=("gauss_newton", "hessian"),
                   help="curvature in the implicit system I + B/lam: the Gauss-Newton product "
                        "(positive semi-definite, well posed) or the exact Hessian (may be indefinite)"),
        TEST_BN,
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

    def solve_inner(self, episode: Episode, steps: int, callback=None) -> tuple[dict, list[float]]:
        """The proximal inner problem on ``episode``'s support set, from the current
        ``theta``, to ``inner_tol`` (at most ``steps`` steps): (phi, gradient norms per step)."""
        theta = detached_params(split_state(self.net)[0])
        with torch.enable_grad():  # evaluate_episode runs under no_grad
            return proximal_inner(self._loss_fn(episode.support_x, episode.support_y), theta,
                                  self.hp["lam"], steps, self.hp["inner_lr"], callback=callback,
                                  tol=self.hp["inner_tol"])

    def implicit_gradient(self, episode: Episode, phi: dict) -> tuple[dict, list[float], float]:
        """The implicit meta-gradient of ``episode``'s query loss at ``phi``:
        (gradient dict, CG residual norms, query loss); see :mod:`._implicit`."""
        x, y = episode.support_x, episode.support_y
        with torch.enable_grad():
            return implicit_meta_gradient(
                self._loss_fn(x, y), self._loss_fn(episode.query_x, episode.query_y), phi,
                self.hp["lam"], self.hp["cg_steps"], curvature=self.hp["curvature"],
                train_output_fn=lambda p: self.net.output(p, x),
                output_loss_fn=lambda out: task_loss(out, y, self.task))

    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        theta = dict(self.net.named_parameters())
        meta_grad = {k: torch.zeros_like(v) for k, v in theta.items()}
        losses, accs, res, inner = [], [], [], []
        for ep in episodes:
            phi, norms = self.solve_inner(ep, self.hp["inner_steps"])
            g, residuals, _ = self.implicit_gradient(ep, phi)
            inner.append(norms[-1] / max(norms[0], 1e-12))
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
        out = {"loss": sum(losses) / len(losses), "cg_relative_residual": sum(res) / len(res),
               "inner_relative_grad": sum(inner) / len(inner)}
        if self.task != "regression":
            out["accuracy"] = sum(accs) / len(accs)
        return out

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        theta = detached_params(split_state(self.net)[0])
        trace = [] if record else None
        dist: list[float] = []
        grad_norms: list[float] = []
        g_dev = episode.support_x.device

        def record_step(t, phi, grad_norm):
            with torch.no_grad():
                dist.append(flat_norm(phi[k] - theta[k] for k in phi))
                grad_norms.append(grad_norm)
                s_out, q_out = self.net.output(phi, episode.support_x), self._query_out(phi, episode)
                extras = {
                    # ||grad L(phi) + lam (phi - theta)|| at every step so far: how well the
                    # proximal inner problem is solved (the solver stops at inner_tol x step 0)
                    "proximal_grad_norm": torch.tensor(grad_norms).numpy(),
                    "distance_to_init": torch.tensor(dist).numpy(),
                }
                if self.task == "regression":
                    extras.update(regression_curve(lambda g: self.net.output(phi, g), g_dev))
                trace.append(output_trace_step(
                    t, step_label(t, "proximal step"), episode, s_out, q_out,
                    self.net.embed(phi, episode.support_x),
                    self.net.embed(phi, episode.query_x), extras))

        phi, _ = self.solve_inner(episode, self.hp["eval_steps"], callback=record_step if record else None)
        if record:
            # The implicit meta-gradient this episode would contribute (the query set
            # scores it; it does not change the adaptation): CG residuals per iteration.
            _, residuals, _ = self.implicit_gradient(episode, phi)
            trace[-1].extras["cg_residuals"] = torch.tensor(residuals).numpy()
        net, task, support_x = self.net, self.task, episode.support_x
        support_bn = self.hp["test_bn"] == "support" and task != "regression"

        def predict(x):
            out = (support_stats_forward(net, phi, {}, support_x, x) if support_bn
                   else net.output(phi, x))
            return out if task == "regression" else out.softmax(-1)

        return Adapted(predict, lambda x: net.embed(phi, x), trace)

    def _query_out(self, phi, episode: Episode):
        """Query outputs (n_q, out) under ``phi`` with the test-time batch norm chosen."""
        if self.hp["test_bn"] == "support" and self.task != "regression":
            return support_stats_forward(self.net, phi, {}, episode.support_x, episode.query_x)
        return self.net.output(phi, episode.query_x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.body(x)
