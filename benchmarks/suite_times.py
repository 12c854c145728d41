"""The test suite, test by test, against an older commit (issue 13: "nothing in the test
suite got slower by more than 10%").

Checks the old commit out into a temporary git worktree, then runs in each tree, one after
the other, the same two phases as ``make test`` (``-n 2 --dist loadfile`` for the
one-thread tests, then the browser, cluster and ``alone`` ones one at a time) on the test
files both trees have, with ``--durations=0``. Per test, setup, call and teardown are
summed. Prints one JSON object: the load average at each phase's start, each phase's wall
time, the totals over the tests both trees ran, and the tests more than 10% and 0.5 s
slower. Run it with nothing else on the machine (about 12 minutes on 2 cores).

    .venv/bin/python benchmarks/suite_times.py --old 77aba9a
    .venv/bin/python benchmarks/suite_times.py --old 77aba9a --files tests/test_cli.py,tests/test_data.py
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLO = "browser or cluster or alone"  # as the Makefile's test target
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def test_files(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in (tree / "tests").glob("test_*.py")}


def run_phases(tree: Path, files: list[str], env: dict) -> tuple[Counter, list[dict]]:
    """Both phases in ``tree``: per test node id, its seconds; and each phase's figures."""
    seconds, phases = Counter(), []
    for name, selection in (("parallel", ["-n", "2", "--dist", "loadfile", "-m", f"not ({SOLO})"]),
                            ("one at a time", ["-m", SOLO])):
        start, load = time.perf_counter(), loadavg()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--durations=0", *selection, *files],
                              cwd=tree, env=env, capture_output=True, text=True)
        for line in done.stdout.splitlines():
            m = DURATION.match(line)
            if m:
                seconds[m.group(3)] += float(m.group(1))
        last = done.stdout.strip().splitlines()[-1:] or [""]
        phases.append({"phase": name, "loadavg_at_start": load, "wall_s": round(time.perf_counter() - start, 1),
                       "exit_code": done.returncode, "summary": last[0]})
    return seconds, phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the commit to compare against (e.g. 77aba9a)")
    ap.add_argument("--files", default="", help="comma-separated test files (default: every file both trees have)")
    ap.add_argument("--chromium", default="/usr/bin/chromium-headless-shell",
                    help="METAREP_CHROMIUM for both trees, so that both drive the same browser")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.chromium and Path(args.chromium).exists():
        env["METAREP_CHROMIUM"] = args.chromium
    # Beside this checkout, so that the old tree finds ../shared (the Omniglot zip) as this one does.
    old_tree = ROOT.parent / f".suite-times-{re.sub(r'[^0-9A-Za-z_.-]', '_', args.old)}"
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(old_tree), args.old],
                   cwd=ROOT, check=True, capture_output=True)
    try:
        common = sorted(test_files(ROOT) & test_files(old_tree))
        files = [f for f in args.files.split(",") if f] or common
        missing = [f for f in files if f not in common]
        if missing:
            raise SystemExit(f"--files: not in both trees: {', '.join(missing)}")
        old, old_phases = run_phases(old_tree, files, env)
        new, new_phases = run_phases(ROOT, files, env)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT,
                       capture_output=True)
    both = [t for t in old if t in new]
    slower = sorted((t for t in both if new[t] > 1.1 * old[t] and new[t] - old[t] > 0.5),
                    key=lambda t: old[t] - new[t])
    print(json.dumps({
        "bench": "suite-times", "old": args.old, "files": len(files),
        "old_phases": old_phases, "new_phases": new_phases,
        "tests_in_both": len(both),
        "old_total_s": round(sum(old[t] for t in both), 1),
        "new_total_s": round(sum(new[t] for t in both), 1),
        "slower_over_10pct_and_0.5s": [{"test": t, "old_s": round(old[t], 2), "new_s": round(new[t], 2)}
                                       for t in slower],
    }, indent=1))


if __name__ == "__main__":
    main()
