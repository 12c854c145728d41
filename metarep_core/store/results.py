"""Evaluation results kept in a run: what a Compare run computed, so that a reload, the
run's link in another browser, or another app server shows the same table without
running it again (issue 14: nothing a user made lives only in one server's memory).

A comparison is stored as a blob of ``kind`` "result": canonical JSON (UTF-8), never
a pickle. It is checked twice: :func:`check_comparison` before it is written, and
again when it is read back, because a row can be edited in the database or written by
an older MetaRep. A row that fails the check is refused with a :class:`MetaRepError`
naming what is wrong (the app says so and shows no table); it never reaches a page.

The record (``version`` :data:`VERSION`)::

    {"format": "metarep-comparison", "version": 1,
     "dataset": "glyphs",                       # the app's dataset id (an upload's id included)
     "task": "classification" | "regression",
     "episode_args": {"split", "n_way", "k_shot", "n_query", "seed"},  # what episode_scores took
     "episodes": 20,                            # E, the episodes each learner ran
     "learners": ["protonet", "maml"],          # the order they were chosen (and shown) in
     "where": "local" | "ray",                  # where the evaluation ran
     "results": {name: {"scores": [E floats],   # accuracy in [0, 1] per episode, or MSE >= 0
                        "summary": {"accuracy"|"mse": float, "ci95": float},
                        "source": "shipped" | "fresh" | "trained" | "uploaded",
                        "seconds_per_query": float,
                        "model": "<SHA-256 of the weights it ran with>"}}}

``summary`` must be what :func:`metarep_core.evaluation.summarize` gives for
``scores`` (checked on reading), so a table can never disagree with its own scores.
"""
from __future__ import annotations

import json
import math
import re

from .. import limits
from ..errors import MetaRepError
from . import checks

RESULT = "result"                 # the blobs' kind
FORMAT = "metarep-comparison"
VERSION = 1
TASKS = ("classification", "regression")
WHERE = ("local", "ray")
SOURCES = ("shipped", "fresh", "trained", "uploaded")
EPISODE_ARGS = {"split": str, "n_way": int, "k_shot": int, "n_query": int, "seed": int}
SPLITS = ("train", "val", "test", "all")
RECORD_KEYS = {"format", "version", "dataset", "task", "episode_args", "episodes", "learners", "where",
               "results"}
ROW_KEYS = {"scores", "summary", "source", "seconds_per_query", "model"}
DIGEST_RE = re.compile(r"[0-9a-f]{64}")
NAME_MAX_CHARS = 64
MAX_LEARNERS = 64
SUMMARY_REL_TOL = 1e-12           # the same floats summarised again: equal up to rounding


def _number(value, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise MetaRepError(f"{what} is {value!r}; a finite number in [{low}, {high}] is allowed")
    return float(value)


def _integer(value, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MetaRepError(f"{what} is {value!r}; an integer in {low}..{high} is allowed")
    return value


def _keys(value, wanted: set, what: str) -> dict:
    if not isinstance(value, dict):
        raise MetaRepError(f"{what} must be a mapping, got {type(value).__name__}")
    if set(value) != wanted:
        missing = sorted(wanted - set(value))[:5]
        extra = sorted(str(k)[:40] for k in set(value) - wanted)[:5]
        raise MetaRepError(f"{what} must have the fields {sorted(wanted)}"
                           + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
    return value


def check_comparison(record) -> dict:
    """``record`` if it is a well-formed comparison (see the module docstring), else a
    :class:`MetaRepError` naming the first field that is wrong."""
    from ..evaluation import MAX_EPISODES, summarize  # late: numpy and the episode sampler
    import numpy as np

    if not isinstance(record, dict):
        raise MetaRepError(f"a stored comparison must be a JSON object, got {type(record).__name__}")
    if record.get("format") != FORMAT:
        raise MetaRepError(f"this is not a MetaRep comparison (format {str(record.get('format'))[:40]!r})")
    if record.get("version") != VERSION:
        raise MetaRepError(f"this comparison was kept by another version of MetaRep (format version "
                           f"{str(record.get('version'))[:20]}, this one reads {VERSION}); run it again")
    _keys(record, RECORD_KEYS, "the comparison")
    checks.printable(record["dataset"], "the comparison's dataset", 256)
    if record["task"] not in TASKS:
        raise MetaRepError(f"the comparison's task is {str(record['task'])[:40]!r}; allowed: {', '.join(TASKS)}")
    if record["where"] not in WHERE:
        raise MetaRepError(f"the comparison ran at {str(record['where'])[:40]!r}; allowed: {', '.join(WHERE)}")
    args = _keys(record["episode_args"], set(EPISODE_ARGS), "the comparison's episode arguments")
    if args["split"] not in SPLITS:
        raise MetaRepError(f"the comparison's split is {str(args['split'])[:40]!r}; allowed: {', '.join(SPLITS)}")
    for name in ("n_way", "k_shot", "n_query"):
        _integer(args[name], f"the comparison's {name}", 1, 100_000)
    _integer(args["seed"], "the comparison's seed", 0, limits.MAX_SEED)
    episodes = _integer(record["episodes"], "the comparison's episode count", 1, MAX_EPISODES)
    learners = record["learners"]
    if (not isinstance(learners, list) or not 1 <= len(learners) <= MAX_LEARNERS
            or len(set(map(str, learners))) != len(learners)):
        raise MetaRepError(f"the comparison's learners must be a list of 1 to {MAX_LEARNERS} distinct names")
    for name in learners:
        checks.printable(name, "a learner's name", NAME_MAX_CHARS)
    results = _keys(record["results"], set(learners), "the comparison's results")
    regression = record["task"] == "regression"
    metric = "mse" if regression else "accuracy"
    for name in learners:
        row = _keys(results[name], ROW_KEYS, f"the result of {name!r}")
        scores = row["scores"]
        if not isinstance(scores, list) or len(scores) != episodes:
            raise MetaRepError(f"the result of {name!r} has {len(scores) if isinstance(scores, list) else 'no'} "
                               f"scores; the comparison ran {episodes} episodes")
        for i, score in enumerate(scores):
            _number(score, f"{name!r}'s score on episode {i}", 0.0, math.inf if regression else 1.0)
        summary = _keys(row["summary"], {metric, "ci95"}, f"the summary of {name!r}")
        expected = summarize(np.asarray(scores, dtype=np.float64), regression=regression)
        for key, value in expected.items():
            given = _number(summary[key], f"{name!r}'s {key}")
            if not math.isclose(given, value, rel_tol=SUMMARY_REL_TOL, abs_tol=1e-12):
                raise MetaRepError(f"{name!r}'s {key} is {given!r} but its scores give {value!r}: the stored "
                                   "comparison was altered")
        if row["source"] not in SOURCES:
            raise MetaRepError(f"{name!r}'s model source is {str(row['source'])[:40]!r}; allowed: "
                               f"{', '.join(SOURCES)}")
        _number(row["seconds_per_query"], f"{name!r}'s seconds per query", 0.0, checks.MAX_SECONDS)
        if not isinstance(row["model"], str) or not DIGEST_RE.fullmatch(row["model"]):
            raise MetaRepError(f"{name!r}'s model digest is not a SHA-256 (64 lowercase hex digits)")
    return record


class ResultsMixin:
    """Comparisons in a run (used with :class:`.runs.RunStoreBase`)."""

    def put_comparison(self, token: str, slot: str, record: dict):
        """Keep ``record`` (checked by :func:`check_comparison`) as the run's comparison in
        ``slot``, replacing what was there. Returns the blob's :class:`.runs.BlobInfo`."""
        check_comparison(record)
        text = checks.json_text(record, "the comparison", limits.STORE_RESULT_MAX_BYTES)
        data = text.encode("utf-8")
        checks.blob_size(data, "the comparison", "result", limits.STORE_RESULT_MAX_BYTES)
        return self._put_blob(token, RESULT, checks.slot(slot), "comparison.json", data)

    def get_comparison(self, token: str, slot: str) -> dict:
        """The comparison kept in ``slot``, checked again (:func:`check_comparison`): a row
        that was altered, damaged or written in another format is a :class:`MetaRepError`."""
        _, data, _ = self._get_blob(token, RESULT, slot)
        if len(data) > limits.STORE_RESULT_MAX_BYTES:
            raise MetaRepError(f"the stored comparison is {len(data):,} bytes; at most "
                               f"{limits.STORE_RESULT_MAX_BYTES:,} are read")
        try:
            record = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise MetaRepError("the stored comparison is not JSON (it was altered or damaged)") from None
        return check_comparison(record)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")
