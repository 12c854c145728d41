"""One "app server" of the run store's concurrency test (tests/test_store.py).

``python tests/store_worker.py URL TOKEN TAG N GO_FILE``: opens the store, prints
"ready", waits for GO_FILE (so that both workers start writing together), then
records N answers to exercise ("race", 1) of run TOKEN and saves page TAG's state
after each. With TOKEN ``-`` it waits for GO_FILE first, then opens the store (so
that several workers create a new store at once) and creates N runs. Exits 0 only
if every write succeeded.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metarep_core.store import RunStore  # noqa: E402


def wait_for(go: str) -> None:
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.002)


def main(url: str, token: str, tag: str, n: str, go: str) -> None:
    if token == "-":
        print("ready", flush=True)
        wait_for(go)
        store = RunStore(url)
        for _ in range(int(n)):
            store.create_run()
        store.close()
        return
    store = RunStore(url)
    print("ready", flush=True)
    wait_for(go)
    for i in range(int(n)):
        store.record_answer(token, "race", 1, f"{tag}-{i}", correct=i % 2 == 0, seconds=0.5)
        store.save_page_state(token, tag, {"i": i})
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
