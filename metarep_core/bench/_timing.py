"""Timing and memory helpers shared by the workloads (the peers' protocol)."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch

THREADS = 2  # as ../shared/bench/peers/bench_peers.py


def setup(seed: int = 0, threads: int | None = None) -> None:
    torch.set_num_threads(threads or THREADS)
    torch.manual_seed(seed)


def rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    """The process's peak resident set (ru_maxrss, kB on Linux), imports included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_windows(step: Callable[[], object], warmup: int, windows: int, per_window: int) -> list[float]:
    """``warmup`` calls, then ``windows`` windows of ``per_window`` calls: each window's rate (calls/s)."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(per_window):
            step()
        rates.append(per_window / (time.perf_counter() - t0))
    return rates


def time_calls_ms(fn: Callable[[int], object], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls ``fn(i)`` after ``warmup`` calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)
