"""A small on-disk cache for generated datasets.

Files live in ``$METAREP_CACHE`` (default ``~/.cache/metarep_explorer``): one ``.npy``
(uint8 array, loaded with ``allow_pickle=False``) and one ``.json`` (the generation
parameters plus JSON-able extras such as class names) per key. The key is a hash of
every generation parameter including the generator version, so a change to the
generator never reads a stale file. The cache is an optimisation only: any problem
reading or writing it (read-only home, a corrupt file) falls back to generating.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np


def cache_dir() -> Path:
    return Path(os.environ.get("METAREP_CACHE") or Path.home() / ".cache" / "metarep_explorer")


def cache_key(kind: str, params: dict) -> str:
    blob = json.dumps(params, sort_keys=True).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def cached_array(kind: str, params: dict, make: Callable[[], tuple[np.ndarray, dict]],
                 enabled: bool = True) -> tuple[np.ndarray, dict]:
    """``make()`` -> (uint8 array, extras), read from / written to the disk cache."""
    if not enabled or os.environ.get("METAREP_CACHE", "").lower() in {"0", "off", "none"}:
        return make()
    root = cache_dir()
    key = cache_key(kind, params)
    npy, meta = root / f"{key}.npy", root / f"{key}.json"
    try:
        info = json.loads(meta.read_text())
        if info.get("params") == params:
            arr = np.load(npy, allow_pickle=False)
            # A truncated or swapped file must not pass for the dataset.
            if list(arr.shape) == info["shape"] and str(arr.dtype) == info["dtype"]:
                return arr, info["extras"]
    except (OSError, ValueError, KeyError, EOFError):
        pass
    arr, extras = make()
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Write to temporary names and rename, so a concurrent reader never sees half a file.
        tmp = f".{os.getpid()}.tmp"
        with open(str(npy) + tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        Path(str(meta) + tmp).write_text(json.dumps({"params": params, "shape": list(arr.shape),
                                                    "dtype": str(arr.dtype), "extras": extras}))
        os.replace(str(npy) + tmp, npy)
        os.replace(str(meta) + tmp, meta)
    except OSError:
        pass
    return arr, extras
