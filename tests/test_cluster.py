"""Training on a real Ray cluster, through the app's job interface and the CLI (issue 14).

One Ray head (2 CPUs) serves every scenario of ``tests/cluster_scenarios.py``, run once
per module in a network namespace that has only loopback (``tests/netns_harness.py``):
Ray binds the machine's interface whatever it is told, so nothing Ray-related runs in
the machine's own namespace. Each test below asserts on one scenario's JSON.
"""
from __future__ import annotations

import json
import sys

import pytest

from tests.netns_harness import run_in_netns

pytestmark = pytest.mark.cluster

SCENARIOS = ("page", "train", "kill", "unreachable", "cli")
CHANCE = 100.0 / 5  # 5-way episodes


@pytest.fixture(scope="module")
def results() -> dict:
    proc = run_in_netns([sys.executable, "tests/cluster_scenarios.py", *SCENARIOS], timeout=600)
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("SCENARIO "):
            item = json.loads(line[len("SCENARIO "):])
            found[item["name"]] = item
    missing = [n for n in ("head", *SCENARIOS) if n not in found]
    assert proc.returncode == 0 and not missing, (
        f"scenario script exited {proc.returncode}, missing {missing}:\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-5000:]}")
    for name, item in found.items():
        assert "exception" not in item, f"scenario {name} raised:\n{item.get('traceback')}"
    return found


def test_the_namespace_has_only_loopback():
    """What the scenarios run in: a namespace whose only interface is lo (up), so Ray
    cannot reach or bind anything but 127.0.0.1."""
    proc = run_in_netns(["ip", "-o", "link"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    names = [line.split(":")[1].strip() for line in proc.stdout.splitlines() if line.strip()]
    assert names == ["lo"], proc.stdout
    assert "UP" in proc.stdout.split(":")[2], proc.stdout


def test_the_train_page_trains_on_the_cluster_and_keeps_the_result(results):
    r = results["page"]
    assert r["exceptions"] == [] and r["error"] is None and r["status"] == "done", r
    assert r["where"] == "ray://127.0.0.1:23001", r
    assert "Runs on the Ray cluster at ray://127.0.0.1:23001." in r["captions"], r["captions"]
    assert r["source"] == "trained" and r["adopted"], r
    # The run's link (a reload, another server) brings the cluster-trained model back.
    assert r["reopened_source"] == "trained" and r["reopened_steps"] == 6 and r["reopened_equal"], r


def test_a_job_submitted_through_the_app_trains_on_the_cluster(results):
    r = results["train"]
    assert r["where"] == "ray://127.0.0.1:23001" and r["notice"] is None, r
    assert r["status"] == "done" and r["error"] is None, r
    # The steps came back through the job's progress: every step, two validations, an ETA.
    assert r["history"] == 40 and r["step"] == 40 and r["val_curve"] == 2 and r["eta_seen"], r
    assert r["weights_changed"], "the job's learner is still the one it was given"
    assert r["stored"] and r["stored_equal"], "the trained checkpoint did not come back from the store"
    assert r["accuracy"] > CHANCE + 20, f"test accuracy {r['accuracy']:.1f}% after 40 steps"
    assert r["submit_s"] < 5, "submitting waited for Ray"


def test_a_killed_worker_fails_the_job_and_keeps_the_best_checkpoint(results):
    r = results["kill"]
    assert r["where"].startswith("ray://") and r["status"] == "failed", r
    assert "lost" in r["error"] and "died" in r["error"], r["error"]
    assert r["best_kept"] is not None and 5 <= r["best_kept"] <= r["step_at_kill"] + 5, r
    assert r["stored"] and r["stored_equal"], "the kept checkpoint is not in the store"
    # The app went on: the user trained on from the kept weights, on the same cluster,
    # and stopped that run; it ended "stopped" between steps with its best weights.
    assert r["resumed_where"].startswith("ray://") and r["resumed_error"] is None, r
    assert r["resumed_from_kept"], "the resumed run did not start from the kept weights"
    assert r["resumed_status"] == "stopped" and 4 <= r["resumed_step"] < 100, r
    assert r["resumed_result"].get("best_step", 0) >= 3, r


def test_an_unreachable_head_is_said_at_once_and_the_job_trains_here(results):
    r = results["unreachable"]
    assert r["refused"] and r["connect_s"] < 5 and r["submit_s"] < 5, r
    assert "ray://127.0.0.1:23999" in r["message"] and "cannot be reached" in r["message"], r
    assert r["where"] == "local" and "ray://127.0.0.1:23999" in r["notice"], r
    assert r["status"] == "done" and r["history"] == 6, r


def test_the_cli_trains_on_the_cluster_with_its_usual_progress(results):
    r = results["cli"]
    assert r["rc"] == 0, r["stderr"]
    assert "protonet on glyphs" in r["stderr"] and "12/12" in r["stderr"], r["stderr"]
    assert r["stdout"].startswith("saved ") and "best val_accuracy" in r["stdout"], r["stdout"]
    assert r["loaded"] == {"steps": r["loaded"]["steps"], "dataset": "glyphs"} and r["loaded"]["steps"] in (6, 12)
    # A bad address: one line, the CLI's user-error status, no wait.
    assert r["bad_rc"] == 2 and r["bad_s"] < 20, r
    lines = [line for line in r["bad_stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and "ray://127.0.0.1:23999" in lines[0], r["bad_stderr"]
    # --device cuda on a cluster without a GPU: said at once, not queued for ever.
    gpu = [line for line in r["gpu_stderr"].splitlines() if line.startswith("error:")]
    assert r["gpu_rc"] == 2 and len(gpu) == 1 and "has no GPU" in gpu[0], r["gpu_stderr"]
