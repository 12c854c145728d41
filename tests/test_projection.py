"""Projections (PCA, t-SNE, UMAP), their parameter checks, and Procrustes alignment.

UMAP compiles with numba on first use: one module-scoped fixture pays that once
(from numba's disk cache when warm) on a tiny input."""
import os

import numpy as np
import pytest

from metarep_core import projection
from metarep_core.errors import MetaRepError
from metarep_core.projection import align, project, project_sequence, resolve_params


def blobs(n_per=20, d=16, k=3, seed=0, spread=0.3):
    """k well-separated Gaussian clusters in d dimensions: (k*n_per, d), labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 6
    X = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centers])
    return X, np.repeat(np.arange(k), n_per)


def nn_accuracy(Y, labels):
    """Leave-one-out 1-nearest-neighbour accuracy in the projection."""
    d = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def random_orthogonal(k, seed, reflect):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))
    if (np.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    return q


@pytest.fixture(scope="module")
def umap_ready():
    seconds = projection.warm_up()
    assert projection.is_warm()
    return seconds


def test_numba_cache_dir_is_set_before_umap_is_imported():
    if projection.NUMBA_CACHE_DIR is None:   # only when METAREP_CACHE=off (or unwritable)
        assert projection._cache_root() is None or not os.access(projection._cache_root().parent, os.W_OK)
        return
    assert os.environ["NUMBA_CACHE_DIR"] == projection.NUMBA_CACHE_DIR
    import numba
    assert numba.config.CACHE_DIR == projection.NUMBA_CACHE_DIR


@pytest.mark.parametrize("method, dim", [("pca", 2), ("pca", 3), ("tsne", 2)])
def test_shapes_and_clusters_kept(method, dim):
    X, labels = blobs()
    Y = project(X, method, dim, seed=0, perplexity=10)
    assert Y.shape == (len(X), dim) and np.isfinite(Y).all()
    assert nn_accuracy(Y, labels) == 1.0


def test_tsne_3d_shape():
    # (sklearn's 3-D t-SNE scatters 60 points too much for a cluster check to be fair)
    Y = project(blobs()[0], "tsne", 3, seed=0, perplexity=10)
    assert Y.shape == (60, 3) and np.isfinite(Y).all()


def test_umap_keeps_clusters_and_is_deterministic_in_seed(umap_ready):
    X, labels = blobs()
    Y = project(X, "umap", 2, seed=3, n_neighbors=10)
    assert Y.shape == (60, 2)
    assert nn_accuracy(Y, labels) == 1.0
    np.testing.assert_array_equal(Y, project(X, "umap", 2, seed=3, n_neighbors=10))
    assert not np.allclose(Y, project(X, "umap", 2, seed=4, n_neighbors=10))
    assert project(X, "umap", 3, seed=3, n_neighbors=10).shape == (60, 3)


def test_tsne_is_deterministic():
    # PCA initialisation leaves t-SNE no randomness: the same input gives the same map
    X, _ = blobs(n_per=10)
    a = project(X, "tsne", 2, seed=1, perplexity=5)
    np.testing.assert_array_equal(a, project(X, "tsne", 2, seed=1, perplexity=5))


def test_pca_matches_svd_and_has_fixed_signs():
    X, _ = blobs(d=8)
    Y = project(X, "pca", 2)
    Xc = X - X.mean(0)
    _, s, _ = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=0), s[:2], rtol=1e-10)
    # the same data in any feature order gives the same picture (signs are fixed, not arbitrary)
    np.testing.assert_allclose(Y, project(X[:, ::-1], "pca", 2), atol=1e-9)


def test_pca_pads_when_there_are_fewer_features_than_dims():
    Y = project(np.arange(10.0).reshape(5, 2), "pca", 3)
    assert Y.shape == (5, 3) and np.all(Y[:, 2] == 0)


@pytest.mark.parametrize("kwargs, words", [
    (dict(method="isomap"), ["isomap", "pca", "tsne", "umap"]),
    (dict(method="pca", dim=4), ["dim", "4", "2", "3"]),
    (dict(method="umap", n_neighbors=1), ["n_neighbors", "1", "between 2 and 200"]),
    (dict(method="umap", n_neighbors=500), ["n_neighbors", "500"]),
    (dict(method="umap", n_neighbors=7.5), ["n_neighbors", "integer", "7.5"]),
    (dict(method="umap", min_dist=1.5), ["min_dist", "1.5", "between 0 and 1"]),
    (dict(method="tsne", perplexity=0), ["perplexity", "0", "between 1 and 100"]),
    (dict(method="tsne", perplexity="lots"), ["perplexity", "lots"]),
    (dict(method="pca", seed=-1), ["seed", "-1"]),
])
def test_bad_parameters_name_the_value_and_the_range(kwargs, words):
    X, _ = blobs(n_per=5)
    with pytest.raises(MetaRepError) as err:
        project(X, **kwargs)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("X, words", [
    (np.ones(5), ["2-D", "(5,)"]),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), ["NaN", "diverged"]),
])
def test_bad_points_are_refused_with_a_reason(X, words):
    with pytest.raises(MetaRepError) as err:
        project(X, "pca")
    for w in words:
        assert w in str(err.value)


def test_small_episodes_clamp_parameters_with_a_note():
    params, notes = resolve_params(20, "umap", 2, n_neighbors=50)
    assert params["n_neighbors"] == 19 and "50" in notes[0] and "19" in notes[0]
    params, notes = resolve_params(20, "tsne", 2, perplexity=30)
    assert params["perplexity"] == pytest.approx(19 / 3) and "30" in notes[0]
    params, notes = resolve_params(80, "tsne", 2, perplexity=20)
    assert params["perplexity"] == 20 and notes == []
    X, _ = blobs(n_per=4)   # 12 points, a 3-way 1-shot episode's worth
    Y, notes = project(X, "tsne", 2, perplexity=30, return_notes=True)
    assert Y.shape == (12, 2) and "perplexity" in notes[0]


def test_too_few_points_for_tsne_fall_back_to_pca_with_a_note():
    X = np.random.default_rng(0).normal(size=(4, 6))
    Y, notes = project(X, "tsne", 2, return_notes=True)
    np.testing.assert_allclose(Y, project(X, "pca", 2))
    assert "PCA" in notes[0] and "4" in notes[0]
    assert project(X[:1], "umap", 3).shape == (1, 3)


@pytest.mark.parametrize("k, reflect", [(2, False), (2, True), (3, True)])
def test_align_recovers_a_rotated_reflected_scaled_shifted_copy(k, reflect):
    ref = np.random.default_rng(1).normal(size=(30, k))
    moved = 3.7 * ref @ random_orthogonal(k, 2, reflect) + np.arange(1, k + 1) * 5.0
    np.testing.assert_allclose(align(moved, ref), ref, atol=1e-10)


def test_align_refuses_different_points():
    with pytest.raises(MetaRepError, match=r"\(4, 2\).*\(5, 2\)"):
        align(np.zeros((4, 2)), np.zeros((5, 2)))


def test_pca_sequence_is_one_space_and_does_not_flip():
    X, _ = blobs(d=12)
    rng = np.random.default_rng(5)
    steps = [X + 0.01 * t * rng.normal(size=X.shape) for t in range(4)]
    out = project_sequence(steps, "pca", 2)
    stacked = project(np.concatenate(steps), "pca", 2)
    np.testing.assert_allclose(np.concatenate(out), stacked, atol=1e-9)
    spread = np.ptp(out[0], axis=0).max()
    for a, b in zip(out, out[1:]):   # small moves stay small: no flip between steps
        assert np.abs(a - b).max() < 0.05 * spread


def test_aligned_sequence_undoes_the_orientation_of_separate_projections():
    X, _ = blobs(d=5)
    steps = [X, X @ random_orthogonal(5, 3, True)]   # same geometry, rotated embedding space
    separate = [project(s, "pca", 2) for s in steps]
    out = project_sequence(steps, "pca", 2, joint=False)
    np.testing.assert_allclose(out[1], out[0], atol=1e-8)
    np.testing.assert_allclose(out[0], separate[0])


def test_joint_tsne_sequence_keeps_still_points_still():
    X, _ = blobs(n_per=8)
    moved = X.copy()
    moved[:4] += 0.5    # only four points move between the two steps
    a, b = project_sequence([X, moved], "tsne", 2, perplexity=5)
    np.testing.assert_array_equal(a[4:], b[4:])
    assert np.abs(a[:4] - b[:4]).max() > 0


def test_sequence_refuses_steps_of_different_points():
    with pytest.raises(MetaRepError, match="same points"):
        project_sequence([np.zeros((4, 3)), np.zeros((5, 3))], "pca")


def test_exact_knn_is_the_sorted_head_of_each_distance_row():
    X = np.random.default_rng(2).normal(size=(50, 7))
    X[10] = X[3]                                   # a duplicate: ties broken by index
    idx, dist = projection._exact_knn(X, 6)
    full = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    expected = np.lexsort((np.broadcast_to(np.arange(50), full.shape), full), axis=1)[:, :6]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(dist, np.take_along_axis(full, expected, 1), atol=1e-9)
    assert list(idx[3][:2]) == [3, 10] and list(idx[10][:2]) == [3, 10]


def test_knn_accuracy_counts_points_whose_neighbours_share_their_class():
    from metarep_core.bench.projection import knn_accuracy
    X, labels = blobs(n_per=10)
    assert knn_accuracy(X, labels) == 1.0
    assert knn_accuracy(X, np.roll(labels, 5)) < 0.7   # labels no longer follow the clusters


def test_projection_bench_reports_percentiles_quality_and_load():
    from metarep_core.bench import run
    records = run(["projection"], out=open(os.devnull, "w"), options={"n_points": 40, "repeats": 2})
    assert [(r["method"], r["dim"]) for r in records] == [(m, d) for m in projection.METHODS
                                                         for d in projection.DIMS]
    for r in records:
        assert r["bench"] == "projection" and r["n_points"] == 40 and len(r["loadavg"]) == 3
        assert 0 < r["cpu_p50_s"] <= r["cpu_p95_s"] and 0 < r["wall_p50_s"] <= r["wall_p95_s"]
        assert 0.5 < r["trustworthiness"] <= 1 and 0 <= r["knn5_accuracy"] <= 1
