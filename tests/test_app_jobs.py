"""Training jobs are bounded per session and per server (issue 12, item 2).

The board is tested directly (several owners at once) and through the Train page
(AppTest: the message a user sees). The server-side half (a closed tab stops its job, a
reloaded tab finds it again, SIGTERM) needs a real server: tests/test_browser_jobs.py.
AppTest has no websocket, so its sessions never end (and all share one session id).
"""
from __future__ import annotations

import pytest

from app_harness import goto, new_app, set_and_run, strings

pytestmark = pytest.mark.child_processes  # training runs in child processes
EN = strings("en")


@pytest.fixture
def board():
    """The process's job board, with no job left active by an earlier test."""
    from app.jobs import job_board
    b = job_board()
    _stop_all(b)
    yield b
    _stop_all(b)


def _stop_all(b):
    for job in list(b.jobs.values()):
        job.stop()
    for job in list(b.jobs.values()):
        job.wait(60)


def _long_job(steps=20000):
    """A real ProtoNet training job on glyphs that runs until stopped."""
    from app.jobs import TrainingJob
    from metarep_core.data import load_dataset
    from metarep_core.learners import build_learner
    dataset = load_dataset("glyphs")
    learner = build_learner("protonet", input_shape=dataset.input_shape, n_way=5)
    return TrainingJob(learner, dataset, model_key=("protonet", "glyphs", 5, (1, 28, 28)),
                       n_way=5, k_shot=1, n_query=2, steps=steps, seed=0)


def test_one_session_cannot_hold_two_active_jobs(board):
    from metarep_core.errors import MetaRepError
    first = _long_job()
    board.submit(first, "session-a")
    with pytest.raises(MetaRepError, match="already has a training run"):
        board.submit(_long_job(), "session-a")
    other = _long_job()
    board.submit(other, "session-b")  # another session may
    assert [j for j in board.jobs.values() if j.owner == "session-a" and j.active] == [first]
    first.stop()
    first.wait(60)
    again = _long_job()
    board.submit(again, "session-a")  # once the first has ended, a new one is fine
    assert again.active and first.token not in board.jobs  # the old run is not kept reachable


def test_a_full_queue_is_refused_on_the_page_with_a_message(board, monkeypatch):
    import app.job_board
    monkeypatch.setattr(app.job_board, "MAX_WAITING", 1)
    capacity = len(board.workers) + 1
    others = [_long_job() for _ in range(capacity)]
    for i, job in enumerate(others):
        board.submit(job, f"other-session-{i}")
    at = new_app()
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5, k_shot=1, n_query=2, train_steps=50)
    at.button(key="train_start").click().run()
    expected = EN["jobs.queue_full"].format(running=len(board.workers), waiting=1)
    assert expected in [e.value for e in at.error]
    assert "job" not in at.session_state
    assert sum(j.active for j in board.jobs.values()) == capacity
    # A queued run shows its place in the line; when one run stops the page can start.
    waiting = others[-1]
    assert waiting.status == "queued" and board.position(waiting) == 0
    others[0].stop()
    others[0].wait(60)
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    assert not at.error and job.active
    assert board.position(job) == 0 or job.status == "running"


def test_keep_training_is_the_runs_choice_across_pages(board):
    at = new_app()
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5, k_shot=1, n_query=2, train_steps=20000)
    at.checkbox(key="train_keep").check().run()
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    assert job.active and job.keep
    goto(at, "adapt")  # the checkbox is not drawn here, so Streamlit forgets its value
    goto(at, "train")
    assert job.keep and at.checkbox(key="train_keep").value
    at.checkbox(key="train_keep").uncheck().run()  # and unticking applies to the run
    assert not job.keep


def test_training_workers_run_below_the_page_runs_priority(board):
    """Issue 13: two runs on two cores must not starve the page scripts of every other tab.
    Each worker thread (and only it) is niced; the server's own threads are not."""
    import os
    import threading

    from app.job_board import WORKER_NICE
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for worker in board.workers:
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == min(19, own + WORKER_NICE), worker.name
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    assert os.getpriority(os.PRIO_PROCESS, board._reaper.native_id) == own
