"""Per-session state: the sidebar's settings (mirrored in the URL) and the session's models.

Everything here lives in ``st.session_state``, i.e. in one browser session only.
The settings are read from the URL's query parameters once, when the session
starts, and written back after every run, so a shared link
(``?dataset=glyphs&algorithm=maml&n_way=5&k_shot=1&n_query=5&seed=7&lang=zh``)
opens the same episode in the same language.

Each setting has one key, the widget's (``n_way``, ``k_shot``, ...): written by the
widget, or by a button's callback before the widgets are drawn; ``n_way`` keeps its
value while a regression dataset hides it (``persist_state``), and the N a page
uses comes from :meth:`Settings.for_task`.

The session's models are :class:`SessionModel` values kept per :func:`model_key`
(algorithm, dataset, n_way, input shape): a model trained or uploaded by this user
replaces the shipped (or fresh) one for that key, for this session only.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType

import streamlit as st

from app.i18n import DEFAULT_LANG, LANGUAGES

# Widget ranges; values from the URL are clamped into them (the widgets would
# raise on an out-of-range value). n_way's range is wide on purpose: asking for
# more classes than a split has gets the core's explanatory message on the page.
LIMITS = {"n_way": (1, 50), "k_shot": (1, 50), "n_query": (1, 50), "seed": (0, 2**31 - 1)}
SPLITS = ("test", "val", "train", "all")
UPLOAD = "upload"


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose. In a page's context (``sidebar.Context.settings``)
    ``n_way`` is the effective one: :meth:`for_task` made it 1 for regression."""

    lang: str = DEFAULT_LANG
    dataset: str = "omniglot"  # real data (bundled); glyphs needs no data at all
    algorithm: str = "protonet"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 5
    seed: int = 0
    split: str = "test"

    def episode_key(self) -> tuple:
        """Identifies an episode: same key, same episode (the sampler is seeded)."""
        return (self.dataset, self.split, self.n_way, self.k_shot, self.n_query, self.seed)

    def for_task(self, task: str) -> "Settings":
        """These settings for a dataset whose task is ``task`` (ask the dataset: its
        ``task`` attribute): a regression task has one output, so N is 1 there. The
        one place the effective N is derived."""
        return replace(self, n_way=1) if task == "regression" else self


DEFAULTS = Settings()
FIELDS = tuple(asdict(DEFAULTS))


def dataset_choices() -> list[str]:
    """The built-in datasets the core offers, then the user's upload."""
    from metarep_core.data import DATASETS
    return [n for n in DATASETS if n != "folder"] + [UPLOAD]


def _parse(key: str, raw):
    """A URL value converted for ``key``, or None when it is not usable."""
    if raw is None:
        return None
    if key in LIMITS:
        try:
            value = int(str(raw).strip())
        except ValueError:
            return None
        lo, hi = LIMITS[key]
        return min(max(value, lo), hi)
    if key == "lang":
        return raw if raw in LANGUAGES else None
    if key == "split":
        return raw if raw in SPLITS else None
    return str(raw)


def _out_of_range(key: str, raw) -> tuple[int, int] | None:
    """The widget range ``(lo, hi)`` when the URL's number for ``key`` lies outside it."""
    if key not in LIMITS or raw is None:
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        return None
    lo, hi = LIMITS[key]
    return None if lo <= value <= hi else (lo, hi)


def init_from_url() -> None:
    """Seed the sidebar's widget values from the URL, once per session."""
    ss = st.session_state
    if ss.get("_url_loaded"):
        return
    bad, clamped = [], []
    for key in FIELDS:
        raw = st.query_params.get(key)
        value = _parse(key, raw)
        if raw is not None and value is None:
            bad.append(f"{key}={raw}")
        if _out_of_range(key, raw):  # said on the page: a silent change would mislead
            clamped.append((key, str(raw), *LIMITS[key], value))
        ss[key] = getattr(DEFAULTS, key) if value is None else value
    ss["_url_warnings"] = bad
    ss["_url_clamped"] = clamped  # (name, given, lo, hi, used)
    ss["_url_loaded"] = True


def write_url(settings: Settings) -> None:
    """Mirror the settings into the URL (only what changed, to avoid churn). Pass the
    chosen settings (:func:`current`), not the effective ones: the URL keeps the
    classification N while a regression task shows N = 1."""
    wanted = {k: str(v) for k, v in asdict(settings).items()}
    shown = {k: st.query_params.get(k) for k in wanted}
    if shown != wanted:
        st.query_params.update(wanted)


def current() -> Settings:
    """The settings as the sidebar's widgets hold them, one session-state key each
    (``n_way`` is the N chosen for classification; see :meth:`Settings.for_task`)."""
    ss = st.session_state
    values = {k: ss.get(k, getattr(DEFAULTS, k)) for k in FIELDS}
    values["n_way"] = int(values["n_way"])
    return Settings(**values)


def next_seed() -> None:
    """Button callback ("new episode", "sample another"): the next seed, written to the
    seed's own key before the sidebar's widget is drawn again."""
    st.session_state["seed"] = min(int(st.session_state["seed"]) + 1, LIMITS["seed"][1])


# ---------------------------------------------------------------- session models
@dataclass(frozen=True, eq=False)
class SessionModel:
    """This session's model for one :func:`model_key`: the learner, where it came from
    (``source``: "shipped", "fresh", "trained" or "uploaded") and its checkpoint
    metadata (``meta``: "file", "steps", ...).

    A new model (trained, uploaded) is a new ``SessionModel`` with a new ``version``
    (unique in the session), never an edit of this one. What is computed from its
    weights (a trace, projected points) is memoised on the model itself
    (:meth:`remember`), so it is its own cache key: the memo goes when the model goes
    and can never be read for other weights.
    """

    learner: object
    source: str
    meta: Mapping = field(default_factory=dict)
    version: int = 0
    _memo: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)

    MEMO_ITEMS = 8  # per model: a few episodes x a few projections

    def remember(self, key: tuple, compute: Callable[[], object]):
        """``compute()`` the first time ``key`` is asked for, the same object after
        that (least recently used entries dropped past ``MEMO_ITEMS``)."""
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        value = compute()
        self._memo[key] = value
        while len(self._memo) > self.MEMO_ITEMS:
            self._memo.popitem(last=False)
        return value


def model_key(algorithm: str, dataset_id: str, n_way: int, input_shape) -> tuple:
    """Which model a session holds for a setting: (algorithm, dataset id, N, input shape)."""
    return (algorithm, dataset_id, int(n_way), tuple(int(s) for s in input_shape))


def session_models() -> dict:
    """``{model_key: SessionModel}`` for this session."""
    return st.session_state.setdefault("models", {})


def new_model(learner, source: str, meta: Mapping | None = None) -> SessionModel:
    """A :class:`SessionModel` with a version no other model of this session has."""
    version = st.session_state.get("_model_version", 0) + 1
    st.session_state["_model_version"] = version
    return SessionModel(learner, source, MappingProxyType(dict(meta or {})), version)


def set_model(key: tuple, learner, source: str, meta: Mapping | None = None) -> SessionModel:
    """Make ``learner`` this session's model for ``key``; ``source`` is "trained" or
    "uploaded" (or "shipped"/"fresh" when first made)."""
    model = new_model(learner, source, meta)
    session_models()[key] = model
    return model


def cache(name: str, max_items: int = 8) -> dict:
    """A small per-session dict cache (oldest entries dropped past ``max_items``)."""
    store = st.session_state.setdefault("_cache_" + name, {})
    while len(store) > max_items:
        store.pop(next(iter(store)))
    return store
