"""A local Compare scores its learners in child processes, at most two at once in the
whole server (issue 13: scored one after another in the page's thread, five learners x
100 episodes held the GIL for ~19 s); the scores are the in-thread ones exactly, and
``METAREP_COMPARE_PROCESSES=0`` keeps the in-thread path (metarep_core/parallel_eval.py,
app/comparison.py)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from app import comparison, services, state
from metarep_core import parallel_eval
from metarep_core.checkpoints import checkpoint_to_bytes
from metarep_core.data import load_dataset
from metarep_core.errors import MetaRepError

pytestmark = pytest.mark.child_processes  # Compare's children
LEARNERS = ("protonet", "matching", "maml", "anil", "reptile")  # the Compare page's usual five


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs", seed=0)


def _models(dataset, names=LEARNERS, seed=3):
    return {name: state.SessionModel(services.fresh_learner(name, dataset.input_shape, 5, "classification",
                                                            seed=seed), source="fresh")
            for name in names}


def _settings(**kw):
    return state.Settings(dataset="glyphs", n_way=5, k_shot=1, n_query=3, seed=4, split="test", **kw)


def test_processes_give_the_in_thread_scores_exactly(glyphs, monkeypatch):
    """Reptile's episodes split between two children (pieces of any size allowed here),
    put back in order: every score equals the in-thread one."""
    models, settings = _models(glyphs), _settings()
    monkeypatch.setattr(parallel_eval, "MIN_PIECE_MS", 1)
    monkeypatch.setattr(parallel_eval, "IN_THREAD_BELOW_MS", 0)  # children even for 6 episodes
    assert [p for p in parallel_eval.plan(LEARNERS, 6, 2) if p[0] == "reptile"] == [
        ("reptile", 0, 3), ("reptile", 3, 3)]
    monkeypatch.setenv(parallel_eval.ENV, "0")
    in_thread = comparison.compare(models, glyphs, settings, 6)
    monkeypatch.setenv(parallel_eval.ENV, "2")
    ticks = []
    in_processes = comparison.compare(models, glyphs, settings, 6, on_progress=lambda *a: ticks.append(a))
    assert list(in_processes) == list(LEARNERS)
    for name in LEARNERS:
        assert np.array_equal(in_processes[name]["scores"], in_thread[name]["scores"]), name
        assert in_processes[name]["summary"] == in_thread[name]["summary"]
        assert in_processes[name]["model"] == in_thread[name]["model"]
    # progress came back per learner and per episode, and reached the whole
    assert {name for name, *_ in ticks} == set(LEARNERS)
    assert sorted(done for name, _, done, _ in ticks if name == "maml") == [1, 2, 3, 4, 5, 6]
    assert max(fraction for _, fraction, _, _ in ticks) == pytest.approx(1.0)


def test_off_means_the_pages_own_thread(glyphs, monkeypatch):
    monkeypatch.setenv(parallel_eval.ENV, "0")
    with pytest.raises(MetaRepError, match="METAREP_COMPARE_PROCESSES=0"):
        parallel_eval.parallel_episode_scores({}, glyphs, split="test", n_way=5, k_shot=1, n_query=3,
                                              episodes=2, seed=0)
    # and compare() then scores here, never asking for children
    asked = []
    monkeypatch.setattr(parallel_eval, "parallel_episode_scores", lambda *a, **k: asked.append(a))
    results = comparison.compare(_models(glyphs, ("protonet",)), glyphs, _settings(), 2)
    assert len(results["protonet"]["scores"]) == 2 and asked == []


def test_a_small_compare_is_scored_in_the_pages_thread(glyphs, monkeypatch):
    """Children only where they pay back their start: 2 learners x 4 episodes stay in the
    thread, the app's default 5 x 100 goes to children."""
    monkeypatch.setenv(parallel_eval.ENV, "2")
    assert not parallel_eval.worth_children(["protonet", "anil"], 4)
    assert parallel_eval.worth_children(["protonet", "maml", "anil", "reptile", "versa"], 100)
    asked = []
    monkeypatch.setattr(parallel_eval, "parallel_episode_scores",
                        lambda checkpoints, *a, **k: asked.append(sorted(checkpoints)))
    results = comparison.compare(_models(glyphs, ("protonet", "anil")), glyphs, _settings(), 4)
    assert asked == [] and len(results["anil"]["scores"]) == 4
    with pytest.raises(TypeError):  # the stand-in returns None: this Compare did ask for children
        comparison.compare(_models(glyphs, ("protonet", "anil")), glyphs, _settings(), 40)
    assert asked == [["anil", "protonet"]]


def test_a_bad_setting_is_refused_with_its_name(monkeypatch):
    monkeypatch.setenv(parallel_eval.ENV, "two")
    with pytest.raises(MetaRepError, match="METAREP_COMPARE_PROCESSES must be a whole number >= 0.*'two'"):
        parallel_eval.process_limit()


# Two children alive at one moment is a matter of timing: beside another test on a
# 2-core machine the first child can end before the second starts.
@pytest.mark.alone
def test_two_compares_at_once_run_at_most_two_children(glyphs, monkeypatch):
    """Compare "a" of three learners starts; once its children run, Compare "b" of the
    same three starts too. Every child's lifetime (pid, start and end on the machine's
    monotonic clock) is observed: at no moment were more than two alive in the server,
    two were (parallel), and "b" found every slot taken and said so."""
    monkeypatch.setenv(parallel_eval.ENV, "2")
    monkeypatch.setattr(parallel_eval, "_slots", None)  # a server starting with this setting
    checkpoints = {name: checkpoint_to_bytes(m.learner) for name, m in
                   _models(glyphs, ("maml", "reptile", "anil")).items()}
    got, waits, errors = {}, {"a": [], "b": []}, []
    a_runs = threading.Event()

    def one(tag):
        try:
            got[tag] = parallel_eval.parallel_episode_scores(
                checkpoints, glyphs, split="test", n_way=5, k_shot=1, n_query=3, episodes=8, seed=1,
                on_progress=lambda *_: a_runs.set(), on_wait=waits[tag].append)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
    threads = {tag: threading.Thread(target=one, args=(tag,)) for tag in "ab"}
    threads["a"].start()
    assert a_runs.wait(120)
    threads["b"].start()
    for th in threads.values():
        th.join(300)
    assert errors == []
    spans = [(p["started"], p["ended"], p["pid"]) for res in got.values() for r in res.values()
             for p in r["pieces"]]
    assert len({pid for *_, pid in spans}) == 6  # one child per learner
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    alive = peak = 0
    for _, step in events:
        alive += step
        peak = max(peak, alive)
    assert peak == 2  # parallel, and never more than two in the server
    assert waits["b"][:2] == [True, False] and waits["a"] == []  # "b" waited, then ran
    assert parallel_eval._server_slots().used == 0
    a = {name: r["pieces"][0] for name, r in got["a"].items()}  # one piece each here
    # the costliest first (Reptile's 10 inner steps), ANIL when a slot freed
    assert a["reptile"]["started"] < a["anil"]["started"] and a["maml"]["started"] < a["anil"]["started"]
    assert a["anil"]["started"] >= min(a["reptile"]["ended"], a["maml"]["ended"])
    for name in checkpoints:
        assert np.array_equal(got["a"][name]["scores"], got["b"][name]["scores"])


def test_the_plan_splits_a_slow_learner_and_starts_the_costliest_first():
    five = ["protonet", "matching", "maml", "anil", "reptile"]
    assert parallel_eval.plan(five, 100, 2) == [
        ("reptile", 0, 50), ("reptile", 50, 50), ("maml", 0, 100), ("anil", 0, 100),
        ("matching", 0, 100), ("protonet", 0, 100)]
    assert parallel_eval.plan(five, 10, 2) == [(n, 0, 10) for n in ("reptile", "maml", "anil", "matching",
                                                                    "protonet")]  # too short to split
    one = parallel_eval.plan(["maml"], 600, 2)  # a learner alone still uses both cores
    assert len(one) > 1 and sum(n for *_, n in one) == 600
    assert [f for _, f, _ in one] == sorted(f for _, f, _ in one) and one[0][1] == 0
    assert parallel_eval.plan(["protonet", "someone_new", "imaml"], 10, 2)[0][0] == "imaml"


def test_a_childs_refusal_comes_back_and_frees_its_slot(glyphs, monkeypatch):
    monkeypatch.setenv(parallel_eval.ENV, "2")
    monkeypatch.setattr(parallel_eval, "_slots", None)
    with pytest.raises(MetaRepError, match="not a checkpoint|safetensors|header"):
        parallel_eval.parallel_episode_scores({"protonet": b"not a checkpoint"}, glyphs, split="test",
                                              n_way=5, k_shot=1, n_query=3, episodes=2, seed=0)
    assert parallel_eval._server_slots().used == 0


def test_an_uploaded_dataset_is_copied_to_the_children(glyphs, monkeypatch):
    """A dataset that is not built in (an upload: one tensor per class) travels as a copy,
    pickled here with the plain pickler (multiprocessing's sent one descriptor per class
    tensor: "too many fds"); the children score it as this thread does."""
    import dataclasses
    from metarep_core.cluster.runner import dataset_payload
    upload = dataclasses.replace(glyphs, name="my-upload", params={})
    assert dataset_payload(upload)[0] == "copy"
    models, settings = _models(upload, ("protonet", "anil")), _settings()
    monkeypatch.setattr(parallel_eval, "IN_THREAD_BELOW_MS", 0)  # children even for 4 episodes
    monkeypatch.setenv(parallel_eval.ENV, "0")
    in_thread = comparison.compare(models, upload, settings, 4)
    monkeypatch.setenv(parallel_eval.ENV, "2")
    in_processes = comparison.compare(models, upload, settings, 4)
    for name in models:
        assert np.array_equal(in_processes[name]["scores"], in_thread[name]["scores"]), name
