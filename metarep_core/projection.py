"""Projections of embeddings to 2-D or 3-D: PCA, t-SNE and UMAP, and their alignment.

``project(X, method, dim, seed)`` maps embeddings ``X`` (n, d) to (n, dim).
``align(Y, reference)`` rotates/reflects, scales and shifts ``Y`` onto ``reference``
(orthogonal Procrustes) so two projections of the same points can be shown side by
side, or in succession, without a flip. ``project_sequence(Xs, ...)`` projects the
same points at several adaptation steps into one consistent space.

UMAP is compiled by numba on first use (about 20 s on a small CPU). Two things keep
users from waiting on that: numba's on-disk cache, whose directory is set at import
of this module (before numba is imported), with caching switched on for umap's own
functions (umap-learn caches only a few of them itself), and :func:`warm_up`, which
the app runs in a background thread at server start (``python -m
metarep_core.projection`` runs it alone, e.g. to fill the cache when installing).
``python -m metarep_core bench projection-umap`` measures the cold, warm-cache and
in-process times; ``bench projection`` every method and dim on 1,000 real embeddings
(p50/p95 wall and CPU, trustworthiness, 5-NN accuracy, load average).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import MetaRepError

METHODS = ("pca", "tsne", "umap")
DIMS = (2, 3)
# Allowed ranges of the user-facing parameters (the app's sliders use the same).
N_NEIGHBORS_RANGE = (2, 200)
MIN_DIST_RANGE = (0.0, 1.0)      # UMAP requires min_dist <= spread (1.0)
PERPLEXITY_RANGE = (1.0, 100.0)
# Below this many points a full distance matrix is cheaper than UMAP's own
# neighbour search (which calls a numba metric a million times from Python).
_EXACT_KNN_MAX = 4096


# ------------------------------------------------------------------ numba disk cache
def _cache_root() -> Path | None:
    """``$METAREP_CACHE`` (default ``~/.cache/metarep_explorer``); None when switched off."""
    raw = os.environ.get("METAREP_CACHE", "")
    if raw.lower() in {"0", "off", "none"}:
        return None
    return Path(raw) if raw else Path.home() / ".cache" / "metarep_explorer"


def _setup_numba_cache() -> str | None:
    """Point numba's cache at <cache root>/numba unless the user chose a directory.

    numba reads NUMBA_CACHE_DIR when it is first imported; if something imported it
    already, its config is set directly so the choice still takes effect."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    root = _cache_root()
    if root is None:
        return None
    path = root / "numba"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:   # a read-only home: no disk cache, UMAP still works
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    if "numba" in sys.modules:
        sys.modules["numba"].config.CACHE_DIR = str(path)
    return str(path)


NUMBA_CACHE_DIR = _setup_numba_cache()
# numba's compiler is process-wide; one UMAP at a time also keeps two users from
# oversubscribing a small machine's cores.
_UMAP_LOCK = threading.Lock()
_umap_module = None
_warm = threading.Event()


def _umap():
    """Import umap once, with numba's disk cache switched on for its functions."""
    global _umap_module
    if _umap_module is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # umap warns about optional TensorFlow
            import umap
            import umap.distances
            import umap.layouts
            import umap.sparse
            import umap.spectral
            import umap.umap_
            import umap.utils
        if NUMBA_CACHE_DIR is not None:
            _enable_numba_caching((umap.umap_, umap.layouts, umap.utils, umap.spectral,
                                   umap.distances, umap.sparse))
        _umap_module = umap
    return _umap_module


def _enable_numba_caching(modules) -> None:
    # umap-learn declares most of its jitted functions without cache=True, so a
    # fresh process recompiles them (~8 s). enable_caching() is what cache=True
    # does at decoration; before the first call it is equivalent.
    # (numba is not pinned directly: if its internals move, only the caching is lost.)
    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    for module in modules:
        for fn in vars(module).values():
            if isinstance(fn, Dispatcher) and isinstance(getattr(fn, "_cache", None), NullCache):
                try:
                    fn.enable_caching()
                except Exception:   # uncachable function or unwritable dir: compile in memory
                    pass


# ------------------------------------------------------------------ validation
def _check_choice(name: str, value, allowed: tuple):
    if value not in allowed:
        raise MetaRepError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def _check_number(name: str, value, low: float, high: float, integer: bool = False):
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise MetaRepError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}") from None
    if not np.isfinite(num) or not low <= num <= high or (integer and num != int(num)):
        kind = "an integer" if integer else "a number"
        raise MetaRepError(f"{name} must be {kind} between {low:g} and {high:g}, got {value!r}")
    return int(num) if integer else num


def _check_points(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise MetaRepError(f"{name} must be a 2-D array (n_points, n_features), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise MetaRepError(f"{name} holds NaN or infinite values ({int((~np.isfinite(X)).sum())} "
                           "entries); the model may have diverged")
    return X


def resolve_params(n: int, method: str, dim: int = 2, n_neighbors: int = 15,
                   min_dist: float = 0.1, perplexity: float = 30.0) -> tuple[dict, list[str]]:
    """Validate the parameters for ``n`` points and fit them to small inputs.

    Values outside their allowed range raise :class:`MetaRepError`. Values that are
    valid in general but too large for ``n`` points (n_neighbors >= n, perplexity
    >= n/3) are clamped, and a note saying so is returned, because a 5-way 1-shot
    episode has only a few dozen points. Returns (params, notes); ``params["method"]``
    is "pca" when there are too few points for t-SNE or UMAP to mean anything.
    """
    _check_choice("method", method, METHODS)
    dim = int(_check_choice("dim", dim, DIMS))
    n_neighbors = _check_number("n_neighbors", n_neighbors, *N_NEIGHBORS_RANGE, integer=True)
    min_dist = _check_number("min_dist", min_dist, *MIN_DIST_RANGE)
    perplexity = _check_number("perplexity", perplexity, *PERPLEXITY_RANGE)
    notes = []
    if method != "pca" and n < 2 * dim + 2:
        notes.append(f"{method} needs at least {2 * dim + 2} points for a {dim}-D map; "
                     f"{n} given, so PCA is shown instead")
        method = "pca"
    if method == "umap" and n_neighbors >= n:
        notes.append(f"n_neighbors lowered from {n_neighbors} to {n - 1}: it must be below "
                     f"the number of points ({n})")
        n_neighbors = n - 1
    # sklearn only requires perplexity < n; below n/3 every point keeps real neighbours.
    max_perp = max(1.0, (n - 1) / 3.0)
    if method == "tsne" and perplexity > max_perp:
        notes.append(f"perplexity lowered from {perplexity:g} to {max_perp:.1f}: it must be "
                     f"at most a third of the number of points ({n})")
        perplexity = max_perp
    return {"method": method, "dim": dim, "n_neighbors": n_neighbors, "min_dist": min_dist,
            "perplexity": perplexity}, notes


# ------------------------------------------------------------------ the methods
def _one_thread():
    """A context in which BLAS and OpenMP use one thread. On a loaded 2-core server
    their worker threads spin-wait against each other: a 450 x 64 SVD took 2 s with
    two OpenBLAS threads and 4 ms with one; a 60-point t-SNE 10 s of CPU against 0.05.
    (threadpool_limits rescans the loaded libraries each time, ~1 ms, so libraries
    loaded later, such as scikit-learn's OpenMP, are limited too.)"""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1)


def _pca_fit(X: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and components (d, dim) of ``X``; signs fixed so the largest
    loading of each component is positive (deterministic across runs)."""
    mean = X.mean(0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    comps = np.zeros((X.shape[1], dim))
    k = min(dim, vt.shape[0])
    comps[:, :k] = vt[:k].T
    big = np.abs(comps).argmax(0)
    comps *= np.where(comps[big, np.arange(dim)] < 0, -1.0, 1.0)
    return mean, comps


def _pca(X: np.ndarray, dim: int) -> np.ndarray:
    mean, comps = _pca_fit(X, dim)
    return (X - mean) @ comps


def _distance_matrix(X: np.ndarray) -> np.ndarray:
    sq = (X * X).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


# t-SNE settings, measured on 1,000 64-d embeddings of glyphs (shipped ProtoNet and
# MAML, and a fresh init), one thread: all the time is in the Barnes-Hut gradient.
# angle 0.8 (sklearn's default 0.5) and, in 3-D, 400 iterations instead of 500 took
# 3-D from 4.9-5.1 to 2.4-2.7 CPU s and 2-D from 1.7-1.8 to 1.3-1.4, with trustworthiness
# (k=10) and 5-NN class accuracy in the map within 0.01 of the old settings.
# openTSNE 1.0.4 was no faster here (CPU s at n=1,000: 3-D Barnes-Hut 4.4, 2-D FFT 19).
_TSNE_ANGLE = 0.8
_TSNE_MAX_ITER = {2: 500, 3: 400}    # includes sklearn's 250 early-exaggeration iterations


def _tsne(X: np.ndarray, dim: int, seed: int, perplexity: float) -> np.ndarray:
    from sklearn.manifold import TSNE
    # sklearn's default is 1,000 iterations; the few hundred to thousand points of
    # the Embedding page converge in far fewer. With PCA initialisation the result
    # does not depend on the seed.
    tsne = TSNE(n_components=dim, perplexity=perplexity, init="pca", learning_rate="auto",
                max_iter=_TSNE_MAX_ITER[dim], angle=_TSNE_ANGLE, random_state=seed)
    with _one_thread():     # again, now that scikit-learn's OpenMP runtime is loaded
        return tsne.fit_transform(X)


def _exact_knn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of each row of ``X`` (n, d), the point itself
    included (distance 0), as umap's own search gives them: indices (n, k) int64
    and Euclidean distances (n, k), nearest first."""
    dist = _distance_matrix(X)
    idx = np.argpartition(dist, k - 1, axis=1)[:, :k]
    near = np.take_along_axis(dist, idx, 1)
    order = np.lexsort((idx, near), axis=1)       # by distance, ties by index: deterministic
    return np.take_along_axis(idx, order, 1), np.take_along_axis(near, order, 1)


def _umap_fit(X: np.ndarray, dim: int, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    n = X.shape[0]
    # Small data: 200 epochs are plenty (umap itself uses 500 below 10k points) and
    # halve the time. random_state makes umap single-threaded and deterministic,
    # which is what a class comparing seeds needs; the machine has 2 cores anyway.
    kwargs = dict(n_components=dim, n_neighbors=n_neighbors, min_dist=min_dist,
                  random_state=seed, n_epochs=200 if n <= 2000 else None, low_memory=True,
                  init="spectral" if n > dim + 2 else "random")
    with _UMAP_LOCK, warnings.catch_warnings():   # the lock also covers the first import
        umap = _umap()
        import numba
        warnings.simplefilter("ignore")   # "n_jobs overridden by random_state", precomputed_knn notes
        numba.set_num_threads(1)          # per calling thread; see _one_thread
        if n <= _EXACT_KNN_MAX:
            # Exact neighbours from one distance matrix, handed over as a kNN graph:
            # umap's own search on a precomputed matrix argsorts every full row
            # (1,000 points: 0.06 of 0.45 CPU s); argpartition takes a few ms.
            knn = _exact_knn(X, n_neighbors)
            return umap.UMAP(precomputed_knn=knn, **kwargs).fit_transform(X).astype(np.float64)
        return umap.UMAP(**kwargs).fit_transform(X).astype(np.float64)


def project(X, method: str = "pca", dim: int = 2, seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, perplexity: float = 30.0, return_notes: bool = False):
    """Project embeddings ``X`` (n, d) to (n, dim) float64.

    ``method``: "pca" (numpy SVD), "tsne" (sklearn, PCA init, automatic learning
    rate) or "umap". Deterministic in ``seed``. Parameters outside their ranges raise
    :class:`MetaRepError`; ones too large for a small ``n`` are clamped (see
    :func:`resolve_params`). With ``return_notes=True`` returns ``(Y, notes)`` where
    notes are sentences saying what was clamped, for the page to show.
    """
    X = _check_points(X)
    seed = _check_number("seed", seed, 0, 2**32 - 1, integer=True)
    params, notes = resolve_params(X.shape[0], method, dim, n_neighbors, min_dist, perplexity)
    method, dim = params["method"], params["dim"]
    with _one_thread():
        if X.shape[0] == 1:
            Y = np.zeros((1, dim))
        elif method == "pca":
            Y = _pca(X, dim)
        elif method == "tsne":
            Y = _tsne(X, dim, seed, params["perplexity"])
        else:
            Y = _umap_fit(X, dim, seed, params["n_neighbors"], params["min_dist"])
    return (Y, notes) if return_notes else Y


# ------------------------------------------------------------------ alignment
def align(Y, reference) -> np.ndarray:
    """``Y`` (n, k) rotated or reflected, uniformly scaled and shifted to best match
    ``reference`` (n, k) in least squares (orthogonal Procrustes).

    Both describe the same n points; a projection's orientation, scale and position
    mean nothing, so this removes exactly those differences and keeps the shape."""
    Y = _check_points(Y, "Y")
    ref = _check_points(reference, "reference")
    if Y.shape != ref.shape:
        raise MetaRepError(f"align needs the same points in both: Y has shape {Y.shape}, "
                           f"reference has shape {ref.shape}")
    mu_y, mu_r = Y.mean(0), ref.mean(0)
    yc, rc = Y - mu_y, ref - mu_r
    norm = float((yc * yc).sum())
    if norm == 0.0:                      # all points in one place: only a shift is defined
        return np.broadcast_to(mu_r, Y.shape).copy()
    u, s, vt = np.linalg.svd(yc.T @ rc)
    rotation = u @ vt                    # may include a reflection, which is what we want
    scale = s.sum() / norm
    return scale * yc @ rotation + mu_r


def project_sequence(Xs, method: str = "pca", dim: int = 2, seed: int = 0, joint: bool | None = None,
                     **params) -> list[np.ndarray]:
    """Project the same points at several steps, e.g. the queries after each inner
    step: ``Xs`` is a list of (n, d) arrays with the same n (rows correspond).

    ``joint=True`` fits one projection on all steps stacked and splits it, so every
    step is drawn in the same space and motion on screen is motion in the embedding
    (PCA always; the default for t-SNE/UMAP up to 4,000 points in all, where one fit
    is also cheaper than one per step). ``joint=False`` projects each step alone and
    aligns it to the previous one (:func:`align`) so nothing flips between steps.
    Returns a list of (n, dim) arrays.
    """
    if len(Xs) == 0:
        raise MetaRepError("project_sequence needs at least one step of points, got none")
    arrays = [_check_points(X, f"step {i}") for i, X in enumerate(Xs)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise MetaRepError("every step must hold the same points (same shape); got shapes "
                           + ", ".join(str(a.shape) for a in arrays))
    n = arrays[0].shape[0]
    if joint is None:
        joint = method == "pca" or n * len(arrays) <= _EXACT_KNN_MAX
    if method == "pca" and joint:
        resolve_params(n, method, dim, **params)      # validates dim and the rest
        with _one_thread():
            mean, comps = _pca_fit(np.concatenate(arrays), dim)
            return [(a - mean) @ comps for a in arrays]
    if joint:
        # Points that do not move between steps (a ProtoNet's queries while shots are
        # added) are projected once, so t-SNE/UMAP cannot draw them as moving.
        unique, inverse = np.unique(np.concatenate(arrays), axis=0, return_inverse=True)
        Y = project(unique, method, dim, seed, **params)[inverse.reshape(-1)]
        return [Y[i * n:(i + 1) * n] for i in range(len(arrays))]
    out = [project(arrays[0], method, dim, seed, **params)]
    for a in arrays[1:]:
        out.append(align(project(a, method, dim, seed, **params), out[-1]))
    return out


def project_aligned(Xs, method: str = "pca", dim: int = 2, seed: int = 0, **params) -> list[np.ndarray]:
    """Alias of :func:`project_sequence` (the name the app's pages use)."""
    return project_sequence(Xs, method, dim, seed, **params)


# ------------------------------------------------------------------ warm-up
def warm_up() -> float:
    """Compile (or load from the disk cache) UMAP's numba code by running a tiny
    UMAP through the same code path as :func:`project`. Returns the seconds taken.
    Safe to call from a background thread; later calls return at once."""
    if _warm.is_set():
        return 0.0
    start = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(64, 8))
    with _one_thread():
        for dim in DIMS:
            _umap_fit(X, dim, seed=0, n_neighbors=10, min_dist=0.1)
    _warm.set()
    return time.perf_counter() - start


def is_warm() -> bool:
    """Whether :func:`warm_up` has finished in this process."""
    return _warm.is_set()


if __name__ == "__main__":
    import json
    print(json.dumps({"warm_up_s": round(warm_up(), 2), "numba_cache_dir": NUMBA_CACHE_DIR}))
