"""Numbers a researcher takes away from the Compare page: CSV and JSON texts."""
from __future__ import annotations

import csv
import io
import json
import math

PAIRED_COLUMNS = ("learner", "reference", "mean", "ci95", "low", "high", "wins", "ties",
                  "losses", "episodes")


def per_episode_table(results: dict, scale: float) -> dict[str, list]:
    """{"episode": [0..E-1], <algorithm>: [score per episode]} (accuracy in percent or MSE);
    a row with fewer episodes (the student's) is padded with None."""
    n = max((len(r["scores"]) for r in results.values()), default=0)
    table: dict[str, list] = {"episode": list(range(n))}
    for name, r in results.items():
        scores = [round(float(v) * scale, 4) for v in r["scores"]]
        table[name] = scores + [None] * (n - len(scores))
    return table


def _csv(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(header))
    writer.writerows(rows)
    return buf.getvalue()


def comparison_csv(results: dict, scale: float) -> str:
    table = per_episode_table(results, scale)
    return _csv(table, zip(*table.values()))


def _finite(value):
    """NaN (an interval from one episode) as None: JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value


def paired_csv(paired: list[dict]) -> str:
    """The paired differences (comparison.paired_differences), one row per pair."""
    return _csv(PAIRED_COLUMNS, ([_finite(row[c]) for c in PAIRED_COLUMNS] for row in paired))


def comparison_json(results: dict, scale: float, *, metric: str, settings: dict, dataset: str,
                    paired: list[dict] | None = None) -> str:
    payload = {"settings": settings, "dataset": dataset, "metric": metric,
               "results": {name: {**{k: _finite(v) for k, v in r["summary"].items()},
                                  "source": r["source"],
                                  "seconds_per_query": r.get("seconds_per_query"),
                                  "per_episode": [float(v) * scale for v in r["scores"]]}
                           for name, r in results.items()}}
    if paired is not None:
        payload["paired"] = [{c: _finite(row[c]) for c in PAIRED_COLUMNS} for row in paired]
    return json.dumps(payload, indent=2)
