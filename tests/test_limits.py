"""Nothing a user sends can exhaust the server (issue 12): the bad-input corpus, its
checkpoints (the uploads: tests/test_upload_limits.py).

Every file here is made at test time, in memory or in ``tmp_path`` (small on disk):
crafted checkpoints, pixel bombs, overlapping zips, too many images, FIFOs and
devices. Each case is refused with a message naming the limit, before the
expensive work (building a learner, decoding pixels, reading a device) starts.
The figure kept: any single upload or checkpoint, refused or the worst accepted,
grows this process by at most 300 MB and costs at most 10 s of CPU.
"""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from limits_harness import MB, assert_within_figure, cost
from metarep_core import checkpoints, limits
from metarep_core.checkpoints import load_checkpoint, read_config
from metarep_core.errors import MetaRepError
from metarep_core.learners import available, build_learner, get_learner_class


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def protonet():
    torch.manual_seed(0)
    return build_learner("protonet", (1, 28, 28), 5)


def with_config(learner, **config) -> bytes:
    """A real checkpoint of ``learner`` whose metadata config was edited afterwards."""
    meta = checkpoints.build_metadata(learner, dataset="glyphs")
    meta["config"].update(config)
    tensors = {k: v.detach().clone().contiguous() for k, v in learner.state_dict().items()}
    return st_save(tensors, metadata={"metarep": json.dumps(meta)})


def framed(header_text: str, body: bytes = b"") -> bytes:
    """Safetensors framing around any header text (8-byte little-endian length)."""
    raw = header_text.encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_a_huge_input_shape_is_refused_before_anything_is_built(protonet):
    # The 450 KB file: 0.8 -> 2.8 GB on the server before any comparison.
    data = with_config(protonet, input_shape=[1_000_000, 28, 28])
    with cost() as figures, pytest.raises(MetaRepError) as err:
        load_checkpoint(data, expected_algorithm="protonet")
    message = str(err.value)
    assert "input_shape [1000000, 28, 28]" in message and f"1..{limits.MAX_CHANNELS}" in message
    assert_within_figure(figures, growth=20 * MB, cpu_s=2.0)


def test_a_huge_n_way_is_refused_naming_the_limit(protonet):
    data = with_config(protonet, n_way=10**6)
    with cost() as figures, pytest.raises(MetaRepError, match=rf"n_way 1000000.*1..{limits.MAX_N_WAY}"):
        load_checkpoint(data)
    assert_within_figure(figures, growth=20 * MB, cpu_s=2.0)


def test_a_learner_past_the_parameter_bound_is_refused_before_allocating(protonet):
    # Within every per-field bound, but MANN's maximal hyper-parameters at 3x256x256 make
    # 45 M numbers: sized on the meta device and refused, never allocated (179 MB).
    hp = dict(conv_channels=64, controller_size=512, memory_slots=256, memory_width=128, read_heads=4)
    meta = checkpoints.build_metadata(protonet, dataset="glyphs")
    meta.update(algorithm="mann")
    meta["config"].update(algorithm="mann", input_shape=[3, 256, 256], n_way=64,
                          hyperparams={**build_learner("mann", (1, 8, 8), 2).hp, **hp})
    data = st_save({"w": torch.zeros(4)}, metadata={"metarep": json.dumps(meta)})
    # The first learner built on the meta device loads torch's meta kernels (~70 MB, once
    # per process, whatever the size): paid here so the figure is this file's own cost.
    with torch.device("meta"):
        build_learner("mann", (1, 8, 8), 2)
    with cost() as figures, pytest.raises(MetaRepError, match=r"mann learner of 44,759,177 numbers.*20,000,000"):
        load_checkpoint(data)
    assert_within_figure(figures, growth=60 * MB, cpu_s=5.0)


@pytest.mark.parametrize("algorithm", available())
def test_every_learner_can_be_sized_without_memory(algorithm):
    # load_checkpoint sizes the learner a config describes on the meta device before
    # allocating it; a learner whose constructor needs real tensors would break loading.
    cls = get_learner_class(algorithm)
    task = "classification" if "classification" in cls.tasks else "regression"
    shape, n_way = ((1, 28, 28), 5) if task == "classification" else ((1,), 1)
    with torch.device("meta"):
        probe = cls(shape, n_way, task=task)
    real = cls(shape, n_way, task=task)
    assert {k: v.shape for k, v in probe.state_dict().items()} == \
        {k: v.shape for k, v in real.state_dict().items()}


def test_the_callers_expectations_are_checked_from_the_header(protonet):
    data = with_config(protonet, n_way=20)
    config, _ = read_config(data)
    assert config["n_way"] == 20 and config["input_shape"] == (1, 28, 28)
    with pytest.raises(MetaRepError, match="has n_way 20, expected 5"):
        load_checkpoint(data, expected_algorithm="protonet", expected_n_way=5)
    good = with_config(protonet)
    with pytest.raises(MetaRepError, match="has input_shape 1x28x28, expected 3x28x28"):
        load_checkpoint(good, expected_input_shape=(3, 28, 28))
    with pytest.raises(MetaRepError, match="has task classification, expected regression"):
        load_checkpoint(good, expected_task="regression")
    learner, _ = load_checkpoint(good, expected_algorithm="protonet", expected_n_way=5,
                                 expected_input_shape=(1, 28, 28), expected_task="classification")
    assert learner.n_way == 5


def test_tensor_shapes_that_disagree_with_their_bytes_are_refused():
    # 10^10 numbers declared in 16 bytes: refused from the header, nothing allocated.
    header = {"w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 16]}}
    with pytest.raises(MetaRepError, match=r"tensor 'w' of shape \[100000, 100000\].*byte range"):
        load_checkpoint(framed(json.dumps(header), b"\0" * 16))
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "__metadata__": {"metarep": "{}"}}
    with pytest.raises(MetaRepError, match="byte range"):
        load_checkpoint(framed(json.dumps(header), b"\0" * 8))  # the body is short


@pytest.mark.parametrize("header, fragment", [
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"__metadata__": [1, 2]}', "'__metadata__' must map names to strings, got list"),
    ('{"__metadata__": {"metarep": "{\\"algorithm\\": \\"protonet\\", \\"n_way\\": Infinity}"}}',
     "Infinity"),
    ('{"__metadata__": {"metarep": "{\\"config\\": NaN}"}}', "NaN"),
    ('{"__metadata__": {"metarep": "' + "[" * 100_000 + '"}}', "nested too deeply"),
])
def test_malformed_headers_are_refused_with_their_reason(header, fragment):
    with pytest.raises(MetaRepError) as err:
        load_checkpoint(framed(header))
    assert fragment in str(err.value)


def test_worst_accepted_checkpoint_stays_within_the_figure():
    # MANN with maximal memory at 3x172x172, 64-way: 19.2 M numbers, just under the bound.
    torch.manual_seed(0)
    learner = build_learner("mann", (3, 172, 172), 64, conv_channels=64, controller_size=512,
                            memory_slots=256, memory_width=128, read_heads=4)
    assert 0.9 * limits.CHECKPOINT_MAX_PARAMETERS < sum(
        t.numel() for t in learner.state_dict().values()) <= limits.CHECKPOINT_MAX_PARAMETERS
    data = checkpoints.checkpoint_to_bytes(learner, dataset="glyphs")
    del learner
    with cost() as figures:
        loaded, _ = load_checkpoint(data, expected_algorithm="mann")
    assert loaded.n_way == 64
    assert_within_figure(figures)


def test_the_app_refuses_a_mismatching_checkpoint_before_building(protonet):
    from app.uploads import learner_from_checkpoint
    data = with_config(protonet, input_shape=[1_000_000, 28, 28])
    with cost() as figures, pytest.raises(MetaRepError, match="input_shape"):
        learner_from_checkpoint(data, algorithm="protonet", n_way=5, input_shape=(1, 28, 28),
                                task="classification")
    assert_within_figure(figures, growth=20 * MB, cpu_s=2.0)
    with pytest.raises(MetaRepError, match="n_way=20"):  # the app's own (translated) message
        learner_from_checkpoint(with_config(protonet, n_way=20), algorithm="protonet", n_way=5,
                                input_shape=(1, 28, 28), task="classification")
