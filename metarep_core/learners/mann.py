"""MANN: a memory-augmented neural network with least-recently-used access (LRUA).

Santoro, Bartunov, Botvinick, Wierstra & Lillicrap 2016, "Meta-Learning with
Memory-Augmented Neural Networks" (ICML), on the memory of Graves, Wayne & Danihelka
2014, "Neural Turing Machines".

An LSTM controller reads the episode as a sequence (``_sequence.py``): at each step the
embedding of the image and the previous step's label. It emits a read key (content
addressing: cosine similarity, softmax with a key strength) and writes with LRUA: the
write weights interpolate, by a learned gate ``sigmoid(alpha)``, between the slots read at
the last step and the least-used slot, which is cleared first; usage decays by
``gamma`` and grows with every read and write. The pure addressing rules live in
``_memory.py``.

Scaled down for a CPU, and why:
- images are encoded by a Conv-4 with 32 channels (a 32-d embedding) instead of feeding
  the flattened 20x20 pixels to the controller, so the controller sees a learned
  feature, as in later MANN re-implementations; it trains in minutes, not days;
- one read head (the paper: four), an LSTM of 128 units (paper: 200), 32 slots x 40
  (paper: 128 x 40); episodes are the standard 5-way ones rather than 15-class
  sequences of 50 steps;
- the controller writes every memory row itself (no label column is placed by hand),
  but its write head sees, next to the LSTM output, the last read key (a one-step skip
  across time, so the LSTM need not learn to carry the image for one step) and the
  previous label through a learned linear map; the write vector starts as the last
  key and the read key as a projection of the image feature. The paper's controller
  learns the binding over ~100,000 episodes; this way it is learned in a few hundred
  meta-updates;
- the key strength starts high (~20) and the write gate starts towards the least-used
  slot, because from a near-uniform read no gradient says which slot mattered.

What stays as in the paper: the LSTM controller fed with (image, previous label, last
read vector), labels permuted per episode in meta-training, the read vector feeding the
classifier and the next step, the
cosine content read with a key strength, the LRUA write weights (a learned
interpolation of the previous read weights and the least-used slot, which is zeroed
before the write), usage decay, and the per-step loss on the whole episode streamed
(support and queries shuffled together, as in the paper's training; see ``_sequence``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import make_backbone
from . import register
from ._memory import content_weights, lru_least_used, lru_usage, lru_write, lru_write_weights, read_memory
from ._sequence import SequenceMemoryLearner
from .base import HyperParam


class LRUAMemoryCore(nn.Module):
    """LSTM controller + external memory (N slots x W) with LRUA writes.

    State (a dict, batch B): ``h``/``c`` (B, C), ``memory`` (B, N, W), ``usage`` (B, N),
    ``read_w`` (B, H, N) and ``reads`` (B, H, W), the last step's read weights and read
    vectors. Every memory row is written by the controller (nothing is hand-placed):
    the write vector is a learned function of the controller's output, and the read
    vectors feed both the classifier and the controller's next step, as in the paper.
    """

    def __init__(self, in_dim: int, n_way: int, controller: int, n_slots: int, width: int,
                 heads: int, gamma: float):
        super().__init__()
        self.n_way, self.n_slots, self.width, self.heads, self.gamma = n_way, n_slots, width, heads, gamma
        self.controller_size = controller
        # Input at step t: the image feature, the previous label and the last reads.
        self.lstm = nn.LSTMCell(in_dim + n_way + heads * width, controller)
        self.key = nn.Linear(controller + in_dim, heads * width)
        self.value = nn.Linear(controller + heads * width + n_way, width)
        self.strength = nn.Linear(controller, heads)
        self.alpha = nn.Linear(controller, 1)
        self.out = nn.Linear(controller + heads * width, n_way)
        # Ablation switch for tests and the README: when True every read vector is zero,
        # so whatever the model still gets right it gets without the memory.
        self.zero_reads = False
        # Start with sharp content addressing (key strength ~ 20): with a near-uniform
        # softmax every read is the average of memory and no gradient says which slot.
        nn.init.constant_(self.strength.bias, 19.0)
        # Start by writing mostly to the least-used slot (a new item gets a new slot).
        nn.init.constant_(self.alpha.bias, -2.0)
        # The read key starts as a projection of the image feature alone, and the write
        # vector starts as the last key (identity), so that from the first update an
        # image reads the slot written for a similar image; what the controller adds to
        # that row (the label it has just been shown) is learned from zero.
        with torch.no_grad():
            self.key.weight[:, :controller].zero_()
            self.value.weight.zero_()
            self.value.weight[:, controller:controller + heads * width].copy_(
                torch.eye(width).repeat(1, heads) / heads)

    def init_state(self, B: int, device) -> dict:
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        return {"h": z(B, self.controller_size), "c": z(B, self.controller_size),
                "memory": z(B, self.n_slots, self.width), "usage": z(B, self.n_slots),
                "read_w": z(B, self.heads, self.n_slots), "reads": z(B, self.heads, self.width),
                "keys": z(B, self.heads, self.width)}

    def _controller(self, state: dict, e: torch.Tensor, y_prev: torch.Tensor):
        x = torch.cat([e, y_prev, state["reads"].flatten(1)], -1)
        return self.lstm(x, (state["h"], state["c"]))

    def _read(self, h: torch.Tensor, e: torch.Tensor, memory: torch.Tensor):
        B = h.shape[0]
        # The key sees the controller output and, by a skip connection, the image feature.
        keys = self.key(torch.cat([h, e], -1)).view(B, self.heads, self.width)
        beta = F.softplus(self.strength(h)) + 1.0   # oneplus, >= 1
        read_w = content_weights(memory, keys, beta)             # (B, H, N)
        reads = read_memory(memory, read_w)                      # (B, H, W)
        if self.zero_reads:
            reads = torch.zeros_like(reads)
        return keys, read_w, reads, self.out(torch.cat([h, reads.flatten(1)], -1))

    def step(self, state: dict, e: torch.Tensor, y_prev: torch.Tensor):
        """One streamed step: input ``e`` (B, d), previous label ``y_prev`` (B, n_way)."""
        h, c = self._controller(state, e, y_prev)
        # Write first (the paper's order: the write weights use the last step's read
        # weights), then read the updated memory with this step's key. What is written
        # is the controller's own vector: to bind the last image to the label that has
        # just arrived, the LSTM has to carry that image for one step.
        least_used = lru_least_used(state["usage"])
        write_w = lru_write_weights(state["read_w"].mean(1), least_used, self.alpha(h).squeeze(-1))
        value = self.value(torch.cat([h, state["keys"].flatten(1), y_prev], -1))
        memory = lru_write(state["memory"], least_used, write_w, value)
        keys, read_w, reads, logits = self._read(h, e, memory)
        usage = lru_usage(state["usage"], read_w, write_w, self.gamma)
        new = {"h": h, "c": c, "memory": memory, "usage": usage, "read_w": read_w, "reads": reads,
               "keys": keys}
        info = {"read_weights": read_w.mean(1), "write_weights": write_w, "usage": usage,
                "least_used": least_used}
        return new, logits, info

    def read(self, state: dict, e_q: torch.Tensor) -> torch.Tensor:
        """Query logits (B, Q, n_way): one controller step per query with a null label,
        read-only."""
        B, Q, d = e_q.shape
        rep = {k: v.repeat_interleave(Q, 0) for k, v in state.items()}
        e = e_q.reshape(B * Q, d)
        h, _ = self._controller(rep, e, torch.zeros(B * Q, self.n_way, device=e_q.device))
        *_, logits = self._read(h, e, rep["memory"])
        return logits.view(B, Q, self.n_way)


@register
class MANN(SequenceMemoryLearner):
    name = "mann"
    title = "Memory-Augmented Neural Network (MANN, LRUA)"
    paper = ("Santoro et al. 2016, Meta-Learning with Memory-Augmented Neural Networks (ICML); "
             "Graves, Wayne & Danihelka 2014, Neural Turing Machines")
    summary = "LSTM controller + external memory written by least-recently-used access; episode as a sequence"
    capabilities = frozenset({"memory"})
    order = 60
    hyperparams = (
        HyperParam("meta_lr", 4e-3, "float", 1e-5, 1.0, log=True, help="outer-loop (Adam) learning rate"),
        HyperParam("meta_batch", 4, "int", 1, 64, help="episodes per meta-update"),
        HyperParam("conv_channels", 32, "int", 8, 64, help="channels of the Conv-4 image encoder"),
        HyperParam("controller_size", 128, "int", 16, 512, help="LSTM controller units"),
        HyperParam("memory_slots", 32, "int", 4, 256, help="memory rows N"),
        HyperParam("memory_width", 40, "int", 8, 128, help="memory row width W (a vector the controller writes)"),
        HyperParam("read_heads", 1, "int", 1, 4, help="read heads"),
        HyperParam("usage_decay", 0.95, "float", 0.0, 1.0, help="gamma: usage decay per step"),
    )

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.encoder = make_backbone(self.input_shape, hidden=self.hp["conv_channels"])
        self.core = LRUAMemoryCore(self.encoder.out_dim, n_way, self.hp["controller_size"],
                                   self.hp["memory_slots"], self.hp["memory_width"],
                                   self.hp["read_heads"], self.hp["usage_decay"])
