"""Compare runs and full evaluations on a real Ray cluster (run by tests/test_cluster_compare.py).

Run only inside a loopback-only namespace (``netns_harness.run_in_netns``): it starts one
Ray head there (2 CPUs: two learners' tasks at once), runs the scenarios named on the
command line in this order, and prints one JSON object per scenario on a line of its
own, prefixed ``SCENARIO``; the test asserts on them. The learners are the shipped
glyphs checkpoints of ProtoNet and ANIL, on the same 6 test episodes (seed 4):

- ``tasks``: ``remote_episode_scores`` directly: each learner's scores, the worker
  processes that ran them, and the same learners scored here;
- ``compare``: ``app.comparison.run_comparison`` with ``METAREP_RAY_ADDRESS`` set: where
  it ran, its progress calls, its scores, and ``compare`` run here;
- ``page``: the Compare page (AppTest) with ``METAREP_RAY_ADDRESS`` set: what it says
  about where it ran, the record kept in the run store;
- ``cli``: ``python -m metarep_core evaluate CKPT --json`` here and with ``--cluster
  ray://...``; the text output with ``--cluster HOST:PORT`` (the GCS form, from the head's
  node); a malformed and an unreachable address; ``--device cuda`` on a head without a GPU;
- ``unreachable``: ``METAREP_RAY_ADDRESS`` where nothing listens: how long the refusal
  took, where the comparison ran, and the Compare page's notice;
- ``kill``: the worker running a learner's task SIGKILLed mid-run: the error, how long it
  took to come, and a retry on the same cluster.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from metarep_core.checkpoints import checkpoint_to_bytes, load_checkpoint  # noqa: E402
from metarep_core.cluster import ENV_VAR  # noqa: E402
from metarep_core.data import load_dataset  # noqa: E402
from netns_harness import connect_driver, netns_env, only_loopback, ray_head  # noqa: E402

DATASET, LEARNERS = "glyphs", ("protonet", "anil")
N_WAY, K_SHOT, N_QUERY, SEED, EPISODES = 5, 1, 3, 4, 6
NOWHERE = "ray://127.0.0.1:23999"  # nothing listens there in the namespace


def _checkpoint(name: str) -> Path:
    return ROOT / "assets" / "checkpoints" / f"{name}_{DATASET}_5w1s.safetensors"


def _models() -> dict:
    from app import state
    return {name: state.SessionModel(load_checkpoint(_checkpoint(name))[0].eval(), "shipped", {}, i + 1)
            for i, name in enumerate(LEARNERS)}


def _settings():
    from app import state
    return state.Settings(dataset=DATASET, n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY, seed=SEED)


def _scores(results: dict) -> dict:
    return {name: [float(v) for v in r["scores"]] for name, r in results.items()}


def scenario_tasks(head: dict) -> dict:
    from metarep_core.cluster.evaluate import remote_episode_scores
    from metarep_core.evaluation import episode_scores
    dataset = load_dataset(DATASET)
    models = _models()
    args = dict(split="test", n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY, episodes=EPISODES, seed=SEED)
    done = []
    got = remote_episode_scores({n: checkpoint_to_bytes(m.learner) for n, m in models.items()}, dataset,
                                address=head["client"], on_done=lambda *a: done.append(list(a)), **args)
    here = {n: [float(v) for v in episode_scores(m.learner, dataset, **args)] for n, m in models.items()}
    return {"remote": {n: [float(v) for v in g["scores"]] for n, g in got.items()}, "local": here,
            "pids": [g["pid"] for g in got.values()], "driver_pid": os.getpid(), "done": done,
            "order": list(got)}


def scenario_compare(head: dict) -> dict:
    from app import comparison
    dataset, models = load_dataset(DATASET), _models()
    os.environ[ENV_VAR] = head["client"]
    calls = []
    try:
        results, where, why_not = comparison.run_comparison(
            models, dataset, _settings(), EPISODES, on_progress=lambda *a: calls.append(list(a)))
    finally:
        del os.environ[ENV_VAR]
    local = comparison.compare(models, dataset, _settings(), EPISODES)
    return {"where": where, "why_not": why_not, "remote": _scores(results), "local": _scores(local),
            "summaries": {n: [r["summary"], local[n]["summary"]] for n, r in results.items()},
            "progress": calls}


def _compare_page(address: str):
    """The Compare page of a fresh session with ``METAREP_RAY_ADDRESS=address``, run once."""
    from app_harness import goto, new_app, set_and_run
    os.environ[ENV_VAR] = address
    try:
        at = new_app(dataset=DATASET, n_query=N_QUERY, seed=SEED)
        goto(at, "compare")
        set_and_run(at, compare_algorithms=list(LEARNERS), compare_episodes=10)
        at.button(key="compare_run").click().run()
    finally:
        del os.environ[ENV_VAR]
    return at


def scenario_page(head: dict) -> dict:
    from app import persistence
    from app_harness import problems, texts
    from metarep_core.store import RunStore
    at = _compare_page(head["client"])
    record = RunStore().get_comparison(at.query_params["run"], persistence.COMPARE_SLOT)
    return {"problems": problems(at), "errors": [e.value for e in at.error], "texts": texts(at),
            "warnings": [w.value for w in at.warning], "where": record["where"],
            "scores": {n: r["scores"] for n, r in record["results"].items()}}


def scenario_cli(head: dict) -> dict:
    env = netns_env()
    cmd = [sys.executable, "-m", "metarep_core", "evaluate", str(_checkpoint("protonet")), "--episodes", "8",
           "--n-query", str(N_QUERY), "--seed", str(SEED), "--json"]
    here = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    there = subprocess.run(cmd + ["--cluster", head["client"]], env=env, capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
    # the text output, through the other form of address: the GCS's, as a driver on the head's node
    text = subprocess.run(cmd[:-1] + ["--cluster", head["gcs"]], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    bad = {}
    for address in ("ray://127.0.0.1:notaport", NOWHERE):
        t0 = time.monotonic()
        got = subprocess.run(cmd + ["--cluster", address], env=env, capture_output=True, text=True, timeout=120,
                             cwd=ROOT)
        bad[address] = {"rc": got.returncode, "stdout": got.stdout, "stderr": got.stderr,
                        "seconds": round(time.monotonic() - t0, 1)}
    gpu = subprocess.run(cmd + ["--cluster", head["client"], "--device", "cuda"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)  # the head has no GPU
    return {"gpu": [gpu.returncode, gpu.stdout, gpu.stderr[-2000:]],
            "here": [here.returncode, here.stdout, here.stderr[-2000:]],
            "there": [there.returncode, there.stdout, there.stderr[-2000:]],
            "text": [text.returncode, text.stdout, text.stderr[-2000:]], "bad": bad}


def scenario_unreachable(head: dict) -> dict:
    from app import comparison
    from app_harness import problems, texts
    dataset, models = load_dataset(DATASET), _models()
    t0 = time.monotonic()
    results, where, why_not = comparison.run_comparison(models, dataset, _settings(), EPISODES,
                                                        address=NOWHERE)
    seconds = time.monotonic() - t0
    local = comparison.compare(models, dataset, _settings(), EPISODES)
    at = _compare_page(NOWHERE)
    return {"where": where, "why_not": why_not, "seconds": round(seconds, 1), "remote": _scores(results),
            "local": _scores(local), "problems": problems(at), "texts": texts(at),
            "warnings": [w.value for w in at.warning], "has_table": any("algorithm" in d.value.columns
                                                                        for d in at.dataframe)}


def _task_pids(title: str) -> list[int]:
    """Processes of this PID namespace whose title (Ray sets ``ray::<task>``) has ``title``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if title in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return pids


def scenario_kill(head: dict) -> dict:
    """The worker running a learner's task SIGKILLed mid-run: the error the caller gets
    and how long it took; then a retry on the same cluster."""
    import signal
    import threading
    from metarep_core.cluster.evaluate import remote_episode_scores
    from metarep_core.errors import MetaRepError
    dataset, models = load_dataset(DATASET), _models()
    data = {"protonet": checkpoint_to_bytes(models["protonet"].learner)}
    args = dict(split="test", n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY, seed=SEED)
    killed, stop = [], threading.Event()

    def killer():
        while not stop.is_set() and not killed:
            for pid in _task_pids("ray::scores_on_node"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.2)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    t0, error = time.monotonic(), None
    try:
        remote_episode_scores(data, dataset, address=head["client"], episodes=20_000, **args)
    except MetaRepError as exc:
        error = str(exc)
    finally:
        stop.set()
        thread.join()
    seconds = time.monotonic() - t0
    retry = remote_episode_scores(data, dataset, address=head["client"], episodes=EPISODES, **args)
    from metarep_core.evaluation import episode_scores
    here = episode_scores(models["protonet"].learner, dataset, episodes=EPISODES, **args)
    return {"killed": killed, "error": error, "seconds": round(seconds, 1),
            "retry": [float(v) for v in retry["protonet"]["scores"]], "local": [float(v) for v in here]}


SCENARIOS = {"tasks": scenario_tasks, "compare": scenario_compare, "page": scenario_page, "cli": scenario_cli,
             "unreachable": scenario_unreachable, "kill": scenario_kill}


def main(names: list[str]) -> int:
    if not only_loopback():
        print("cluster_compare_scenarios.py runs only inside a loopback-only namespace", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    # the app's run store in a file of this run (never the user's own)
    os.environ["METAREP_DB_URL"] = f"sqlite:///{Path(tempfile.mkdtemp(prefix='mr-store-')) / 'runs.db'}"
    load_dataset(DATASET)  # generated (or read from the cache) once, before any timing
    with ray_head(num_cpus=2) as head:
        failures = connect_driver(head["client"])
        print("SCENARIO " + json.dumps({"name": "head", "start_s": head["start_s"],
                                        "connect_failures": failures}), flush=True)
        for name in names:
            t0 = time.monotonic()
            try:
                result = SCENARIOS[name](head)
            except Exception as exc:  # reported, and the next scenario still runs
                import traceback
                result = {"exception": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-3000:]}
            result.update(name=name, seconds_total=round(time.monotonic() - t0, 1))
            print("SCENARIO " + json.dumps(result, default=str), flush=True)
        if "ray" in sys.modules:  # disconnect before the head stops (else the client retries for 20 s)
            sys.modules["ray"].shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(SCENARIOS)))
