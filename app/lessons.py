"""Lessons as data: one JSON file per lesson in ``assets/lessons/`` (the format is
documented in ``assets/lessons/README.md``), loaded and validated here.

A lesson is a short sequence of steps; a step has a text (English and 简体中文), may set
the sidebar's settings and open a page, and may hold an exercise: a check kind (see
:mod:`app.exercises`) and its parameters. The answer is never in the file; the check
computes it from the model on the step's episode.

A malformed file is refused with a :class:`LessonError` naming the file and the line:
the JSON parser's line for a syntax error, the line of the offending key (or of the
object missing one) for a schema error. Pure Python, no Streamlit: the tests and a
teacher's editor check can load lessons without the app.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from json.decoder import JSONObject
from json.scanner import py_make_scanner
from pathlib import Path

from app import pages
from app.i18n import LANGUAGES
from metarep_core.errors import MetaRepError
from metarep_core.learners import get_learner_class

LESSON_DIR = Path(__file__).resolve().parent.parent / "assets" / "lessons"
KINDS = ("best_learner", "trace_change", "reach_target", "query_class",
         "presentation_accuracy", "unseen_uncertainty", "meta_training_gain")
# A lesson may set these (not "lang": a lesson keeps the language it is opened in).
SETTING_KEYS = ("dataset", "algorithm", "n_way", "k_shot", "n_query", "seed", "split")
TRACE_METRICS = ("support_loss", "support_accuracy", "query_loss", "query_accuracy")
TARGET_METRICS = ("query_accuracy", "query_loss")
REGRESSION_KINDS = ("trace_change", "reach_target")  # the kinds that need no accuracy
# Per kind: required parameters, then optional ones (with what each must be).
PARAMS = {
    "best_learner": ({"algorithms": "algorithms"}, {"episodes": "count"}),
    "trace_change": ({"metric": "trace_metric", "from_step": "step", "to_step": "step"},
                     {"hyperparams": "hyperparams", "tolerance": "number"}),
    "reach_target": ({"hyperparam": "hyperparam", "metric": "target_metric"},
                     {"at_least": "number", "at_most": "number", "hyperparams": "hyperparams"}),
    "query_class": ({"query": "step"}, {}),
    "presentation_accuracy": ({"first": "presentation", "then": "presentation"},
                              {"episodes": "count", "tolerance": "number"}),
    "unseen_uncertainty": ({}, {"episodes": "count", "tolerance": "number"}),
    "meta_training_gain": ({}, {"tolerance": "number"}),
}


def dataset_task(name: str) -> str:
    """"classification" or "regression": the built-in dataset says (loaded once per
    process; the app loads it anyway when the lesson is opened)."""
    from metarep_core.data import load_dataset
    return load_dataset(name, seed=0).task


class LessonError(MetaRepError):
    """A lesson file that cannot be used; the message names the file and the line."""


# ------------------------------------------------------------------ the lesson's shape
@dataclass(frozen=True)
class Exercise:
    """What a step asks the student to do: a check ``kind`` and its ``params``
    (validated for that kind), the ``question`` and a ``hint`` ({lang: text})."""

    kind: str
    params: dict
    question: dict
    hint: dict


@dataclass(frozen=True)
class Step:
    text: dict                       # {lang: markdown}
    page: str | None = None          # a page of app/pages.py to open, or None
    settings: dict = field(default_factory=dict)  # on top of the lesson's settings
    exercise: Exercise | None = None


@dataclass(frozen=True)
class Lesson:
    id: str                          # the file's name without ".json"
    title: dict                      # {lang: text}
    summary: dict                    # {lang: text}
    steps: tuple[Step, ...]
    settings: dict = field(default_factory=dict)
    order: int = 100
    path: Path | None = None

    def step_settings(self, index: int) -> dict:
        """The settings step ``index`` (0-based) runs on: the lesson's, then the step's."""
        return {**self.settings, **self.steps[index].settings}

    def algorithms(self) -> set[str]:
        """Every algorithm the lesson's steps use (to disable a lesson whose learner is
        not registered)."""
        names = set()
        for i, step in enumerate(self.steps):
            names.add(self.step_settings(i).get("algorithm", "protonet"))
            if step.exercise is not None:
                names.update(step.exercise.params.get("algorithms", ()))
        return names


# ------------------------------------------------------------------ JSON with line numbers
class _Located(dict):
    """A JSON object that remembers its line and the line of each of its keys."""

    line: int = 1
    key_lines: dict


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _key_positions(text: str, start: int, end: int) -> dict[str, int]:
    """Offsets of the keys of the object ``text[start:end]`` (at its own depth only)."""
    keys, depth, i, expect_key = {}, 0, start, False
    while i < end:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if depth == 1 and expect_key:
                keys[json.loads(text[i:j + 1])] = i
                expect_key = False
            i = j + 1
            continue
        if ch in "{[":
            depth += 1
            expect_key = depth == 1 and ch == "{"
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 1:
            expect_key = True
        i += 1
    return keys


class _LocatingDecoder(json.JSONDecoder):
    """A JSON decoder whose objects are :class:`_Located` (the pure-Python scanner,
    since the C one does not call a replaced ``parse_object``)."""

    def __init__(self, text: str):
        super().__init__()

        def parse_object(s_and_end, *args):
            s, begin = s_and_end
            obj, end = JSONObject(s_and_end, *args)
            located = _Located(obj)
            located.line = _line_of(s, begin - 1)
            located.key_lines = {k: _line_of(s, p) for k, p in
                                 _key_positions(s, begin - 1, end).items()}
            return located, end

        self.parse_object = parse_object
        self.scan_once = py_make_scanner(self)


def parse_json(text: str, where: str) -> object:
    """``text`` parsed, objects knowing their lines; LessonError naming ``where`` and the
    line for a syntax error."""
    try:
        return _LocatingDecoder(text).decode(text)
    except json.JSONDecodeError as exc:
        raise LessonError(f"{where}, line {exc.lineno}: not valid JSON ({exc.msg}, "
                          f"column {exc.colno})") from None


# ------------------------------------------------------------------ validation
class _Checker:
    """Validates one parsed lesson; every refusal names the file and the line."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, obj, key: str | None, message: str):
        line = getattr(obj, "key_lines", {}).get(key) if key else None
        line = line or getattr(obj, "line", 1)
        raise LessonError(f"{self.where}, line {line}: {message}")

    def obj(self, value, parent, key: str, what: str) -> _Located:
        if not isinstance(value, dict):
            self.fail(parent, key, f"{what} must be an object {{...}}, got {type(value).__name__}")
        return value

    def keys(self, obj, what: str, required: tuple, optional: tuple) -> None:
        for key in obj:
            if key not in required + optional:
                self.fail(obj, key, f"unknown field {key!r} in {what}; allowed: "
                                    f"{', '.join(required + optional)}")
        for key in required:
            if key not in obj:
                self.fail(obj, None, f"{what} is missing the field {key!r}")

    def texts(self, parent, key: str, what: str) -> dict:
        value = self.obj(parent[key], parent, key, what)
        for lang in value:
            if lang not in LANGUAGES:
                self.fail(value, lang, f"{what}: unknown language {lang!r}; allowed: "
                                       f"{', '.join(LANGUAGES)}")
        for lang in LANGUAGES:
            if not isinstance(value.get(lang), str) or not value[lang].strip():
                self.fail(value, lang if lang in value else None,
                          f"{what} needs a non-empty text for every language "
                          f"({', '.join(LANGUAGES)}); {lang!r} is missing or empty")
        return dict(value)

    def settings(self, parent, key: str, what: str) -> dict:
        from app.state import LIMITS, SPLITS
        from metarep_core.data import DATASETS
        from metarep_core.learners import available
        value = self.obj(parent[key], parent, key, what)
        datasets = [d for d in DATASETS if ":" not in d]
        for name, v in value.items():
            if name not in SETTING_KEYS:
                self.fail(value, name, f"unknown setting {name!r} in {what}; allowed: "
                                       f"{', '.join(SETTING_KEYS)} (a lesson keeps the language "
                                       "it is opened in)")
            if name == "dataset" and v not in datasets:
                self.fail(value, name, f"unknown dataset {v!r}; allowed: {', '.join(datasets)}")
            if name == "algorithm" and v not in available():
                self.fail(value, name, f"unknown algorithm {v!r}; allowed: {', '.join(available())}")
            if name == "split" and v not in SPLITS:
                self.fail(value, name, f"unknown split {v!r}; allowed: {', '.join(SPLITS)}")
            if name in LIMITS:
                lo, hi = LIMITS[name]
                if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                    self.fail(value, name, f"{name} must be an integer from {lo} to {hi}, got {v!r}")
        return dict(value)

    def param(self, params, name: str, rule: str, algorithm: str):
        from metarep_core.learners import available
        v = params[name]
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok_int = isinstance(v, int) and not isinstance(v, bool)
        if rule == "algorithms":
            if not isinstance(v, list) or len(v) < 2:
                self.fail(params, name, f"{name} must be a list of at least two algorithms")
            for a in v:
                if a not in available():
                    self.fail(params, name, f"unknown algorithm {a!r}; allowed: "
                                            f"{', '.join(available())}")
            return list(v)
        if rule in ("step", "presentation", "count") and not (ok_int and v >= (0 if rule == "step" else 1)):
            self.fail(params, name, f"{name} must be an integer >= "
                                    f"{0 if rule == 'step' else 1}, got {v!r}")
        if rule == "number" and not number:
            self.fail(params, name, f"{name} must be a number, got {v!r}")
        if rule == "trace_metric" and v not in TRACE_METRICS:
            self.fail(params, name, f"unknown metric {v!r}; allowed: {', '.join(TRACE_METRICS)}")
        if rule == "target_metric" and v not in TARGET_METRICS:
            self.fail(params, name, f"unknown metric {v!r}; allowed: {', '.join(TARGET_METRICS)}")
        if rule in ("hyperparam", "hyperparams"):
            declared = {h.name: h for h in get_learner_class(algorithm).all_hyperparams()}
            names = [v] if rule == "hyperparam" else list(self.obj(v, params, name, name))
            for hp in names:
                if hp not in declared or (rule == "hyperparam" and declared[hp].kind not in ("int", "float")):
                    self.fail(v if rule == "hyperparams" else params, hp if rule == "hyperparams" else name,
                              f"{algorithm} has no numeric hyper-parameter {hp!r}; allowed: "
                              f"{', '.join(n for n, h in declared.items() if h.kind in ('int', 'float'))}")
                if rule == "hyperparams":
                    try:
                        declared[hp].validate(v[hp])
                    except MetaRepError as exc:
                        self.fail(v, hp, str(exc))
            return dict(v) if rule == "hyperparams" else v
        return v

    def exercise(self, step, algorithm: str, task: str) -> Exercise:
        ex = self.obj(step["exercise"], step, "exercise", "the exercise")
        self.keys(ex, "the exercise", ("kind", "question", "hint"), ("params",))
        kind = ex["kind"]
        if kind not in KINDS:
            self.fail(ex, "kind", f"unknown check kind {kind!r}; allowed: {', '.join(KINDS)}")
        params = self.obj(ex.get("params", _Located()), ex, "params", "params")
        required, optional = PARAMS[kind]
        self.keys(params, f"the params of {kind}", tuple(required), tuple(optional))
        rules = {**required, **optional}
        checked = {name: self.param(params, name, rules[name], algorithm) for name in params}
        if task == "regression":
            if kind not in REGRESSION_KINDS:
                self.fail(ex, "kind", f"{kind} needs a classification dataset; on a regression "
                                      f"dataset use {' or '.join(REGRESSION_KINDS)}")
            if not params["metric"].endswith("loss"):
                self.fail(params, "metric", f"a regression task has no accuracy; use a loss "
                                            f"metric, not {params['metric']!r}")
        for name in checked.get("algorithms", ()):
            if task not in get_learner_class(name).tasks:
                self.fail(params, "algorithms", f"{name} does not learn {task} tasks")
        if kind == "reach_target" and ("at_least" in params) == ("at_most" in params):
            self.fail(params, None, "reach_target needs exactly one of at_least, at_most")
        cls = get_learner_class(algorithm)
        needs = {"presentation_accuracy": ("online_predictions", "a per-presentation (sequence) "
                                           "learner such as mann or dnc"),
                 "unseen_uncertainty": ("probabilistic", "a learner with the 'probabilistic' "
                                        "capability such as versa or abml")}
        if kind in needs:
            what, say = needs[kind]
            if not (hasattr(cls, what) or what in cls.capabilities):
                self.fail(ex, "kind", f"{kind} needs {say}; the step's algorithm is {algorithm!r}")
        return Exercise(kind, checked, self.texts(ex, "question", "the question"),
                        self.texts(ex, "hint", "the hint"))


def parse_lesson(text: str, path: Path) -> Lesson:
    """The lesson in ``text`` (the contents of ``path``), validated; LessonError otherwise."""
    where = path.name
    check = _Checker(where)
    root = parse_json(text, where)
    if not isinstance(root, dict):
        raise LessonError(f"{where}, line 1: a lesson must be a JSON object {{...}}")
    check.keys(root, "the lesson", ("title", "summary", "steps"), ("settings", "order"))
    title = check.texts(root, "title", "the title")
    summary = check.texts(root, "summary", "the summary")
    settings = check.settings(root, "settings", "the lesson's settings") if "settings" in root else {}
    order = root.get("order", 100)
    if not isinstance(order, int) or isinstance(order, bool):
        check.fail(root, "order", f"order must be an integer, got {order!r}")
    if not isinstance(root["steps"], list) or not root["steps"]:
        check.fail(root, "steps", "steps must be a non-empty list of steps")
    steps = []
    for n, raw in enumerate(root["steps"], 1):
        step = check.obj(raw, root, "steps", f"step {n}")
        check.keys(step, f"step {n}", ("text",), ("page", "settings", "exercise"))
        page = step.get("page")
        if page is not None and page not in pages.NAMES:
            check.fail(step, "page", f"step {n}: unknown page {page!r}; allowed: "
                                     f"{', '.join(pages.NAMES)}")
        own = check.settings(step, "settings", f"step {n}'s settings") if "settings" in step else {}
        merged = {**settings, **own}
        if "exercise" in step:  # its answer depends on them: not left to the student's sidebar
            for key in ("dataset", "algorithm"):
                if key not in merged:
                    check.fail(step, "exercise", f"step {n} has an exercise, so the lesson's or "
                                                 f"the step's settings need {key!r}")
        algorithm = merged.get("algorithm", "protonet")
        task = dataset_task(merged.get("dataset", "glyphs"))
        if task not in get_learner_class(algorithm).tasks:
            check.fail(step, None, f"step {n}: {algorithm} does not learn {task} tasks (the "
                                   f"dataset {merged.get('dataset', 'glyphs')!r})")
        exercise = check.exercise(step, algorithm, task) if "exercise" in step else None
        steps.append(Step(check.texts(step, "text", f"step {n}'s text"), page, own, exercise))
    return Lesson(path.stem, title, summary, tuple(steps), settings, order, path)


def load_lesson(path: Path) -> Lesson:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LessonError(f"{Path(path).name}: cannot be read ({exc})") from None
    return parse_lesson(text, Path(path))


def load_lessons(folder: Path = LESSON_DIR) -> tuple[list[Lesson], list[str]]:
    """Every ``*.json`` lesson in ``folder`` (by ``order``, then id), and one message per
    file that was refused: a teacher's broken file does not hide the others."""
    lessons, errors = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            lessons.append(load_lesson(path))
        except LessonError as exc:
            errors.append(str(exc))
    return sorted(lessons, key=lambda l: (l.order, l.id)), errors
