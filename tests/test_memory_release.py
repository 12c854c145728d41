"""app/memory.py: freed heap memory goes back to the system; without a Streamlit
server there is nothing to forget."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from app import memory

pytestmark = pytest.mark.skipif(memory._TRIM is None, reason="not glibc: no malloc_trim")


def test_release_freed_memory_returns_a_freed_heap():
    # 200 MB in 4 KB blocks (under malloc's mmap threshold: they come from the heap),
    # all freed but the last, which pins the heap's top so free() alone cannot shrink
    # it: the pages stay resident until malloc_trim hands them back.
    script = textwrap.dedent("""
        from app import memory

        def rss_mb():
            with open("/proc/self/status") as fh:
                return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS")) / 1024

        blocks = [bytes(4096) for _ in range(50_000)]
        pin = bytes(4096)
        del blocks
        before = rss_mb()
        released = memory.release_freed_memory()
        print(before, rss_mb(), released)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    before, after, released = float(out[0]), float(out[1]), out[2]
    assert released == "True"
    assert before - after > 150, (before, after)


def test_forget_ended_sessions_without_a_server_does_nothing():
    assert memory.forget_ended_sessions() == 0
