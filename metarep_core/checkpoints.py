"""Checkpoints: safetensors weights plus JSON metadata in the file's own header.

A checkpoint is one ``.safetensors`` file. Its tensors are the learner's
``state_dict`` (weights and batch-norm statistics); its header's ``__metadata__``
holds one key, ``"metarep"``, whose value is a JSON string with the algorithm, the
learner's config (input shape, n_way, task, hyper-parameters), the dataset and its
parameters, the episode shape, seed, steps, package version, metrics and the time
it was made.

Loading never unpickles: the bytes are checked to be safetensors (an 8-byte
little-endian header length, then a JSON header; :mod:`.safetensors_header`)
*before* anything else, and tensors are read with ``safetensors.torch.load``, which
only copies raw numbers. A pickle or a ``torch.save`` file is refused by its magic
bytes, unread. Nothing is built from a checkpoint before its config is checked
against fixed bounds (:mod:`.limits`) and against what the caller expects
(:func:`check_config`).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import uuid
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from . import __version__
from .errors import MetaRepError
from .limits import (CHECKPOINT_MAX_BYTES, CHECKPOINT_MAX_PARAMETERS, MAX_CHANNELS, MAX_IMAGE_SIDE,
                     MAX_N_WAY, MAX_VECTOR_DIM)
from .safetensors_header import parse_header, shape_of, strict_json

METADATA_KEY = "metarep"
FORMAT = "metarep-checkpoint"
FORMAT_VERSION = 1
MAX_BYTES = CHECKPOINT_MAX_BYTES
TASKS = ("classification", "regression")


# ----------------------------------------------------------------------------- saving
def _jsonable(value):
    """JSON ``default=``: numpy/torch scalars and arrays, paths, tuples, sets."""
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (Path,)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serializable")


def build_metadata(learner, **meta) -> dict:
    """The metadata dict saved with ``learner``: its config, the package version, the
    creation time, and every keyword given (dataset, dataset_params, n_way, k_shot,
    n_query, seed, steps, metrics, ...)."""
    config = learner.config()
    out = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "algorithm": config["algorithm"], "config": config,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in meta.items():
        if key in ("format", "format_version", "algorithm", "config"):
            raise ValueError(f"metadata key {key!r} is reserved")
        out[key] = value
    return out


def _tensors(learner) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; a fresh CPU copy is both.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in learner.state_dict().items()}


def checkpoint_to_bytes(learner, **meta) -> bytes:
    """The checkpoint of ``learner`` as bytes (for a download button)."""
    header = json.dumps(build_metadata(learner, **meta), default=_jsonable, sort_keys=True)
    return _st_save(_tensors(learner), metadata={METADATA_KEY: header})


def save_checkpoint(learner, path, **meta) -> Path:
    """Write ``learner``'s checkpoint to ``path`` atomically (a temp file, then a
    rename, so a reader never sees half a file). Returns the path."""
    path = Path(path)
    data = checkpoint_to_bytes(learner, **meta)
    if path.parent and not path.parent.exists():
        raise MetaRepError(f"cannot write checkpoint {str(path)!r}: folder {str(path.parent)!r} does not exist")
    # A plain open() (not mkstemp, which makes 0600 files) so the file gets the
    # usual permissions from the umask.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


# ----------------------------------------------------------------------------- loading
def _read_source(source, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_BYTES:
            raise MetaRepError(f"{what} is {len(data) / 2**20:.0f} MB; checkpoints are limited "
                               f"to {MAX_BYTES // 2**20} MB")
        return data
    path = Path(source)
    if not path.exists():
        raise MetaRepError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():  # a directory, a FIFO or a device (/dev/zero) is never read
        raise MetaRepError(f"checkpoint {str(path)!r} is not a regular file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise MetaRepError(f"checkpoint {str(path)!r} is {size / 2**20:.0f} MB; checkpoints are "
                           f"limited to {MAX_BYTES // 2**20} MB")
    with open(path, "rb") as f:  # the file may grow after stat(): read no more than the cap
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise MetaRepError(f"checkpoint {str(path)!r} is over {MAX_BYTES // 2**20} MB; checkpoints "
                           f"are limited to {MAX_BYTES // 2**20} MB")
    return data


def _parse_metadata(header: dict, what: str) -> dict:
    raw = header.get("__metadata__", {}).get(METADATA_KEY)
    if raw is None:
        raise MetaRepError(f"{what} is a safetensors file without MetaRep metadata (no "
                           f"'{METADATA_KEY}' key in its header); it was not saved by MetaRep")
    meta = strict_json(raw, what, "its MetaRep metadata",
                        f"{what} has corrupt MetaRep metadata (not valid JSON)")
    config = meta.get("config") if isinstance(meta, dict) else None
    if (not isinstance(config, dict) or not isinstance(meta.get("algorithm"), str)
            or not all(k in config for k in ("input_shape", "n_way", "task", "hyperparams"))):
        raise MetaRepError(f"{what} has corrupt MetaRep metadata: it needs 'algorithm' and a 'config' "
                           "with input_shape, n_way, task and hyperparams")
    return meta


def read_metadata(source, *, name: str | None = None) -> dict:
    """The metadata of a checkpoint (path or bytes) without building the learner."""
    what = _describe_source(source, name)
    data = _read_source(source, what)
    return _parse_metadata(parse_header(data, what), what)


def _describe_source(source, name: str | None) -> str:
    return name or (f"checkpoint {str(source)!r}" if not isinstance(source, (bytes, bytearray, memoryview))
                    else "the uploaded checkpoint")


def _check_input_shape(shape, what: str) -> tuple[int, ...]:
    allowed = (f"(C, H, W) with C in 1..{MAX_CHANNELS} and H, W in 1..{MAX_IMAGE_SIDE}, "
               f"or (D,) with D in 1..{MAX_VECTOR_DIM}")
    if (not isinstance(shape, list) or len(shape) not in (1, 3)
            or not all(type(s) is int for s in shape)):
        raise MetaRepError(f"{what} has input_shape {shape!r}; allowed: {allowed}")
    if len(shape) == 1:
        ok = 1 <= shape[0] <= MAX_VECTOR_DIM
    else:
        ok = 1 <= shape[0] <= MAX_CHANNELS and all(1 <= s <= MAX_IMAGE_SIDE for s in shape[1:])
    if not ok:
        raise MetaRepError(f"{what} has input_shape {shape}, past the limit; allowed: {allowed}")
    return tuple(shape)


def check_config(meta: dict, *, what: str = "the checkpoint", algorithm: str | None = None,
                 n_way: int | None = None, input_shape=None, task: str | None = None) -> dict:
    """The checkpoint's learner config, checked before anything is built from it.

    ``meta`` is a checkpoint's metadata (:func:`read_metadata`). Its config must lie
    within the fixed bounds of :mod:`metarep_core.limits` (input shape, n_way), name
    an algorithm this version has, and carry hyper-parameters in their declared
    ranges; each given expectation (``algorithm``, ``n_way``, ``input_shape``,
    ``task``) must match. Returns ``{"algorithm", "input_shape" (tuple), "n_way",
    "task", "hyperparams" (validated)}``; raises :class:`MetaRepError` naming the
    first value that is past a bound or unexpected.
    """
    from .learners import available, get_learner_class  # late: learners import heavy modules

    name, config = meta["algorithm"], meta["config"]
    if algorithm is not None and name != algorithm:
        raise MetaRepError(f"{what} is for {name}, expected {algorithm}")
    if name not in available():
        raise MetaRepError(f"{what} is for algorithm {name!r}, which this version "
                           f"({__version__}) does not have; available: {', '.join(available())}")
    shape = _check_input_shape(config["input_shape"], what)
    ways = config["n_way"]
    if type(ways) is not int or not 1 <= ways <= MAX_N_WAY:
        raise MetaRepError(f"{what} has n_way {ways!r}; allowed: an integer in 1..{MAX_N_WAY}")
    if config["task"] not in TASKS:
        raise MetaRepError(f"{what} has task {config['task']!r}; allowed: {', '.join(TASKS)}")
    if config["task"] == "regression" and ways != 1:
        raise MetaRepError(f"{what} is a regression checkpoint with n_way {ways}; regression has n_way 1")
    if not isinstance(config["hyperparams"], dict):
        raise MetaRepError(f"{what} has corrupt metadata: hyperparams must be a map of names to values")
    cls = get_learner_class(name)
    if config["task"] not in cls.tasks:
        raise MetaRepError(f"{what} has task {config['task']!r}, which {name} does not support")
    try:
        hyperparams = cls.validate_hyperparams(dict(config["hyperparams"]))
    except MetaRepError as err:
        raise MetaRepError(f"{what} has a config this version cannot rebuild: {err}") from None
    for label, got, want in (("n_way", ways, n_way), ("task", config["task"], task),
                             ("input_shape", shape,
                              None if input_shape is None else tuple(int(s) for s in input_shape))):
        if want is not None and got != want:
            show = (lambda v: "x".join(map(str, v))) if label == "input_shape" else str
            raise MetaRepError(f"{what} has {label} {show(got)}, expected {show(want)}")
    return {"algorithm": name, "input_shape": shape, "n_way": ways, "task": config["task"],
            "hyperparams": hyperparams}


def read_config(source, *, name: str | None = None, **expected) -> tuple[dict, dict]:
    """``(config, metadata)`` of a checkpoint, checked by :func:`check_config` (with the
    same keyword expectations) from its header alone: nothing is built or loaded."""
    what = _describe_source(source, name)
    meta = _parse_metadata(parse_header(_read_source(source, what), what), what)
    return check_config(meta, what=what, **expected), meta


def _check_shapes(shapes: dict[str, tuple[int, ...]], expected: dict[str, torch.Tensor], what: str,
                  algorithm: str) -> None:
    """Refuse weights that do not fit the rebuilt learner, naming the first bad key."""
    for key, ref in expected.items():
        if key not in shapes:
            raise MetaRepError(f"{what} does not fit a {algorithm} learner: tensor {key!r} is missing "
                               f"(expected shape {tuple(ref.shape)})")
        if shapes[key] != tuple(ref.shape):
            raise MetaRepError(f"{what} does not fit a {algorithm} learner: tensor {key!r} has shape "
                               f"{shapes[key]}, expected {tuple(ref.shape)}")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise MetaRepError(f"{what} does not fit a {algorithm} learner: unexpected tensor {extra[0]!r} "
                           f"(shape {shapes[extra[0]]})")


def _all_finite(t: torch.Tensor) -> bool:
    # In chunks: isfinite() of a whole 17 M-number tensor makes temporaries larger than
    # the tensor itself (+114 MB for the largest accepted checkpoint).
    return all(bool(torch.isfinite(chunk).all()) for chunk in t.reshape(-1).split(1 << 20))


def _build(config: dict, what: str):
    from .learners import get_learner_class  # late: learners import heavy modules

    try:
        return get_learner_class(config["algorithm"])(config["input_shape"], config["n_way"],
                                                      task=config["task"], **config["hyperparams"])
    except MetaRepError as err:
        raise MetaRepError(f"{what} has a config this version cannot rebuild: {err}") from None
    except (TypeError, ValueError) as err:  # a learner's own check of its arguments
        raise MetaRepError(f"{what} has corrupt metadata: {err}") from None


def load_checkpoint(source, expected_algorithm: str | None = None, map_location="cpu",
                    *, name: str | None = None, expected_n_way: int | None = None,
                    expected_input_shape=None, expected_task: str | None = None):
    """Rebuild a learner from a checkpoint: ``(learner, metadata)``.

    ``source`` is a path or the file's bytes (an upload). The header is checked
    first (:func:`check_config`: fixed bounds, and each ``expected_*`` given), then
    the learner is sized on the meta device (no memory) and the header's tensor
    shapes compared with it, and only then is it built and are the tensors read: a
    crafted file costs no more than the bounded learner its config describes. Every refusal is a :class:`MetaRepError` saying what
    was wrong and what is allowed. The learner is returned in eval mode on
    ``map_location``.
    """
    what = _describe_source(source, name)
    data = _read_source(source, what)
    header = parse_header(data, what)
    meta = _parse_metadata(header, what)
    config = check_config(meta, what=what, algorithm=expected_algorithm, n_way=expected_n_way,
                          input_shape=expected_input_shape, task=expected_task)
    algorithm = config["algorithm"]
    shapes = {k: shape_of(v) for k, v in header.items() if k != "__metadata__"}
    # Built first on the meta device (shapes only, no memory), so a config whose
    # learner is too large is refused before a single weight is allocated.
    with torch.device("meta"):
        probe = _build(config, what)
    size = sum(t.numel() for t in probe.state_dict().values())
    if size > CHECKPOINT_MAX_PARAMETERS:
        raise MetaRepError(f"{what} describes a {algorithm} learner of {size:,} numbers; checkpoints "
                           f"are limited to {CHECKPOINT_MAX_PARAMETERS:,}")
    _check_shapes(shapes, probe.state_dict(), what, algorithm)
    learner = _build(config, what)
    expected = learner.state_dict()
    try:
        state = _st_load(data)
    except Exception as err:  # safetensors raises its own error types on bad framing
        raise MetaRepError(f"{what} is a corrupt safetensors file: {err}") from None
    for key, t in state.items():
        if t.is_floating_point() and not _all_finite(t):
            raise MetaRepError(f"{what} has non-finite values (NaN or inf) in tensor {key!r}")
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    learner.load_state_dict(state, strict=True)
    learner.to(map_location)
    learner.eval()
    return learner, meta


def checkpoint_summary(meta: dict) -> str:
    """One line describing a checkpoint's metadata, for listings."""
    m = meta.get("metrics") or {}
    parts = [meta.get("algorithm", "?"), str(meta.get("dataset", "?")),
             f"{meta.get('n_way', '?')}-way {meta.get('k_shot', '?')}-shot"]
    for key in ("test_accuracy", "val_accuracy", "test_mse", "val_mse"):
        v = m.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            parts.append(f"{key} {v:.4g}")
            break
    return ", ".join(parts)
