"""Datasets: glyphs (the embedded default), digits, sinusoid, load_dataset and episodes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarep_core.data import DATASETS, load_dataset
from metarep_core.data.baselines import pixel_ncm_accuracy
from metarep_core.data.glyphs import GlyphParams, generate, load_glyphs
from metarep_core.episodes import EpisodeSampler
from metarep_core.errors import MetaRepError

SMALL = dict(n_alphabets=4, n_classes=40, n_drawings=6)


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_dataset_registry_lists_every_builtin():
    assert {"glyphs", "digits", "sinusoid"} <= set(DATASETS)
    assert any(k.startswith("folder:") for k in DATASETS)
    assert all(isinstance(v, str) and v for v in DATASETS.values())


def test_unknown_dataset_names_it_and_the_allowed_ones():
    with pytest.raises(MetaRepError, match=r"'nope'.*glyphs.*digits.*sinusoid"):
        load_dataset("nope")
    with pytest.raises(MetaRepError, match="image_size"):
        load_dataset("glyphs", image_size=0)
    with pytest.raises(MetaRepError, match="channels"):
        load_dataset("glyphs", channels=2)


def test_load_dataset_is_cached_in_process(glyphs):
    assert load_dataset("glyphs") is glyphs
    assert load_dataset("glyphs", seed=0, image_size=28) is glyphs


def test_glyphs_size_shape_and_names(glyphs):
    assert glyphs.n_classes >= 1600
    assert all(im.shape == (20, 1, 28, 28) for im in glyphs.images)
    x = glyphs.images[0]
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert len(set(glyphs.groups)) >= 30
    assert glyphs.class_names[0].startswith(glyphs.groups[0] + "/character")
    assert len(set(glyphs.class_names)) == glyphs.n_classes
    # Each drawing has ink, and not everywhere.
    ink = torch.stack([im.mean((1, 2, 3)) for im in glyphs.images[::50]])
    assert (ink > 0.02).all() and (ink < 0.5).all()


def test_glyph_splits_are_disjoint_and_by_alphabet(glyphs):
    s = {k: set(v) for k, v in glyphs.splits.items()}
    assert not (s["train"] & s["val"]) and not (s["train"] & s["test"]) and not (s["val"] & s["test"])
    assert s["train"] | s["val"] | s["test"] == s["all"] == set(range(glyphs.n_classes))
    alpha = {k: {glyphs.groups[c] for c in v} for k, v in s.items()}
    assert not (alpha["train"] & alpha["test"]) and not (alpha["train"] & alpha["val"])
    assert len(s["test"]) >= 100 and len(s["val"]) >= 20


def test_glyph_generation_is_deterministic_in_seed():
    a, names_a, groups_a = generate(GlyphParams(seed=0, **SMALL))
    b, names_b, groups_b = generate(GlyphParams(seed=0, **SMALL))
    c, _, _ = generate(GlyphParams(seed=1, **SMALL))
    assert a.dtype == np.uint8 and a.shape == (40, 6, 28, 28)
    assert np.array_equal(a, b) and names_a == names_b and groups_a == groups_b
    assert not np.array_equal(a, c)


def test_glyph_image_size_is_configurable():
    a, _, _ = generate(GlyphParams(image_size=40, **SMALL))
    assert a.shape == (40, 6, 40, 40)


def test_glyph_disk_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("METAREP_CACHE", str(tmp_path))
    fresh = load_glyphs(seed=3, use_cache=True, **SMALL)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".npy"]
    again = load_glyphs(seed=3, use_cache=True, **SMALL)  # read back from disk
    assert again.class_names == fresh.class_names and again.groups == fresh.groups
    assert all(torch.equal(x, y) for x, y in zip(fresh.images, again.images))
    # A different parameter is a different key, never a stale file.
    load_glyphs(seed=3, use_cache=True, **{**SMALL, "n_drawings": 5})
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_glyph_cache_problems_fall_back_to_generating(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("METAREP_CACHE", str(blocker / "cache"))  # cannot be created
    d = load_glyphs(seed=5, use_cache=True, **SMALL)
    assert d.n_classes == 40 and blocker.read_text() == "not a directory"
    # A corrupt cache file is ignored and rewritten.
    monkeypatch.setenv("METAREP_CACHE", str(tmp_path / "c"))
    load_glyphs(seed=5, use_cache=True, **SMALL)
    (npy,) = (tmp_path / "c").glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:5000])  # truncated
    again = load_glyphs(seed=5, use_cache=True, **SMALL)
    assert all(torch.equal(x, y) for x, y in zip(d.images, again.images))
    (meta,) = (tmp_path / "c").glob("*.json")
    meta.write_text("{not json")
    again = load_glyphs(seed=5, use_cache=True, **SMALL)
    assert all(torch.equal(x, y) for x, y in zip(d.images, again.images))


def test_drawings_of_a_class_are_closer_than_other_characters_of_its_alphabet(glyphs):
    """Within-class variation must stay below between-class variation (or nothing is learnable)."""
    test = glyphs.splits["test"]
    alphabet = glyphs.groups[test[0]]
    cls = [c for c in test if glyphs.groups[c] == alphabet][:12]
    x = torch.stack([glyphs.images[c].flatten(1) for c in cls])  # (n_c, 20, D)
    means = x.mean(1)
    within = (x - means[:, None]).norm(dim=-1).mean()
    between = torch.cdist(means, means)[~torch.eye(len(cls), dtype=torch.bool)].mean()
    assert within < between


def test_pixel_nearest_class_mean_is_calibrated(glyphs):
    """Calibration: raw pixels must not solve glyphs (<= 70%), yet beat chance clearly."""
    acc, ci = pixel_ncm_accuracy(glyphs, "test", n_way=5, k_shot=1, n_query=15, episodes=200, seed=0)
    assert 35.0 < acc <= 70.0, acc
    assert 0 < ci < 5


def test_episode_shapes_labels_and_determinism(glyphs):
    sampler = EpisodeSampler(glyphs, "test", n_way=5, k_shot=2, n_query=3, seed=7)
    ep = sampler.sample()
    assert ep.support_x.shape == (10, 1, 28, 28) and ep.query_x.shape == (15, 1, 28, 28)
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_y.tolist() == [i for i in range(5) for _ in range(3)]
    test_names = {glyphs.class_names[c] for c in glyphs.splits["test"]}
    assert len(set(ep.class_names)) == 5 and set(ep.class_names) <= test_names
    assert ep.info["groups"] == [n.split("/")[0] for n in ep.class_names]
    again = sampler.sample(7)
    assert torch.equal(ep.support_x, again.support_x) and ep.class_names == again.class_names
    other = sampler.sample(8)
    assert ep.class_names != other.class_names or not torch.equal(ep.query_x, other.query_x)


def test_episode_errors_name_the_value_and_the_limit(glyphs):
    with pytest.raises(MetaRepError, match=r"k_shot \+ n_query = 25.*20 images"):
        EpisodeSampler(glyphs, "test", n_way=5, k_shot=10, n_query=15)
    n_test = len(glyphs.splits["test"])
    with pytest.raises(MetaRepError, match=rf"n_way = 5000.*{n_test} classes"):
        EpisodeSampler(glyphs, "test", n_way=5000, k_shot=1, n_query=1)


def test_digits_split_shape_and_range():
    d = load_dataset("digits")
    assert d.n_classes == 10 and d.input_shape == (1, 8, 8)
    assert d.splits["train"] == [0, 1, 2, 3, 4] and d.splits["val"] == [5, 6]
    assert d.splits["test"] == [7, 8, 9] and d.splits["all"] == list(range(10))
    assert all(im.shape[0] >= 170 for im in d.images)
    assert float(min(im.min() for im in d.images)) == 0.0 and float(max(im.max() for im in d.images)) == 1.0
    ep = EpisodeSampler(d, "test", 3, 1, 5, seed=0).sample()
    assert sorted(ep.class_names) == ["7", "8", "9"]
    with pytest.raises(MetaRepError, match=r"n_way = 5.*'test'.*3 classes"):
        EpisodeSampler(d, "test", 5, 1, 15)
    big = load_dataset("digits", image_size=28, channels=3)
    assert big.input_shape == (3, 28, 28)
    # Pixel NCM on unseen digits works (real, well-separated data) but is not perfect.
    acc, _ = pixel_ncm_accuracy(d, "test", 3, 1, 15, episodes=100, seed=0)
    assert 50 < acc < 99


def test_sinusoid_tasks_ranges_and_true_curve():
    fam = load_dataset("sinusoid")
    assert fam.task == "regression" and fam.input_shape == (1,)
    sampler = EpisodeSampler(fam, "train", n_way=1, k_shot=10, n_query=20, seed=0)
    amps, phases = [], []
    for i in range(300):
        ep = sampler.sample(i)
        assert ep.support_x.shape == (10, 1) and ep.query_y.shape == (20, 1)
        assert ep.support_x.abs().max() <= 5.0
        a, p = ep.info["amplitude"], ep.info["phase"]
        amps.append(a)
        phases.append(p)
        expect = a * torch.sin(ep.query_x - p)
        assert torch.allclose(ep.query_y, expect, atol=1e-5)
        assert torch.allclose(fam.evaluate(ep.info, ep.support_x), ep.support_y)
    assert 0.1 <= min(amps) < 0.5 and 4.6 < max(amps) <= 5.0
    assert 0.0 <= min(phases) < 0.3 and math.pi - 0.3 < max(phases) <= math.pi
    # Same seed same task; train and test streams differ.
    assert sampler.sample(3).info == sampler.sample(3).info
    test_ep = EpisodeSampler(fam, "test", 1, 10, 20, seed=0).sample(3)
    assert test_ep.info != sampler.sample(3).info
    with pytest.raises(MetaRepError, match="n_way must be 1"):
        EpisodeSampler(fam, "train", n_way=5, k_shot=5, n_query=5)
