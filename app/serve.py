"""The app's server: ``python -m app.serve run app/main.py [streamlit options]``.

Streamlit's own ``streamlit run``, with two things done first, in this process, before
the server starts listening (and so before it reports healthy):

* **The heavy imports** (torch, the learners, the datasets' code, plotly, pandas, the
  app's modules). Under a bare ``streamlit run`` the first visitor's script run paid
  for them (issue 13: the first page was usable 2.8 s after the server said it was
  healthy, ~2 s of it importing); a page run finds them in ``sys.modules``.
* **The first page's data** (:func:`warm_data`): the default dataset, the lessons.
* **A frozen heap** (:func:`freeze_heap`): the collection Streamlit runs after every
  script run no longer scans what was loaded above.
* **The training processes' fork server**, started first and ready before the server
  listens (its own torch import would otherwise compete with the first page), and
  **UMAP's compiled code** loaded (waited for up to 10 s; compiling it on a fresh machine
  takes longer and goes on in the background).
* **At most two malloc arenas** (glibc's ``M_ARENA_MAX``). Streamlit runs every
  script run in a new thread, and glibc gives threads their own heaps (up to 8 per
  core); thirty sessions uploading at once left their freed pages scattered over many
  heaps that a trim could not hand back whole (issue 12: the 30-upload peak). Set as
  early as possible, before any thread exists; ``MALLOC_ARENA_MAX`` in the environment
  wins (glibc reads it at start-up).

``make run``, the Docker image and the browser tests all start the server this way.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
M_ARENA_MAX = -8  # glibc <malloc.h>
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """glibc's ``mallopt(M_ARENA_MAX, arenas)``, unless ``MALLOC_ARENA_MAX`` is set;
    True when applied (False elsewhere than glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):
        return False


#: What a page run imports, in this order: the projection module first (it points
#: numba's disk cache before umap loads), pandas before any thread (half-imported in two
#: threads at once it fails: see app/main.py).
WARM_MODULES = ("metarep_core.projection", "pandas", "torch", "plotly.graph_objects",
                "metarep_core.data", "app.classroom", "app.lesson_state", "app.memory",
                "app.pages", "app.persistence", "app.projector", "app.services", "app.sidebar",
                "app.state", "app.figures.adaptation", "app.figures.curves",
                "app.figures.episodes", "app.figures.extras")


def warm_imports() -> None:
    """Import what every page run needs (the first one would otherwise pay for it),
    and every learner's module (the sidebar lists them all on the first run)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for name in WARM_MODULES:
        importlib.import_module(name)
    from metarep_core.learners import available
    available()


def warm_data() -> None:
    """Load what the first page run reads, into the caches every session shares
    (read-only, built-in things only): the default dataset and glyphs (the lessons use
    them; the core's own cache), the lessons, and Streamlit's emoji table (its regex is
    compiled when the first alert is drawn). Measured on the first page run after
    :func:`warm_imports` (AppTest, one thread): 1.3 s of CPU before, of which these
    were 0.45 s, 0.2 s and 0.36 s."""
    importlib.import_module("streamlit.emojis")
    from metarep_core.data import load_dataset
    from app.state import Settings
    for name in dict.fromkeys((Settings().dataset, "glyphs")):
        load_dataset(name, seed=0)
    from app import lesson_state
    lesson_state.all_lessons()


WARM_UMAP_WAIT_S = 10.0


def freeze_heap() -> int:
    """Move every object alive now (the imported modules, the warmed caches: ~280,000
    objects) out of the garbage collector's sight, and return how many.

    Streamlit collects all generations after every script run (``runner.postScriptGC``):
    with torch, the learners and the data imported that full collection scanned them all
    every time, ~90 ms of CPU per click (py-spy on the server during "new episode").
    They live as long as the server, so scanning them finds nothing; after the freeze the
    collection scans only what sessions made since, and still frees their cycles."""
    import gc
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    limit_malloc_arenas()
    # The training processes' fork server (metarep_core/process_runner.py) imports torch
    # in its own process, on the other core while this one imports below; ready before
    # the server is healthy, so it never competes with the first page.
    from metarep_core import process_runner
    process_runner.preload()
    warm_imports()
    # UMAP's compiled code (numba, loaded from its disk cache: ~0.5 s of CPU; compiled
    # on a fresh machine: ~24 s) in a thread beside the data below; waited for at most
    # WARM_UMAP_WAIT_S, so a fresh machine is not held back, while a warm one's first
    # page no longer shares the CPU with it.
    from app import services
    umap_warm_up = services.warm_up_projection()
    warm_data()
    freeze_heap()
    process_runner.wait_ready()
    umap_warm_up.join(WARM_UMAP_WAIT_S)
    from streamlit.web.cli import main as streamlit_main
    sys.argv = ["streamlit", *argv]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
