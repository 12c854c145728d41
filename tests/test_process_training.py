"""Local training runs in a child process of its own (issue 13: a training thread held
the GIL against every page run), driven through the same job interface as a run on a
Ray cluster (metarep_core/process_runner.py, app/jobs.py)."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from app_harness import strings

pytestmark = pytest.mark.child_processes  # training runs in child processes
EN = strings("en")
DATASET = "glyphs"


@pytest.fixture
def board():
    from app.jobs import job_board
    b = job_board()
    yield b
    for job in list(b.jobs.values()):
        job.stop()
    for job in list(b.jobs.values()):
        job.wait(60)


def _job(steps, val_every, seed=0):
    from app.jobs import TrainingJob
    from metarep_core.data import load_dataset
    from metarep_core.learners import build_learner
    dataset = load_dataset(DATASET)
    torch.manual_seed(seed)
    learner = build_learner("protonet", input_shape=dataset.input_shape, n_way=5)
    return TrainingJob(learner, dataset, model_key=("protonet", DATASET, 5, tuple(dataset.input_shape)),
                       n_way=5, k_shot=1, n_query=5, steps=steps, seed=seed, val_every=val_every,
                       val_episodes=10)


def _child_pid(job, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        remote = job.remote
        if remote is not None and remote.pid() is not None:
            return remote.pid()
        assert job.active, (job.status, job.error)
        time.sleep(0.05)
    raise AssertionError("no training process started")


def _niceness_once_lowered(pid, lowered, timeout=10.0):
    """The child's niceness once it has lowered it (its first act; a child of a fork server
    started at full priority begins at 0), else the last value read before ``timeout`` or
    before it ended; None if it ended before the first read."""
    deadline, nice = time.monotonic() + timeout, None
    while True:
        try:
            nice = os.getpriority(os.PRIO_PROCESS, pid)
        except ProcessLookupError:
            return nice
        if nice == lowered or time.monotonic() > deadline:
            return nice
        time.sleep(0.02)


def _accuracy(learner):
    from metarep_core.data import load_dataset
    from metarep_core.evaluation import evaluate
    return evaluate(learner.eval(), load_dataset(DATASET), "test", n_way=5, k_shot=1, n_query=5,
                    episodes=40, seed=0)["accuracy"]


def test_a_local_run_trains_in_a_child_process_below_the_pages_priority(board):
    from app.jobs import TRAIN_IN_PROCESS
    from app.job_board import WORKER_NICE
    assert TRAIN_IN_PROCESS  # the default
    job = _job(steps=80, val_every=40)
    untrained = _accuracy(job.learner)
    board.submit(job, "session-process")
    pid = _child_pid(job)
    lowered = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE)
    nice = _niceness_once_lowered(pid, lowered)
    job.wait(240)
    assert pid != os.getpid()
    assert nice is None or nice == lowered
    assert job.status == "done", (job.status, job.error)
    assert job.where == "local" and len(job.history) == 80 and len(job.val_curve) == 2
    assert [r["step"] for r in job.val_curve] == [40, 80]
    trained = _accuracy(job.learner)
    # 5-way: chance is 20%. The weights came back from the child and learned there.
    assert trained > 20 + 25 and trained > untrained + 10, (untrained, trained)
    assert not job.remote.process.is_alive()


def test_stop_ends_the_child_process_with_a_result(board):
    job = _job(steps=20000, val_every=0)
    board.submit(job, "session-stop")
    pid = _child_pid(job)
    while job.step < 3:
        assert job.active, (job.status, job.error)
        time.sleep(0.05)
    job.stop()
    job.wait(60)
    assert job.status == "stopped" and 3 <= job.step < 20000
    job.remote.process.join(10)
    assert not job.remote.process.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_training_process_fails_the_job_and_keeps_the_best_weights(board):
    from metarep_core.checkpoints import load_checkpoint
    job = _job(steps=5000, val_every=4)
    board.submit(job, "session-kill")
    pid = _child_pid(job)
    deadline = time.monotonic() + 120
    while job.remote.best is None or job.step < 9:
        assert job.active and time.monotonic() < deadline, (job.status, job.error, job.step)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    job.wait(60)
    assert job.status == "failed"
    assert "ended unexpectedly" in job.error and f"{pid}" in job.error, job.error
    assert job.best_kept is not None and job.best_kept % 4 == 0 and job.best_kept <= job.step
    kept, _ = load_checkpoint(job.remote.best)
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(),
                                                  job.learner.state_dict().values()))
    assert EN["jobs.process_lost_kept"].split("(")[0] in job.error


def test_the_worker_thread_still_trains_when_processes_are_switched_off(board, monkeypatch):
    """METAREP_TRAIN_PROCESS=0: the run trains in the board's worker thread, as before."""
    import app.jobs
    monkeypatch.setattr(app.jobs, "TRAIN_IN_PROCESS", False)
    job = _job(steps=40, val_every=40)
    untrained = _accuracy(job.learner)
    board.submit(job, "session-thread")
    job.wait(240)
    assert job.status == "done" and job.remote is None and len(job.history) == 40
    assert _accuracy(job.learner) > untrained + 5


def test_an_uploaded_dataset_is_sent_to_the_training_process(board):
    """A dataset that is not built in (an upload: one tensor per class) travels as a
    copy; handed over as shared-memory descriptors it failed ("too many fds")."""
    import dataclasses
    import pickle
    from app.jobs import TrainingJob
    base = _job(steps=1, val_every=0)
    upload = dataclasses.replace(base.dataset, name="my-upload", params={})
    job = TrainingJob(base.learner, upload, model_key=("protonet", "upload:abc", 5, tuple(upload.input_shape)),
                      n_way=5, k_shot=1, n_query=5, steps=30, seed=0, val_every=30, val_episodes=10)
    board.submit(job, "session-upload")
    _child_pid(job)
    assert pickle.loads(job.remote.payload)[0] == "copy"
    job.wait(240)
    assert job.status == "done" and len(job.history) == 30, (job.status, job.error)


def report_main_module(conn) -> None:
    """In a child: what it has as ``__main__`` (sent to the parent)."""
    import sys
    conn.send({name: getattr(sys.modules.get(name), "__file__", None)
               for name in ("__main__", "__mp_main__")})
    conn.close()


def test_a_child_started_after_a_page_run_does_not_run_the_page_script():
    """Streamlit leaves the page script installed as ``__main__``; multiprocessing would
    have every child execute it again before its target (3.1 s of each training's start)."""
    import sys

    from app_harness import MAIN, new_app
    from metarep_core.process_runner import mp_context
    new_app()
    assert sys.modules["__main__"].__file__ == str(MAIN)  # what Streamlit leaves behind
    ctx = mp_context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=report_main_module, args=(send,), daemon=True)
    child.start()
    send.close()
    assert receive.poll(120), "the child sent nothing"
    got = receive.recv()
    child.join(30)
    # the fork server's own __main__ (python -c), not the page script run again
    assert str(MAIN) not in got.values(), got
