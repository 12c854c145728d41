"""``python -m metarep_core bench``: performance workloads, one JSON object per line.

Every module in this package (except ``_private`` ones) may expose
``WORKLOADS = {name: fn}`` where ``fn(options: dict) -> dict | list[dict]`` runs one
workload and returns its record(s); each record has a ``"bench"`` key. The
workloads and their fields mirror ``../shared/bench/peers/bench_peers.py``, so the
figures can be divided by the peers' (``benchmarks/compare_peers.py`` does that).
Adding a workload is adding a module (or an entry) here.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from typing import Callable

from ..errors import MetaRepError

Workload = Callable[[dict], "dict | list[dict]"]


def discover() -> dict[str, Workload]:
    """All workloads by name, in module then declaration order."""
    found: dict[str, Workload] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.update(getattr(module, "WORKLOADS", {}))
    return found


def _line(record: dict) -> str:
    """A one-line human summary of a record (for ``bench`` without ``--json``)."""
    skip = {"bench", "torch", "threads"}
    parts = [f"{k}={v}" for k, v in record.items() if k not in skip and not isinstance(v, (list, dict))]
    return f"{record.get('bench', '?')}: " + ", ".join(parts)


def run(names: list[str] | None = None, out=None, as_json: bool = True, options: dict | None = None,
        **kwargs) -> list[dict]:
    """Run the named workloads (default: all), print each record as it comes, return them all.

    ``as_json`` (alias ``json``): one JSON object per line; otherwise a readable line.
    ``options`` go to every workload (``warmup``, ``windows``, ``per_window``, ``repeats``).
    Unknown names raise :class:`MetaRepError` listing the available ones.
    """
    out = sys.stdout if out is None else out
    as_json = kwargs.pop("json", as_json)
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    workloads = discover()
    names = list(workloads) if not names else list(names)
    unknown = [n for n in names if n not in workloads]
    if unknown:
        raise MetaRepError(f"unknown benchmark {unknown[0]!r}; available: {', '.join(workloads)}")
    records: list[dict] = []
    for name in names:
        result = workloads[name](dict(options or {}))
        for rec in result if isinstance(result, list) else [result]:
            records.append(rec)
            out.write((json.dumps(rec) if as_json else _line(rec)) + "\n")
            out.flush()
    return records
