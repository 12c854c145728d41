"""Checkpoints: safetensors + JSON metadata round trips, and refusals that never unpickle."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from metarep_core import __version__, checkpoints
from metarep_core.checkpoints import (checkpoint_to_bytes, load_checkpoint, read_metadata,
                                      save_checkpoint)
from metarep_core.data.glyphs import load_glyphs
from metarep_core.episodes import EpisodeSampler
from metarep_core.errors import MetaRepError
from metarep_core.learners import build_learner


@pytest.fixture(scope="module")
def glyphs():
    return load_glyphs(seed=0, n_alphabets=8, n_classes=120, image_size=14, use_cache=False)


@pytest.fixture(scope="module")
def trained(glyphs):
    """A protonet after a few real meta-steps (weights and BN statistics moved off init)."""
    torch.manual_seed(0)
    learner = build_learner("protonet", glyphs.input_shape, 5, meta_lr=3e-3)
    sampler = EpisodeSampler(glyphs, "train", 5, 1, 5, seed=0)
    for i in range(3):
        learner.meta_step([sampler.sample(i)])
    return learner


META = dict(dataset="glyphs", dataset_params={"seed": 0, "n_classes": 120}, n_way=5, k_shot=1,
            n_query=5, seed=0, steps=3, metrics={"val_accuracy": 51.5})


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])


def _tampered(learner, meta_change=None, tensors_change=None) -> bytes:
    """A checkpoint whose metadata or tensors were edited after saving."""
    meta = checkpoints.build_metadata(learner, **META)
    if meta_change:
        meta_change(meta)
    tensors = {k: v.detach().clone().contiguous() for k, v in learner.state_dict().items()}
    if tensors_change:
        tensors_change(tensors)
    return st_save(tensors, metadata={"metarep": json.dumps(meta)})


def test_round_trip_file_keeps_weights_predictions_and_metadata(trained, glyphs, tmp_path):
    path = save_checkpoint(trained, tmp_path / "p.safetensors", **META)
    raw = path.read_bytes()
    header = _header(raw)
    # The metadata lives in the safetensors header as one JSON string under "metarep".
    assert set(header["__metadata__"]) == {"metarep"}
    assert json.loads(header["__metadata__"]["metarep"])["algorithm"] == "protonet"
    assert len(raw) < 2 * 2**20

    loaded, meta = load_checkpoint(path, expected_algorithm="protonet")
    assert meta["algorithm"] == "protonet" and meta["package_version"] == __version__
    assert meta["config"]["input_shape"] == [1, 14, 14] and meta["config"]["n_way"] == 5
    assert meta["config"]["hyperparams"]["meta_lr"] == 3e-3
    assert meta["dataset"] == "glyphs" and meta["metrics"] == {"val_accuracy": 51.5}
    assert meta["created"].endswith("+00:00")
    original = trained.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    episode = EpisodeSampler(glyphs, "test", 5, 1, 5).sample(3)
    trained.eval()
    expected = trained.adapt(episode).predict(episode.query_x)
    trained.train()
    assert torch.allclose(loaded.adapt(episode).predict(episode.query_x), expected, atol=1e-6)


def test_round_trip_bytes_and_read_metadata(trained):
    data = checkpoint_to_bytes(trained, **META)
    loaded, meta = load_checkpoint(data)
    assert read_metadata(data)["metrics"] == meta["metrics"]
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.state_dict().items())


def _evil_payload(marker):
    class Evil:
        def __reduce__(self):  # unpickling this would create the marker file
            return (open, (str(marker), "w"))
    return Evil()


@pytest.mark.parametrize("kind", ["torch_save", "pickle", "pickle_protocol0"])
def test_pickled_files_are_refused_without_being_unpickled(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    if kind == "torch_save":
        torch.save({"w": torch.zeros(2), "x": _evil_payload(marker)}, path)
        match = "torch.save"
    else:
        proto = 0 if kind == "pickle_protocol0" else pickle.HIGHEST_PROTOCOL
        path.write_bytes(pickle.dumps(_evil_payload(marker), protocol=proto))
        match = "pickle" if proto else "not a safetensors checkpoint"
    # Sanity: this file really would run code if unpickled.
    if kind == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(MetaRepError, match=match):
        load_checkpoint(path)
    with pytest.raises(MetaRepError, match=match):
        load_checkpoint(path.read_bytes())
    assert not marker.exists()


@pytest.mark.parametrize("data, match", [
    (b"", "not a safetensors checkpoint"),
    (b"hello, this is a text file and not weights", "not a safetensors checkpoint"),
    (struct.pack("<Q", 12) + b"{not json!!}", "not valid JSON"),
])
def test_garbage_is_refused(data, match):
    with pytest.raises(MetaRepError, match=match):
        load_checkpoint(data)


def test_truncated_file_is_refused(trained):
    data = checkpoint_to_bytes(trained, **META)
    with pytest.raises(MetaRepError, match="corrupt safetensors|not a safetensors"):
        load_checkpoint(data[: len(data) - 1000])


def test_missing_and_corrupt_metadata_are_refused(trained):
    plain = st_save({"w": torch.zeros(3)})
    with pytest.raises(MetaRepError, match="without MetaRep metadata"):
        load_checkpoint(plain)
    bad_json = st_save({"w": torch.zeros(3)}, metadata={"metarep": "{oops"})
    with pytest.raises(MetaRepError, match="corrupt MetaRep metadata"):
        load_checkpoint(bad_json)
    no_config = _tampered(trained, meta_change=lambda m: m.pop("config"))
    with pytest.raises(MetaRepError, match="needs 'algorithm' and a 'config'"):
        load_checkpoint(no_config)


def test_unknown_and_mismatched_algorithm_are_refused(trained):
    def rename(m):
        m["algorithm"] = m["config"]["algorithm"] = "warp-drive"
    with pytest.raises(MetaRepError, match=r"algorithm 'warp-drive'.*available: .*protonet"):
        load_checkpoint(_tampered(trained, meta_change=rename))
    data = checkpoint_to_bytes(trained, **META)
    with pytest.raises(MetaRepError, match="is for protonet, expected maml"):
        load_checkpoint(data, expected_algorithm="maml")


def test_wrong_shapes_and_keys_name_the_tensor(trained):
    first = next(iter(trained.state_dict()))
    shape = tuple(trained.state_dict()[first].shape)

    def rgb(m):
        m["config"]["input_shape"] = [3, 14, 14]
    with pytest.raises(MetaRepError) as err:
        load_checkpoint(_tampered(trained, meta_change=rgb))
    expected_rgb = (shape[0], 3) + shape[2:]
    assert f"{first!r} has shape {shape}, expected {expected_rgb}" in str(err.value)

    with pytest.raises(MetaRepError, match=f"tensor {first!r} is missing"):
        load_checkpoint(_tampered(trained, tensors_change=lambda t: t.pop(first)))
    with pytest.raises(MetaRepError, match="unexpected tensor 'stowaway'"):
        load_checkpoint(_tampered(trained, tensors_change=lambda t: t.update(stowaway=torch.ones(2))))

    def poison(t):
        t[first][0] = float("nan")
    with pytest.raises(MetaRepError, match="non-finite"):
        load_checkpoint(_tampered(trained, tensors_change=poison))


def test_bad_hyperparameter_in_metadata_is_refused(trained):
    def negative(m):
        m["config"]["hyperparams"]["meta_lr"] = -1.0
    with pytest.raises(MetaRepError, match="cannot rebuild: meta_lr must be between"):
        load_checkpoint(_tampered(trained, meta_change=negative))


def test_size_cap_and_missing_path(trained, tmp_path, monkeypatch):
    path = save_checkpoint(trained, tmp_path / "p.safetensors", **META)
    monkeypatch.setattr(checkpoints, "MAX_BYTES", 1000)
    with pytest.raises(MetaRepError, match="limited to"):
        load_checkpoint(path)
    with pytest.raises(MetaRepError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(MetaRepError, match="folder .* does not exist"):
        save_checkpoint(trained, tmp_path / "no" / "such" / "dir.safetensors")


def test_header_length_starting_with_the_pickle_byte_still_loads(trained):
    """A valid file whose 8-byte header length begins with 0x80 (pickle's first byte)
    is a safetensors file and loads; only a file without the framing is judged a pickle."""
    for pad in range(0, 512, 4):
        data = checkpoint_to_bytes(trained, **dict(META, metrics={"pad": "x" * pad}))
        if data[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    learner, meta = load_checkpoint(data)
    assert meta["metrics"]["pad"] == "x" * pad
    for key, value in trained.state_dict().items():
        assert torch.equal(learner.state_dict()[key], value)
