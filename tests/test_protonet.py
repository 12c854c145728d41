"""ProtoNet: prototype math, the folded eval path, the shots trace, and a learning test
on glyphs against chance and the raw-pixel nearest-class-mean baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metarep_core.data import load_dataset
from metarep_core.data.baselines import pixel_ncm_accuracy
from metarep_core.episodes import Episode, EpisodeSampler
from metarep_core.learners import build_learner
from metarep_core.backbones import Conv4
from metarep_core.learners._conv4_fast import conv4_forward
from metarep_core.learners._metric import first_shots
from metarep_core.learners.protonet import class_prototypes, prototype_logits


def random_episode(n_way=5, k_shot=3, n_query=4, shape=(1, 28, 28), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * k_shot, *shape, generator=gen),
                   torch.arange(n_way).repeat_interleave(k_shot),
                   torch.rand(n_way * n_query, *shape, generator=gen),
                   torch.arange(n_way).repeat_interleave(n_query),
                   [f"c{i}" for i in range(n_way)], n_way, k_shot, n_query, seed)


def test_prototypes_and_logits_by_hand():
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    y = torch.tensor([0, 0, 1])
    protos = class_prototypes(emb, y, 2)
    assert torch.equal(protos, torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
    logits = prototype_logits(torch.tensor([[1.0, 1.0]]), protos)
    assert torch.allclose(logits, torch.tensor([[-1.0, -10.0]]))  # minus squared distances
    # the first k shots of each class, whatever the order of the support set
    assert first_shots(torch.tensor([1, 0, 1, 0, 1]), 2).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("batch,layout", [(6, None), (40, None), (6, True)])  # None: by batch size
def test_fast_conv4_forward_equals_the_module_with_gradients(training, batch, layout):
    """channels_last + pool-before-ReLU: same values and parameter gradients (float64)."""
    torch.manual_seed(0)
    backbone = Conv4(1, 12, hidden=8).double().train(training)
    x = torch.rand(batch, 1, 12, 12, dtype=torch.float64)
    ref = backbone(x)
    g_ref = torch.autograd.grad(ref.square().sum(), list(backbone.parameters()))
    fast = conv4_forward(backbone, x, layout)
    g_fast = torch.autograd.grad(fast.square().sum(), list(backbone.parameters()))
    assert torch.allclose(fast, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_folded_eval_equals_eval_mode_backbone():
    torch.manual_seed(0)
    learner = build_learner("protonet", (1, 28, 28), 5)
    learner.meta_step([random_episode(seed=s) for s in range(2)])  # non-trivial BN running stats
    x = torch.rand(12, 1, 28, 28)
    learner.backbone.eval()
    with torch.no_grad():
        ref = learner.backbone(x)
    learner.backbone.train()
    assert torch.allclose(learner.embed(x), ref, rtol=1e-4, atol=1e-5)
    # the cache follows the weights: after another meta-step it is rebuilt
    learner.meta_step([random_episode(seed=5)])
    learner.backbone.eval()
    with torch.no_grad():
        ref2 = learner.backbone(x)
    assert not torch.allclose(ref, ref2)
    assert torch.allclose(learner.embed(x), ref2, rtol=1e-4, atol=1e-5)


def test_meta_step_is_the_query_cross_entropy_of_one_batched_pass():
    torch.manual_seed(0)
    learner = build_learner("protonet", (1, 28, 28), 5)
    ep = random_episode()
    state = {k: v.clone() for k, v in learner.state_dict().items()}
    z = learner.backbone.train()(torch.cat([ep.support_x, ep.query_x]))
    protos = class_prototypes(z[:15], ep.support_y, 5)
    expected = F.cross_entropy(prototype_logits(z[15:], protos), ep.query_y).item()
    learner.load_state_dict(state)  # undo the running-stat update of the manual pass
    out = learner.meta_step([ep])
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= out["accuracy"] <= 1.0


def test_shots_trace_contract():
    torch.manual_seed(0)
    learner = build_learner("protonet", (1, 28, 28), 5)
    ep = random_episode(k_shot=3, n_query=4)
    buffers = {k: v.clone() for k, v in learner.backbone.state_dict().items()}
    adapted = learner.adapt(ep, record=True)
    assert [s.step for s in adapted.trace] == [1, 2, 3]
    assert [s.label for s in adapted.trace] == ["1 shot", "2 shots", "3 shots"]
    last = adapted.trace[-1]
    assert last.prototypes.shape == (5, 64) and last.support_emb.shape == (15, 64)
    assert last.query_emb.shape == (20, 64) and last.query_probs.shape == (20, 5)
    assert np.allclose(last.query_probs.sum(1), 1, atol=1e-5)
    # step k uses the first k shots: the last step's prototypes are those of adapt()
    assert np.allclose(last.prototypes, adapted.prototypes.numpy(), atol=1e-6)
    first = adapted.trace[0]
    assert np.allclose(first.prototypes, first.support_emb[::3], atol=1e-6)
    probs = adapted.predict(ep.query_x)
    assert np.allclose(probs.numpy(), last.query_probs, atol=1e-5)
    # adapting touches neither the weights nor the batch-norm running statistics
    assert all(torch.equal(buffers[k], v) for k, v in learner.backbone.state_dict().items())


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_protonet_learns_glyphs_above_chance_and_pixel_baseline(glyphs):
    """25 meta-steps of 5-way 1-shot; test on 40 episodes of unseen alphabets."""
    torch.manual_seed(0)
    learner = build_learner("protonet", glyphs.input_shape, 5)
    train = iter(EpisodeSampler(glyphs, "train", 5, 1, 5, seed=0))
    for _ in range(25):
        learner.meta_step([next(train)])
    seed, n = 1000, 40
    test = EpisodeSampler(glyphs, "test", 5, 1, 15, seed=seed)
    acc = 100 * np.mean([learner.evaluate_episode(test.sample(seed + i))["accuracy"] for i in range(n)])
    baseline, _ = pixel_ncm_accuracy(glyphs, "test", 5, 1, 15, episodes=n, seed=seed)
    print(f"\nProtoNet glyphs 5-way 1-shot after 25 steps: {acc:.1f}% (pixel NCM {baseline:.1f}%, chance 20%)")
    assert acc > 40.0
    assert acc > baseline + 5.0


def test_bench_records_have_the_peers_fields():
    """`bench` workloads run (tiny timing options) and name their figures as the peers do."""
    import io
    import json

    from metarep_core.bench import run

    out = io.StringIO()
    tiny = {"warmup": 0, "windows": 1, "per_window": 1, "repeats": 1, "threads": 1}
    records = run(["protonet-train", "adapt-latency"], out=out, options=tiny)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == records
    assert records[0]["bench"] == "protonet-train" and records[0]["steps_per_s"] > 0
    assert records[1]["bench"] == "adapt-latency"
    assert records[1]["protonet_ms"] > 0 and records[1]["maml_ms"] > 0
