"""AppTest suite: a Compare run's results kept in the session's run (issue 14: nothing a
user made lives only in one server's memory) and shown again by a new session opened
with only ``?run=<token>`` — a reload, the link in another browser, or another app
server on the same database (each AppTest is a fresh session that reads the store)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sqlalchemy import update

from app import persistence, state
from streamlit.testing.v1 import AppTest

from app_harness import MAIN, goto, new_app, problems, set_and_run, strings, texts
from metarep_core.store import RunStore
from metarep_core.store.schema import blobs

EN = strings("en")
CHOICES = {"compare_algorithms": ["protonet", "anil"], "compare_episodes": 10}


def _reopen(run: str, **query) -> AppTest:
    """A new session (no widget seeds) of the link ``?run=<run>``: a reload, or the link
    in another browser or through another app server on the same store."""
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.query_params.update({"run": run, **{k: str(v) for k, v in query.items()}})
    return at.run()


def _summary_table(at):
    return next(d.value for d in at.dataframe if "algorithm" in d.value.columns)


def _compared(**query):
    """A session that ran Compare of two learners on glyphs; (AppTest, run token)."""
    at = new_app(dataset="glyphs", n_query=3, seed=2, **query)
    goto(at, "compare")
    set_and_run(at, **CHOICES)
    at.button(key="compare_run").click().run()
    assert problems(at) == [] and not at.error
    return at, at.query_params["run"]


def test_a_comparison_comes_back_exactly_through_the_run_link():
    at, run = _compared()
    first = at.session_state["compare_result"][1]
    table = _summary_table(at)

    again = _reopen(run)  # a new session: nothing but the token in the URL
    goto(again, "compare")
    assert problems(again) == [] and not again.error
    kept = again.session_state["compare_result"][1]
    assert list(kept) == ["protonet", "anil"]
    for name in first:  # the very numbers computed, not recomputed ones
        assert np.array_equal(kept[name]["scores"], first[name]["scores"])
        assert kept[name]["summary"] == first[name]["summary"]
        assert kept[name]["seconds_per_query"] == first[name]["seconds_per_query"]
    assert _summary_table(again).equals(table)
    assert EN["compare.press_run"] not in texts(again)


def test_a_kept_comparison_is_not_shown_for_other_settings_or_another_model():
    at, run = _compared()
    other = _reopen(run, seed=5)  # the link with another episode seed
    goto(other, "compare")
    assert problems(other) == [] and EN["compare.other_choices"] in texts(other)
    assert not any("algorithm" in d.value.columns for d in other.dataframe)

    # the same settings, but protonet's weights changed (as a training would): not shown either
    key = ("protonet", "glyphs", 5, (1, 28, 28))
    old = at.session_state["models"][key]
    learner = type(old.learner)(old.learner.input_shape, 5)
    at.session_state["models"][key] = state.SessionModel(learner.eval(), "trained", {}, 10_000)
    at.run()
    assert problems(at) == [] and EN["compare.other_choices"] in texts(at)
    assert not any("algorithm" in d.value.columns for d in at.dataframe)


def test_an_altered_row_is_said_and_never_shown():
    at, run = _compared()
    store = RunStore()
    record = store.get_comparison(run, persistence.COMPARE_SLOT)
    record["results"]["anil"]["scores"][0] = 1.0 - record["results"]["anil"]["scores"][0]
    data = json.dumps(record).encode()  # its summary no longer matches its scores
    with store.engine.begin() as conn:  # a hand edit in the database, SHA-256 updated too
        conn.execute(update(blobs).where(blobs.c.kind == "result").where(blobs.c.slot == persistence.COMPARE_SLOT)
                     .values(data=data, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    again = _reopen(run)
    goto(again, "compare")
    assert problems(again) == [] and not again.error
    said = [w.value for w in again.warning if w.value.startswith(EN["compare.stored_refused"].split("(")[0])]
    assert len(said) == 1 and "was altered" in said[0], said
    assert "compare_result" not in again.session_state
    assert EN["compare.press_run"] in texts(again)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_ray_head_that_does_not_answer_runs_the_comparison_here_and_says_so(monkeypatch, lang):
    """METAREP_RAY_ADDRESS naming a loopback port where nothing listens (refused at once,
    before Ray is imported): the page says so, runs here, and keeps where it ran. The same
    against a real Ray head is tests/test_cluster_compare.py."""
    import socket
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("METAREP_RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    at, run = _compared(lang=lang)
    words = strings(lang)
    said = [w.value for w in at.warning if w.value.startswith(words["compare.cluster_fallback"].split("(")[0])]
    reason = {"en": "cannot be reached", "zh": "无法连接"}[lang]  # the reason in the page's language
    assert len(said) == 1 and reason in said[0] and f"127.0.0.1:{port}" in said[0], said
    assert "train" not in said[0] and "训练" not in said[0]
    assert words["compare.where.local"] in texts(at) and problems(at) == []
    assert RunStore().get_comparison(run, persistence.COMPARE_SLOT)["where"] == "local"
