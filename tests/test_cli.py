"""The CLI: listings, a real train + evaluate round trip, and one-line exit-2 errors for
every kind of bad input. Most cases call ``main(argv)`` in-process (each Python start
imports torch); a few run ``python -m metarep_core`` for real."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metarep_core.checkpoints import read_metadata
from metarep_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_main(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(map(str, argv)), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def run_cli(*argv, timeout=240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "metarep_core", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_error(rc, out, err, *fragments):
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --------------------------------------------------------------------------- listings
def test_datasets_and_algorithms_listings():
    rc, out, _ = run_main("datasets", "--json")
    assert rc == 0 and {"glyphs", "digits", "sinusoid"} <= set(json.loads(out))
    rc, out, _ = run_main("algorithms", "--json")
    metas = {m["name"]: m for m in json.loads(out)}
    assert rc == 0 and {"protonet", "maml"} <= set(metas)
    maml = metas["maml"]
    assert maml["family"] == "optimization" and "Finn" in maml["paper"]
    assert "inner_loop" in maml["capabilities"]
    inner_lr = next(h for h in maml["hyperparams"] if h["name"] == "inner_lr")
    assert inner_lr["low"] > 0 and inner_lr["high"] > inner_lr["low"] and "default" in inner_lr
    rc, out, _ = run_main("algorithms")
    assert rc == 0 and all(name in out for name in metas)


# --------------------------------------------------------------------------- round trip
@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    """A real `train`: ProtoNet on digits, 3-way (the test split has 3 digits)."""
    path = tmp_path_factory.mktemp("cli") / "proto.safetensors"
    rc, out, err = run_main("train", "--algorithm", "protonet", "--dataset", "digits", "--n-way", 3,
                            "--k-shot", 1, "--n-query", 5, "--steps", 12, "--val-every", 6,
                            "--val-episodes", 10, "--eval-episodes", 20, "--eval-n-query", 5,
                            "--seed", 1, "--out", path,
                            "--meta-lr", "0.002", "--json")
    assert rc == 0, err
    assert "protonet on digits" in err  # the tqdm bar
    return path, json.loads(out)


def test_train_then_evaluate_round_trip(trained_digits):
    path, report = trained_digits
    assert report["steps_done"] == 12 and not report["nan_detected"]
    meta = read_metadata(path)
    assert meta["algorithm"] == "protonet" and meta["dataset"] == "digits"
    assert meta["config"]["hyperparams"]["meta_lr"] == 0.002 and meta["seed"] == 1
    assert meta["n_way"] == 3 and meta["k_shot"] == 1
    assert meta["command"].startswith("python -m metarep_core train --algorithm protonet")
    assert meta["metrics"]["test_accuracy"] == report["test_accuracy"]
    assert meta["metrics"]["test_n_query"] == 5 and meta["metrics"]["test_episodes"] == 20
    # evaluate, in a real process: N and K default to the checkpoint's; same episodes,
    # same figure as the test evaluation `train` stored.
    proc = run_cli("evaluate", path, "--dataset", "digits", "--episodes", 20, "--n-query", 5,
                   "--json", "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {k: result[k] for k in ("episodes", "n_way", "k_shot")} == {"episodes": 20, "n_way": 3, "k_shot": 1}
    assert result["accuracy"] == pytest.approx(report["test_accuracy"])
    assert 0 < result["ci95"] < 30 and result["accuracy"] > 100 / 3


def test_evaluate_in_process_overrides_and_text_output(trained_digits):
    path, _ = trained_digits
    rc, out, err = run_main("evaluate", path, "--episodes", 5, "--k-shot", 2, "--n-query", 3, "--json")
    assert rc == 0, err
    assert json.loads(out)["k_shot"] == 2 and json.loads(out)["episodes"] == 5
    rc, out, _ = run_main("evaluate", path, "--episodes", 5, "--n-query", 3)
    assert rc == 0 and "accuracy" in out and "3-way 1-shot" in out
    # ProtoNet has no fixed output size: another n_way is fine.
    rc, out, err = run_main("evaluate", path, "--episodes", 3, "--n-way", 2, "--json")
    assert rc == 0 and json.loads(out)["n_way"] == 2, err


def test_hyperparameter_flags_are_generic(tmp_path):
    path = tmp_path / "maml.safetensors"
    rc, out, err = run_main("train", "--algorithm", "maml", "--dataset", "digits", "--n-way", 3,
                            "--n-query", 2, "--steps", 1, "--val-every", 0, "--out", path, "--quiet",
                            "--first-order", "--inner-steps", 1, "--hp", "eval_steps=1",
                            "--hp", "meta_batch=1")
    assert rc == 0, err
    hp = read_metadata(path)["config"]["hyperparams"]
    assert hp["first_order"] is True and hp["inner_steps"] == 1
    assert hp["eval_steps"] == 1 and hp["meta_batch"] == 1
    assert "saved" in out
    # MAML's output head is 3-way: a 2-way evaluation is refused, not silently mis-scored.
    rc, out, err = run_main("evaluate", path, "--n-way", 2, "--episodes", 2, "--n-query", 2)
    assert_one_line_error(rc, out, err, "trained for 3-way", "n_way = 3")


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, trained_digits):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    (root / "flat").mkdir()
    (root / "flat" / "a.png").write_bytes(b"\x89PNG not really")
    (root / "notes" / "classA").mkdir(parents=True)
    (root / "notes" / "classA" / "readme.txt").write_text("no images here")
    (root / "broken.zip").write_bytes(b"PK\x03\x04 this zip is cut short")
    torch.save({"w": torch.zeros(2)}, root / "torch.safetensors")
    (root / "pickle.safetensors").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    _crafted_checkpoints(root, trained_digits[0])
    for c in ("a", "b"):  # a class folder holding a FIFO named like an image
        (root / "fifo_set" / c).mkdir(parents=True)
        for i in range(3):
            (root / "fifo_set" / c / f"{i}.png").write_bytes(_png())
    os.mkfifo(root / "fifo_set" / "b" / "x.png")
    return root, trained_digits[0]


def _png() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("L", (8, 8), 255).save(out, "PNG")
    return out.getvalue()


def _framed(header: str, body: bytes = b"") -> bytes:
    raw = header.encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _crafted_checkpoints(root: Path, real: Path) -> None:
    """Checkpoints whose header a user edited: nesting, a list for __metadata__,
    Infinity in the metadata, a metadata dataset naming a device."""
    data = real.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    meta = json.loads(header["__metadata__"]["metarep"])

    def with_meta(text: str) -> bytes:
        return _framed(json.dumps({**header, "__metadata__": {"metarep": text}}), body)

    (root / "nested.safetensors").write_bytes(_framed('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"))
    (root / "metalist.safetensors").write_bytes(_framed(json.dumps({**header, "__metadata__": [1]}), body))
    (root / "inf.safetensors").write_bytes(
        with_meta(json.dumps(meta).replace('"n_way": 3', '"n_way": Infinity', 1)))
    (root / "device.safetensors").write_bytes(with_meta(json.dumps({**meta, "dataset": "folder:/dev/zero"})))
    (root / "folder_meta.safetensors").write_bytes(
        with_meta(json.dumps({**meta, "dataset": f"folder:{root / 'notes'}"})))


TRAIN = ["train", "--algorithm", "protonet", "--dataset", "digits", "--n-way", 3, "--steps", 1,
         "--quiet"]

CASES = {
    "unknown dataset": (["train", "--algorithm", "protonet", "--dataset", "imagenet", "--out", "{out}"],
                        ["'imagenet'", "glyphs"]),
    "unknown algorithm": (["train", "--algorithm", "gpt", "--dataset", "digits", "--out", "{out}"],
                          ["'gpt'", "protonet"]),
    "missing folder": (["train", "--algorithm", "protonet", "--dataset", "folder:{root}/nope",
                        "--out", "{out}"], ["nope", "does not exist"]),
    "corrupt zip": (["train", "--algorithm", "protonet", "--dataset", "folder:{root}/broken.zip",
                     "--out", "{out}"], ["broken.zip"]),
    "no class folders": (["train", "--algorithm", "protonet", "--dataset", "folder:{root}/empty",
                          "--out", "{out}"], ["empty"]),
    "non-image files only": (["train", "--algorithm", "protonet", "--dataset", "folder:{root}/notes",
                              "--out", "{out}"], ["notes", "no image"]),
    "n_way above the split": (TRAIN + ["--n-way", 9, "--out", "{out}"], ["n_way = 9", "classes"]),
    "k_shot + n_query too big": (TRAIN + ["--k-shot", 150, "--n-query", 100, "--out", "{out}"],
                                 ["k_shot + n_query = 250"]),
    "negative n_way": (TRAIN + ["--n-way", -3, "--out", "{out}"], ["n_way", "-3"]),
    "negative hyper-parameter": (TRAIN + ["--meta-lr", -0.1, "--out", "{out}"], ["meta_lr", "-0.1"]),
    "NaN hyper-parameter": (["train", "--algorithm", "maml", "--dataset", "digits", "--inner-lr", "nan",
                             "--out", "{out}"], ["inner_lr", "nan"]),
    "flag of another learner": (TRAIN + ["--inner-lr", 0.1, "--out", "{out}"], ["--inner-lr", "--meta-lr"]),
    "bad --hp": (TRAIN + ["--hp", "meta_lr", "--out", "{out}"], ["NAME=VALUE", "meta_lr"]),
    "not an int": (TRAIN + ["--steps", "many", "--out", "{out}"], ["--steps", "'many'"]),
    "missing --out": (["train", "--algorithm", "protonet", "--dataset", "digits"], ["--out"]),
    "out folder missing": (TRAIN + ["--out", "{root}/no/such/x.safetensors"], ["does not exist"]),
    "unknown command": (["frobnicate"], ["'frobnicate'", "train"]),
    "no cuda": (TRAIN + ["--device", "cuda", "--out", "{out}"], ["cuda"]),
    "bad device": (TRAIN + ["--device", "tpu", "--out", "{out}"], ["'tpu'", "cpu or cuda"]),
    "torch.save checkpoint": (["evaluate", "{root}/torch.safetensors"], ["torch.save", "safetensors"]),
    "pickle checkpoint": (["evaluate", "{root}/pickle.safetensors"], ["pickle"]),
    "missing checkpoint": (["evaluate", "{root}/none.safetensors"], ["none.safetensors", "does not exist"]),
    "checkpoint shape vs data": (["evaluate", "{ckpt}", "--dataset", "digits", "--image-size", 12],
                                 ["(1, 12, 12)", "(1, 8, 8)", "--image-size 8"]),
    "bad split": (["evaluate", "{ckpt}", "--split", "holdout"], ["'holdout'", "test"]),
    "zero episodes": (["evaluate", "{ckpt}", "--episodes", 0], ["episodes", "0"]),
    "unknown benchmark": (["bench", "--json", "warp-speed"], ["'warp-speed'", "available"]),
    # issue 12: the inputs that broke the one-line contract
    "nested JSON header": (["evaluate", "{root}/nested.safetensors"], ["nested too deeply"]),
    "non-dict __metadata__": (["evaluate", "{root}/metalist.safetensors"], ["'__metadata__'", "list"]),
    "Infinity in metadata": (["evaluate", "{root}/inf.safetensors"], ["Infinity"]),
    "negative seed": (TRAIN + ["--seed", -1, "--out", "{out}"], ["seed", "-1", "4294967295"]),
    "seed 2**70": (TRAIN + ["--seed", 2**70, "--out", "{out}"], ["seed", "1180591620717411303424"]),
    "negative data seed": (TRAIN + ["--data-seed", -1, "--out", "{out}"], ["data_seed", "-1"]),
    "negative evaluate seed": (["evaluate", "{ckpt}", "--seed", -1], ["seed", "-1"]),
    "--out is a directory": (TRAIN + ["--out", "{root}"], ["--out", "is a directory"]),
    "FIFO x.png in a folder": (["train", "--algorithm", "protonet", "--dataset", "folder:{root}/fifo_set",
                                "--out", "{out}"], ["'b/x.png'", "not a regular file"]),
    "folder:/dev/zero": (TRAIN[:4] + ["folder:/dev/zero", "--out", "{out}"],
                         ["/dev/zero", "not a regular file or a directory"]),
    "checkpoint names a device": (["evaluate", "{root}/device.safetensors"],
                                  ["folder:/dev/zero", "never chooses a path", "--dataset"]),
    "checkpoint names a folder": (["evaluate", "{root}/folder_meta.safetensors"],
                                  ["notes", "never chooses a path", "--dataset"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_exit_2(case, bad_inputs, tmp_path):
    root, ckpt = bad_inputs
    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is present here, so --device cuda is valid")
    argv, fragments = CASES[case]
    argv = [str(a).format(root=root, out=tmp_path / "x.safetensors", ckpt=ckpt) for a in argv]
    rc, out, err = run_main(*argv)
    assert_one_line_error(rc, out, err, *fragments)
    assert not (tmp_path / "x.safetensors").exists()


def test_bad_input_in_a_real_process(bad_inputs):
    root, _ = bad_inputs
    proc = run_cli("evaluate", root / "torch.safetensors", "--json")
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "torch.save")
    assert proc.stdout == ""


def test_evaluating_a_fixed_head_checkpoint_at_another_n_way_is_one_line():
    """ANIL's head has 5 outputs: 20-way episodes are refused with the reason, not an
    IndexError from the loss (torch raises IndexError or RuntimeError there)."""
    p = run_cli("evaluate", ROOT / "assets/checkpoints/anil_glyphs_5w1s.safetensors", "--dataset", "glyphs",
                "--n-way", 20, "--episodes", 2)
    assert_one_line_error(p.returncode, p.stdout, p.stderr, "trained for 5-way episodes", "20-way")
