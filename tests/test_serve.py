"""The server's entry (app/serve.py): the heavy imports happen before the server
listens, and glibc is held to two malloc arenas (issues 12 and 13). The server itself
is started this way by every browser test (tests/browser_harness.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, **env) -> str:
    import os
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env},
                          check=True, timeout=120).stdout


def test_the_imports_a_page_run_needs_are_done_before_the_server_starts():
    out = _run("import sys; from app import serve; serve.warm_imports(); "
               "print(sorted(m for m in ('torch', 'plotly.graph_objects', 'pandas', 'metarep_core.learners', "
               "'metarep_core.learners.maml', 'app.services', 'app.sidebar', 'app.figures.adaptation') "
               "if m in sys.modules))")
    assert out.strip() == str(sorted(['torch', 'plotly.graph_objects', 'pandas', 'metarep_core.learners',
                                      'metarep_core.learners.maml', 'app.services', 'app.sidebar',
                                      'app.figures.adaptation']))


def test_malloc_arenas_are_limited_unless_the_environment_says_otherwise():
    assert _run("from app import serve; print(serve.limit_malloc_arenas())").strip() == "True"
    assert _run("from app import serve; print(serve.limit_malloc_arenas())",
                MALLOC_ARENA_MAX="4").strip() == "False"
