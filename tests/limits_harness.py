"""Measuring what one input costs (tests/test_limits.py, tests/test_upload_limits.py):
in this process (:func:`cost`), or, for an upload archive, in a process that has read
nothing else (:func:`read_in_child`).

That process is a child of the training processes' fork server
(:func:`metarep_core.process_runner.mp_context`): torch and the data code are imported
there once, so a read no longer pays a fresh interpreter's imports (~1.5 s each), and the
child's figures count the read alone. In the pytest process itself, late in the full
suite, the same read measured about three times its cost alone (11.7 s, 17 s in CI,
against 4.1 s; the cause was not found: ``process_time`` counts every thread).
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@contextmanager
def cost():
    """Peak resident-memory growth (bytes) and CPU seconds of the block, in this process.

    ru_maxrss is the lifetime peak (an earlier test may have set it higher), so the
    resident size is sampled every 2 ms instead; allocations as big as the ones
    refused here take far longer than that to fill."""
    figures = {}
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu = time.process_time()
    try:
        yield figures
    finally:
        figures["cpu_s"] = time.process_time() - cpu
        done.set()
        sampler.join()
        figures["growth"] = max(peak[0], _rss()) - base


def assert_within_figure(figures, growth=300 * MB, cpu_s=10.0):
    assert figures["growth"] <= growth, f"memory grew {figures['growth'] / MB:.0f} MB"
    assert figures["cpu_s"] <= cpu_s, f"{figures['cpu_s']:.1f} s of CPU"


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1])


def read_archive(path: str, kwargs: dict, conn) -> None:
    """``load_image_archive`` of the file at ``path`` as the app reads an upload; sends its
    outcome ("images" and "classes", or "refused" with the message), "cpu_s" (this
    process's CPU for the read) and "growth" (bytes: the peak resident size over the size
    at the start)."""
    from metarep_core.data import load_image_archive
    from metarep_core.errors import MetaRepError

    with open(path, "rb") as f:
        data = f.read()
    # A forked child's peak (VmHWM) starts at its own resident size, not the parent's
    # (checked: a child of a process that had held 500 MB starts at 10 MB), so the
    # growth is this read's.
    base, cpu = _status_kb("VmRSS"), time.process_time()
    try:
        dataset = load_image_archive(data, **kwargs)
        out = {"images": sum(x.shape[0] for x in dataset.images), "classes": dataset.n_classes}
    except MetaRepError as exc:
        out = {"refused": str(exc)}
    out["cpu_s"] = time.process_time() - cpu
    out["growth"] = (_status_kb("VmHWM") - base) * 1024
    conn.send(out)
    conn.close()


def read_in_child(path: str, timeout_s: float = 300.0, **kwargs) -> dict:
    """:func:`read_archive` in a fresh child of the fork server; its figures."""
    from metarep_core.process_runner import mp_context

    ctx = mp_context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=read_archive, args=(str(path), kwargs, send), daemon=True,
                        name="metarep-upload-probe")
    child.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise TimeoutError(f"the upload probe sent nothing in {timeout_s:.0f} s")
        try:
            return receive.recv()
        except EOFError:
            child.join(30)
            raise RuntimeError(f"the upload probe ended without its figures "
                               f"(exit code {child.exitcode})") from None
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
