"""Trainer (progress, validation, best weights, stop, NaN) and the evaluation protocol,
with the real ProtoNet on a small glyphs set."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from metarep_core.checkpoints import load_checkpoint
from metarep_core.data.base import ClassDataset
from metarep_core.data.glyphs import load_glyphs
from metarep_core.errors import MetaRepError
from metarep_core.evaluation import episode_scores, evaluate
from metarep_core.learners import build_learner
from metarep_core.training import Trainer

SHAPE = dict(n_way=5, k_shot=1, n_query=5)


@pytest.fixture(scope="module")
def glyphs():
    return load_glyphs(seed=0, n_alphabets=8, n_classes=120, image_size=14, use_cache=False)


def protonet(glyphs, seed=0, **hp):
    torch.manual_seed(seed)
    return build_learner("protonet", glyphs.input_shape, 5, **hp)


@pytest.fixture(scope="module")
def run_30(glyphs, tmp_path_factory):
    """One real 30-step training run, shared by the tests that inspect it."""
    learner = protonet(glyphs)
    untrained = evaluate(learner, glyphs, "test", episodes=100, **SHAPE)
    calls = []
    path = tmp_path_factory.mktemp("ckpt") / "best.safetensors"
    trainer = Trainer(learner, glyphs, steps=30, seed=0, val_every=10, val_episodes=20,
                      callback=calls.append, checkpoint_path=path,
                      checkpoint_meta={"dataset": "glyphs", "dataset_params": glyphs.params}, **SHAPE)
    result = trainer.run()
    return learner, trainer, result, calls, untrained, path


def test_training_beats_chance_and_the_untrained_network(run_30, glyphs):
    learner, _, result, _, untrained, _ = run_30
    trained = evaluate(learner, glyphs, "test", episodes=100, **SHAPE)
    assert trained["accuracy"] > 20 + 30          # chance is 20% for 5-way
    # Same 100 episodes for both (paired), so a 5-point gain is well outside the noise.
    assert trained["accuracy"] > untrained["accuracy"] + 5
    assert not result.nan_detected and not result.stopped_early and result.steps_done == 30


def test_history_validation_and_callback(run_30):
    _, _, result, calls, _, _ = run_30
    assert [h["step"] for h in result.history] == list(range(1, 31))
    assert all(math.isfinite(h["loss"]) and 0 <= h["accuracy"] <= 100 for h in result.history)
    assert [v["step"] for v in result.val_curve] == [10, 20, 30]
    best = max(result.val_curve, key=lambda v: v["val_accuracy"])
    assert (result.best_step, result.best_value) == (best["step"], best["val_accuracy"])
    assert [c["step"] for c in calls] == list(range(1, 31))
    last = calls[-1]
    for key in ("steps", "loss", "accuracy", "val_accuracy", "elapsed_s", "eta_s", "steps_per_s"):
        assert key in last, key
    assert last["steps"] == 30 and last["eta_s"] == 0 and last["steps_per_s"] > 0
    assert "val_accuracy" not in calls[8] and "val_accuracy" in calls[9]


def test_best_weights_are_restored_and_saved(run_30):
    learner, trainer, result, _, _, path = run_30
    # The learner holds the best-on-validation weights: validating it again gives the best figure.
    assert trainer.validate()["val_accuracy"] == pytest.approx(result.best_value)
    loaded, meta = load_checkpoint(path, expected_algorithm="protonet")
    assert all(torch.equal(v, result.best_state[k]) for k, v in loaded.state_dict().items())
    assert meta["metrics"]["val_accuracy"] == pytest.approx(result.best_value)
    assert meta["steps"] == result.best_step and meta["n_way"] == 5 and meta["dataset"] == "glyphs"


def test_stop_from_callback_and_from_another_thread(glyphs):
    result = Trainer(protonet(glyphs), glyphs, steps=50, val_every=0,
                     callback=lambda info: info["step"] < 3, **SHAPE).run()
    assert result.stopped_early and result.steps_done == 3 and "stopped on request" in result.message

    stop = threading.Event()
    seen = []

    def on_step(info):
        seen.append(info["step"])
        if info["step"] == 2:
            stop.set()  # the app's Stop button sets the event from the UI thread
    trainer = Trainer(protonet(glyphs), glyphs, steps=50, val_every=0, callback=on_step, **SHAPE)
    out = {}
    worker = threading.Thread(target=lambda: out.update(result=trainer.run(stop)))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert out["result"].stopped_early and out["result"].steps_done == 2 and seen == [1, 2]


def _poisoned(glyphs) -> tuple[ClassDataset, int]:
    """glyphs with one training class whose images are NaN: an episode drawing it
    produces a NaN loss through the real network."""
    bad = glyphs.splits["train"][0]
    images = list(glyphs.images)
    images[bad] = torch.full_like(images[bad], float("nan"))
    return ClassDataset("poisoned", glyphs.class_names, images, glyphs.splits, glyphs.groups), bad


def test_nan_loss_stops_and_keeps_the_last_good_weights(glyphs):
    data, bad = _poisoned(glyphs)
    probe = Trainer(protonet(glyphs), data, steps=1, val_every=0, **SHAPE)
    first_bad = next(s for s in range(1, 200)
                     if bad in probe.train_sampler.sample(probe._train_seed(s - 1, 0)).info["class_ids"])
    assert first_bad > 1, "pick another poisoned class: the first step must be a good one"

    learner = protonet(glyphs)
    result = Trainer(learner, data, steps=first_bad + 10, val_every=0, **SHAPE).run()
    assert result.nan_detected and result.nan_step == first_bad
    assert result.steps_done == first_bad - 1 and f"step {first_bad}" in result.message
    # The weights are those after the last good step: a clean run of that many steps.
    reference = protonet(glyphs)
    Trainer(reference, data, steps=first_bad - 1, val_every=0, **SHAPE).run()
    for key, value in learner.state_dict().items():
        assert torch.isfinite(value.float()).all(), key
        assert torch.equal(value, reference.state_dict()[key]), key


def test_trainer_refuses_bad_input(glyphs):
    with pytest.raises(MetaRepError, match="n_way = 200 but the 'train' split"):
        Trainer(build_learner("protonet", glyphs.input_shape, 200), glyphs, n_way=200, k_shot=1,
                n_query=5, steps=5)
    with pytest.raises(MetaRepError, match="built for 5-way episodes, got n_way = 3"):
        Trainer(protonet(glyphs), glyphs, n_way=3, k_shot=1, n_query=5, steps=5)
    with pytest.raises(MetaRepError, match="k_shot \\+ n_query = 25"):
        Trainer(protonet(glyphs), glyphs, n_way=5, k_shot=5, n_query=20, steps=5)
    with pytest.raises(MetaRepError, match="steps must be"):
        Trainer(protonet(glyphs), glyphs, steps=0, **SHAPE)
    if not torch.cuda.is_available():
        with pytest.raises(MetaRepError, match="CUDA is not available"):
            Trainer(protonet(glyphs), glyphs, steps=5, device="cuda", **SHAPE)


def test_evaluation_protocol_is_paired_and_reproducible(glyphs):
    a, b = protonet(glyphs, seed=1), protonet(glyphs, seed=2)
    first = evaluate(a, glyphs, "test", episodes=30, seed=5, **SHAPE)
    assert first == evaluate(a, glyphs, "test", episodes=30, seed=5, **SHAPE)
    assert set(first) >= {"accuracy", "ci95", "episodes", "n_way", "k_shot"}
    scores = episode_scores(a, glyphs, "test", episodes=30, seed=5, **SHAPE)
    assert first["accuracy"] == pytest.approx(100 * scores.mean())
    assert first["ci95"] == pytest.approx(100 * 1.96 * scores.std() / np.sqrt(30))
    # Another learner gets the very same episodes (only the weights differ).
    seen_a, seen_b = [], []
    for learner, seen in ((a, seen_a), (b, seen_b)):
        original = learner.evaluate_episode
        learner.evaluate_episode = lambda ep, o=original, s=seen: (s.append(ep.info["class_ids"]), o(ep))[1]
        evaluate(learner, glyphs, "test", episodes=5, seed=5, **SHAPE)
        del learner.evaluate_episode
    assert seen_a == seen_b and len({tuple(c) for c in seen_a}) > 1
    progress = []
    stopped = evaluate(a, glyphs, "test", episodes=30, seed=5,
                       callback=lambda done, total: progress.append(done) or done < 4, **SHAPE)
    assert stopped["episodes"] == 4 and stopped["stopped"] and progress == [1, 2, 3, 4]


def test_regression_trains_on_validation_mse_and_evaluates_mse():
    from metarep_core.data import load_dataset
    sinusoid = load_dataset("sinusoid")
    torch.manual_seed(0)
    learner = build_learner("maml", sinusoid.input_shape, 1, task="regression", meta_lr=0.01,
                            meta_batch=2, inner_steps=1, eval_steps=1)
    result = Trainer(learner, sinusoid, n_way=1, k_shot=5, n_query=10, steps=12, val_every=4,
                     val_episodes=8).run()
    assert result.best_metric == "val_mse" and [v["step"] for v in result.val_curve] == [4, 8, 12]
    assert result.best_value == min(v["val_mse"] for v in result.val_curve)
    assert len(result.history) == 12 and all(math.isfinite(h["loss"]) for h in result.history)
    out = evaluate(learner, sinusoid, "test", k_shot=5, n_query=10, episodes=10)
    assert "accuracy" not in out and out["n_way"] == 1
    assert out["mse"] > 0 and out["ci95"] > 0 and math.isfinite(out["mse"])
