"""The safetensors framing, read strictly and before anything else in the file.

A safetensors file is an 8-byte little-endian header length, a JSON header, then the
raw tensor bytes. The header names each tensor's dtype, shape and byte range and may
carry ``__metadata__`` (a map of names to strings). Everything a crafted file could
use against its reader is refused here, from the header alone: a pickle or a
torch.save zip (by magic bytes), a header past 1 MB, JSON that is not JSON
(``Infinity``, ``NaN``) or nested deep enough to exhaust the parser's recursion,
a ``__metadata__`` that is not a map of strings, and tensors whose shapes disagree
with their byte ranges or hold more numbers than a checkpoint may.
"""
from __future__ import annotations

import json
import math
import struct

from .errors import MetaRepError
from .limits import CHECKPOINT_MAX_HEADER_BYTES, CHECKPOINT_MAX_PARAMETERS

_MAX_HEADER = CHECKPOINT_MAX_HEADER_BYTES
# Bytes per number of each safetensors dtype (the header's sizes are checked against them).
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

# Magic bytes of formats that must never reach a deserializer that can run code.
_PICKLE_PROTOCOL_BYTE = 0x80          # pickle protocol >= 2 starts with \x80 <proto>
_ZIP_MAGIC = b"PK\x03\x04"            # torch.save (zip container around a pickle)


def _refuse_constant(name: str):
    # json.loads accepts Infinity/NaN, which are not JSON and break int() later (OverflowError).
    raise MetaRepError(f"its header holds {name}, which is not a JSON number")


def strict_json(text: str, what: str, part: str, invalid: str):
    """``json.loads`` that refuses what a header never holds (Infinity, NaN, nesting deep
    enough to exhaust the parser's recursion) with a MetaRepError naming ``part``;
    ``invalid`` is the message for text that is not JSON at all."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except MetaRepError as err:
        raise MetaRepError(f"{what} is refused: {part} {str(err).removeprefix('its header ')}") from None
    except RecursionError:
        raise MetaRepError(f"{what} is refused: {part} is nested too deeply to be a checkpoint") from None
    except (TypeError, ValueError):  # JSONDecodeError, and ints past Python's digit limit
        raise MetaRepError(invalid) from None


def parse_header(data: bytes, what: str) -> dict:
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
        if _MAX_HEADER < n and 8 + n <= len(data) and data[8:9] == b"{":
            raise MetaRepError(f"{what} has a {n / 2**20:.1f} MB header; checkpoint headers are "
                               f"limited to {_MAX_HEADER // 2**10} KB")
        raise MetaRepError(not_ours)
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise MetaRepError(f"{not_ours} (its header is not valid JSON)") from None
    header = strict_json(text, what, "its header", f"{not_ours} (its header is not valid JSON)")
    if not isinstance(header, dict):
        raise MetaRepError(not_ours)
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise MetaRepError(f"{what} is a corrupt safetensors file: its '__metadata__' must map names "
                           f"to strings, got {type(metadata).__name__}")
    _check_tensor_index(header, len(data) - 8 - n, what)
    return header


def shape_of(entry) -> tuple[int, ...] | None:
    shape = entry.get("shape") if isinstance(entry, dict) else None
    if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
        return None
    return tuple(shape)


def _check_tensor_index(header: dict, body_bytes: int, what: str) -> None:
    """Every tensor's dtype, shape and byte range agree with each other and with the
    file, and all tensors together hold at most CHECKPOINT_MAX_PARAMETERS numbers."""
    total = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        shape = shape_of(entry)
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (shape is None or dtype not in _DTYPE_BYTES or not isinstance(offsets, list)
                or len(offsets) != 2 or not all(type(o) is int for o in offsets)):
            raise MetaRepError(f"{what} is a corrupt safetensors file: tensor {key!r} needs a dtype "
                               "(F32, ...), a shape of non-negative integers and two data offsets")
        count = math.prod(shape)
        begin, end = offsets
        if not 0 <= begin <= end <= body_bytes or end - begin != count * _DTYPE_BYTES[dtype]:
            raise MetaRepError(f"{what} is a corrupt safetensors file: tensor {key!r} of shape "
                               f"{list(shape)} ({dtype}) does not fit its byte range {offsets}")
        total += count
    if total > CHECKPOINT_MAX_PARAMETERS:
        raise MetaRepError(f"{what} holds {total:,} numbers; checkpoints are limited to "
                           f"{CHECKPOINT_MAX_PARAMETERS:,}")
