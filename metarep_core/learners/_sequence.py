"""The episode-as-sequence protocol shared by the memory-augmented learners (MANN, DNC).

Santoro et al. (2016) present an episode as a sequence: at step ``t`` the network sees
input ``x_t`` together with the label of the previous step, ``y_{t-1}`` (one-hot; zero
at the first step), and must predict ``y_t``. Binding an image to its label therefore
needs the controller to carry ``x_{t-1}`` for one step and write the pair to memory.

Our choices, so that every family is scored on the same N-way K-shot episodes:

- The support set is streamed in a shuffled order, deterministic in the episode's seed
  (the episode's labels are already episode-relative, 0..N-1, in a random class order).
- After the last support example one more "label" step shows a blank input with the
  last support label, so every support example is bound to its label in memory.
- Queries are then presented with a null (all-zero) label input, each one alone from
  the state after the support: the controller runs one step and reads memory, but
  nothing is written (read-only), so query predictions do not depend on each other or
  on the order of the query set. ``predict`` gives the standard N-way K-shot accuracy.
- Meta-training relabels each episode by a random permutation of its N labels (as
  Santoro et al. shuffle labels per episode), so no class-to-label map can be learned.
- Santoro's figure (accuracy at the 1st, 2nd, 5th, 10th presentation of a class) is
  measured by streaming support and queries together (``presentation_accuracy``).
- Meta-training has three terms: Santoro's per-step loss on the whole episode streamed
  (support and queries shuffled together, each image with the previous label: the
  protocol of his figure, where 2nd and later presentations are learnable), the per-step
  loss on the support sequence, and the loss on the read-only queries after it (the
  N-way K-shot protocol the other families are scored on). Without the streamed term the
  models never saw a stream longer than the support set and read the 2nd presentation of
  a class in an 80-step stream at 74-75% (glyphs, 2-shot training).

A memory core (an ``nn.Module``) provides ``init_state(B)``, ``step(state, e, y_prev)``
-> ``(state, logits (B, n_way), info)`` with ``info`` the (B, N) weightings to trace,
and ``read(state, e_q)`` -> logits (B, Q, n_way) for queries (no write).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ..episodes import Episode
from .base import Adapted, MetaLearner, TraceStep, to_numpy, trace_step


def support_order(episode: Episode) -> torch.Tensor:
    """The shuffled order in which the support set is streamed (n_s,), from the episode seed."""
    g = torch.Generator().manual_seed(int(episode.seed) * 7919 + 17)
    return torch.randperm(episode.support_y.shape[0], generator=g)


def instance_numbers(labels: torch.Tensor) -> torch.Tensor:
    """For a label sequence (T,), which presentation of its class each step is (1, 2, ...)."""
    counts: dict[int, int] = {}
    out = []
    for y in labels.tolist():
        counts[y] = counts.get(y, 0) + 1
        out.append(counts[y])
    return torch.tensor(out)


def accuracy_by_presentation(predicted: torch.Tensor, labels: torch.Tensor, presentation: torch.Tensor,
                             max_presentation: int) -> np.ndarray:
    """(max_presentation,) float: entry ``p - 1`` is the accuracy of the steps that are
    the p-th presentation of their class (all (T,)), NaN where there is none."""
    correct = (predicted == labels).float()
    out = np.full(max_presentation, np.nan, dtype=np.float32)
    for p in range(1, max_presentation + 1):
        if (presentation == p).any():
            out[p - 1] = correct[presentation == p].mean().item()
    return out


#: Santoro et al.'s figure reports the 1st, 2nd, 5th and 10th presentation; the trace
#: keeps every presentation from the 1st to this one.
MAX_PRESENTATION = 10


@contextmanager
def reads_zeroed(learner: "SequenceMemoryLearner"):
    """Within the block every memory read vector of ``learner`` is zero (an ablation:
    what the model still gets right, it gets without its memory)."""
    learner.core.zero_reads = True
    try:
        yield learner
    finally:
        learner.core.zero_reads = False


class SequenceMemoryLearner(MetaLearner):
    """Base of the learners that read an episode as a sequence into an external memory.

    Subclasses build ``self.encoder`` (images -> (n, d)) and ``self.core`` in ``__init__``
    and list the per-step ``info`` keys to trace in ``trace_keys`` (each a (B, N)
    weighting per step) and the full-matrix keys (B, N, N) in ``trace_matrices``.
    """

    family = "memory"
    trace_keys: tuple[str, ...] = ("read_weights", "write_weights", "usage")
    trace_matrices: tuple[str, ...] = ()
    grad_clip = 10.0

    # ----------------------------------------------------------------- sequence
    def _batch(self, episodes: list[Episode]):
        """Stack episodes into (B, T, ...) support sequences in their streamed order."""
        orders = [support_order(ep).to(ep.support_x.device) for ep in episodes]
        sx = torch.stack([ep.support_x[o] for ep, o in zip(episodes, orders)])
        sy = torch.stack([ep.support_y[o] for ep, o in zip(episodes, orders)])
        qx = torch.stack([ep.query_x for ep in episodes])
        qy = torch.stack([ep.query_y for ep in episodes])
        return sx, sy, qx, qy

    def _run(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor | None, record: bool = False):
        """Stream the support sequence (B, T, ...) with labels (B, T) through the memory.

        Returns ``seq_logits`` (B, T, n_way) (the online prediction of each ``y_t``),
        ``q_logits`` (B, Q, n_way) or None, the encoded queries (B, Q, d), and with
        ``record`` the list of states (initial + one per step) and infos per step.
        """
        B, T = sy.shape
        n_s = B * T
        flat = sx.flatten(0, 1) if qx is None else torch.cat([sx.flatten(0, 1), qx.flatten(0, 1)])
        feats = self.encoder(flat)
        s_e = feats[:n_s].view(B, T, -1)
        q_e = None if qx is None else feats[n_s:].view(B, qx.shape[1], -1)
        prev = torch.cat([torch.zeros(B, 1, self.n_way, device=sy.device),
                          F.one_hot(sy, self.n_way).float()], 1)           # (B, T+1, n_way)
        inputs = torch.cat([s_e, torch.zeros_like(s_e[:, :1])], 1)        # + the label step
        state = self.core.init_state(B, feats.device)
        states, infos, seq_logits = [state], [], []
        for t in range(T + 1):
            state, logits, info = self.core.step(state, inputs[:, t], prev[:, t])
            if t < T:
                seq_logits.append(logits)
            if record:
                states.append(state)
                infos.append(info)
        if not record:
            states = [state]   # only the final state is kept
        q_logits = None if q_e is None else self.core.read(state, q_e)
        return torch.stack(seq_logits, 1), q_logits, q_e, s_e, states, infos

    # ----------------------------------------------------------------- contract
    def meta_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.train()
        sx, sy, qx, qy = self._batch(episodes)
        # Santoro et al. shuffle the labels per episode, so that no fixed class-to-label
        # map can be memorised in the weights: relabel each episode by a random
        # permutation of its n_way labels (drawn from torch's global generator).
        perm = torch.stack([torch.randperm(self.n_way) for _ in episodes]).to(sy.device)   # (B, n_way)
        sy, qy = perm.gather(1, sy), perm.gather(1, qy)
        seq_logits, q_logits, *_ = self._run(sx, sy, qx)
        seq_loss = F.cross_entropy(seq_logits.flatten(0, 1), sy.flatten())
        q_loss = F.cross_entropy(q_logits.flatten(0, 1), qy.flatten())
        # Santoro's stream: support and queries together, one shuffled order per episode
        xs, ys = torch.cat([sx, qx], 1), torch.cat([sy, qy], 1)          # (B, T, ...), (B, T)
        order = torch.stack([torch.randperm(ys.shape[1]) for _ in episodes]).to(ys.device)
        xs = xs[torch.arange(len(episodes), device=ys.device)[:, None], order]
        ys = ys.gather(1, order)
        stream_logits, *_ = self._run(xs, ys, None)
        stream_loss = F.cross_entropy(stream_logits.flatten(0, 1), ys.flatten())
        loss = seq_loss + q_loss + stream_loss
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip)
        self.optimizer.step()
        acc = (q_logits.argmax(-1) == qy).float().mean().item()
        return {"loss": loss.item(), "accuracy": acc, "query_loss": q_loss.item(),
                "sequence_loss": seq_loss.item(), "stream_loss": stream_loss.item()}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @torch.no_grad()
    def online_predictions(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Santoro's metric: the prediction of each support label as it is shown.

        Returns (predicted (T,), true labels (T,), instance number (T,)) in streamed order.
        """
        sx, sy, _, _ = self._batch([episode])
        seq_logits, *_ = self._run(sx, sy, None)
        return seq_logits[0].argmax(-1), sy[0], instance_numbers(sy[0])

    @torch.no_grad()
    def stream_predictions(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole episode (support and queries) streamed in a shuffled order
        (deterministic in the episode's seed), each image with the previous label, as in
        Santoro et al.'s figure. Returns (predicted (T,), true labels (T,), which
        presentation of its class each step is (T,)), in streamed order."""
        x = torch.cat([episode.support_x, episode.query_x])
        y = torch.cat([episode.support_y, episode.query_y])
        g = torch.Generator().manual_seed(int(episode.seed) * 7919 + 29)
        order = torch.randperm(y.shape[0], generator=g).to(y.device)
        x, y = x[order], y[order]
        seq_logits, *_ = self._run(x[None], y[None], None)
        return seq_logits[0].argmax(-1).cpu(), y.cpu(), instance_numbers(y.cpu())

    @torch.no_grad()
    def presentation_accuracy(self, episode: Episode, max_presentation: int = MAX_PRESENTATION) -> np.ndarray:
        """Santoro et al.'s figure on one episode (:meth:`stream_predictions`): the online
        prediction scored by which presentation of its class each step is.

        Returns (max_presentation,) float: entry ``p - 1`` is the accuracy at the p-th
        presentation of a class, NaN where no class is shown p times.
        """
        return accuracy_by_presentation(*self.stream_predictions(episode), max_presentation)

    @torch.no_grad()
    def adapt(self, episode: Episode, record: bool = False) -> Adapted:
        sx, sy, qx, _ = self._batch([episode])
        seq_logits, q_logits, q_e, s_e, states, infos = self._run(sx, sy, qx, record=record)
        state = states[-1]  # the memory after the support sequence and the label step

        def predict(x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.core.read(state, self.encoder(x).unsqueeze(0))[0], -1)

        trace = self._trace(episode, sy[0], seq_logits[0], s_e[0], q_e, states, infos) if record else None
        return Adapted(predict, embed=self.encoder, trace=trace)

    def _trace(self, episode, sy, seq_logits, s_e, q_e, states, infos) -> list[TraceStep]:
        """Step 0 = empty memory; step t = after streamed step t (the last: the label step).

        ``extras`` arrays (T+1 rows: the initial state, then one per step so far, (slots,)
        each) are the weightings named in ``trace_keys``; ``trace_matrices`` are drawn at
        the current step.
        """
        order = support_order(episode)
        names = episode.class_names
        T = sy.shape[0]
        s_emb = to_numpy(s_e[torch.argsort(order)])  # back to the episode's class-major order
        q_emb = to_numpy(q_e[0])
        rows = {k: [np.zeros(self.core.n_slots, dtype=np.float32)] for k in self.trace_keys}
        online_correct = (seq_logits.argmax(-1) == sy).float()
        # An episode-level measurement (the whole episode streamed online), the same at
        # every step of the trace.
        by_presentation = self.presentation_accuracy(episode)
        trace = []
        for t, state in enumerate(states):
            probs = torch.softmax(self.core.read(state, q_e)[0], -1)
            extras = {}
            if t > 0:
                info = infos[t - 1]
                for k in self.trace_keys:
                    rows[k].append(to_numpy(info[k][0]))
                for k in self.trace_matrices:
                    extras[k] = to_numpy(info[k][0])
            elif self.trace_matrices:
                for k in self.trace_matrices:
                    extras[k] = np.zeros((self.core.n_slots, self.core.n_slots), dtype=np.float32)
            for k in self.trace_keys:
                extras[k] = np.stack(rows[k])
            extras["presentation_accuracy"] = by_presentation
            if t == 0:
                label = "before any support example (empty memory)"
            elif t <= T:
                y_prev = "none" if t == 1 else names[int(sy[t - 2])]
                label = (f"shown support {t}/{T} (class {names[int(sy[t - 1])]}) "
                         f"with the previous label ({y_prev})")
            else:
                label = f"label step: last label ({names[int(sy[T - 1])]}) shown, nothing new"
            seen = min(t, T)
            # the support figure is the online accuracy of the streamed predictions so far
            trace.append(trace_step(
                t, label, episode, probs, support_emb=s_emb, query_emb=q_emb, extras=extras,
                support_accuracy=None if seen == 0 else online_correct[:seen].mean().item()))
        return trace
