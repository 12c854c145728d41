"""metarep_core.cluster without a cluster: addresses, the fast refusal, what is sent to a node."""
from __future__ import annotations

import dataclasses
import pickle
import socket
import subprocess
import sys
import time

import pytest
import torch

from metarep_core.cluster import ClusterUnavailable, check_reachable, connect, parse_address, ray_address
from metarep_core.cluster.connect import describe_error
from metarep_core.cluster.runner import dataset_from_payload, dataset_payload
from metarep_core.data import load_dataset
from metarep_core.errors import MetaRepError


def test_both_address_forms_parse_and_bad_ones_are_named():
    assert parse_address("ray://head.example:10001") == ("client", "head.example", 10001)
    assert parse_address(" 10.0.0.5:6379 ") == ("gcs", "10.0.0.5", 6379)
    assert parse_address("ray://[::1]:23001") == ("client", "::1", 23001)
    for bad, words in [("http://h:1", "unknown scheme"), ("head", "not of the form"),
                       ("ray://h:0", "between 1 and 65535"), ("h:port", "'port'"), ("", "empty")]:
        with pytest.raises(ClusterUnavailable, match=words) as err:
            parse_address(bad)
        assert isinstance(err.value, MetaRepError)


def test_the_address_comes_from_the_environment():
    assert ray_address({"METAREP_RAY_ADDRESS": " ray://h:1 "}) == "ray://h:1"
    assert ray_address({"METAREP_RAY_ADDRESS": "  "}) is None and ray_address({}) is None


def test_a_closed_port_is_refused_at_once_without_importing_ray():
    with socket.socket() as s:  # a loopback port nobody listens on (bound, then freed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys, time; from metarep_core.cluster import connect, ClusterUnavailable\n"
            "t = time.monotonic()\n"
            f"try: connect('ray://127.0.0.1:{port}')\n"
            "except ClusterUnavailable as e: print(round(time.monotonic() - t, 2), 'ray' in sys.modules, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    seconds, imported, message = out.split(" ", 2)
    assert float(seconds) < 2 and imported == "False", out
    assert f"ray://127.0.0.1:{port} cannot be reached" in message and "METAREP_RAY_ADDRESS" in message


def test_a_silent_head_is_given_up_within_the_timeout():
    """A head that never answers (here: a listener whose backlog is full, so the
    kernel drops the SYN) costs ``timeout_s``, not Ray's minute of retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue (its length is backlog + 1 or so)
                fillers.append(socket.create_connection(("127.0.0.1", port), timeout=0.3))
        except OSError:
            pass
        t0 = time.monotonic()
        with pytest.raises(ClusterUnavailable, match="no answer within 0.5 s"):
            check_reachable(f"127.0.0.1:{port}", timeout_s=0.5)
        assert time.monotonic() - t0 < 2
        for f in fillers:
            f.close()


def test_connect_without_an_address_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("METAREP_RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterUnavailable, match="METAREP_RAY_ADDRESS"):
        connect()


def test_a_ray_error_reads_as_one_line():
    class ActorDiedError(Exception):
        pass
    text = describe_error(ActorDiedError(
        "The actor died unexpectedly before finishing this task.\n\tclass_name: TrainingRunner\n"
        "\tpid: 123\nThe actor is dead because its worker process has died. Worker exit type: "
        "SYSTEM_ERROR"))
    assert text == ("the Ray worker running the job died: The actor died unexpectedly before "
                    "finishing this task.")


def test_a_builtin_dataset_travels_by_name():
    digits = load_dataset("digits", seed=0)
    payload = dataset_payload(digits)
    assert payload[:2] == ("builtin", "digits") and len(pickle.dumps(payload)) < 1000
    again = dataset_from_payload(payload)
    assert again.input_shape == digits.input_shape and again.class_names == digits.class_names


def test_another_dataset_travels_as_a_compact_copy():
    """Per-class views of one big tensor pickle the whole tensor each (glyphs: 165 GB);
    the payload gives each class its own storage."""
    digits = load_dataset("digits", seed=0)
    n = len(digits.images)
    big = torch.cat([x.to(torch.float32) for x in digits.images])
    sizes = [x.shape[0] for x in digits.images]
    views = list(torch.split(big, sizes))
    custom = dataclasses.replace(digits, name="my-folder", params={}, images=views)
    data = pickle.dumps(dataset_payload(custom))
    assert len(data) < 1.5 * big.numel() * 4 + 100_000, f"{len(data)} bytes for {n} classes"
    back = dataset_from_payload(pickle.loads(data))
    assert all(torch.equal(a, b) for a, b in zip(back.images, views))


def test_importing_the_app_jobs_does_not_import_ray():
    code = "import sys, app.jobs; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_the_train_page_says_the_cluster_is_unreachable_and_trains_here(monkeypatch):
    """METAREP_RAY_ADDRESS names a head that is not there: the run starts at once in the
    local pool, and the page says why and where it runs."""
    from app_harness import goto, new_app, set_and_run, strings
    en = strings("en")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"ray://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("METAREP_RAY_ADDRESS", address)
    at = new_app()
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5, k_shot=1, n_query=2, train_steps=3)
    t0 = time.monotonic()
    at.button(key="train_start").click().run()
    assert time.monotonic() - t0 < 30  # a page run, not Ray's minute of retries
    job = at.session_state["job"]
    assert job.where == "local" and not job.on_cluster
    job.wait(120)
    at.run()
    warnings = [w.value.replace("\u2060", "") for w in at.warning]  # safe_text breaks links
    assert any(address in w and w.startswith(en["jobs.cluster_fallback"].split("{")[0]) for w in warnings), warnings
    assert en["train.where_local"] in [c.value for c in at.caption]
    assert job.status == "done"


def test_an_actor_that_could_not_start_says_its_own_error():
    class ActorDiedError(Exception):
        pass
    text = describe_error(ActorDiedError(
        "The actor died because of an error raised in its creation task, "
        "ray::TrainingRunner.__init__() (pid=12, ip=127.0.0.1)\n  File \"x.py\", line 3\n"
        "metarep_core.errors.MetaRepError: dataset 'glyphs' gives inputs of shape (1, 28, 28) on "
        "the Ray node but (1, 32, 32) here"))
    assert text.startswith("the job could not start on the Ray cluster: ") and "(1, 32, 32)" in text
