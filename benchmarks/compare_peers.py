#!/usr/bin/env python3
"""Our ``bench`` against the peer libraries, measured in the same run; prints ratios as JSON.

    python benchmarks/compare_peers.py                 # 1 round: `python -m metarep_core bench --json protonet-train
                                                       # maml-train adapt-latency`, then run_all.sh
    python benchmarks/compare_peers.py --rounds 3      # 3 rounds (order alternates), medians at the end
    python benchmarks/compare_peers.py --paired --rounds 3
        # per workload, ours and the peer's back to back (alternating which goes first):
        # pairs measurements closer in time on a machine whose load drifts; runs only the
        # peer subcommands the ratios need (easyfsl, learn2learn SO/FO, adapt-latency)

The peers' environment comes from ../shared/bench/peers/setup_peers.sh (PEERS_VENV,
default ~/.venv-peers). Each round prints one JSON line with its ratios; the last line
is the summary: the median of each ratio over the rounds and whether it meets its goal.

Ratios (goal in brackets):
  protonet_train_speed   ours steps/s / easyfsl steps/s                       [>= 1.15]
  maml_so_speed          ours tasks/s (second order) / learn2learn's           [>= 1.3]
  maml_so_memory         ours peak RSS MB / learn2learn's (second order)       [<= 0.7]
  maml_fo_speed / maml_fo_memory: the same, first order                        [>= 1.3, <= 0.7]
  adapt_protonet         ours ms / plain-torch ProtoNet ms (the peers' script) [<= 0.5]
  adapt_maml             ours ms / learn2learn MAML ms (10 steps)             [<= 0.5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "peers"))
GOALS = {"protonet_train_speed": (">=", 1.15), "maml_so_speed": (">=", 1.3), "maml_so_memory": ("<=", 0.7),
         "maml_fo_speed": (">=", 1.3), "maml_fo_memory": ("<=", 0.7), "adapt_protonet": ("<=", 0.5),
         "adapt_maml": ("<=", 0.5)}


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def run(cmd: list[str], env: dict | None = None) -> list[dict]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        sys.stderr.write(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}\n")
    return json_lines(proc.stdout)


def our_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def ours_all(python: str) -> list[dict]:
    # only the workloads that have a peer (bench also times the other learners)
    return run([python, "-m", "metarep_core", "bench", "--json", "protonet-train", "maml-train",
                "adapt-latency"], our_env())


TIMING: dict = {}  # --warmup/--windows/--per-window/--repeats given on our command line


def ours_one(python: str, workload: str, order: int | None = None) -> list[dict]:
    cmd = [python, "-m", "metarep_core.bench.meta_learning", workload, "--options", json.dumps(TIMING)]
    if order is not None:
        cmd += ["--order", str(order)]
    return run(cmd, our_env())


def peer_timing_args(sub: str) -> list[str]:
    out = []
    if sub == "adapt-latency":
        keys = (("warmup", "--warmup"), ("repeats", "--repeats"))
    else:
        keys = (("warmup", "--warmup"), ("windows", "--windows"), ("per_window", "--per-window"))
    for k, flag in keys:
        if k in TIMING and not (k == "per_window" and sub.startswith("maml")):
            out += [flag, str(TIMING[k])]
    return out


def peers_all(peers_python: str) -> list[dict]:
    env = dict(os.environ)
    env["PY"] = peers_python
    env.setdefault("LOG", "/tmp/run_all.stderr.log")
    return run(["bash", os.path.join(PEERS_DIR, "run_all.sh")], env)


def peers_one(peers_python: str, *args: str) -> list[dict]:
    return run([peers_python, os.path.join(PEERS_DIR, "bench_peers.py"), *args, *peer_timing_args(args[0])])


def find(records: list[dict], bench: str, **match) -> dict | None:
    for r in records:
        if r.get("bench") == bench and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def ratios(ours: list[dict], peers: list[dict]) -> dict:
    out: dict[str, float | None] = {}

    def div(a, b):
        return round(a / b, 3) if a is not None and b else None

    pn, easy = find(ours, "protonet-train"), find(peers, "protonet-easyfsl")
    out["protonet_train_speed"] = div(pn and pn["steps_per_s"], easy and easy["steps_per_s"])
    for order, tag in (("second", "so"), ("first", "fo")):
        m, l2l = find(ours, "maml-train", order=order), find(peers, f"maml-l2l-{tag}")
        out[f"maml_{tag}_speed"] = div(m and m.get("tasks_per_s"), l2l and l2l["tasks_per_s"])
        out[f"maml_{tag}_memory"] = div(m and m.get("peak_rss_mb"), l2l and l2l["peak_rss_mb"])
    a, pa = find(ours, "adapt-latency"), find(peers, "adapt-latency")
    out["adapt_protonet"] = div(a and a["protonet_ms"], pa and pa["protonet_plain_ms"])
    out["adapt_maml"] = div(a and a["maml_ms"], pa and pa["maml_l2l_ms"])
    return out


def raw_figures(ours: list[dict], peers: list[dict]) -> dict:
    pick = {}
    for r in ours:
        key = "ours:" + r["bench"] + (f"-o{r['order']}" if "order" in r else "")
        pick[key] = {k: r[k] for k in ("steps_per_s", "tasks_per_s", "peak_rss_mb", "protonet_ms", "maml_ms")
                     if k in r}
    for r in peers:
        if r.get("bench") in ("protonet-easyfsl", "maml-l2l-so", "maml-l2l-fo", "adapt-latency"):
            pick["peer:" + r["bench"]] = {k: r[k] for k in ("steps_per_s", "tasks_per_s", "peak_rss_mb",
                                                            "protonet_plain_ms", "maml_l2l_ms") if k in r}
    return pick


def paired_round(python: str, peers_python: str, ours_first: bool) -> tuple[list[dict], list[dict]]:
    ours, peers = [], []
    pairs = [(("protonet-train", None), ("protonet-easyfsl",)),
             (("maml-train", 2), ("maml-l2l",)),
             (("maml-train", 1), ("maml-l2l", "--first-order")),
             (("adapt-latency", None), ("adapt-latency",))]
    for (workload, order), peer_args in pairs:
        jobs = [lambda: ours.extend(ours_one(python, workload, order)),
                lambda: peers.extend(peers_one(peers_python, *peer_args))]
        for job in (jobs if ours_first else jobs[::-1]):
            job()
        sys.stderr.write(json.dumps({"pair": [workload, order], "ours": ours[-1:], "peer": peers[-1:]}) + "\n")
        sys.stderr.flush()
    return ours, peers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--paired", action="store_true", help="pair each workload with its peer (see above)")
    ap.add_argument("--python", default=sys.executable, help="our interpreter (default: this one)")
    ap.add_argument("--peers-python", default=os.path.join(
        os.environ.get("PEERS_VENV", os.path.expanduser("~/.venv-peers")), "bin", "python"))
    ap.add_argument("--warmup", type=int, help="warm-up steps (both sides; default: the peers' 5, 3 for latency)")
    ap.add_argument("--windows", type=int, help="timing windows (both sides; default 5)")
    ap.add_argument("--repeats", type=int, help="adapt-latency repeats (both sides; default 20)")
    ap.add_argument("--passive-omp", action="store_true",
                    help="set OMP_WAIT_POLICY=PASSIVE for both sides: on a shared, oversubscribed machine "
                         "spinning OpenMP threads make 2-thread timings several times slower and mostly noise")
    args = ap.parse_args()
    if args.passive_omp:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by every subprocess, ours and the peers'
    for k in ("warmup", "windows", "repeats"):
        if getattr(args, k) is not None:
            TIMING[k] = getattr(args, k)
    if (args.warmup or args.windows or args.repeats) and not args.paired:
        sys.stderr.write("--warmup/--windows/--repeats need --paired (run_all.sh takes no options)\n")
        return 2
    if not os.path.exists(args.peers_python):
        sys.stderr.write(f"peers' python {args.peers_python!r} not found: run {PEERS_DIR}/setup_peers.sh\n")
        return 2
    rounds = []
    for i in range(args.rounds):
        t0 = time.time()
        ours_first = i % 2 == 0
        if args.paired:
            ours, peers = paired_round(args.python, args.peers_python, ours_first)
        elif ours_first:
            ours, peers = ours_all(args.python), peers_all(args.peers_python)
        else:
            peers, ours = peers_all(args.peers_python), ours_all(args.python)
        rec = {"compare": "round", "round": i + 1, "ours_first": ours_first, "paired": args.paired,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
               "ratios": ratios(ours, peers), "figures": raw_figures(ours, peers),
               "load_avg_1m": round(os.getloadavg()[0], 2), "seconds": round(time.time() - t0, 1)}
        rounds.append(rec)
        print(json.dumps(rec), flush=True)
    med = {}
    for key in GOALS:
        vals = [r["ratios"][key] for r in rounds if r["ratios"].get(key) is not None]
        med[key] = round(statistics.median(vals), 3) if vals else None
    met = {k: (None if med[k] is None else (med[k] >= g if op == ">=" else med[k] <= g))
           for k, (op, g) in GOALS.items()}
    print(json.dumps({"compare": "summary", "rounds": len(rounds), "paired": args.paired,
                      "median_ratios": med, "goals": {k: f"{op} {g}" for k, (op, g) in GOALS.items()},
                      "met": met}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
