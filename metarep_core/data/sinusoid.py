"""sinusoid: the regression task family of MAML (Finn et al., 2017, section 5.1).

A task is ``y = A sin(x - phase)`` with amplitude ``A ~ U[0.1, 5.0]`` and phase
``~ U[0, pi]``; inputs ``x ~ U[-5, 5]``. An episode has K support points and Q query
points (tensors (K, 1) and (Q, 1)); ``episode.info`` holds ``amplitude`` and
``phase`` and :meth:`Sinusoid.evaluate` gives the true curve (the app draws it).
Splits are disjoint streams of task seeds (see :class:`TaskFamily`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .base import TaskFamily


class Sinusoid(TaskFamily):
    name = "sinusoid"
    task = "regression"
    input_shape = (1,)
    amplitude_range = (0.1, 5.0)
    phase_range = (0.0, math.pi)
    x_range = (-5.0, 5.0)

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.params = {"dataset": "sinusoid", "seed": seed, "amplitude": list(self.amplitude_range),
                       "phase": list(self.phase_range), "x": list(self.x_range)}

    def sample_task(self, rng: np.random.Generator) -> dict:
        return {"amplitude": float(rng.uniform(*self.amplitude_range)),
                "phase": float(rng.uniform(*self.phase_range))}

    def sample_inputs(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        """(n, 1) float32 inputs uniform in ``x_range``."""
        return torch.from_numpy(rng.uniform(*self.x_range, (n, 1)).astype(np.float32))

    def evaluate(self, task: dict, x: torch.Tensor) -> torch.Tensor:
        """True outputs (n, 1) of ``task`` at inputs ``x`` (n, 1)."""
        return task["amplitude"] * torch.sin(x - task["phase"])

    def grid(self, n: int = 200) -> torch.Tensor:
        """(n, 1) evenly spaced inputs over ``x_range``, to draw curves."""
        return torch.linspace(*self.x_range, n).unsqueeze(1)
