"""Per-session state: the sidebar's settings (mirrored in the URL) and the session's models.

Everything here lives in ``st.session_state``, i.e. in one browser session only.
The settings are read from the URL's query parameters once, when the session
starts, and written back after every run, so a shared link
(``?dataset=glyphs&algorithm=maml&n_way=5&k_shot=1&n_query=5&seed=7&lang=zh``)
opens the same episode in the same language.

The session's models are kept per :func:`model_key` (algorithm, dataset, n_way,
input shape): a model trained or uploaded by this user replaces the shipped (or
fresh) one for that key, for this session only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

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
    """What the sidebar chose. ``n_way`` is the effective one (1 for regression)."""

    lang: str = DEFAULT_LANG
    dataset: str = "glyphs"
    algorithm: str = "protonet"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 5
    seed: int = 0
    split: str = "test"

    def episode_key(self) -> tuple:
        """Identifies an episode: same key, same episode (the sampler is seeded)."""
        return (self.dataset, self.split, self.n_way, self.k_shot, self.n_query, self.seed)


DEFAULTS = Settings()
FIELDS = tuple(asdict(DEFAULTS))


def dataset_choices() -> list[str]:
    """The built-in datasets the core offers, then the user's upload."""
    try:
        from metarep_core.data import DATASETS
        names = list(DATASETS)
    except ImportError:  # the data package is not there yet
        names = ["glyphs", "digits", "sinusoid"]
    return [n for n in names if n != "folder"] + [UPLOAD]


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
    """Mirror the settings into the URL (only what changed, to avoid churn)."""
    wanted = {k: str(v) for k, v in asdict(settings).items()}
    # The URL keeps the classification N even while a regression task shows N = 1.
    ss = st.session_state
    wanted["n_way"] = str(ss.get("n_way", ss.get("_n_way_saved", settings.n_way)))
    current = {k: st.query_params.get(k) for k in wanted}
    if current != wanted:
        st.query_params.update(wanted)


def current() -> Settings:
    """The settings as the sidebar last left them."""
    ss = st.session_state
    values = {k: ss.get(k, getattr(DEFAULTS, k)) for k in FIELDS}
    if "n_way" not in ss:
        values["n_way"] = ss.get("_n_way_saved", DEFAULTS.n_way)
    values["n_way"] = int(values["n_way"])
    if values["dataset"] == "sinusoid" or ss.get("_task") == "regression":
        values["n_way"] = 1
    return Settings(**values)


# ---------------------------------------------------------------- session models
def model_key(algorithm: str, dataset_id: str, n_way: int, input_shape) -> tuple:
    return (algorithm, dataset_id, int(n_way), tuple(int(s) for s in input_shape))


def session_models() -> dict:
    return st.session_state.setdefault("models", {})


def set_model(key: tuple, learner, source: str, meta: dict | None = None) -> None:
    """Make ``learner`` this session's model for ``key``; ``source`` is "trained" or
    "uploaded". The version counter names the model in per-session caches."""
    version = st.session_state.get("_model_version", 0) + 1
    st.session_state["_model_version"] = version
    session_models()[key] = {"learner": learner, "source": source, "meta": meta or {},
                             "version": version}


def cache(name: str, max_items: int = 8) -> dict:
    """A small per-session dict cache (oldest entries dropped past ``max_items``)."""
    store = st.session_state.setdefault("_cache_" + name, {})
    while len(store) > max_items:
        store.pop(next(iter(store)))
    return store
