"""The app's data work without a browser or AppTest: the settings' effective N, the
session model and what is memoised on it (trace, motion, embedding points,
predictions), the true curve of a regression task, the comparison, the page list.
Real datasets and learners throughout; a fresh init is enough for shapes and memos."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from app import comparison, embedding_space, pages, services, state
from metarep_core.data import load_dataset
from metarep_core.data.sinusoid import Sinusoid
from metarep_core.episodes import EpisodeSampler
from metarep_core.evaluation import episode_scores

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs", seed=0)


def _episode(dataset, n_way=5, k_shot=1, n_query=2, seed=0, split="test"):
    return EpisodeSampler(dataset, split, n_way, k_shot, n_query, seed).sample(seed)


def _model(dataset, algorithm="protonet", n_way=5, seed=0, version=1):
    learner = services.fresh_learner(algorithm, dataset.input_shape, n_way, dataset.task, seed=seed)
    return state.SessionModel(learner, "fresh", {}, version)


# ------------------------------------------------------------------ settings
def test_effective_n_way_comes_from_the_datasets_task(glyphs):
    chosen = state.Settings(dataset="sinusoid", n_way=7)
    assert chosen.for_task(load_dataset("sinusoid").task).n_way == 1
    assert chosen.for_task(services.dataset_task(glyphs)).n_way == 7
    assert dataclasses.replace(chosen.for_task("regression"), n_way=7) == chosen  # only N changes


def test_a_regression_dataset_with_another_name_still_gets_one_output():
    class Waves(Sinusoid):  # no app code names it
        name = "waves"
    assert state.Settings(dataset="waves", n_way=4).for_task(services.dataset_task(Waves())).n_way == 1


# ------------------------------------------------------------------ the session model
def test_session_model_is_frozen_and_its_memo_is_bounded():
    model = state.SessionModel(learner=object(), source="fresh", meta={}, version=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.source = "trained"
    calls = []
    first = model.remember(("a",), lambda: calls.append("a") or ["a"])
    assert model.remember(("a",), lambda: ["again"]) is first and calls == ["a"]
    for i in range(model.MEMO_ITEMS):
        model.remember(("other", i), lambda: i)
    assert model.remember(("a",), lambda: ["recomputed"]) == ["recomputed"]  # dropped, oldest


def test_episode_key_follows_the_content_not_the_object(glyphs):
    a, b = _episode(glyphs, seed=4), _episode(glyphs, seed=4)
    assert a is not b and services.episode_key(a) == services.episode_key(b)
    assert services.episode_key(a) != services.episode_key(_episode(glyphs, seed=5))
    assert services.episode_key(a) != services.episode_key(_episode(glyphs, seed=4, split="val"))


def test_trace_is_memoised_per_model_and_episode(glyphs):
    model = _model(glyphs)
    episode = _episode(glyphs, k_shot=3)
    trace = services.trace(model, episode)
    assert len(trace) == 3 and trace[-1].query_probs.shape == (10, 5)  # a step per shot
    assert services.trace(model, _episode(glyphs, k_shot=3)) is trace  # same episode resampled
    other_episode = services.trace(model, _episode(glyphs, k_shot=3, seed=1))
    assert other_episode is not trace
    trained = state.SessionModel(_model(glyphs, seed=1).learner, "trained", {"steps": 5}, 2)
    changed = services.trace(trained, episode)  # the session's model changed: a new trace
    assert changed is not trace
    assert not np.allclose(changed[-1].query_probs, trace[-1].query_probs)


def test_motion_follows_queries_and_prototypes_through_the_trace(glyphs):
    model, episode = _model(glyphs), _episode(glyphs, k_shot=3)
    motion = services.motion(model, episode, seed=0)
    n_query = len(episode.query_y)
    assert motion.points.shape == (3, n_query + 5, 2)  # (steps, queries + prototypes, 2)
    assert motion.kinds == ["query"] * n_query + ["prototype"] * 5
    assert list(motion.y) == list(episode.query_y.numpy()) + list(range(5))
    assert services.motion(model, episode, seed=0) is motion


def test_embedding_points_are_projected_and_memoised(glyphs):
    model, episode = _model(glyphs), _episode(glyphs, n_query=2)
    pts = embedding_space.points(model, episode, glyphs, split="test", n_samples=10, method="pca",
                          dim=2, seed=0)
    n = 5 + 10 + 10 + 5  # support, query, samples, prototypes
    assert pts.xy.shape == (n, 2) and len(pts.names) == len(pts.groups) == n
    assert list(pts.kinds).count("prototype") == 5 and list(pts.kinds).count("sample") == 10
    assert pts.images.shape[0] == n and pts.wrong.shape == (n,)
    assert not pts.wrong[pts.kinds != "query"].any()
    assert [pts.class_names[i] for i in pts.y] == pts.names
    assert embedding_space.points(model, episode, glyphs, split="test", n_samples=10, method="pca",
                           dim=2, seed=0) is pts
    in_3d = embedding_space.points(model, episode, glyphs, split="test", n_samples=10, method="pca",
                            dim=3, seed=0)
    assert in_3d.xy.shape == (n, 3)


def test_a_new_projection_reuses_the_embedding(glyphs):
    # Changing only a projection setting must not adapt or embed again (issue 13): the
    # real learner's methods are wrapped to count calls, not replaced.
    model, episode = _model(glyphs), _episode(glyphs, n_query=2)
    calls = {"adapt": 0, "embed": 0}

    def counted(name):
        method = getattr(model.learner, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return wrapper
    model.learner.adapt = counted("adapt")
    model.learner.embed = counted("embed")
    common = dict(split="test", n_samples=10, seed=0)
    first = embedding_space.points(model, episode, glyphs, method="pca", dim=2, **common)
    assert calls["adapt"] == 1
    embeds = calls["embed"]
    for method, dim, params in [("pca", 3, {}), ("tsne", 2, {"perplexity": 5.0}),
                                ("tsne", 2, {"perplexity": 8.0}), ("tsne", 3, {"perplexity": 5.0})]:
        pts = embedding_space.points(model, episode, glyphs, method=method, dim=dim, **common, **params)
        assert pts.xy.shape == (len(first.names), dim) and pts.names == first.names
    assert calls == {"adapt": 1, "embed": embeds}
    np.testing.assert_array_equal(pts.images, first.images)
    # what the embedding itself depends on still makes a new one
    embedding_space.points(model, episode, glyphs, method="pca", dim=2, split="test", n_samples=12, seed=0)
    embedding_space.points(model, episode, glyphs, method="pca", dim=2, split="test", n_samples=10, seed=1)
    assert calls["adapt"] == 3


def test_predictions_match_the_learner_adapted_directly(glyphs):
    model, episode = _model(glyphs), _episode(glyphs, n_query=3)
    probs, accuracy = services.predictions(model, episode)
    direct = model.learner.adapt(episode).predict(episode.query_x)
    assert np.allclose(probs, direct.detach().numpy())
    assert accuracy == pytest.approx(100 * (direct.argmax(1) == episode.query_y).float().mean().item())


# ------------------------------------------------------------------ regression and compare
def test_true_curve_is_drawn_on_the_datasets_own_grid():
    class Narrow(Sinusoid):
        x_range = (0.0, 1.0)
    dataset = Narrow()
    episode = EpisodeSampler(dataset, "test", 1, 5, 5, 0).sample(0)
    x, y = services.true_curve(dataset, episode)
    assert x.shape == y.shape == (200,) and (x.min(), x.max()) == (0.0, 1.0)
    expected = dataset.evaluate(episode.info, torch.from_numpy(x).view(-1, 1)).view(-1).numpy()
    assert np.allclose(y, expected)


def test_compare_scores_each_model_on_the_same_episodes(glyphs):
    models = {"protonet": _model(glyphs), "anil": _model(glyphs, "anil", version=2)}
    settings = state.Settings(n_way=5, k_shot=1, n_query=2, seed=3)
    seen = []
    results = comparison.compare(models, glyphs, settings, 3,
                               on_progress=lambda name, fraction, done, total: seen.append(fraction))
    assert list(results) == ["protonet", "anil"]
    direct = episode_scores(models["anil"].learner, glyphs, "test", n_way=5, k_shot=1, n_query=2,
                            episodes=3, seed=3)
    assert list(results["anil"]["scores"]) == pytest.approx(list(direct))
    assert results["protonet"]["source"] == "fresh" and "ci95" in results["protonet"]["summary"]
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) == 6


# ------------------------------------------------------------------ pages
def test_the_page_list_is_the_views_folder():
    scripts = {p.name for p in (ROOT / "app" / "views").glob("*.py") if p.name != "__init__.py"}
    assert {f"{name}.py" for name in pages.NAMES} == scripts
    assert pages.DEFAULT in pages.NAMES
    with pytest.raises(ValueError, match="episodes"):
        pages.script("nope")


# ------------------------------------------------------------------ batch norm at test time
def test_the_batch_norm_switch_changes_the_trace_and_leaves_the_learner_as_it_was(glyphs):
    """Issue 9: the adaptation page switches MAML-family learners between the query
    batch's statistics and the support set's. The switch must reach the learner (the
    query predictions change), be memoised apart, and not stay on the learner."""
    model = _model(glyphs, "maml")
    episode = _episode(glyphs, n_query=3)
    assert services.test_bn_modes(model) == ("transductive", "support")
    own = services.trace(model, episode)
    transductive = services.trace(model, episode, "transductive")
    support = services.trace(model, episode, "support")
    assert model.learner.hp["test_bn"] == "transductive"
    np.testing.assert_allclose(own[-1].query_probs, transductive[-1].query_probs, atol=1e-6)
    assert np.abs(np.asarray(support[0].query_probs) - np.asarray(transductive[0].query_probs)).max() > 1e-3
    assert services.trace(model, episode, "support") is support  # memoised under its mode
    with pytest.raises(Exception, match="test_bn must be one of"):
        services.trace(model, episode, "running")


def test_learners_without_the_switch_say_they_use_running_statistics(glyphs):
    assert services.test_bn_modes(_model(glyphs, "protonet")) == ()
    assert services.test_bn_modes(_model(glyphs, "versa")) == ()
    sinusoid = load_dataset("sinusoid")
    learner = services.fresh_learner("maml", sinusoid.input_shape, 1, sinusoid.task)
    assert services.test_bn_modes(state.SessionModel(learner, "fresh", {}, 1)) == ()
