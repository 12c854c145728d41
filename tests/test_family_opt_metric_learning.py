"""Learning tests on glyphs 5-way 1-shot, a small fixed-seed CPU budget each.

Metric learners (Siamese networks, Matching Networks) are scored on the same test
episodes as the pixel nearest-neighbour baseline (Vinyals et al. 2016 compare Matching
Networks with pixel nearest neighbours the same way) and must beat chance by a wide
margin and the pixel baseline.

Optimization learners (MAML, Reptile, iMAML, ANIL) are compared with *themselves*:
the same learner, same initialisation, same test episodes, before and after a few
seconds of meta-training by the Trainer (so Reptile's annealed step is the one
training uses), and must gain clearly. A randomly initialised Conv-4 fine-tuned for
many steps already reaches about 80 % here, which no short meta-training beats; with
few test-time steps (1-5) the untrained start is weak, and what meta-learning buys —
an initialisation from which a few steps suffice — is what the gain measures.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metarep_core.data import load_dataset
from metarep_core.data.baselines import pixel_ncm_accuracy
from metarep_core.episodes import EpisodeSampler
from metarep_core.learners import build_learner
from metarep_core.training import Trainer

pytestmark = pytest.mark.slow

EVAL_SEED, EVAL_EPISODES = 4242, 10

# name -> (meta-steps, hyper-parameters): budgets for a few seconds of CPU each
BUDGETS = {
    "matching": (80, {"hidden": 32}),
    "siamese": (60, {"hidden": 32}),
}
# optimization learners: (meta-steps, hyper-parameters, least gain over the untrained start)
OPT_BUDGETS = {
    "maml": (10, {"inner_steps": 1, "eval_steps": 1, "meta_batch": 2, "meta_lr": 0.003}, 0.15),
    "anil": (20, {"meta_batch": 2, "hidden": 32, "eval_steps": 3}, 0.15),
    "reptile": (10, {"meta_batch": 2, "hidden": 32, "inner_steps": 3, "eval_steps": 1}, 0.15),
    "imaml": (10, {"meta_batch": 4, "hidden": 32, "inner_steps": 5, "cg_steps": 3, "eval_steps": 1,
                   "meta_lr": 0.003}, 0.15),
}


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


@pytest.fixture(scope="module")
def test_episodes(glyphs):
    """The same episodes ``pixel_ncm_accuracy`` uses for this seed and count."""
    sampler = EpisodeSampler(glyphs, "test", 5, 1, 15, EVAL_SEED)
    return [sampler.sample(EVAL_SEED + i) for i in range(EVAL_EPISODES)]


@pytest.fixture(scope="module")
def pixel_baseline(glyphs):
    acc, _ = pixel_ncm_accuracy(glyphs, "test", 5, 1, 15, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return acc / 100.0


def accuracy(learner, episodes) -> float:
    learner.eval()
    try:
        return float(np.mean([learner.evaluate_episode(ep)["accuracy"] for ep in episodes]))
    finally:
        learner.train()


@pytest.fixture(scope="module")
def trained(glyphs, test_episodes):
    """name -> test accuracy after meta-training, each learner trained once."""
    cache = {}

    def get(name):
        if name not in cache:
            steps, hp = BUDGETS[name]
            torch.manual_seed(0)
            learner = build_learner(name, glyphs.input_shape, 5, **hp)
            sampler = iter(EpisodeSampler(glyphs, "train", 5, 1, 5, seed=0))
            for _ in range(steps):
                stats = learner.meta_step([next(sampler) for _ in range(learner.hp["meta_batch"])])
                assert np.isfinite(stats["loss"])
            cache[name] = accuracy(learner, test_episodes)
        return cache[name]

    return get


def test_pixel_baseline_is_the_bar(pixel_baseline):
    assert 0.4 < pixel_baseline < 0.75


@pytest.mark.parametrize("name", list(BUDGETS))
def test_beats_chance_and_pixel_baseline(trained, pixel_baseline, name):
    acc = trained(name)
    assert acc > 0.5, f"{name}: {acc:.3f}"
    assert acc > pixel_baseline + 0.03, f"{name}: {acc:.3f} vs pixels {pixel_baseline:.3f}"


@pytest.mark.parametrize("name", list(OPT_BUDGETS))
def test_optimization_learner_gains_clearly_over_its_untrained_start(glyphs, test_episodes, name):
    steps, hp, gain = OPT_BUDGETS[name]
    torch.manual_seed(0)
    learner = build_learner(name, glyphs.input_shape, 5, **hp)
    untrained = accuracy(learner, test_episodes)
    result = Trainer(learner, glyphs, n_way=5, k_shot=1, n_query=5, steps=steps, seed=0, val_every=0).run()
    assert result.steps_done == steps and not result.nan_detected
    trained = accuracy(learner, test_episodes)
    print(f"\n{name}: untrained {untrained:.3f} -> trained {trained:.3f} ({steps} meta-steps)")
    assert trained > untrained + gain, f"{name}: {untrained:.3f} -> {trained:.3f}"
