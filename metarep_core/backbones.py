"""Backbones: the Conv-4 of the few-shot literature and an MLP for vectors/regression.

Conv-4 (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017): four blocks of
[conv 3x3, 64 channels, batch norm, ReLU, max-pool 2]. On 28x28 input the output is
64x1x1, flattened to a 64-d embedding. Pooling is skipped once the feature map is
1x1, so small inputs (the 8x8 digits) go through the same four blocks.
"""
from __future__ import annotations

import torch
from torch import nn


class Conv4(nn.Module):
    """Conv-4 embedding: (n, C, H, W) -> (n, out_dim)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 64,
                 track_running_stats: bool = True):
        super().__init__()
        layers, size = [], image_size
        for i in range(4):
            layers += [nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1),
                       nn.BatchNorm2d(hidden, track_running_stats=track_running_stats),
                       nn.ReLU(inplace=True)]
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.net = nn.Sequential(*layers)
        self.out_dim = hidden * size * size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class MLP(nn.Module):
    """MLP embedding: (n, D) -> (n, hidden[-1]); ReLU between layers, none after the last."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        layers, d = [], in_dim
        for i, h in enumerate(hidden):
            layers.append(nn.Linear(d, h))
            if i < len(hidden) - 1:
                layers.append(nn.ReLU())
            d = h
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def make_backbone(input_shape: tuple[int, ...], hidden: int = 64, track_running_stats: bool = True,
                  mlp_hidden: tuple[int, ...] = (64, 64)) -> nn.Module:
    """Conv-4 for images (C, H, W), an MLP for vectors (D,)."""
    if len(input_shape) == 3:
        return Conv4(input_shape[0], input_shape[1], hidden, track_running_stats)
    if len(input_shape) == 1:
        return MLP(input_shape[0], mlp_hidden)
    raise ValueError(f"input_shape must be (C, H, W) or (D,), got {input_shape}")
