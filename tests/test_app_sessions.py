"""AppTest suite, part 2: what belongs to one session — background training in the
shared worker pool, checkpoints downloaded and uploaded, uploaded image zips — and
that two sessions never see each other's models."""
from __future__ import annotations

import io
import pickle
import time
import zipfile

import pytest
import torch

from app import state
from app_harness import class_folder_zip, goto, new_app, problems, set_and_run, strings, texts

pytestmark = pytest.mark.child_processes  # training runs in child processes
EN = strings("en")


def _model(at, algorithm="protonet", dataset=state.DEFAULTS.dataset, n_way=5, shape=(1, 28, 28)):
    return at.session_state["models"][(algorithm, dataset, n_way, shape)]


def _start_training(at, steps=3, algorithm="protonet"):
    goto(at, "train")
    set_and_run(at, algorithm=algorithm, n_way=5, k_shot=1, n_query=2, train_steps=steps)
    at.button(key="train_start").click().run()
    assert problems(at) == [] and not at.error, [e.value for e in at.error]
    return at.session_state["job"]


def _weights(learner):
    return torch.cat([p.detach().flatten() for p in learner.parameters()])


def test_two_sessions_training_at_once_keep_their_own_models():
    from app.jobs import MAX_WORKERS, job_board
    a, b, c = new_app(seed=1), new_app(seed=2), new_app()
    job_a, job_b = _start_training(a), _start_training(b)
    assert job_a is not job_b and job_a.learner is not job_b.learner
    job_a.wait(120)
    job_b.wait(120)
    assert (job_a.status, job_b.status) == ("done", "done"), (job_a.error, job_b.error)
    assert len(job_board().workers) == MAX_WORKERS  # one bounded pool for the server
    a.run()
    b.run()
    c.run()
    model_a, model_b = _model(a), _model(b)
    assert model_a.source == model_b.source == "trained"
    assert model_a.learner is job_a.learner and model_b.learner is job_b.learner
    assert not torch.equal(_weights(model_a.learner), _weights(model_b.learner))
    # the third session, which trained nothing, still has the shipped (or fresh) model
    goto(c, "train")
    assert _model(c).source in ("shipped", "fresh")
    assert not any(p.data_ptr() == q.data_ptr() for p in _model(c).learner.parameters()
                   for q in model_a.learner.parameters())
    assert EN["model.source.trained"].split("(")[0].strip() in texts(a)


def test_the_shipped_model_is_copied_never_shared_between_sessions():
    a, b = new_app(), new_app()
    goto(a, "adapt")
    goto(b, "adapt")
    la, lb = _model(a).learner, _model(b).learner
    assert la is not lb
    assert torch.equal(_weights(la), _weights(lb))  # same start: the shipped or seed-0 weights
    with torch.no_grad():
        next(la.parameters()).add_(1.0)  # what a session's training would do to its copy
    assert not torch.equal(_weights(la), _weights(lb))
    fresh = new_app()
    goto(fresh, "adapt")
    assert torch.equal(_weights(_model(fresh).learner), _weights(lb))


def test_stop_keeps_the_partial_model_and_the_page_stays_usable():
    at = new_app()
    job = _start_training(at, steps=5000)
    deadline = time.monotonic() + 60
    while job.step == 0:  # the run's process has taken its first step (a user sees it)
        assert job.active and time.monotonic() < deadline, (job.status, job.error)
        time.sleep(0.05)
    at.button(key="train_stop").click().run()
    job.wait(120)
    assert job.status == "stopped" and 0 < job.step < 5000
    at.run()
    assert _model(at).source == "trained"
    assert problems(at) == []
    assert not at.button(key="train_start").disabled


def test_checkpoint_upload_accepts_the_right_one_and_refuses_the_rest():
    from metarep_core.checkpoints import checkpoint_to_bytes
    from metarep_core.learners import build_learner
    at = new_app()
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5)

    def upload(name, data):
        at.file_uploader(key="upload_checkpoint").upload(name, data).run()
        assert problems(at) == []
        return [e.value for e in at.error], [s.value for s in at.success]

    torch.manual_seed(5)
    good = build_learner("protonet", (1, 28, 28), 5)
    errors, ok = upload("mine.safetensors", checkpoint_to_bytes(good))
    assert not errors and ok
    entry = _model(at)
    assert entry.source == "uploaded" and torch.equal(_weights(entry.learner), _weights(good))

    other = build_learner("maml", (1, 28, 28), 5)
    errors, _ = upload("maml.safetensors", checkpoint_to_bytes(other))
    assert errors and "maml" in errors[0]
    wrong_n = build_learner("protonet", (1, 28, 28), 3)
    errors, _ = upload("three.safetensors", checkpoint_to_bytes(wrong_n))
    assert errors and "n_way=3" in errors[0]
    errors, _ = upload("evil.pt", pickle.dumps({"weights": [1, 2, 3]}))
    assert errors
    errors, _ = upload("junk.safetensors", b"not a checkpoint at all")
    assert errors
    assert _model(at).source == "uploaded"  # the refused files changed nothing
    assert torch.equal(_weights(_model(at).learner), _weights(good))


def test_uploaded_zip_of_class_folders_becomes_this_sessions_dataset():
    at = new_app()
    set_and_run(at, dataset="upload")
    assert problems(at) == []
    assert EN["upload.none_yet"] in texts(at)
    at.file_uploader(key="upload_file").upload("shapes.zip", class_folder_zip(n_classes=6)).run()
    assert problems(at) == [] and not at.error, [e.value for e in at.error]
    assert at.session_state["split"] == "all"
    assert "class_" in texts(at) or at.session_state["upload"]["dataset"].n_classes == 6
    for page in ("episodes", "adapt", "embedding", "train"):
        goto(at, page)
        assert problems(at) == [] and not at.error, (page, [e.value for e in at.error])
    other = new_app()  # another session has no upload
    set_and_run(other, dataset="upload")
    assert EN["upload.none_yet"] in texts(other)


def _zip_with(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("name,data,needle", [
    ("notes.zip", b"this is not a zip", "zip"),
    ("cut.zip", class_folder_zip()[:200], "zip"),
    ("flat.zip", _zip_with({"readme.txt": b"hello"}), "image"),
    ("escape.zip", _zip_with({"../../etc/evil.png": b"x", "a/b.png": b"y"}), ".."),
])
def test_bad_zip_shows_a_message_and_the_app_keeps_working(name, data, needle):
    at = new_app()
    set_and_run(at, dataset="upload")
    at.file_uploader(key="upload_file").upload(name, data).run()
    assert problems(at) == []
    errors = [e.value for e in at.error]
    assert any(needle in e for e in errors), errors
    set_and_run(at, dataset="glyphs")
    assert not at.error and problems(at) == []


def test_classes_with_too_few_images_for_k_plus_q_are_explained():
    at = new_app()
    set_and_run(at, dataset="upload")
    at.file_uploader(key="upload_file").upload("small.zip", class_folder_zip(6, per_class=4)).run()
    set_and_run(at, n_way=5, k_shot=2, n_query=3)
    assert any("k_shot + n_query = 5" in e.value for e in at.error), [e.value for e in at.error]
    set_and_run(at, k_shot=1, n_query=2)
    assert not at.error


def test_upload_handler_reads_a_real_zip_and_refuses_a_zip_bomb():
    from app.uploads import dataset_from_zip
    from metarep_core.errors import MetaRepError
    ds = dataset_from_zip("shapes.zip", class_folder_zip(n_classes=5, per_class=6))
    assert ds.n_classes == 5 and ds.input_shape == (1, 28, 28)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/big.png", b"\0" * (30 * 1024 * 1024))  # ~30 KB zipped
    with pytest.raises(MetaRepError):
        dataset_from_zip("bomb.zip", buf.getvalue())
    with pytest.raises(MetaRepError):
        dataset_from_zip("empty.zip", b"")


def test_an_unreadable_shipped_checkpoint_falls_back_to_a_fresh_model(tmp_path, monkeypatch):
    from app import services
    (tmp_path / "protonet_glyphs_5w1s.safetensors").write_bytes(b"\x80\x04 not safetensors")
    monkeypatch.setattr(services, "CHECKPOINT_DIR", tmp_path)
    at = new_app()
    goto(at, "adapt")
    assert problems(at) == []
    assert _model(at).source == "fresh"
    assert EN["model.source.fresh"] in texts(at)
