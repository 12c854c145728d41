"""Numbers a researcher takes away from the Compare page: CSV and JSON texts."""
from __future__ import annotations

import csv
import io
import json


def per_episode_table(results: dict, scale: float) -> dict[str, list]:
    """{"episode": [0..E-1], <algorithm>: [score per episode]} (accuracy in percent or MSE)."""
    n = len(next(iter(results.values()))["scores"]) if results else 0
    table: dict[str, list] = {"episode": list(range(n))}
    for name, r in results.items():
        table[name] = [round(float(v) * scale, 4) for v in r["scores"]]
    return table


def comparison_csv(results: dict, scale: float) -> str:
    table = per_episode_table(results, scale)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(table))
    writer.writerows(zip(*table.values()))
    return buf.getvalue()


def comparison_json(results: dict, scale: float, *, metric: str, settings: dict, dataset: str) -> str:
    payload = {"settings": settings, "dataset": dataset, "metric": metric,
               "results": {name: {**r["summary"], "source": r["source"],
                                  "per_episode": [float(v) * scale for v in r["scores"]]}
                           for name, r in results.items()}}
    return json.dumps(payload, indent=2)
