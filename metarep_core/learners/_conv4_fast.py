"""Faster CPU execution of the Conv-4 backbone, with the same results.

Two exact rewrites, measured on this project's 2-core CPU (benchmarks/compare_peers.py):

* ``conv4_forward(backbone, x)`` — the training (and autograd-friendly) forward.
  For batches of at least ``CHANNELS_LAST_MIN_BATCH`` examples the activations
  are kept in ``channels_last`` layout after the first convolution: oneDNN
  convolutions, batch norm and above all max-pool are much faster in it (PyTorch's NCHW max-pool is the single most expensive op of a Conv-4 step
  on CPU). The first input has one channel, so its layout is ambiguous and the
  switch is made explicitly. ReLU and max-pool commute (both monotone), so the
  pool runs first and the ReLU touches 4x fewer values; the gradients are the
  same (a window whose max is <= 0 gets no gradient either way). Works under
  ``torch.func.functional_call`` (MAML's fast weights) and with double backward;
  tests/test_maml.py checks the second-order gradient through it against float64
  finite differences, tests/test_protonet.py its equality with ``backbone(x)``.

* :class:`FusedEval` — eval-mode inference with batch norm folded into the
  convolutions. In eval mode a batch norm is a fixed per-channel affine map, so
  ``bn(conv(x)) == conv'(x)`` with ``W' = W * g / sqrt(v + eps)`` and
  ``b' = (b - m) * g / sqrt(v + eps) + beta``. The folded network is cached and
  rebuilt whenever a weight or running statistic changes (tracked by the tensors'
  in-place version counters, which ``optimizer.step()`` and ``load_state_dict``
  bump), so it always matches the live module.

Backbones other than Conv-4 (the MLP) run unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Conv4


# channels_last pays for large batches (ProtoNet's 100 images, MAML's 75 queries); on a
# MAML support set of 5 images the reductions of batch norm's double backward run
# slower in it than in NCHW (measured: CPU time per second-order meta-step 835 ms with
# this threshold, 870 ms never channels_last, 930 ms always). Without double backward
# (first-order steps, test-time adaptation) channels_last pays at every batch size
# (10-step MAML adaptation: 105 ms always vs 118 ms with the threshold), so callers
# that know it pass ``channels_last=True``.
CHANNELS_LAST_MIN_BATCH = 32


def _blocks(backbone: Conv4) -> list[tuple[nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d | None]]:
    """[(conv, bn, pool or None)] for Conv-4's [conv, bn, relu, (pool)] layout."""
    mods = list(backbone.net)
    out, i = [], 0
    while i < len(mods):
        conv, bn, relu = mods[i:i + 3]
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)):
            raise TypeError(f"unexpected Conv-4 layout at layer {i}: {mods[i:i + 3]}")
        i += 3
        pool = None
        if i < len(mods) and isinstance(mods[i], nn.MaxPool2d):
            pool = mods[i]
            i += 1
        out.append((conv, bn, pool))
    return out


def as_channels_last(w: torch.Tensor) -> torch.Tensor:
    """A 4-d tensor in channels_last memory format, same values (differentiable)."""
    if w.shape[1] == 1 and w.is_contiguous():
        # one channel: contiguous() sees the layout as ambiguous and keeps it; the
        # channels_last strides address the same memory (the channel index is always 0)
        _, _, kh, kw = w.shape
        return w.as_strided(w.shape, (kh * kw, 1, kw, 1))
    return w.contiguous(memory_format=torch.channels_last)


def conv4_forward(backbone: nn.Module, x: torch.Tensor, channels_last: bool | None = None) -> torch.Tensor:
    """``backbone(x)`` computed faster for a Conv-4: (n, C, H, W) -> (n, out_dim).

    Same value and gradients as ``backbone(x)`` (in train or eval mode, under
    ``functional_call`` too); any other backbone is simply called.
    ``channels_last``: force the layout; None picks it by batch size (see
    ``CHANNELS_LAST_MIN_BATCH``), which suits a pass that will be double-differentiated.
    """
    if not isinstance(backbone, Conv4):
        return backbone(x)
    h = x
    if channels_last is None:
        channels_last = x.shape[0] >= CHANNELS_LAST_MIN_BATCH
    for i, (conv, bn, pool) in enumerate(_blocks(backbone)):
        if i == 0 and channels_last:
            # a channels_last weight makes oneDNN write the output channels_last itself,
            # instead of NCHW then a copy of the largest activation (forward and backward)
            h = conv._conv_forward(h, as_channels_last(conv.weight), conv.bias)
        else:
            h = conv(h)
        if i == 0 and channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = bn(h)
        if pool is not None:
            h = pool(h)
        h = F.relu(h)
    return h.flatten(1)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, bias=True).to(conv.weight)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.requires_grad_(False)


class _Folded(nn.Module):
    def __init__(self, backbone: Conv4):
        super().__init__()
        with torch.no_grad():
            self.convs = nn.ModuleList(_fold(c, b) for c, b, _ in _blocks(backbone))
        self.pools = [p for _, _, p in _blocks(backbone)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            h = conv(h)
            if i == 0:
                h = h.contiguous(memory_format=torch.channels_last)
            if pool is not None:
                h = pool(h)
            h = F.relu(h, inplace=True)
        return h.flatten(1)


class FusedEval:
    """Callable ``x -> backbone.eval()(x)`` for embeddings without gradients.

    With gradients enabled, or for a backbone that is not a Conv-4 with running
    statistics, it runs the backbone itself in eval mode.
    """

    def __init__(self, backbone: nn.Module):
        self.backbone = backbone
        self._key = None
        self._net: nn.Module | None = None

    def _foldable(self) -> bool:
        return isinstance(self.backbone, Conv4) and all(
            m.track_running_stats for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d))

    def _state_key(self):
        tensors = list(self.backbone.parameters()) + list(self.backbone.buffers())
        return tuple((id(t), t._version, t.device, t.dtype) for t in tensors)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or not self._foldable():
            was = self.backbone.training
            self.backbone.eval()
            try:
                return conv4_forward(self.backbone, x)
            finally:
                self.backbone.train(was)
        key = self._state_key()
        if key != self._key or self._net is None:
            self._net = _Folded(self.backbone).eval()
            self._key = key
        return self._net(x)
