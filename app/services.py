"""Shared read-only resources and the session's view of models and episodes.

Shared by all sessions (``st.cache_resource``): datasets and the shipped
pretrained checkpoints — read-only. Each session gets its own deep copy of a
shipped model (``session_model``), so nothing a user does (training, even a
batch-norm statistic updated in a forward pass) can reach another session.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app import persistence, state
from app.i18n import t
from app.jobs import TrainingJob, adopt_result
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
    """"classification" or "regression": the dataset says (no dataset is named here)."""
    return dataset.task


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


def session_model(settings: state.Settings, dataset, dataset_id: str) -> state.SessionModel:
    """This session's :class:`~app.state.SessionModel` for the sidebar's
    algorithm/dataset/N. Made on first use from the shipped checkpoint when one fits
    (``source`` "shipped"), else a fresh init ("fresh")."""
    task = dataset_task(dataset)
    key = state.model_key(settings.algorithm, dataset_id, settings.n_way, dataset.input_shape)
    models = state.session_models()
    if key not in models:  # a reloaded run's own model first (validated by the store)
        stored = persistence.stored_model(key, task)
        if stored is not None:
            models[key] = stored
    if key not in models:
        learner, source, meta = None, "fresh", {}
        # an upload (or drawings) of handwriting: the real-Omniglot checkpoints first
        names = [settings.dataset] + (["omniglot", "glyphs"] if settings.dataset == state.UPLOAD else [])
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


def model_caption(model: state.SessionModel) -> str:
    """One line saying where the session's model came from."""
    return t("model.source." + model.source, file=model.meta.get("file", ""),
             steps=model.meta.get("steps", "?"))


def before_model(settings: state.Settings, dataset, dataset_id: str) -> state.SessionModel:
    """The "before meta-training" model: a fresh init of the same algorithm, seeded by
    the sidebar seed (kept for the session: the same init gives the same memo)."""
    store = state.cache("before", max_items=4)
    key = (settings.algorithm, dataset_id, settings.n_way, settings.seed)
    if key not in store:
        learner = fresh_learner(settings.algorithm, dataset.input_shape, settings.n_way,
                                dataset_task(dataset), seed=settings.seed)
        store[key] = state.new_model(learner, "fresh")
    return store[key]


def adapt(learner, episode: Episode, record: bool = True):
    """``learner.adapt`` in eval mode (no batch-norm statistics are updated)."""
    learner.eval()
    return learner.adapt(episode, record=record)


def adopt_finished_job() -> None:
    """The one place a finished (or stopped) training job becomes the session's model;
    main.py calls it at the start of every full run, before the sidebar and the page."""
    job = st.session_state.get("job")
    if job is not None and not job.active and not job.collected:
        adopt_result(job)
        model = state.session_models().get(job.model_key)
        if model is not None and model.learner is job.learner:  # adopted: kept in the run
            persistence.keep_checkpoint(job.model_key, model)


def start_training(model: state.SessionModel, settings: state.Settings, dataset,
                   dataset_id: str, *, hp: dict, steps: int, fresh: bool,
                   keep: bool = False) -> TrainingJob:
    """A submitted job training a learner with ``hp`` on ``dataset``: ``model``'s
    weights carried over unless ``fresh`` (refused when the new hyper-parameters
    change the weights' shapes). MetaRepError when N/K/Q don't fit the train split."""
    s = settings
    EpisodeSampler(dataset, "train", s.n_way, s.k_shot, s.n_query, s.seed)  # validates N/K/Q
    learner = fresh_learner(s.algorithm, dataset.input_shape, s.n_way, dataset_task(dataset),
                            seed=s.seed, **hp)
    if not fresh:
        try:
            learner.load_state_dict(model.learner.state_dict())
        except RuntimeError:
            raise MetaRepError(t("train.hp_changes_shape")) from None
    key = state.model_key(s.algorithm, dataset_id, s.n_way, dataset.input_shape)
    return TrainingJob(learner, dataset, model_key=key, n_way=s.n_way, k_shot=s.k_shot,
                       n_query=s.n_query, steps=steps, seed=s.seed, val_episodes=20, keep=keep).submit()


# ------------------------------------------------------------------ what pages draw
# Memoised on the model (SessionModel.remember), keyed by what the result depends on:
# a page asks again on every rerun and gets the same object back.
def episode_key(episode: Episode) -> tuple:
    """Identifies an episode by its content (the tensors, class names and task), so a
    memo never confuses two episodes that merely share a seed."""
    digest = hashlib.blake2b(digest_size=16)
    for x in (episode.support_x, episode.support_y, episode.query_x, episode.query_y):
        arr = x.detach().cpu().contiguous().numpy()
        digest.update(str((arr.dtype, arr.shape)).encode())
        digest.update(arr.tobytes())
    return (episode.task, tuple(episode.class_names), digest.hexdigest())


def test_bn_modes(model: state.SessionModel) -> tuple[str, ...]:
    """The batch-norm modes ``model``'s learner can adapt with at test time (its
    ``test_bn`` choices: "transductive", "support"), or () when it has no such switch
    (it uses running statistics from training, or the task is a regression)."""
    learner = model.learner
    if learner.task == "regression" or "test_bn" not in getattr(learner, "hp", {}):
        return ()
    return tuple(_test_bn_spec(learner).choices)


def _test_bn_spec(learner):
    """The learner's declared ``test_bn`` hyper-parameter (its choices and validation)."""
    return next(h for h in type(learner).all_hyperparams() if h.name == "test_bn")


@contextmanager
def _test_bn(learner, mode: str | None):
    """``learner`` adapts with batch-norm mode ``mode`` inside the block (its own
    setting when None). The learner is this session's own copy (:func:`session_model`),
    so no other session sees the switch; the setting is restored on the way out."""
    if mode is None or learner.hp.get("test_bn") == mode:
        yield
        return
    before = learner.hp["test_bn"]
    learner.hp["test_bn"] = _test_bn_spec(learner).validate(mode)
    try:
        yield
    finally:
        learner.hp["test_bn"] = before


def trace(model: state.SessionModel, episode: Episode, test_bn: str | None = None) -> list:
    """The adaptation trace (a list of ``TraceStep``) of ``model`` on ``episode``;
    ``test_bn`` picks the batch-norm mode of a learner that has one
    (:func:`test_bn_modes`), None its own."""
    def compute():
        with _test_bn(model.learner, test_bn):
            return adapt(model.learner, episode, record=True).trace or []
    return model.remember(("trace", episode_key(episode), test_bn), compute)


@dataclass(frozen=True)
class Motion:
    """Where the queries (then the prototypes, if any) move during adaptation:
    ``points`` (T, n, 2) aligned across the T steps; ``y`` (n,) a class index per
    point (prototype j stands for class j); ``kinds`` "query" or "prototype"."""

    points: np.ndarray
    y: np.ndarray
    kinds: list[str]


def motion(model: state.SessionModel, episode: Episode, seed: int = 0,
           test_bn: str | None = None) -> Motion | None:
    """:class:`Motion` along ``trace(model, episode, test_bn)``; None when the trace has
    no query embeddings (or their number changes between steps)."""
    def compute():
        rows = []
        for step in trace(model, episode, test_bn):
            if step.query_emb is None:
                return None
            parts = [step.query_emb] + ([step.prototypes] if step.prototypes is not None else [])
            rows.append(np.concatenate(parts, 0))
        if not rows or len({r.shape for r in rows}) != 1:
            return None
        from metarep_core.projection import project_aligned
        points = np.stack(project_aligned(rows, method="pca", dim=2, seed=seed))
        n_query = len(episode.query_y)
        n_protos = points.shape[1] - n_query
        return Motion(points, np.concatenate([episode.query_y.numpy(), np.arange(n_protos)]),
                      ["query"] * n_query + ["prototype"] * n_protos)
    return model.remember(("motion", episode_key(episode), seed, test_bn), compute)


def true_curve(dataset, episode: Episode) -> tuple[np.ndarray, np.ndarray]:
    """A regression task's true curve: inputs (n,) on the dataset's own plotting grid
    and the outputs (n,) there."""
    grid = dataset.grid()  # (n, 1)
    return grid.view(-1).numpy(), dataset.evaluate(episode.info, grid).view(-1).numpy()


def predictions(model: state.SessionModel, episode: Episode) -> tuple[np.ndarray, float]:
    """Query probabilities (n_query, n_way) of ``model`` adapted to ``episode``, and
    its query accuracy in percent."""
    def compute():
        probs = adapt(model.learner, episode, record=False).predict(episode.query_x)
        accuracy = float((probs.argmax(1) == episode.query_y).float().mean()) * 100
        return probs.detach().cpu().numpy(), accuracy
    return model.remember(("predictions", episode_key(episode)), compute)


def model_for_episode(settings: state.Settings, dataset, dataset_id: str,
                      episode: Episode) -> state.SessionModel:
    """The session's model of ``settings.algorithm`` to adapt to an episode made outside
    the sampler (drawn characters): for the episode's N when the session has a trained,
    uploaded or shipped one; else one meta-trained for another N (the sidebar's, or the
    shipped checkpoints' 5) if it can score ``episode.n_way`` classes (a metric learner's
    weights do not depend on N; MAML's output layer does); else a fresh init."""
    own = session_model(dataclasses.replace(settings, n_way=episode.n_way,
                                            k_shot=episode.k_shot), dataset, dataset_id)
    if own.source != "fresh":
        return own
    for n_way in dict.fromkeys((settings.n_way, state.DEFAULTS.n_way)):
        if n_way == episode.n_way:
            continue
        other = session_model(dataclasses.replace(settings, n_way=n_way, k_shot=episode.k_shot),
                              dataset, dataset_id)
        if other.source == "fresh":
            continue
        try:
            probs, _ = predictions(other, episode)
        except (RuntimeError, ValueError, IndexError):  # a head of the wrong size
            continue
        if probs.shape == (len(episode.query_y), episode.n_way):
            return other
    return own


# ------------------------------------------------------------------ start-up
@st.cache_resource(show_spinner=False)
def warm_up_projection() -> threading.Thread:
    """Compile UMAP's numba code in the background once per server (the disk cache,
    NUMBA_CACHE_DIR set in main.py, makes later servers fast too). ``app/serve.py``
    starts it before the server listens; under a bare ``streamlit run``, the first page
    run does. Cached: every later call returns the same thread."""
    def work():
        try:
            from metarep_core import projection
            projection.warm_up()
        except Exception:  # a failed warm-up only means the first UMAP is slower
            pass
    thread = threading.Thread(target=work, name="metarep-umap-warmup", daemon=True)
    thread.start()
    return thread
