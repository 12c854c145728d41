"""The measured Omniglot accuracy of each learner, read for its theory page.

``assets/results/omniglot.json`` is written by ``scripts/omniglot_table.py`` from the
training and evaluation runs (nothing here computes a figure). Its shape::

    {"protocol": {"en": "...", "zh": "..."},
     "learners": {"<name>": {"5w1s": [acc, ci95], "5w5s": [acc, ci95] | null,
                             "20w1s": [acc, ci95] | null, "steps": int,
                             "best_step": int | null,           (optional)
                             "train_s": float, "paper": "98.8 / 99.7" | null,
                             "presentations": {"1": "31.4 ± 1.4", ...} | null,  (optional)
                             "note": {"en": "...", "zh": "..."} | null}}}

Accuracies and intervals are in percent. A setting left out or null is "not measured".
:func:`load_results` refuses a file of any other shape with a :class:`ResultsError` that
names the field, the value found and what is allowed; :func:`table_markdown` formats one
learner's entry as a two-column markdown table, every cell escaped as text. No Streamlit
here: the theory page (``app/views/theory.py``) only prints what these functions return.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from app.i18n import t
from app.safe_text import plain

ROOT = Path(__file__).resolve().parent.parent
#: Where the page reads the results; ``METAREP_RESULTS_FILE`` points it elsewhere (tests).
DEFAULT_PATH = ROOT / "assets" / "results" / "omniglot.json"
ENV_PATH = "METAREP_RESULTS_FILE"
#: The evaluated settings, in table order: (N-way, K-shot) of the test episodes.
SETTINGS = ("5w1s", "5w5s", "20w1s")
PRESENTATIONS = ("1", "2", "5", "10")   # Santoro et al.'s figure (MANN, DNC)
MAX_BYTES = 1_000_000                    # a dozen entries take ~5 kB; anything huge is not ours


class ResultsError(ValueError):
    """The results file is not of the documented shape (the message says where)."""


@dataclass(frozen=True)
class LearnerResult:
    """One learner's measured figures (accuracies and intervals in %)."""
    accuracy: dict[str, tuple[float, float] | None]   # setting -> (accuracy, ci95) or None
    steps: int
    best_step: int | None
    train_s: float
    paper: dict[str, str] | None                       # language -> text
    note: dict[str, str] | None
    presentations: dict[str, str | None] | None


@dataclass(frozen=True)
class Results:
    protocol: dict[str, str]
    learners: dict[str, LearnerResult]


def results_path() -> Path:
    """The file the page reads: ``$METAREP_RESULTS_FILE`` if set, else the bundled one."""
    return Path(os.environ.get(ENV_PATH) or DEFAULT_PATH)


# ----------------------------------------------------------------------- validation
def _number(value, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ResultsError(f"{where} is {value!r}; a number from {low:g} to {high:g} is allowed")
    return float(value)


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ResultsError(f"{where} is {value!r}; a whole number >= 0 is allowed")
    return value


def _texts(value, where: str) -> dict[str, str]:
    """A text per language: {"en": ..., "zh": ...} ("en" required), or one string for all."""
    if isinstance(value, str):
        return {"en": value}
    if not isinstance(value, dict) or not isinstance(value.get("en"), str) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ResultsError(f"{where} is {value!r}; a text or {{\"en\": text, \"zh\": text}} is allowed")
    return dict(value)


def _accuracy(value, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise ResultsError(f"{where} is {value!r}; [accuracy %, 95% interval %] or null is allowed")
    return _number(value[0], f"{where}[0] (accuracy)", 0, 100), _number(value[1], f"{where}[1] (ci95)", 0, 100)


def _learner(name: str, entry) -> LearnerResult:
    where = f"learners.{name}"
    if not isinstance(entry, dict):
        raise ResultsError(f"{where} is {entry!r}; an object is allowed")
    for key in ("steps", "train_s"):
        if key not in entry:
            raise ResultsError(f"{where} has no {key!r}; every learner's entry needs steps and train_s")
    pres = entry.get("presentations")
    if pres is not None:
        if not isinstance(pres, dict) or not all(v is None or isinstance(v, str) for v in pres.values()):
            raise ResultsError(f"{where}.presentations is {pres!r}; "
                               "{\"1\": \"31.4 ± 1.4\", ...} (texts or null) or null is allowed")
        pres = {p: pres.get(p) for p in PRESENTATIONS}
    best = entry.get("best_step")
    return LearnerResult(
        accuracy={s: _accuracy(entry.get(s), f"{where}.{s}") for s in SETTINGS},
        steps=_int(entry["steps"], f"{where}.steps"),
        best_step=None if best is None else _int(best, f"{where}.best_step"),
        train_s=_number(entry["train_s"], f"{where}.train_s", 0, 1e7),
        paper=None if entry.get("paper") is None else _texts(entry["paper"], f"{where}.paper"),
        note=None if entry.get("note") is None else _texts(entry["note"], f"{where}.note"),
        presentations=pres)


def parse_results(doc) -> Results:
    """The documented shape (module docstring) from a decoded JSON value, or ResultsError."""
    if not isinstance(doc, dict) or not isinstance(doc.get("learners"), dict):
        raise ResultsError("the file must be an object with a \"learners\" object "
                           f"(name -> entry); found {type(doc).__name__}"
                           + ("" if not isinstance(doc, dict) else f" with keys {sorted(doc)}"))
    protocol = _texts(doc.get("protocol", ""), "protocol")
    return Results(protocol, {name: _learner(name, e) for name, e in doc["learners"].items()})


def load_results(path: Path | None = None) -> Results | None:
    """The results at ``path`` (default :func:`results_path`); None if there is no file.

    Raises ResultsError (naming the file) when it is too large, not JSON or not of the
    documented shape."""
    path = results_path() if path is None else Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ResultsError(f"{path.name} is {size:,} bytes; at most {MAX_BYTES:,} are allowed")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path.name} is not JSON text: {exc}") from None
    try:
        return parse_results(doc)
    except ResultsError as exc:
        raise ResultsError(f"{path.name}: {exc}") from None


# ----------------------------------------------------------------------- formatting
def _in(texts: dict[str, str], lang: str) -> str:
    return texts.get(lang) or texts["en"]


def accuracy_text(value: tuple[float, float] | None, lang: str) -> str:
    """"91.10 ± 0.58", or "not measured" in ``lang``."""
    return t("results.not_measured_cell", lang) if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"


def duration_text(seconds: float, lang: str) -> str:
    """"148 s", or "740 s (12.3 min)" from a minute up, in ``lang``."""
    s = f"{seconds:,.0f}"
    if seconds < 60:
        return t("results.seconds", lang, s=s)
    return t("results.seconds_minutes", lang, s=s, m=f"{seconds / 60:.1f}")


def result_rows(entry: LearnerResult, lang: str) -> list[tuple[str, str]]:
    """(what, value) rows of one learner's table, in ``lang``; values are plain text."""
    rows = [(t(f"results.setting.{s}", lang), accuracy_text(entry.accuracy[s], lang)) for s in SETTINGS]
    if entry.presentations:
        rows.append((t("results.presentations", lang), " / ".join(
            (v or t("results.not_measured_cell", lang)) for v in entry.presentations.values())))
    steps = (t("results.steps_best", lang, steps=f"{entry.steps:,}", best=f"{entry.best_step:,}")
             if entry.best_step is not None else f"{entry.steps:,}")
    rows.append((t("results.steps", lang), steps))
    rows.append((t("results.train_time", lang), duration_text(entry.train_s, lang)))
    rows.append((t("results.paper", lang), _in(entry.paper, lang) if entry.paper else t("results.no_paper", lang)))
    return rows


def table_markdown(entry: LearnerResult, lang: str) -> str:
    """The rows of :func:`result_rows` as a markdown table; every cell escaped (``plain``),
    so a value from the file can only ever read as text."""
    head = f"| {plain(t('results.col.what', lang))} | {plain(t('results.col.value', lang))} |\n|---|---|\n"
    return head + "\n".join(f"| {plain(a)} | {plain(b)} |" for a, b in result_rows(entry, lang))


def note_text(entry: LearnerResult, lang: str) -> str | None:
    """The learner's note in ``lang`` (English if there is none in it), or None."""
    return _in(entry.note, lang) if entry.note else None


def protocol_text(results: Results, lang: str) -> str:
    return _in(results.protocol, lang)
