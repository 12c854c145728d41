"""One "app server" of the run store's concurrency test (tests/test_store.py).

``python tests/store_worker.py URL TOKEN TAG N GO_FILE``: opens the store, prints
"ready", waits for GO_FILE (so that both workers start writing together), then
records N answers to exercise ("race", 1) of run TOKEN and saves page TAG's state
after each. Exits 0 only if every write succeeded.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metarep_core.store import RunStore  # noqa: E402


def main(url: str, token: str, tag: str, n: str, go: str) -> None:
    store = RunStore(url)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.002)
    for i in range(int(n)):
        store.record_answer(token, "race", 1, f"{tag}-{i}", correct=i % 2 == 0, seconds=0.5)
        store.save_page_state(token, tag, {"i": i})
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
