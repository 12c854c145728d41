"""Compare runs and full evaluations on a real Ray cluster (issue 14), started by the test
itself inside a loopback-only network namespace (tests/netns_harness.py: Ray binds the
machine's interface otherwise). One namespace, one Ray head, every scenario of
tests/cluster_compare_scenarios.py in it; each test asserts on its scenario's JSON.
A Ray or namespace failure fails these tests with the scenario's output: never a skip."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

try:
    from netns_harness import run_in_netns
except ImportError:
    from tests.netns_harness import run_in_netns

SCRIPT = Path(__file__).with_name("cluster_compare_scenarios.py")
ORDER = ["tasks", "compare", "page", "cli", "unreachable", "kill"]
LEARNERS = ["protonet", "anil"]

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def scenarios() -> dict:
    done = run_in_netns([sys.executable, str(SCRIPT), *ORDER], timeout=800)
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("SCENARIO "):
            result = json.loads(line[len("SCENARIO "):])
            found[result["name"]] = result
    missing = [n for n in ["head", *ORDER] if n not in found]
    assert done.returncode == 0 and not missing, (
        f"the scenarios did not all run (exit {done.returncode}, missing {missing}):\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return found


def _ran(result: dict) -> dict:
    assert "exception" not in result, result.get("traceback", result)
    return result


def test_each_learner_is_its_own_ray_task_with_the_local_scores(scenarios):
    r = _ran(scenarios["tasks"])
    assert r["order"] == LEARNERS
    assert r["remote"] == r["local"]  # the same seeds: exactly the same per-episode scores
    assert len(r["remote"]["protonet"]) == 6
    assert r["driver_pid"] not in r["pids"]  # ran in Ray's workers, not in this process
    assert sorted(d[1] for d in r["done"]) == [1, 2] and {d[0] for d in r["done"]} == set(LEARNERS)


def test_compare_on_the_cluster_gives_the_local_table(scenarios):
    r = _ran(scenarios["compare"])
    assert (r["where"], r["why_not"]) == ("ray", None)
    assert r["remote"] == r["local"] and list(r["remote"]) == LEARNERS
    for remote, local in r["summaries"].values():
        assert remote == local
    # progress comes per learner, as its task finishes
    assert sorted(p[1] for p in r["progress"]) == [0.5, 1.0] and all(p[2:] == [6, 6] for p in r["progress"])


def test_the_compare_page_says_it_ran_on_the_cluster_and_keeps_where(scenarios):
    r = _ran(scenarios["page"])
    assert r["problems"] == [] and r["errors"] == [] and r["warnings"] == []
    assert "Evaluated on the Ray cluster, one task per learner." in r["texts"]
    assert r["where"] == "ray" and all(len(s) == 10 for s in r["scores"].values())


def test_evaluate_cluster_prints_what_the_local_evaluation_prints(scenarios):
    r = _ran(scenarios["cli"])
    (rc_here, out_here, _), (rc_there, out_there, err_there) = r["here"], r["there"]
    assert rc_here == rc_there == 0, (r["here"], r["there"])
    assert json.loads(out_there) == json.loads(out_here)  # mean, interval, episodes, all of it
    assert "Ray cluster at ray://127.0.0.1:23001" in err_there
    local = json.loads(out_here)
    assert r["text"][0] == 0, r["text"]
    assert f"accuracy {local['accuracy']:.2f}% ± {local['ci95']:.2f} (8 episodes)" in r["text"][1]
    for address, bad in r["bad"].items():
        lines = bad["stderr"].strip().splitlines()
        assert bad["rc"] == 2 and bad["stdout"] == "" and len(lines) == 1, (address, bad)
        assert lines[0].startswith("error: ") and address in lines[0] and "Traceback" not in bad["stderr"]
        assert bad["seconds"] < 30, bad
    rc, out, err = r["gpu"]  # --device cuda, and the head has no GPU: refused, not queued for ever
    assert rc == 2 and out == "" and "Traceback" not in err, r["gpu"]
    assert err.strip().splitlines()[-1].startswith("error: device 'cuda' was asked for") and "has no GPU" in err


def test_an_unreachable_head_falls_back_to_the_local_run_and_says_so(scenarios):
    r = _ran(scenarios["unreachable"])
    assert r["where"] == "local" and "127.0.0.1:23999" in r["why_not"] and "cannot be reached" in r["why_not"]
    assert r["seconds"] < 10  # no hung page: refused in seconds, then run here
    assert r["remote"] == r["local"]
    assert r["problems"] == [] and r["has_table"]
    assert any(w.startswith("The Ray cluster could not be used") for w in r["warnings"]), r["warnings"]
    assert "Evaluated on this app server." in r["texts"]


def test_a_worker_killed_mid_evaluation_is_an_error_that_says_so_and_a_retry_works(scenarios):
    r = _ran(scenarios["kill"])
    assert len(r["killed"]) == 1, r  # the scenario found the task's worker and killed it
    assert r["error"] and r["error"].startswith("evaluating protonet on the Ray cluster failed: ")
    assert "crashed" in r["error"] or "died" in r["error"], r["error"]
    assert r["seconds"] < 60  # reported, not waited for (20,000 episodes would take minutes)
    assert r["retry"] == r["local"]  # the cluster still serves, the same scores
