"""ANIL (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid Learning or Feature Reuse?
Towards Understanding the Effectiveness of MAML").

MAML with the inner loop restricted to the final linear layer ("Almost No Inner
Loop"): for a task, the body ``f_theta_b`` embeds support and query once, and only
the head ``(W, b)`` takes inner SGD steps on the support loss,

    (W', b') = (W, b) - alpha * grad_{W,b} L_support(W f(x) + b)      (x inner_steps),

then the query loss of the adapted head is back-propagated to *both* the head's
initialisation and the body (second order through the head steps; first order by a
flag). The body is meta-learned but never moves within a task — the paper's
"feature reuse". The trace shows what is measured: the head's weights move
(``head_weight_change``, ``head_weight``) and the query predictions change; the
embeddings are the same at every step by construction, so no figure is made of
that. Whether MAML's body really stays put is measured in MAML's trace
(``layer_cka``: each layer's similarity before vs after its inner loop).

Because the body runs once per task (features cached) and the inner gradients touch
only n_way x (d + 1) numbers, a meta-step costs little more than one forward and
backward of the body — much cheaper than MAML's ``inner_steps`` full passes.

Variant: the paper's ANIL with a meta-learned head initialisation (not the
zero-initialised "NIL" head); batch-norm with batch statistics as in MAML, so at
test time the query features are normalised by the query batch's statistics
(transductive) unless hp ``test_bn="support"`` (the support set's statistics).
The inner loop is :func:`._functional.inner_adapt` (shared with MAML) applied to
the head module alone, on cached features.
"""
from __future__ import annotations

import torch

from ..episodes import Episode
from . import register
from ._functional import (TEST_BN, BodyHead, flat_norm, functional_forward, inner_adapt,
                          output_trace_step, query_metrics, regression_curve, step_label,
                          support_stats_forward, task_loss)
from .base import Adapted, HyperParam, MetaLearner


@register
class ANIL(MetaLearner):
    name = "anil"
    title = "ANIL (Almost No Inner Loop)"
    family = "optimization"
    paper = ("Raghu, Raghu, Bengio & Vinyals 2020, Rapid Learning or Feature Reuse? "
             "Towards Understanding the Effectiveness of MAML")
    summary = ("MAML whose inner loop adapts only the final linear layer; the body is reused as is. "
               "Test-time batch norm: query-batch statistics (transductive) by default, or the "
               "support set's (test_bn)")
    hyperparams = (
        HyperParam("meta_batch", 4, "int", 1, 32, help="tasks per meta-update"),
        HyperParam("inner_steps", 5, "int", 1, 100, help="inner SGD steps on the head in meta-training"),
        HyperParam("eval_steps", 10, "int", 1, 200, help="inner SGD steps on the head at test time"),
        HyperParam("inner_lr", 0.4, "float", 1e-4, 5.0, log=True, per_task={"regression": 0.01},
                   help="inner-loop (head) learning rate (regression default: 0.01)"),
        HyperParam("first_order", False, "bool", help="drop the second-order terms of the head steps"),
        HyperParam("hidden", 64, "int", 8, 128, help="channels of the Conv-4 body"),
        TEST_BN,
    )
    capabilities = frozenset({"inner_loop", "regression"})
    tasks = frozenset({"classification", "regression"})
    order = 40

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.net = BodyHead(self.input_shape, 1 if task == "regression" else self.n_way, self.hp["hidden"],
                            channels_last=True)

    def _loss(self, out, y):
        return task_loss(out, y, self.task)

    def _adapt_head(self, head: dict, feats: torch.Tensor, y: torch.Tensor, steps: int,
                    create_graph: bool, callback=None) -> dict:
        """Inner SGD on the head alone: ``feats`` (n, d) are the cached body outputs."""
        return inner_adapt(self.net.head, head, {}, feats, y, self._loss, steps, self.hp["inner_lr"],
                           create_graph=create_graph, callback=callback)

    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        head = dict(self.net.head.named_parameters())
        losses, accs = [], []
        for ep in episodes:
            fs, fq = self.net.features(ep.support_x), self.net.features(ep.query_x)
            fast = self._adapt_head(head, fs, ep.support_y, self.hp["inner_steps"],
                                    create_graph=not self.hp["first_order"])
            q_out = functional_forward(self.net.head, fast, {}, fq)
            loss = self._loss(q_out, ep.query_y)
            (loss / len(episodes)).backward()  # per task: frees each task's graph early
            m = query_metrics(q_out, ep)
            losses.append(m["loss"])
            accs.append(m.get("accuracy", 0.0))
        self.optimizer.step()
        out = {"loss": sum(losses) / len(losses)}
        if self.task != "regression":
            out["accuracy"] = sum(accs) / len(accs)
        return out

    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        head0 = {k: v.detach() for k, v in self.net.head.named_parameters()}
        support_bn = self.hp["test_bn"] == "support" and self.task != "regression"
        body_params = dict(self.net.body.named_parameters())

        def features(x):
            if support_bn:  # each query normalised by the support set's statistics
                return support_stats_forward(self.net.body, body_params, {}, episode.support_x, x)
            return self.net.features(x)

        with torch.no_grad():  # the body is frozen within a task: embed once
            fs, fq = self.net.features(episode.support_x), features(episode.query_x)
        trace = [] if record else None
        w_change: list[float] = []
        head_fwd = self.net.head

        def record_step(t, fast):
            with torch.no_grad():
                w_change.append(flat_norm(fast[k] - head0[k] for k in fast))
                s_out, q_out = functional_forward(head_fwd, fast, {}, fs), functional_forward(head_fwd, fast, {}, fq)
                extras = {
                    # the head moves ...
                    "head_weight_change": torch.tensor(w_change).numpy(),
                    "head_weight": fast["weight"].detach().cpu().numpy(),
                }
                if self.task == "regression":
                    extras.update(regression_curve(
                        lambda g: functional_forward(head_fwd, fast, {}, self.net.features(g)), fs.device))
                trace.append(output_trace_step(t, step_label(t, "head step"),
                                        episode, s_out, q_out, fs, fq, extras))

        if record:
            record_step(0, head0)
        with torch.enable_grad():  # evaluate_episode runs under no_grad
            start = {k: v.clone().requires_grad_(True) for k, v in head0.items()}
            fast = self._adapt_head(start, fs, episode.support_y, self.hp["eval_steps"], create_graph=False,
                                    callback=record_step if record else None)
        fast = {k: v.detach() for k, v in fast.items()}
        body, task = self.net.features, self.task

        def predict(x):
            # the query features were computed once above (batch statistics over the
            # same batch give the same features): reuse them for the episode's queries
            feats = fq if x is episode.query_x else features(x)
            out = functional_forward(head_fwd, fast, {}, feats)
            return out if task == "regression" else out.softmax(-1)

        return Adapted(predict, lambda x: body(x), trace)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.features(x)
