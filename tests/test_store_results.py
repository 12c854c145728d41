"""Comparisons kept in the run store (metarep_core/store/results.py): written and read
back exactly, on SQLite and on a real PostgreSQL server; a row that was altered, damaged
or written in another format is refused on reading with a message, never handed on."""
from __future__ import annotations

import copy
import hashlib
import json
import pickle
import uuid

import numpy as np
import pytest
from sqlalchemy import update

from app import comparison, state
from metarep_core.errors import MetaRepError
from metarep_core.evaluation import summarize
from metarep_core.store import RunStore, check_comparison
from metarep_core.store.schema import blobs

try:
    from pg_harness import PostgresServer
except ImportError:
    from tests.pg_harness import PostgresServer

SLOT = "compare"


def _results() -> dict:
    """Results as comparison.compare returns them (scores that are not round in binary)."""
    rng = np.random.default_rng(0)
    out = {}
    for name in ("maml", "protonet", "anil"):  # not sorted: the order must survive
        scores = rng.integers(0, 16, size=7) / 15.0
        out[name] = {"scores": scores, "summary": summarize(scores, regression=False), "source": "shipped",
                     "seconds_per_query": float(rng.random() / 1000), "model": hashlib.sha256(name.encode()).hexdigest()}
    return out


def _record() -> dict:
    settings = state.Settings(dataset="glyphs", n_way=5, k_shot=1, n_query=3, seed=11)
    return comparison.to_record(_results(), settings, "glyphs", "classification")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.sqlite3'}"
        return
    server = PostgresServer().start()  # fails with the reason if PostgreSQL cannot start
    try:
        yield server.create_database(f"t_{uuid.uuid4().hex[:16]}")
    finally:
        server.stop()


def test_a_comparison_round_trips_exactly_through_another_server(store_url):
    record, results = _record(), _results()
    writer = RunStore(store_url)
    run = writer.create_run()
    info = writer.put_comparison(run, SLOT, record)
    reader = RunStore(store_url)  # a second server: its own engine and connections
    try:
        assert [(b.kind, b.slot) for b in reader.load_run(run).blobs] == [("result", SLOT)]
        back = reader.get_comparison(run, SLOT)
    finally:
        reader.close()
        writer.close()
    assert back == record and info.size > 0
    key, restored = comparison.from_record(back)
    assert list(restored) == ["maml", "protonet", "anil"]
    for name, r in results.items():
        assert restored[name]["scores"].dtype == np.float64
        assert np.array_equal(restored[name]["scores"], r["scores"])  # bit for bit
        assert restored[name]["summary"] == r["summary"]
    assert key == comparison.run_key(list(results), 7, "glyphs",
                                     {"split": "test", "n_way": 5, "k_shot": 1, "n_query": 3, "seed": 11},
                                     [r["model"] for r in results.values()])


def _edit(record):
    def go(r):
        r = copy.deepcopy(r)
        record(r)
        return json.dumps(r).encode()
    return go


def _set(path, value):
    def edit(r):
        target = r
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return _edit(edit)


ALTERED = {
    "a score changed, the summary not": (_set(("results", "anil", "scores", 0), 0.5), "was altered"),
    "the mean changed": (_set(("results", "maml", "summary", "accuracy"), 99.0), "was altered"),
    "an older format": (_set(("version",), 0), "another version of MetaRep"),
    "a score past 1": (_set(("results", "anil", "scores", 1), 3.0), "episode 1"),
    "fewer scores": (_set(("results", "anil", "scores"), [0.5]), "ran 7 episodes"),
    "a learner not listed": (_set(("learners",), ["maml", "protonet"]), "unknown ['anil']"),
    "an unknown source": (_set(("results", "maml", "source"), "<script>"), "model source"),
    "NaN": (lambda r: json.dumps(r).replace('"seconds_per_query": ', '"seconds_per_query": NaN, "x": ', 1).encode(),
            "not JSON"),
    "a pickle": (lambda r: pickle.dumps(r), "not JSON"),
    "not an object": (lambda r: b"[1, 2, 3]", "must be a JSON object"),
}


@pytest.mark.parametrize("case", list(ALTERED))
def test_an_altered_row_is_refused_on_reading(tmp_path, case):
    store = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}")
    run = store.create_run()
    record = _record()
    store.put_comparison(run, SLOT, record)
    make, expected = ALTERED[case]
    data = make(record)
    with store.engine.begin() as conn:  # edited in the database, its SHA-256 made to match
        conn.execute(update(blobs).where(blobs.c.kind == "result")
                     .values(data=data, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    with pytest.raises(MetaRepError) as err:
        store.get_comparison(run, SLOT)
    assert expected in str(err.value)
    store.close()


def test_a_damaged_row_and_a_malformed_record_are_refused(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}")
    run = store.create_run()
    store.put_comparison(run, SLOT, _record())
    with store.engine.begin() as conn:  # bytes changed behind the store's back
        conn.execute(update(blobs).where(blobs.c.kind == "result").values(data=b"{}"))
    with pytest.raises(MetaRepError, match="damaged"):
        store.get_comparison(run, SLOT)
    bad = _record()
    bad["results"]["maml"]["summary"]["ci95"] = 0.0
    with pytest.raises(MetaRepError, match="altered"):
        store.put_comparison(run, SLOT, bad)  # refused before anything is written
    with pytest.raises(MetaRepError, match="damaged"):
        store.get_comparison(run, SLOT)  # the row before is still the damaged one
    assert check_comparison(_record())["learners"] == ["maml", "protonet", "anil"]
    store.close()
