"""Checks of what a user's session hands the run store: each refusal a
:class:`MetaRepError` naming the value and what is allowed.

Limits are read from :mod:`metarep_core.limits` when a check runs (not copied at
import), so the README, the tests and the store quote the same numbers.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata

from .. import limits
from ..errors import MetaRepError

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,64}")
LESSON_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SLOT_MAX_CHARS = 128
BLOB_NAME_MAX_CHARS = 256
MAX_STEP = 10_000
MAX_SECONDS = 24 * 3600.0


def token(value, what: str = "run") -> str:
    if not isinstance(value, str) or not TOKEN_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:40]}..."
        raise MetaRepError(f"{shown!r} is not a {what} token; a token is 20 to 64 letters, digits, "
                           f"'-' or '_'")
    return value


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(",", ":"))


def json_text(value, what: str, max_chars: int, *, mapping: bool = True) -> str:
    """``value`` as canonical JSON (sorted keys), refused when it is not JSON (NaN and
    infinities included), not a mapping where one is needed, or longer than ``max_chars``."""
    if mapping and not isinstance(value, dict):
        raise MetaRepError(f"{what} must be a mapping of names to values, got {type(value).__name__}")
    try:
        out = _dumps(value)
    except (TypeError, ValueError, RecursionError) as err:
        raise MetaRepError(f"{what} cannot be stored as JSON: {err}") from None
    if len(out) > max_chars:
        raise MetaRepError(f"{what} is {len(out):,} characters as JSON; at most {max_chars:,} are allowed")
    return out


def printable(value, what: str, max_chars: int) -> str:
    """A one-line text (whitespace runs made one space, ends stripped) without control
    characters, 1..``max_chars`` characters."""
    if not isinstance(value, str):
        raise MetaRepError(f"{what} must be text, got {type(value).__name__}")
    clean = " ".join(value.split())
    if not clean:
        raise MetaRepError(f"{what} is empty; give 1 to {max_chars} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in clean):
        raise MetaRepError(f"{what} {clean[:max_chars]!r} contains control or unassigned characters; "
                           "only printable text is allowed")
    if len(clean) > max_chars:
        raise MetaRepError(f"{what} {clean[:max_chars]!r}... is {len(clean)} characters; at most "
                           f"{max_chars} are allowed")
    return clean


def name(value) -> str:
    return printable(value, "the display name", limits.STORE_NAME_MAX_CHARS)


def slot(value) -> str:
    return printable(value, "the slot", SLOT_MAX_CHARS)


def blob_name(value) -> str:
    return printable(value, "the file name", BLOB_NAME_MAX_CHARS)


def lesson(value) -> str:
    if not isinstance(value, str) or not LESSON_RE.fullmatch(value):
        raise MetaRepError(f"lesson id {str(value)[:80]!r} is not allowed; a lesson id is 1 to 64 letters, "
                           "digits, '_', '.' or '-', starting with a letter or digit")
    return value


def step(value) -> int:
    if type(value) is not int or not 1 <= value <= MAX_STEP:
        raise MetaRepError(f"step {value!r} is not allowed; a step is an integer in 1..{MAX_STEP}")
    return value


def seconds(value) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 <= value <= MAX_SECONDS):
        raise MetaRepError(f"seconds {value!r} is not allowed; give a number in 0..{MAX_SECONDS:.0f} or none")
    return float(value)


def correct(value) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise MetaRepError(f"correct {value!r} is not allowed; give true, false or none")
    return value


def blob_size(data, what: str, per: str, max_bytes: int) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MetaRepError(f"{what} must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise MetaRepError(f"{what} is empty")
    if len(data) > max_bytes:
        raise MetaRepError(f"{what} is {len(data) / 2**20:.1f} MB; the run store keeps at most "
                           f"{max_bytes / 2**20:.0f} MB per {per}")
    return data
