"""Shared read-only resources and the session's view of models and episodes.

Shared by all sessions (``st.cache_resource``): datasets and the shipped
pretrained checkpoints — read-only. Each session gets its own deep copy of a
shipped model (``session_model``), so nothing a user does (training, even a
batch-norm statistic updated in a forward pass) can reach another session.
"""
from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import streamlit as st
import torch

from app import state
from app.i18n import t
from metarep_core.episodes import Episode, EpisodeSampler
from metarep_core.errors import MetaRepError
from metarep_core.learners import available, build_learner, get_learner_class

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = ROOT / "assets" / "checkpoints"
_INIT_LOCK = threading.Lock()  # torch's global RNG while seeding a fresh init


# ------------------------------------------------------------------ datasets
@st.cache_resource(show_spinner=False)
def builtin_dataset(spec: str):
    """A built-in dataset (glyphs, digits, sinusoid), loaded once per server."""
    from metarep_core.data import load_dataset
    return load_dataset(spec, seed=0)


def current_dataset(settings: state.Settings):
    """(dataset, dataset_id) for the sidebar's choice; the upload is per session."""
    if settings.dataset == state.UPLOAD:
        upload = st.session_state.get("upload")
        if upload is None:
            raise MetaRepError(t("upload.none_yet"))
        return upload["dataset"], upload["id"]
    return builtin_dataset(settings.dataset), settings.dataset


def dataset_task(dataset) -> str:
    return getattr(dataset, "task", "classification")


def sample_episode(settings: state.Settings, dataset, seed: int | None = None) -> Episode:
    """The episode the sidebar describes (MetaRepError when the split can't give it)."""
    sampler = EpisodeSampler(dataset, settings.split, settings.n_way, settings.k_shot,
                             settings.n_query, settings.seed)
    return sampler.sample(settings.seed if seed is None else seed)


# ------------------------------------------------------------------ learners
def algorithms_for(task: str) -> list[str]:
    """Registered algorithms that handle ``task``, in the registry's display order."""
    return [n for n in available() if task in get_learner_class(n).tasks]


def algorithm_label(name: str, lang: str | None = None) -> str:
    cls = get_learner_class(name)
    return f"{cls.title or cls.name} · {t('family.' + cls.family, lang)}"


def label_func(prefix: str = "", lang: str | None = None):
    """A select box's format_func with the language fixed now (Streamlit may call it
    later, outside this run), e.g. ``label_func("dataset.")``; ``prefix=None`` gives
    algorithm labels."""
    from app.i18n import current_lang
    lang = lang or current_lang()
    if prefix is None:
        return lambda name: algorithm_label(name, lang)
    return lambda value: t(prefix + str(value), lang)


def _checkpoint_candidates(algorithm: str, dataset: str, n_way: int, k_shot: int) -> list[Path]:
    """Shipped checkpoints named ``<algorithm>_<dataset>_<N>w<K>s.safetensors``; the
    same K first (K does not change the weights' shapes, N may)."""
    exact = CHECKPOINT_DIR / f"{algorithm}_{dataset}_{n_way}w{k_shot}s.safetensors"
    others = sorted(CHECKPOINT_DIR.glob(f"{algorithm}_{dataset}_{n_way}w*s.safetensors"))
    return ([exact] if exact.is_file() else []) + [p for p in others if p != exact]


@st.cache_resource(show_spinner=False, max_entries=64)
def _shipped_cached(path: str, mtime_ns: int):
    from metarep_core.checkpoints import load_checkpoint
    return load_checkpoint(path)


def _shipped(path: str):
    """A shipped checkpoint, loaded once per server (again if the file is replaced).
    Never hand this object out: :func:`session_model` deep-copies it."""
    return _shipped_cached(path, Path(path).stat().st_mtime_ns)


def fresh_learner(algorithm: str, input_shape, n_way: int, task: str, seed: int = 0, **hp):
    """A randomly initialised learner, the same for the same seed."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        learner = build_learner(algorithm, input_shape, n_way, task=task, **hp)
    return learner.eval()


def session_model(settings: state.Settings, dataset, dataset_id: str) -> dict:
    """This session's model for the sidebar's algorithm/dataset/N: a dict with
    ``learner``, ``source`` ("trained", "uploaded", "shipped" or "fresh"), ``meta``,
    ``version``. Made on first use from the shipped checkpoint when one fits, else
    a fresh init."""
    task = dataset_task(dataset)
    key = state.model_key(settings.algorithm, dataset_id, settings.n_way, dataset.input_shape)
    models = state.session_models()
    if key not in models:
        learner, source, meta = None, "fresh", {}
        names = [settings.dataset] + (["glyphs"] if settings.dataset == state.UPLOAD else [])
        for name in names:
            for path in _checkpoint_candidates(settings.algorithm, name, settings.n_way,
                                               settings.k_shot):
                try:
                    shipped, meta = _shipped(str(path))
                except (MetaRepError, OSError) as exc:  # unreadable file: a fresh model, said why
                    logging.getLogger(__name__).warning("skipping %s: %s", path.name, exc)
                    continue
                if tuple(shipped.input_shape) == tuple(dataset.input_shape) and shipped.task == task:
                    learner, source = copy.deepcopy(shipped).eval(), "shipped"
                    meta = dict(meta, file=path.name)
                    break
            if learner is not None:
                break
        if learner is None:
            learner = fresh_learner(settings.algorithm, dataset.input_shape, settings.n_way, task)
            meta = {}
        state.set_model(key, learner, source, meta)
    return models[key]


def model_caption(entry: dict) -> str:
    """One line saying where the session's model came from."""
    meta = entry.get("meta") or {}
    return t("model.source." + entry["source"], file=meta.get("file", ""),
             steps=meta.get("steps", "?"))


def before_learner(settings: state.Settings, dataset, dataset_id: str):
    """The "before meta-training" learner: a fresh init of the same algorithm,
    seeded by the sidebar seed (cached in the session)."""
    store = state.cache("before", max_items=4)
    key = (settings.algorithm, dataset_id, settings.n_way, settings.seed)
    if key not in store:
        store[key] = fresh_learner(settings.algorithm, dataset.input_shape, settings.n_way,
                                   dataset_task(dataset), seed=settings.seed)
    return store[key]


def adapt(learner, episode: Episode, record: bool = True):
    """``learner.adapt`` in eval mode (no batch-norm statistics are updated)."""
    learner.eval()
    return learner.adapt(episode, record=record)


# ------------------------------------------------------------------ start-up
@st.cache_resource(show_spinner=False)
def warm_up_projection() -> threading.Thread:
    """Compile UMAP's numba code in the background once per server (the disk cache,
    NUMBA_CACHE_DIR set in main.py, makes later servers fast too)."""
    def work():
        try:
            from metarep_core import projection
            projection.warm_up()
        except Exception:  # a failed warm-up only means the first UMAP is slower
            pass
    thread = threading.Thread(target=work, name="metarep-umap-warmup", daemon=True)
    thread.start()
    return thread
