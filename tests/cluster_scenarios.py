"""Training on a real Ray cluster through the app's job interface (run by tests/test_cluster.py).

Run only inside a loopback-only namespace (``netns_harness.run_in_netns``): it starts
one Ray head there, runs the scenarios named on the command line against it in this
order, and prints one JSON object per scenario on a line of its own, prefixed
``SCENARIO``; the test asserts on them. The scenarios, each through
:class:`app.jobs.TrainingJob` on a :class:`app.job_board.JobBoard` and a SQLite run store:

- ``page``: the Train page (AppTest) starts a run with the cluster set; what the page
  says, the model adopted, kept in the run store and back through the run's link;
- ``train``: a short ProtoNet run on glyphs trains on the cluster; its history, the
  checkpoint kept in the store, the test accuracy of the result;
- ``kill``: the actor's worker process SIGKILLed mid-run; the job's status and error, the
  best checkpoint kept, and a run resumed from it on the same cluster;
- ``unreachable``: an address where nothing listens; how long ``connect`` took to
  refuse, and the job trained in the local pool instead;
- ``cli``: ``python -m metarep_core train --cluster HOST:PORT`` (the GCS form of the
  address) and a bad address.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # app_harness, as the AppTest suites import it

import torch  # noqa: E402

from app.job_board import JobBoard  # noqa: E402
from app.jobs import TrainingJob  # noqa: E402
from app.persistence import slot  # noqa: E402
from metarep_core.checkpoints import checkpoint_to_bytes, load_checkpoint  # noqa: E402
from metarep_core.cluster import ENV_VAR, ClusterUnavailable, connect  # noqa: E402
from metarep_core.data import load_dataset  # noqa: E402
from metarep_core.evaluation import evaluate  # noqa: E402
from metarep_core.learners import get_learner_class  # noqa: E402
from metarep_core.store import RunStore  # noqa: E402
from tests.netns_harness import connect_driver, netns_env, only_loopback, ray_head  # noqa: E402

N_WAY, K_SHOT, N_QUERY = 5, 1, 5
DATASET = "glyphs"
NOWHERE = "ray://127.0.0.1:23999"  # nothing listens there in the namespace


def _dataset():
    return load_dataset(DATASET, seed=0)


def _job(learner, steps: int, val_every: int) -> TrainingJob:
    dataset = _dataset()
    key = ("protonet", DATASET, N_WAY, tuple(dataset.input_shape))
    return TrainingJob(learner, dataset, model_key=key, n_way=N_WAY, k_shot=K_SHOT,
                       n_query=N_QUERY, steps=steps, seed=0, val_every=val_every, val_episodes=10)


def _fresh():
    torch.manual_seed(0)
    return get_learner_class("protonet")(_dataset().input_shape, N_WAY)


def _test_accuracy(learner) -> float:
    return evaluate(learner.eval(), _dataset(), "test", n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY,
                    episodes=40, seed=0)["accuracy"]


def _keep(store: RunStore, job: TrainingJob) -> dict:
    """What persistence.keep_checkpoint does at adoption, then read back as the app does."""
    run = store.create_run()
    data = checkpoint_to_bytes(job.learner, dataset=DATASET, source="trained", steps=job.step)
    store.put_checkpoint(run, slot(job.model_key), data)
    got = store.get_checkpoint(run, slot(job.model_key), algorithm="protonet", n_way=N_WAY,
                               input_shape=job.model_key[3], task="classification")
    learner, _ = load_checkpoint(data)
    return {"stored": got is not None, "stored_equal": got is not None and all(
        torch.equal(a, b) for a, b in zip(got[0].state_dict().values(), learner.state_dict().values()))}


def _submit(job: TrainingJob, board: JobBoard) -> float:
    t0 = time.monotonic()
    job.submit(board)
    return time.monotonic() - t0


def scenario_train(head, board, store) -> dict:
    os.environ[ENV_VAR] = head["client"]
    before = _fresh()
    job = _job(before, steps=40, val_every=20)
    submit_s = _submit(job, board)
    job.wait(240)
    first = {k: v.clone() for k, v in before.state_dict().items()}
    changed = any(not torch.equal(first[k], v) for k, v in job.learner.state_dict().items())
    return {"where": job.where, "notice": job.notice, "status": job.status, "error": job.error,
            "submit_s": round(submit_s, 2),
            "history": len(job.history), "val_curve": len(job.val_curve), "step": job.step,
            "eta_seen": job.eta_s is not None, "weights_changed": changed,
            "accuracy": _test_accuracy(job.learner), "result": job.result, **_keep(store, job)}


def scenario_kill(head, board, store) -> dict:
    os.environ[ENV_VAR] = head["client"]
    job = _job(_fresh(), steps=3000, val_every=5)
    _submit(job, board)
    deadline = time.monotonic() + 180
    while (job.remote is None or job.remote.best is None or job.step < 12) and job.active:
        if time.monotonic() > deadline:
            return {"error": f"no best checkpoint after 180 s (status {job.status}, step {job.step})"}
        time.sleep(0.2)
    pid = job.remote.pid()
    step_at_kill = job.step
    os.kill(pid, signal.SIGKILL)
    job.wait(120)
    out = {"where": job.where, "status": job.status, "error": job.error, "best_kept": job.best_kept,
           "step_at_kill": step_at_kill, "pid": pid, **_keep(store, job)}
    # Resume: a new run from the kept weights, on the same cluster (the app's "Start"),
    # then stopped by the user (the app's "Stop") once it has a validated best.
    kept = {k: v.clone() for k, v in job.learner.state_dict().items()}
    again = _job(job.learner, steps=3000, val_every=3)
    again.submit(board)
    deadline = time.monotonic() + 180
    while again.step < 4 and again.active and time.monotonic() < deadline:
        time.sleep(0.2)
    again.stop()
    again.wait(120)
    out.update(resumed_step=again.step, resumed_result=again.result)
    sent = load_checkpoint(again.remote.checkpoint)[0].state_dict() if again.remote else {}
    out.update(resumed_status=again.status, resumed_error=again.error, resumed_where=again.where,
               resumed_from_kept=bool(sent) and all(torch.equal(kept[k], v) for k, v in sent.items()))
    return out


def scenario_unreachable(head, board, store) -> dict:
    t0 = time.monotonic()
    try:
        connect(NOWHERE)
        refused, message = False, ""
    except ClusterUnavailable as exc:
        refused, message = True, str(exc)
    connect_s = time.monotonic() - t0
    os.environ[ENV_VAR] = NOWHERE
    job = _job(_fresh(), steps=6, val_every=3)
    submit_s = _submit(job, board)
    job.wait(120)
    return {"refused": refused, "message": message, "connect_s": round(connect_s, 2),
            "submit_s": round(submit_s, 2), "where": job.where, "notice": job.notice,
            "status": job.status, "history": len(job.history)}


def scenario_cli(head, board, store) -> dict:
    out_dir = Path(store.url_dir)
    path = out_dir / "cli.safetensors"
    cmd = [sys.executable, "-m", "metarep_core", "train", "--algorithm", "protonet", "--dataset",
           DATASET, "--n-way", "5", "--k-shot", "1", "--n-query", "5", "--steps", "12",
           "--val-every", "6", "--val-episodes", "10", "--out", str(path)]
    env = {k: v for k, v in netns_env().items() if k != ENV_VAR}
    ok = subprocess.run(cmd + ["--cluster", head["gcs"]], env=env, capture_output=True, text=True,
                        timeout=180, cwd=ROOT)
    loaded = None
    if path.exists():
        _, meta = load_checkpoint(path)
        loaded = {"steps": meta.get("steps"), "dataset": meta.get("dataset")}
    t0 = time.monotonic()
    bad = subprocess.run(cmd + ["--cluster", NOWHERE], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    bad_s = time.monotonic() - t0
    # The head has no GPU: --device cuda is refused, not queued for ever.
    gpu = subprocess.run(cmd + ["--cluster", head["gcs"], "--device", "cuda"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    return {"gpu_rc": gpu.returncode, "gpu_stderr": gpu.stderr[-2000:], "rc": ok.returncode, "stdout": ok.stdout[-2000:], "stderr": ok.stderr[-3000:],
            "loaded": loaded, "bad_rc": bad.returncode, "bad_stderr": bad.stderr,
            "bad_s": round(bad_s, 2)}


def scenario_page(head, board, store) -> dict:
    """The Train page itself (AppTest): Start with the cluster set, the page's words, the
    result adopted and kept in the run store, and the link bringing it back."""
    from streamlit.testing.v1 import AppTest

    from app_harness import MAIN, goto, new_app, set_and_run
    os.environ[ENV_VAR] = head["client"]
    at = new_app()
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5, k_shot=1, n_query=2, train_steps=6)
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    job.wait(180)
    at.run()  # main.py adopts the result: the session's model, kept in the run store
    key = job.model_key
    model = at.session_state["models"][key]
    captions = [c.value for c in at.caption]
    run = at.query_params.get("run")
    again = AppTest.from_file(str(MAIN), default_timeout=120)
    again.query_params.update({"run": run})
    again.run()
    goto(again, "train")
    back = again.session_state["models"].get(key)
    return {"where": job.where, "status": job.status, "error": job.error, "captions": captions,
            "source": model.source, "adopted": model.learner is job.learner,
            "exceptions": [str(e.value) for e in at.exception],
            "reopened_source": back.source if back else None,
            "reopened_steps": back.meta.get("steps") if back else None,
            "reopened_equal": bool(back) and all(torch.equal(a, b) for a, b in zip(
                back.learner.state_dict().values(), model.learner.state_dict().values()))}


SCENARIOS = {"page": scenario_page, "train": scenario_train, "kill": scenario_kill, "unreachable": scenario_unreachable,
             "cli": scenario_cli}


def main(names: list[str]) -> int:
    if not only_loopback():
        print("cluster_scenarios.py runs only inside a loopback-only namespace", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    _dataset()  # generated (or read from the cache) once, before any timing
    tmp = Path(tempfile.mkdtemp(prefix="mr-store-"))
    os.environ["METAREP_DB_URL"] = f"sqlite:///{tmp / 'app.sqlite3'}"  # the app's run store
    store = RunStore(f"sqlite:///{tmp / 'runs.db'}")
    store.url_dir = tmp  # the scenarios' scratch folder, removed at the end
    board = JobBoard(workers=1, reap_every_s=3600)
    with ray_head() as head, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        cleanup.callback(store.close)
        # The scenarios' first connection, retried (see connect_driver): the page, the job
        # and the kill then reuse it, as an app server does after its first run there.
        failures = connect_driver(head["client"])
        print("SCENARIO " + json.dumps({"name": "head", "start_s": head["start_s"],
                                        "connect_failures": failures}), flush=True)
        for name in names:
            t0 = time.monotonic()
            try:
                result = SCENARIOS[name](head, board, store)
            except Exception as exc:  # reported, and the next scenario still runs
                import traceback
                result = {"exception": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-3000:]}
            result.update(name=name, seconds=round(time.monotonic() - t0, 1))
            print("SCENARIO " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(SCENARIOS)))
