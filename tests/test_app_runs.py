"""AppTest suite: a session's work kept in the run store (issue 11) and given back to a
new session opened with only ``?run=<token>`` (what a reload or the copied link is: a
new Streamlit session). The store is the test session's SQLite file (conftest.py)."""
from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest

from app import exercises, human, persistence, state
from app_harness import MAIN, class_folder_zip, goto, new_app, problems, set_and_run, strings, texts
from metarep_core.data import load_dataset
from metarep_core.store import RunStore

pytestmark = pytest.mark.child_processes  # training runs in a child process
EN = strings("en")
KEY = ("protonet", state.DEFAULTS.dataset, 5, (1, 28, 28))  # the default settings' model


def _reopen(run: str, **query) -> AppTest:
    """A new session (no widget seeds, unlike ``new_app``) of the link ``?run=<run>``."""
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.query_params.update({"run": run, **{k: str(v) for k, v in query.items()}})
    return at.run()


def _weights(learner):
    return torch.cat([p.detach().flatten() for p in learner.parameters()])


def test_settings_and_page_states_come_back_from_the_link():
    at = new_app(seed=7, algorithm="maml")
    run = at.query_params["run"]  # settings other than the defaults: a run, and its link
    assert EN["run.saved"] in texts(at)
    goto(at, "adapt")
    at.slider(key="adapt_step").set_value(3).run()
    goto(at, "embedding")
    at.radio(key="emb_dim").set_value(3).run()
    goto(at, "compare")
    at.multiselect(key="compare_algorithms").set_value(["maml", "protonet"]).run()
    at.select_slider(key="compare_episodes").set_value(50).run()
    assert problems(at) == [] and at.query_params["run"] == run

    again = _reopen(run)  # nothing in the URL but the token
    assert (again.session_state["seed"], again.session_state["algorithm"]) == (7, "maml")
    assert again.query_params["run"] == run and again.query_params["seed"] == "7"
    goto(again, "adapt")
    assert again.slider(key="adapt_step").value == 3
    goto(again, "embedding")
    assert (again.radio(key="emb_dim").value, again.radio(key="emb_method").value) == (3, "pca")
    goto(again, "compare")
    assert again.multiselect(key="compare_algorithms").value == ["maml", "protonet"]
    assert again.select_slider(key="compare_episodes").value == 50
    assert problems(again) == []


def test_a_session_that_only_looks_makes_no_run_and_its_first_change_does():
    at = new_app()
    for page in ("adapt", "human", "compare"):
        goto(at, page)
    assert "run" not in at.query_params and EN["run.saved"] not in texts(at)
    # made while the page runs (after main.py wrote the URL): in the URL at once, for a reload
    at.select_slider(key="compare_episodes").set_value(10).run()
    run = at.query_params["run"]
    assert RunStore().load_run(run).page_state["compare"]["compare_episodes"] == 10


def test_a_trained_model_and_an_answer_come_back_after_a_reload():
    at = new_app(lesson="inner_loop", step=2)
    goto(at, "lessons")
    at.radio(key="lesson_choice_inner_loop_2").set_value("higher").run()
    at.button(key="lesson_check").click().run()
    answered = at.session_state[exercises.ANSWERS_KEY][-1]
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5, k_shot=1, n_query=2, train_steps=3)
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    job.wait(120)
    at.run()  # adopts the job: the model is kept in the run
    key = ("protonet", at.session_state["dataset"], 5, (1, 28, 28))  # the lesson's dataset
    trained = at.session_state["models"][key]
    assert trained.source == "trained" and problems(at) == []
    run = at.query_params["run"]

    again = _reopen(run, job=job.token)  # what the address bar holds after training
    goto(again, "train")
    model = again.session_state["models"][key]
    assert model.source == "trained" and model.meta["steps"] == 3
    assert torch.equal(_weights(model.learner), _weights(trained.learner))
    assert model.learner is not trained.learner  # rebuilt from the stored bytes
    assert [(a.lesson, a.step, a.answer, a.correct) for a in again.session_state[exercises.ANSWERS_KEY]] \
        == [(answered.lesson, answered.step, "higher", answered.correct)]
    goto(again, "lessons")
    assert EN["lesson.answers"].format(n=1, right=int(answered.correct)) in [e.label for e in again.expander]


def test_the_rounds_against_the_model_come_back_and_compare_still_shows_you():
    """A "You vs the model" record lives in the run, not in one server's memory: a new
    session (another server, in a deployment) opened with the link has it."""
    at = new_app(dataset="glyphs", n_query=2, seed=3)
    goto(at, "human")
    at.button(key="human_start").click().run()
    record = at.session_state.get(human.STATE_KEY) or human.new_record("glyphs", "test", 5, 1, 2, 3)
    truth = human.comparison_episode(load_dataset("glyphs", seed=0), record, 0).query_y.tolist()
    for j, y in enumerate(truth):
        at.radio(key=f"human_answer_0_{j}").set_value(y if j else (y + 1) % 5)  # 9 of 10 right
    at.button(key="human_submit").click().run()
    kept = at.session_state[human.STATE_KEY]
    assert list(kept.scores()) == [0.9] and problems(at) == []

    again = _reopen(at.query_params["run"])
    assert again.session_state[human.STATE_KEY] == kept  # back before any page asks (Compare reads it)
    goto(again, "human")
    assert EN["human.so_far"].format(episodes=1, accuracy="90", seconds=f"{kept.seconds_per_query:.1f}") \
        in [s.value for s in again.success]
    assert problems(again) == []


def test_a_stored_checkpoint_that_does_not_fit_is_refused_not_loaded():
    from metarep_core.checkpoints import checkpoint_to_bytes
    from metarep_core.learners import build_learner
    store = RunStore()
    run = store.create_run()
    three_way = build_learner("protonet", (1, 28, 28), 3)
    # a 3-way head under the 5-way model's slot: the store must refuse it for N = 5
    store.put_checkpoint(run, persistence.slot(KEY), checkpoint_to_bytes(three_way, source="trained"))
    at = _reopen(run)
    goto(at, "train")
    assert at.session_state["models"][KEY].source in ("shipped", "fresh")
    notes = [w.value for w in at.warning if w.value.startswith(EN["run.note"].split("{")[0])]
    assert len(notes) == 1 and "has n_way 3, expected 5" in notes[0], notes
    assert problems(at) == []


def test_an_upload_comes_back_through_the_upload_checks():
    at = new_app()
    set_and_run(at, dataset="upload")
    at.file_uploader(key="upload_file").upload("shapes.zip", class_folder_zip(n_classes=6)).run()
    first = at.session_state["upload"]
    again = _reopen(at.query_params["run"])
    assert again.session_state["dataset"] == "upload"
    assert (again.session_state["upload"]["id"], again.session_state["upload"]["name"]) == (first["id"], "shapes.zip")
    assert again.session_state["upload"]["dataset"].n_classes == 6
    goto(again, "episodes")
    assert problems(again) == [] and not again.error


def test_an_unavailable_store_is_said_once_and_the_app_keeps_working(monkeypatch):
    monkeypatch.setenv("METAREP_DB_URL", "sqlite:////proc/metarep-no-such-dir/runs.sqlite3")
    at = new_app(seed=3)
    for page in ("adapt", "compare", "lessons"):
        goto(at, page)
        assert problems(at) == [] and not at.error, page
        said = [w.value for w in at.warning if w.value.startswith(EN["run.store_unavailable"][:25])]
        assert len(said) == 1, said
    assert "run" not in at.query_params and at.session_state["seed"] == 3


def test_a_link_to_an_unknown_run_says_so_and_starts_afresh():
    at = new_app(run="A" * 32)
    assert EN["run.not_found"] in [w.value for w in at.warning]
    assert "run" not in at.query_params and problems(at) == []


def test_a_database_that_goes_away_mid_session_is_said_once(monkeypatch):
    """A real PostgreSQL server, stopped while a session uses it: the next write fails,
    the sidebar says so once, and the pages keep working without the store."""
    try:
        from pg_harness import PostgresServer
    except ImportError:
        from tests.pg_harness import PostgresServer
    server = PostgresServer().start()
    try:
        monkeypatch.setenv("METAREP_DB_URL", server.create_database("app_gone"))
        at = new_app(seed=5)
        assert at.query_params["run"] and EN["run.saved"] in texts(at)
    finally:
        server.stop()
    set_and_run(at, seed=6)  # a change to keep, and nowhere to keep it
    for page in ("adapt", "human", "compare"):
        goto(at, page)
        said = [w.value for w in at.warning if w.value.startswith(EN["run.store_unavailable"][:25])]
        assert len(said) == 1 and problems(at) == [] and not at.error, (page, said)
    assert at.session_state["seed"] == 6
