"""The README's Omniglot table and ``assets/results/omniglot.json`` (shown on each
learner's theory page) from the training and evaluation runs' JSON output.

    python scripts/omniglot_table.py RUNS_DIR [--write]

``RUNS_DIR`` holds, per learner, ``train_<name>.json`` (``python -m metarep_core train
... --json``) and ``eval_<name>_<N>w<K>s.json`` (``python -m metarep_core evaluate ...
--json``) for 5w1s, 5w5s and 20w1s, and for MANN/DNC ``pres_<name>.txt``
(``scripts/presentation_accuracy.py``). Prints the table's rows (markdown); with
``--write`` also writes the JSON. Nothing is computed here that the runs did not measure.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "results" / "omniglot.json"
ORDER = ("maml", "reptile", "imaml", "anil", "protonet", "siamese", "matching", "mann", "dnc",
         "metanet", "versa", "abml")
TITLES = {"maml": "MAML (second order)", "reptile": "Reptile", "imaml": "iMAML", "anil": "ANIL",
          "protonet": "ProtoNet", "siamese": "Siamese networks", "matching": "Matching Networks",
          "mann": "MANN", "dnc": "DNC", "metanet": "Meta-Networks", "versa": "VERSA", "abml": "ABML"}
# The papers' Omniglot 5-way 1-shot / 5-shot (%), quoted for orientation (their split is
# background/evaluation, with far longer training; see the README).
PAPER = {"maml": "98.7 / 99.9", "reptile": "97.68 / 99.48", "imaml": "99.16 / 99.67",
         "anil": "20-way 96.2 / 98.0", "protonet": "98.8 / 99.7", "siamese": "96.7 / 98.4",
         "matching": "98.1 / 98.9", "mann": "2nd presentation 82.8", "dnc": None,
         "metanet": "98.95 / —", "versa": "99.70 / 99.75", "abml": None}
SETTINGS = ("5w1s", "5w5s", "20w1s")


def read_runs(runs: Path) -> dict:
    learners = {}
    for name in ORDER:
        train = runs / f"train_{name}.json"
        if not train.is_file() or not train.read_text().strip():  # not run, or still running
            continue
        t = json.loads(train.read_text())
        entry = {"steps": int(t["steps_done"]), "best_step": t.get("best_step"),
                 "train_s": round(float(t["elapsed_s"]), 1), "paper": PAPER[name], "note": None}
        for s in SETTINGS:
            path = runs / f"eval_{name}_{s}.json"
            text = path.read_text().strip() if path.is_file() else ""
            if text:
                e = json.loads(text)
                entry[s] = [round(e["accuracy"], 2), round(e["ci95"], 2)]
            else:
                entry[s] = None
        pres = runs / f"pres_{name}.txt"
        if pres.is_file():
            found = dict(re.findall(r"presentation\s+(\d+):\s+([\d.]+ ± [\d.]+)", pres.read_text()))
            entry["presentations"] = {p: found.get(p) for p in ("1", "2", "5", "10")}
        learners[name] = entry
    return learners


def row(name: str, e: dict) -> str:
    def cell(v):
        return "—" if not v else f"{v[0]:.2f} ± {v[1]:.2f}"
    extra = ""
    if e.get("presentations"):
        extra = " (presentation 1/2/5/10: " + " / ".join(
            (v or "—").split(" ±")[0] for v in e["presentations"].values()) + ")"
    return (f"| {TITLES[name]} | {e['steps']} ({e['best_step']}) | {e['train_s']:.0f} s | "
            f"{cell(e['5w1s'])}{extra} | {cell(e['5w5s'])} | {cell(e['20w1s'])} | {e['paper'] or '—'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    learners = read_runs(args.runs)
    if not learners:
        sys.exit(f"no train_<name>.json in {args.runs}")
    print("| algorithm | steps (kept) | train time | 5-way 1-shot | 5-way 5-shot | 20-way 1-shot | paper, Omniglot 1-shot / 5-shot |")
    print("|---|---|---|---|---|---|---|")
    for name, e in learners.items():
        print(row(name, e))
    if args.write:
        doc = {"protocol": {
            "en": "bundled Omniglot, 6 test alphabets never trained on, 600 episodes, 95% CI; "
                  "trained on one CPU thread",
            "zh": "内置 Omniglot，6 个训练中从未见过的测试字母表，600 个任务，95% 置信区间；单个 CPU 线程训练"},
            "learners": learners}
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
