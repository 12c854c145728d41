"""Handing the memory of ended sessions back to the operating system.

Streamlit 1.67 keeps a closed tab's session for ``server.disconnectedSessionTTL`` in a
TTL cache that forgets expired entries only lazily, and never calls
``AppSession.shutdown()`` for them: the session's uploaded files stay in the
uploaded-file manager (up to ``server.maxUploadSize`` each) until the server stops.
Measured with ``benchmarks/upload_memory.py``: 2 sessions that uploaded the largest
zip kept all their memory after they had expired. :func:`forget_ended_sessions` drops
expired sessions and the uploaded and media files of every session the runtime no
longer knows; it reads Streamlit's internals (1.67) and does nothing if they change.

When a session ends, Streamlit drops its uploaded file and session state, and a read
archive's decompressed entries are freed once its dataset is built; but glibc's malloc
keeps freed chunks inside its heaps (one per thread that allocated: page runs, training
workers, the archive decoders) unless they sit at a heap's top. Measured with
``benchmarks/upload_memory.py``: the archive reads of 2 sessions left ~150 MB that
only a trim returned. ``malloc_trim(0)`` returns every free page of every
heap (madvise). A thread does both every ``TRIM_EVERY_S`` seconds. Elsewhere than
glibc (musl, macOS) there is no malloc_trim and this does nothing.
"""
from __future__ import annotations

import ctypes
import gc
import threading
import time

TRIM_EVERY_S = 10.0  # a trim walks the heaps in ~ms; a freed session waits at most this long


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()
_started = threading.Lock()


def release_freed_memory() -> bool:
    """Give the free pages of every malloc heap back to the system; True when glibc
    released some (False also where there is no malloc_trim)."""
    return bool(_TRIM is not None and _TRIM(0))


def _runtime():
    from streamlit.runtime import Runtime

    rt = Runtime._instance
    return rt if type(rt) is Runtime else None  # AppTest installs a mock


def forget_ended_sessions() -> int:
    """Drop expired disconnected sessions from Streamlit's session storage, and the
    uploaded and media files of every session that is neither connected nor stored
    (waiting for its tab to reconnect); the number of sessions whose files went."""
    rt = _runtime()
    mgr = getattr(rt, "_session_mgr", None)
    lock = getattr(mgr, "_storage_lock", None)
    cache = getattr(getattr(mgr, "_session_storage", None), "_cache", None)
    files = getattr(getattr(rt, "uploaded_file_mgr", None), "file_storage", None)
    if lock is None or not hasattr(cache, "expire") or not isinstance(files, dict):
        return 0
    with_files = set(files)  # before the known ids: a session uploads only once connected
    with lock:  # held by Streamlit while a session moves between connected and stored
        expired = cache.expire()
        known = set(getattr(mgr, "_active_session_info_by_id", {})) | set(cache)
    ended = with_files - known
    for session_id in ended:
        rt.uploaded_file_mgr.remove_session_files(session_id)
        rt.media_file_mgr.clear_session_refs(session_id)
    if ended:
        rt.media_file_mgr.remove_orphaned_files()
    if expired or ended:
        # An AppSession sits in reference cycles (its script runner, callbacks): only the
        # cycle collector frees its session state, and a quiet server may not run it soon.
        del expired
        gc.collect()
    return len(ended)


def start_trimmer(every_s: float = TRIM_EVERY_S) -> bool:
    """Start the daemon thread that forgets ended sessions and releases freed memory
    every ``every_s`` seconds;
    only the first call in a process starts it (True), later ones do nothing."""
    if _TRIM is None or not _started.acquire(blocking=False):
        return False

    def loop():
        while True:
            time.sleep(every_s)
            try:
                forget_ended_sessions()
            except Exception:  # Streamlit's internals changed: still trim
                pass
            release_freed_memory()

    threading.Thread(target=loop, name="metarep-malloc-trim", daemon=True).start()
    return True
