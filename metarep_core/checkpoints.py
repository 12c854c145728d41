"""Checkpoints: safetensors weights plus JSON metadata in the file's own header.

A checkpoint is one ``.safetensors`` file. Its tensors are the learner's
``state_dict`` (weights and batch-norm statistics); its header's ``__metadata__``
holds one key, ``"metarep"``, whose value is a JSON string with the algorithm, the
learner's config (input shape, n_way, task, hyper-parameters), the dataset and its
parameters, the episode shape, seed, steps, package version, metrics and the time
it was made.

Loading never unpickles: the bytes are checked to be safetensors (an 8-byte
little-endian header length, then a JSON header) *before* anything else, and
tensors are read with ``safetensors.torch.load``, which only copies raw numbers.
A pickle or a ``torch.save`` file is refused by its magic bytes, unread.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import struct
import uuid
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from . import __version__
from .errors import MetaRepError

METADATA_KEY = "metarep"
FORMAT = "metarep-checkpoint"
FORMAT_VERSION = 1
MAX_BYTES = 200 * 1024 * 1024  # a Conv-4 learner is ~0.5 MB; anything huge is not ours
_MAX_HEADER = 16 * 1024 * 1024

# Magic bytes of formats that must never reach a deserializer that can run code.
_PICKLE_PROTOCOL_BYTE = 0x80          # pickle protocol >= 2 starts with \x80 <proto>
_ZIP_MAGIC = b"PK\x03\x04"            # torch.save (zip container around a pickle)


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
    if not path.is_file():
        raise MetaRepError(f"checkpoint {str(path)!r} is not a file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise MetaRepError(f"checkpoint {str(path)!r} is {size / 2**20:.0f} MB; checkpoints are "
                           f"limited to {MAX_BYTES // 2**20} MB")
    return path.read_bytes()


def _parse_header(data: bytes, what: str) -> dict:
    """Check the safetensors framing and return its JSON header, or refuse.

    Runs before any tensor is read: a pickle or a torch.save zip is recognised by
    its magic bytes and never handed to anything that could execute it."""
    not_ours = (f"{what} is not a safetensors checkpoint; MetaRep only loads .safetensors "
                "files (they cannot run code when loaded)")
    # The safetensors framing (8-byte little-endian length, then a JSON object) is
    # checked first: a valid header length may itself start with the pickle byte 0x80.
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 10 else 0
    if n < 2 or n > _MAX_HEADER or 8 + n > len(data) or data[8:9] != b"{":
        if data[:4] == _ZIP_MAGIC:
            raise MetaRepError(f"{what} looks like a torch.save (zip/pickle) file, which can run code "
                               "when loaded and is refused; MetaRep only loads .safetensors checkpoints")
        if data[:1] and data[0] == _PICKLE_PROTOCOL_BYTE:
            raise MetaRepError(f"{what} looks like a Python pickle, which can run code when loaded and "
                               "is refused; MetaRep only loads .safetensors checkpoints")
        if len(data) < 10:
            raise MetaRepError(f"{not_ours} (only {len(data)} bytes)")
        raise MetaRepError(not_ours)
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MetaRepError(f"{not_ours} (its header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise MetaRepError(not_ours)
    return header


def _parse_metadata(header: dict, what: str) -> dict:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise MetaRepError(f"{what} is a safetensors file without MetaRep metadata (no "
                           f"'{METADATA_KEY}' key in its header); it was not saved by MetaRep")
    try:
        meta = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise MetaRepError(f"{what} has corrupt MetaRep metadata (not valid JSON)") from None
    config = meta.get("config") if isinstance(meta, dict) else None
    if (not isinstance(config, dict) or not isinstance(meta.get("algorithm"), str)
            or not all(k in config for k in ("input_shape", "n_way", "task", "hyperparams"))):
        raise MetaRepError(f"{what} has corrupt MetaRep metadata: it needs 'algorithm' and a 'config' "
                           "with input_shape, n_way, task and hyperparams")
    return meta


def read_metadata(source, *, name: str | None = None) -> dict:
    """The metadata of a checkpoint (path or bytes) without building the learner."""
    what = name or (f"checkpoint {str(source)!r}" if not isinstance(source, (bytes, bytearray, memoryview))
                    else "the uploaded checkpoint")
    data = _read_source(source, what)
    return _parse_metadata(_parse_header(data, what), what)


def _check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str,
                 algorithm: str) -> None:
    """Refuse weights that do not fit the rebuilt learner, naming the first bad key."""
    for key, ref in expected.items():
        if key not in state:
            raise MetaRepError(f"{what} does not fit a {algorithm} learner: tensor {key!r} is missing "
                               f"(expected shape {tuple(ref.shape)})")
        if tuple(state[key].shape) != tuple(ref.shape):
            raise MetaRepError(f"{what} does not fit a {algorithm} learner: tensor {key!r} has shape "
                               f"{tuple(state[key].shape)}, expected {tuple(ref.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise MetaRepError(f"{what} does not fit a {algorithm} learner: unexpected tensor {extra[0]!r} "
                           f"(shape {tuple(state[extra[0]].shape)})")
    for key, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise MetaRepError(f"{what} has non-finite values (NaN or inf) in tensor {key!r}")


def load_checkpoint(source, expected_algorithm: str | None = None, map_location="cpu",
                    *, name: str | None = None):
    """Rebuild a learner from a checkpoint: ``(learner, metadata)``.

    ``source`` is a path or the file's bytes (an upload). ``expected_algorithm``
    refuses a checkpoint made by another algorithm. Every refusal is a
    :class:`MetaRepError` saying what was wrong and what is allowed. The learner is
    returned in eval mode on ``map_location``.
    """
    from .learners import available, get_learner_class  # late: learners import heavy modules

    what = name or (f"checkpoint {str(source)!r}" if not isinstance(source, (bytes, bytearray, memoryview))
                    else "the uploaded checkpoint")
    data = _read_source(source, what)
    meta = _parse_metadata(_parse_header(data, what), what)
    algorithm, config = meta["algorithm"], meta["config"]
    if expected_algorithm is not None and algorithm != expected_algorithm:
        raise MetaRepError(f"{what} is for {algorithm}, expected {expected_algorithm}")
    try:
        cls = get_learner_class(algorithm)
    except MetaRepError:
        raise MetaRepError(f"{what} is for algorithm {algorithm!r}, which this version "
                           f"({__version__}) does not have; available: {', '.join(available())}") from None
    try:
        learner = cls(tuple(config["input_shape"]), int(config["n_way"]), task=config["task"],
                      **dict(config["hyperparams"]))
    except MetaRepError as err:
        raise MetaRepError(f"{what} has a config this version cannot rebuild: {err}") from None
    except (TypeError, ValueError) as err:
        raise MetaRepError(f"{what} has corrupt metadata: {err}") from None
    try:
        state = _st_load(data)
    except Exception as err:  # safetensors raises its own error types on bad framing
        raise MetaRepError(f"{what} is a corrupt safetensors file: {err}") from None
    expected = learner.state_dict()
    _check_state(state, expected, what, algorithm)
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
