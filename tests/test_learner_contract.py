"""The MetaLearner contract, checked for every registered learner.

In the spirit of scikit-learn's ``parametrize_with_checks``: each check is a plain
function ``check_x(name)`` over the registry, and :func:`learner_checks` pairs every
name of ``available()`` with every check, so a learner added tomorrow is checked the
day it is registered, with no list to edit. ``test_a_toy_learner_*`` registers a
small learner inside the test and shows that it goes through every check, and that
a broken one is caught.

Episodes are tiny (3-way 2-shot 2-query 1x12x12 images; 5-shot sinusoid tasks) so
the whole module runs in well under a minute on one thread.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from metarep_core.checkpoints import checkpoint_to_bytes, load_checkpoint
from metarep_core.episodes import Episode
from metarep_core.errors import MetaRepError
from metarep_core.learners import available, build_learner, get_learner_class, register, unregister
from metarep_core.learners._metric import MetricLearner
from metarep_core.learners.base import (CAPABILITIES, FAMILIES, TASKS, Adapted, HyperParam, MetaLearner,
                                        TraceStep)

IMAGE_SHAPE, N_WAY, K_SHOT, N_QUERY = (1, 12, 12), 3, 2, 2


def image_episode(seed: int = 0) -> Episode:
    """3-way 2-shot, 2 queries per class: support (6, 1, 12, 12), query (6, 1, 12, 12)."""
    gen = torch.Generator().manual_seed(seed)
    # a class is a noisy copy of its own random template, so there is something to learn
    templates = torch.rand(N_WAY, *IMAGE_SHAPE, generator=gen)

    def draw(k):
        y = torch.arange(N_WAY).repeat_interleave(k)
        return (templates[y] + 0.3 * torch.rand(len(y), *IMAGE_SHAPE, generator=gen)).clamp(0, 1), y

    sx, sy = draw(K_SHOT)
    qx, qy = draw(N_QUERY)
    return Episode(sx, sy, qx, qy, [f"c{i}" for i in range(N_WAY)], N_WAY, K_SHOT, N_QUERY, seed)


def sine_episode(seed: int = 0, k: int = 5, n_query: int = 6) -> Episode:
    """A sinusoid task: support (k, 1), query (n_query, 1), targets (n, 1)."""
    gen = torch.Generator().manual_seed(seed)
    amp, phase = 0.1 + 4.9 * torch.rand(1, generator=gen), math.pi * torch.rand(1, generator=gen)
    sx, qx = 10 * torch.rand(k, 1, generator=gen) - 5, 10 * torch.rand(n_query, 1, generator=gen) - 5
    return Episode(sx, amp * torch.sin(sx - phase), qx, amp * torch.sin(qx - phase), ["sine"], 1, k,
                   n_query, seed, task="regression")


def tasks_of(name: str) -> list[str]:
    return sorted(get_learner_class(name).tasks)


def make(name: str, task: str = "classification", seed: int = 0) -> tuple[MetaLearner, Episode, Episode]:
    """A learner with its default hyper-parameters, and two episodes of ``task``."""
    torch.manual_seed(seed)
    if task == "regression":
        return build_learner(name, (1,), 1, task="regression"), sine_episode(0), sine_episode(1)
    return build_learner(name, IMAGE_SHAPE, N_WAY), image_episode(0), image_episode(1)


def n_out(episode: Episode) -> tuple[int, ...]:
    return (episode.query_x.shape[0],) if episode.is_regression else (episode.query_x.shape[0], N_WAY)


# ------------------------------------------------------------------------------ checks
def check_metadata(name: str) -> None:
    cls = get_learner_class(name)
    assert cls.name == name and cls.title and cls.paper and cls.summary
    assert cls.family in FAMILIES
    assert set(cls.capabilities) <= CAPABILITIES and set(cls.tasks) <= set(TASKS) and cls.tasks
    # "regression" is a capability exactly when the learner takes regression tasks
    assert ("regression" in cls.capabilities) == ("regression" in cls.tasks)
    meta = json.loads(json.dumps(cls.metadata()))
    assert meta["name"] == name and meta["family"] == cls.family
    names = [h["name"] for h in meta["hyperparams"]]
    assert len(names) == len(set(names)) and {"meta_lr", "meta_batch"} <= set(names)


def check_hyperparameter_validation(name: str) -> None:
    cls = get_learner_class(name)
    for task in cls.tasks:
        hp = cls.validate_hyperparams({}, task)
        for h in cls.all_hyperparams():
            assert h.help, f"{name}.{h.name} has no help text"
            assert h.validate(h.default_for(task)) == hp[h.name] == h.default_for(task)
    with pytest.raises(MetaRepError, match="unknown hyper-parameter 'no_such_knob'"):
        cls.validate_hyperparams({"no_such_knob": 1})
    for h in cls.all_hyperparams():
        if h.kind in ("int", "float") and h.high is not None:
            with pytest.raises(MetaRepError, match=h.name):
                cls.validate_hyperparams({h.name: h.high * 10 + 1})
        if h.kind == "choice":
            with pytest.raises(MetaRepError, match=h.name):
                cls.validate_hyperparams({h.name: "not-a-choice"})
    with pytest.raises(MetaRepError, match="meta_lr"):
        build_learner(name, IMAGE_SHAPE if "classification" in cls.tasks else (1,), N_WAY,
                      task=sorted(cls.tasks)[0], meta_lr=-1.0)


def check_meta_step(name: str) -> None:
    for task in tasks_of(name):
        learner, ep0, ep1 = make(name, task)
        before = {k: v.detach().clone() for k, v in learner.state_dict().items()}
        stats = learner.meta_step([ep0, ep1])
        assert math.isfinite(stats["loss"]), (name, task, stats)
        assert all(math.isfinite(v) for v in stats.values()), stats
        if task == "classification":
            assert 0.0 <= stats["accuracy"] <= 1.0
        after = learner.state_dict()
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
        moved = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k])]
        assert moved, f"{name}: meta_step changed no weight ({task})"


def _check_capabilities_in_trace(learner: MetaLearner, trace: list[TraceStep], episode: Episode) -> None:
    caps, steps, n_q = learner.capabilities, [s.step for s in trace], episode.query_x.shape[0]
    if "inner_loop" in caps:
        assert steps == list(range(len(trace))), steps  # step 0 = before adaptation
        if learner.hp.get("inner_tol"):  # a solver that stops at a stated tolerance (iMAML)
            assert 1 < len(trace) <= learner.hp["eval_steps"] + 1
        elif "eval_steps" in learner.hp:
            assert len(trace) == learner.hp["eval_steps"] + 1
    if "shots_trace" in caps and not episode.is_regression:
        assert steps[-1] == episode.k_shot and steps[-episode.k_shot:] == list(range(1, episode.k_shot + 1))
    if "prototypes" in caps:
        assert trace[-1].prototypes.shape == (N_WAY, trace[-1].query_emb.shape[1])
    for cap, key in (("attention", "attention"), ("pairwise", "similarity"), ("probabilistic", "uncertainty")):
        if cap in caps:
            assert any(key in s.extras for s in trace), f"{learner.name} declares {cap} but no {key!r}"
            assert all(s.extras[key].shape[0] == n_q for s in trace if key in s.extras and s.step > 0)
    if "memory" in caps:
        assert any(set(s.extras) & {"read_weights", "attention"} for s in trace)
    if episode.is_regression:
        assert all(s.extras["curve_x"].shape == s.extras["curve_y"].shape for s in trace)


def check_adapt_trace(name: str) -> None:
    for task in tasks_of(name):
        learner, ep, _ = make(name, task)
        learner.eval()  # as evaluation and the app use a learner (a loaded checkpoint is in eval mode)
        before = {k: v.detach().clone() for k, v in learner.state_dict().items()}
        with torch.no_grad():  # as evaluate_episode calls it
            adapted = learner.adapt(ep, record=True)
        assert isinstance(adapted, Adapted) and adapted.trace
        n_s, n_q = ep.support_x.shape[0], ep.query_x.shape[0]
        steps = [s.step for s in adapted.trace]
        assert steps == sorted(set(steps)), steps
        for s in adapted.trace:
            assert isinstance(s, TraceStep) and isinstance(s.label, str) and s.label
            assert s.query_probs.shape == n_out(ep) and math.isfinite(s.query_loss)
            if not ep.is_regression:
                np.testing.assert_allclose(s.query_probs.sum(1), 1.0, atol=1e-4)
                assert 0.0 <= s.query_accuracy <= 1.0
            if s.support_emb is not None:
                assert s.support_emb.shape[0] == n_s
            if s.query_emb is not None:
                assert s.query_emb.shape[0] == n_q
            assert all(isinstance(v, np.ndarray) for v in s.extras.values())
        _check_capabilities_in_trace(learner, adapted.trace, ep)
        # the last step is the adapted learner that predict() uses
        last = adapted.trace[-1].query_probs
        np.testing.assert_allclose(adapted.predict(ep.query_x).numpy().reshape(last.shape), last, atol=1e-4)
        # adapting reads the meta-parameters and writes none of them
        assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
        assert all(p.grad is None for p in learner.parameters())
        assert learner.adapt(ep).trace is None


def check_predict_and_embed(name: str) -> None:
    for task in tasks_of(name):
        learner, ep, _ = make(name, task)
        learner.eval()
        adapted = learner.adapt(ep)
        probs = adapted.predict(ep.query_x)
        n_q = ep.query_x.shape[0]
        if ep.is_regression:
            assert probs.shape == (n_q, 1)
        else:
            assert probs.shape == (n_q, N_WAY) and torch.allclose(probs.sum(1), torch.ones(n_q), atol=1e-4)
        emb = learner.embed(ep.query_x)
        assert emb.ndim == 2 and emb.shape[0] == n_q and torch.isfinite(emb).all()
        assert adapted.embed(ep.query_x).shape[0] == n_q
        metrics = learner.evaluate_episode(ep)
        assert math.isfinite(metrics["loss"]) and ("mse" in metrics) == ep.is_regression


def check_checkpoint_round_trip(name: str) -> None:
    for task in tasks_of(name):
        learner, ep0, ep1 = make(name, task)
        learner.meta_step([ep0, ep1])  # weights (and optimizer) no longer at their init
        learner.eval()
        loaded, meta = load_checkpoint(checkpoint_to_bytes(learner), expected_algorithm=name)
        assert type(loaded) is type(learner) and loaded.config() == learner.config() == {
            **meta["config"], "algorithm": name}
        state, again = learner.state_dict(), loaded.state_dict()
        assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)
        torch.testing.assert_close(loaded.adapt(ep0).predict(ep0.query_x), learner.adapt(ep0).predict(ep0.query_x))


CHECKS = (check_metadata, check_hyperparameter_validation, check_meta_step, check_adapt_trace,
          check_predict_and_embed, check_checkpoint_round_trip)


def learner_checks():
    """(name, check) for every registered learner and every check: pytest parameters."""
    return [pytest.param(name, check, id=f"{name}-{check.__name__}") for name in available() for check in CHECKS]


@pytest.mark.parametrize("name, check", learner_checks())
def test_learner_contract(name, check):
    check(name)


# ------------------------------------------------------------------------- a toy learner
class ToyCentroids(MetricLearner):
    """Nearest centroid in a linear embedding: the smallest metric learner."""

    name = "toy_centroids"
    title = "Toy centroids"
    paper = "a test's own learner"
    summary = "linear embedding, nearest class mean"
    hyperparams = (HyperParam("width", 8, "int", 2, 64, help="embedding width"),)
    order = 99

    def __init__(self, input_shape, n_way, task="classification", **hp):
        super().__init__(input_shape, n_way, task, **hp)
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(self.input_shape), self.hp["width"]))

    def score(self, support_emb, support_y, query_emb, n_way):
        centroids = torch.stack([support_emb[support_y == c].mean(0) for c in range(n_way)])
        return -torch.cdist(query_emb, centroids) ** 2, {}


@pytest.fixture
def toy():
    register(ToyCentroids)
    try:
        yield ToyCentroids
    finally:
        unregister(ToyCentroids.name)


def test_a_toy_learner_is_generated_every_check_and_passes_them(toy):
    generated = [p.values for p in learner_checks() if p.values[0] == toy.name]
    assert [check for _, check in generated] == list(CHECKS)
    for name, check in generated:
        check(name)


def test_a_toy_learner_that_does_not_learn_fails_the_meta_step_check(toy):
    class Frozen(ToyCentroids):
        name = "toy_frozen"

        def meta_step(self, episodes):
            return {"loss": 1.0, "accuracy": 0.5}  # claims a step, changes nothing

    register(Frozen)
    try:
        with pytest.raises(AssertionError, match="changed no weight"):
            check_meta_step("toy_frozen")
    finally:
        unregister("toy_frozen")
    assert "toy_frozen" not in available()


# ------------------------------------------------------------------------- the registry
def _bad(**attrs):
    return type("Bad", (ToyCentroids,), {"name": "toy_bad", **attrs})


@pytest.mark.parametrize("attrs, match", [
    ({"family": "telepathy"}, "family 'telepathy' is not one of optimization, metric"),
    ({"capabilities": frozenset({"shots_trace", "mind_reading"})}, "unknown capability 'mind_reading'"),
    ({"tasks": frozenset({"classification", "ranking"})}, "tasks must be a non-empty subset"),
    ({"name": "protonet"}, "'protonet' is already registered"),
    ({"name": ""}, "non-empty string 'name'"),
    ({"hyperparams": (HyperParam("inner_lr", 0.1, per_task={"segmentation": 0.2}, help="x"),)},
     "unknown task 'segmentation'"),
])
def test_register_refuses_what_the_rest_of_the_program_cannot_show(attrs, match):
    available()  # load the real learners first, so a name clash is a clash
    with pytest.raises(MetaRepError, match=match):
        register(_bad(**attrs))
    assert "toy_bad" not in available()


def test_old_hyperparameter_name_is_read_as_the_new_one():
    """Checkpoints shipped before MAML's ``test_inner_steps`` became ``eval_steps`` load."""
    cls = get_learner_class("maml")
    assert cls.validate_hyperparams({"test_inner_steps": 3})["eval_steps"] == 3
    with pytest.raises(MetaRepError, match="old name of 'eval_steps'"):
        cls.validate_hyperparams({"test_inner_steps": 3, "eval_steps": 4})
    # a learner that never had the old name does not accept it
    with pytest.raises(MetaRepError, match="unknown hyper-parameter 'test_inner_steps'"):
        get_learner_class("protonet").validate_hyperparams({"test_inner_steps": 3})


def test_per_task_default_is_resolved_in_validation_and_an_explicit_value_wins():
    for name in available():
        cls = get_learner_class(name)
        for h in cls.all_hyperparams():
            for task, value in h.per_task.items():
                assert cls.validate_hyperparams({}, task)[h.name] == value
                assert cls.validate_hyperparams({h.name: h.default}, task)[h.name] == h.default
    assert get_learner_class("maml").validate_hyperparams({}, "regression")["inner_lr"] == 0.01
