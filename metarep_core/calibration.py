"""Calibration of predicted probabilities: expected calibration error and reliability bins.

Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks": the
predictions are binned by confidence (the top probability); ECE is the average, weighted
by bin size, of |accuracy - mean confidence| in each bin.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import MetaRepError


def reliability(probs, labels, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin ``confidence``, ``accuracy`` and ``count`` (n_bins,) over equal-width
    confidence bins (0, 1/n], (1/n, 2/n], ... ; probs (n, k), labels (n,)."""
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, float)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise MetaRepError(f"probs must be (n, k) and labels (n,), got {p.shape} and {y.shape}")
    if int(n_bins) < 1:
        raise MetaRepError(f"n_bins must be >= 1, got {n_bins!r}")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(float)
    # Bin i holds confidences in (i/n, (i+1)/n]; a confidence of exactly 0 goes to bin 0.
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(idx, conf, n_bins) / count
        accuracy = np.bincount(idx, correct, n_bins) / count
    return {"confidence": confidence, "accuracy": accuracy, "count": count}


def expected_calibration_error(probs, labels, n_bins: int = 10) -> float:
    """ECE in [0, 1]: sum over bins of (count / n) * |accuracy - confidence|."""
    r = reliability(probs, labels, n_bins)
    filled = r["count"] > 0
    n = r["count"].sum()
    return float(np.sum(r["count"][filled] / n * np.abs(r["accuracy"][filled] - r["confidence"][filled])))
