"""Imported by the training processes' fork server, and only there
(:data:`metarep_core.process_runner.PRELOAD`): the work every run's first step would
otherwise do again in each child.

Measured in a fresh process: the imports 0.9 s, a learner's first meta-step 0.84 s
(torch's lazily built kernels, autograd, the optimiser; the second step takes 0.02 s),
Omniglot 0.16 s. Done once here, a forked child starts training at once. One torch
thread from the start: a fork server must not have started an OpenMP pool (a forked
child cannot use the parent's pool threads).
"""
import torch

torch.set_num_threads(1)

from .data import load_dataset  # noqa: E402
from .learners import build_learner  # noqa: E402
from .training import Trainer  # noqa: E402

WARM_DATASETS = ("omniglot", "glyphs")  # the app's default and the lessons'
WARM_LEARNERS = ("protonet", "maml")    # a metric learner; a second-order functional one


def warm() -> None:
    for name in WARM_DATASETS:
        load_dataset(name)
    dataset = load_dataset("glyphs")
    for algorithm in WARM_LEARNERS:
        torch.manual_seed(0)
        learner = build_learner(algorithm, input_shape=dataset.input_shape, n_way=2)
        Trainer(learner, dataset, n_way=2, k_shot=1, n_query=1, steps=1, seed=0, val_every=0).run()


warm()
