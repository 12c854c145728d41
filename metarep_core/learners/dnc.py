"""DNC: the Differentiable Neural Computer as the memory of the episode-as-sequence protocol.

Graves, Wayne, Reynolds, Harley, Danihelka et al. 2016, "Hybrid computing using a
neural network with dynamic external memory" (Nature 538).

Same protocol and controller as MANN (``_sequence.py``: each image is shown with the
previous label, the support streamed in a shuffled order, queries read-only with a null
label), but the memory is the DNC's: the write head picks its slot by *dynamic
allocation* (usage raised by writes, lowered by the read heads' free gates; the
allocation weighting favours the least-used slot, from sorted usage) mixed with a
content lookup by an allocation gate, writes with an erase and a write vector, and
keeps a *temporal link matrix* (which slot was written after which) with its
precedence weighting; each read head mixes backward, content and forward weightings by
its read modes. The controller also receives the last step's read vectors, as in the
paper. The rules are pure functions in ``_memory.py``.

Scaled down / simplified for a CPU, and why (the same choices as MANN's):
- a Conv-4 with 32 channels encodes the image; an LSTM of 128 units (paper: 256),
  32 slots x 40 (paper: up to 512 x 64 for its tasks), 2 read heads (paper: 4);
- the write key and the write vector are the controller's (no label column is placed
  by hand), but they also see the last read keys (a one-step skip across time) and the
  write vector sees the previous label through a learned map, so the binding is learned
  in a few hundred meta-updates instead of the ~10^5 episodes the paper's models need;
- the gates start towards "allocate and write" and the read modes towards "content",
  with sharp key strengths; all are learned.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import make_backbone
from . import register
from ._memory import (content_weights, dnc_allocation, dnc_directional, dnc_link, dnc_precedence,
                      dnc_read_weights, dnc_retention, dnc_usage, dnc_write, dnc_write_weights,
                      oneplus, read_memory)
from ._sequence import SequenceMemoryLearner
from .base import HyperParam


class DNCMemoryCore(nn.Module):
    """LSTM controller + DNC memory (N slots x W, R read heads).

    State (batch B): ``h``/``c`` (B, C), ``memory`` (B, N, W), ``usage`` (B, N),
    ``link`` (B, N, N), ``precedence`` (B, N), ``read_w`` (B, R, N), ``write_w`` (B, N),
    ``reads`` (B, R, W) the last read vectors. The write key and the write vector are
    the controller's (nothing is hand-placed in memory); the read vectors feed the
    classifier and the controller's next step, as in the paper.
    """

    def __init__(self, in_dim: int, n_way: int, controller: int, n_slots: int, width: int, heads: int):
        super().__init__()
        self.n_way, self.n_slots, self.width, self.heads = n_way, n_slots, width, heads
        K = width
        self.controller_size = controller
        self.lstm = nn.LSTMCell(in_dim + n_way + heads * width, controller)
        self.read_key = nn.Linear(controller + in_dim, heads * K)
        # Interface vector: read strengths (R), read modes (3R), free gates (R), write
        # strength, allocation gate, write gate (3) and the erase vector (W).
        self.interface = nn.Linear(controller, 5 * heads + 3 + width)
        # The write key and vector see the controller output and the last read keys
        # (a one-step skip across time, so the LSTM need not learn to carry the image).
        self.write_key = nn.Linear(controller + heads * width, width)
        self.write_vector = nn.Linear(controller + heads * width + n_way, width)
        self.out = nn.Linear(controller + heads * width, n_way)
        # Ablation switch: when True every read vector is zero (the memory is cut off).
        self.zero_reads = False
        with torch.no_grad():
            R = heads
            b = self.interface.bias
            b[:R] = 19.0                       # read strengths ~ 20 (sharp content reads)
            b[R:4 * R].view(R, 3).copy_(torch.tensor([0.0, 4.0, 0.0]))  # modes: content first
            b[4 * R:5 * R] = -2.0              # free gates: keep what was written
            b[5 * R] = 19.0                    # write strength
            b[5 * R + 1] = 3.0                 # allocation gate: new items to free slots
            b[5 * R + 2] = 3.0                 # write gate
            # Read keys start from the image feature alone and the write key/vector as
            # the last read key, so an image finds the row of a similar one from the
            # first update; what the controller adds to the row (the label) is learned.
            self.read_key.weight[:, :controller].zero_()
            for lin in (self.write_key, self.write_vector):
                lin.weight.zero_()
                lin.weight[:, controller:controller + heads * width].copy_(
                    torch.eye(width).repeat(1, heads) / heads)

    def init_state(self, B: int, device) -> dict:
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        N, R = self.n_slots, self.heads
        return {"h": z(B, self.controller_size), "c": z(B, self.controller_size),
                "memory": z(B, N, self.width), "usage": z(B, N), "link": z(B, N, N),
                "precedence": z(B, N), "read_w": z(B, R, N), "write_w": z(B, N),
                "reads": z(B, R, self.width), "keys": z(B, R, self.width)}

    def _split(self, h: torch.Tensor) -> dict:
        R, W = self.heads, self.width
        v = self.interface(h)
        return {"read_strength": oneplus(v[:, :R]),
                "read_modes": torch.softmax(v[:, R:4 * R].view(-1, R, 3), -1),
                "free": torch.sigmoid(v[:, 4 * R:5 * R]),
                "write_strength": oneplus(v[:, 5 * R]),
                "alloc_gate": torch.sigmoid(v[:, 5 * R + 1]),
                "write_gate": torch.sigmoid(v[:, 5 * R + 2]),
                "erase": torch.sigmoid(v[:, 5 * R + 3:5 * R + 3 + W])}

    def _controller(self, state, e, y_prev):
        x = torch.cat([e, y_prev, state["reads"].flatten(1)], -1)
        return self.lstm(x, (state["h"], state["c"]))

    def _read(self, h, e, memory, link, read_w_prev, iface):
        B = h.shape[0]
        keys = self.read_key(torch.cat([h, e], -1)).view(B, self.heads, self.width)
        content = content_weights(memory, keys, iface["read_strength"])
        forward, backward = dnc_directional(link, read_w_prev)
        read_w = dnc_read_weights(iface["read_modes"], backward, content, forward)
        reads = read_memory(memory, read_w)
        if self.zero_reads:
            reads = torch.zeros_like(reads)
        logits = self.out(torch.cat([h, reads.flatten(1)], -1))
        return keys, read_w, reads, logits

    def step(self, state: dict, e: torch.Tensor, y_prev: torch.Tensor):
        """One streamed step: input ``e`` (B, d), previous label ``y_prev`` (B, n_way)."""
        h, c = self._controller(state, e, y_prev)
        iface = self._split(h)
        # Write first (DNC order): usage from the last write and the free gates, then
        # allocation, then the write weighting mixing allocation and a content lookup.
        retention = dnc_retention(iface["free"], state["read_w"])
        usage = dnc_usage(state["usage"], state["write_w"], retention)
        allocation = dnc_allocation(usage)
        # The controller writes its own vector: binding the last image to the label that
        # has just arrived needs the LSTM to carry that image for one step.
        hk = torch.cat([h, state["keys"].flatten(1)], -1)
        value = self.write_vector(torch.cat([hk, y_prev], -1))
        write_key = self.write_key(hk)[:, None]
        content_w = content_weights(state["memory"], write_key,
                                    iface["write_strength"][:, None]).squeeze(1)
        write_w = dnc_write_weights(allocation, content_w, iface["alloc_gate"], iface["write_gate"])
        memory = dnc_write(state["memory"], write_w, iface["erase"], value)
        link = dnc_link(state["link"], write_w, state["precedence"])
        precedence = dnc_precedence(state["precedence"], write_w)
        keys, read_w, reads, logits = self._read(h, e, memory, link, state["read_w"], iface)
        new = {"h": h, "c": c, "memory": memory, "usage": usage, "link": link,
               "precedence": precedence, "read_w": read_w, "write_w": write_w,
               "reads": reads, "keys": keys}
        info = {"read_weights": read_w.mean(1), "write_weights": write_w, "usage": usage,
                "allocation": allocation, "link": link}
        return new, logits, info

    def read(self, state: dict, e_q: torch.Tensor) -> torch.Tensor:
        """Query logits (B, Q, n_way): one controller step per query with a null label;
        the heads read (content and temporal links), nothing is written."""
        B, Q, d = e_q.shape
        rep = {k: v.repeat_interleave(Q, 0) for k, v in state.items()}
        e = e_q.reshape(B * Q, d)
        h, _ = self._controller(rep, e, torch.zeros(B * Q, self.n_way, device=e_q.device))
        *_, logits = self._read(h, e, rep["memory"], rep["link"], rep["read_w"], self._split(h))
        return logits.view(B, Q, self.n_way)


@register
class DNC(SequenceMemoryLearner):
    name = "dnc"
    title = "Differentiable Neural Computer (DNC)"
    paper = ("Graves et al. 2016, Hybrid computing using a neural network with dynamic "
             "external memory (Nature)")
    summary = ("LSTM controller + memory with dynamic allocation, temporal links and read modes; "
               "episode as a sequence")
    capabilities = frozenset({"memory"})
    order = 70
    trace_keys = ("read_weights", "write_weights", "usage", "allocation")
    trace_matrices = ("link",)
    hyperparams = (
        HyperParam("meta_lr", 4e-3, "float", 1e-5, 1.0, log=True, help="outer-loop (Adam) learning rate"),
        HyperParam("meta_batch", 4, "int", 1, 64, help="episodes per meta-update"),
        HyperParam("conv_channels", 32, "int", 8, 64, help="channels of the Conv-4 image encoder"),
        HyperParam("controller_size", 128, "int", 16, 512, help="LSTM controller units"),
        HyperParam("memory_slots", 32, "int", 4, 256, help="memory rows N"),
        HyperParam("memory_width", 40, "int", 8, 128, help="memory row width W (a vector the controller writes)"),
        HyperParam("read_heads", 2, "int", 1, 4, help="read heads R"),
    )

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.encoder = make_backbone(self.input_shape, hidden=self.hp["conv_channels"])
        self.core = DNCMemoryCore(self.encoder.out_dim, n_way, self.hp["controller_size"],
                                  self.hp["memory_slots"], self.hp["memory_width"], self.hp["read_heads"])
