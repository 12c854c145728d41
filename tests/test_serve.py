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


def test_the_first_pages_data_is_loaded_before_the_server_starts():
    """The default dataset, glyphs and the lessons come from the shared caches on the
    first page run: after warm_data, loading them again parses nothing."""
    out = _run(
        "import sys; from app import serve, lesson_state; serve.warm_imports(); serve.warm_data()\n"
        "from metarep_core.data import _load_builtin, load_dataset\n"
        "from app.state import Settings\n"
        "before = _load_builtin.cache_info()\n"
        "load_dataset(Settings().dataset, seed=0); load_dataset('glyphs', seed=0)\n"
        "after = _load_builtin.cache_info()\n"
        "def refuse(*a, **k): raise AssertionError('lessons parsed again')\n"
        "lesson_state.load_lessons = refuse\n"
        "print(after.hits - before.hits, after.misses - before.misses, len(lesson_state.all_lessons()[0]) > 0,"
        " 'streamlit.emojis' in sys.modules)")
    assert out.split()[-4:] == ["2", "0", "True", "True"]


def test_the_warmed_heap_is_frozen_and_new_cycles_are_still_collected():
    """After freeze_heap the per-run full collection skips the server's long-lived
    objects (issue 13: ~90 ms a click), but garbage made later is still freed."""
    out = _run(
        "import gc, weakref\n"
        "from app import serve; serve.warm_imports(); serve.warm_data(); n = serve.freeze_heap()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a; gone = weakref.ref(a); del a, b\n"
        "gc.collect()\n"
        "print(n, gc.get_freeze_count() == n, gone() is None)")
    n, same, freed = out.split()[-3:]
    assert int(n) > 100_000 and same == "True" and freed == "True"


def test_the_served_app_watches_no_files():
    """Streamlit's polling file watcher stat'ed the app's files several times a second
    (issue 13); a served app does not change under it."""
    import tomllib
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text("utf-8"))
    assert config["server"]["fileWatcherType"] == "none"


def test_the_training_fork_server_is_ready_before_the_server_starts():
    """After preload + wait_ready (what app.serve.main does before Streamlit starts) the
    fork server has torch loaded, so a run forks from it at once and the first page does
    not share the CPU with its imports."""
    out = _run(
        "from multiprocessing import forkserver\n"
        "from metarep_core import process_runner as pr\n"
        "pr.preload(); pr.wait_ready()\n"
        "pid = forkserver._forkserver._forkserver_pid\n"
        "print('libtorch' in open(f'/proc/{pid}/maps').read())")
    assert out.split()[-1] == "True"


def test_umap_is_warmed_once_per_server_before_it_listens():
    """One warm-up thread per process, whoever asks (serve before listening, then every
    page run), and after the serve sequence's wait UMAP's compiled code is loaded."""
    out = _run(
        "from app import serve, services\n"
        "from metarep_core import projection\n"
        "serve.warm_imports()\n"
        "first = services.warm_up_projection(); first.join(300)\n"
        "print(services.warm_up_projection() is first, projection.is_warm())")
    assert out.split()[-2:] == ["True", "True"]
