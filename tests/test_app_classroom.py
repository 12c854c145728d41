"""AppTest: what a class meets first — a dataset whose split has fewer classes than the
chosen N gets N adjusted with a note (not an error), and a student's first training
starts from a fresh initialisation."""
from __future__ import annotations

from app import state
from app_harness import goto, new_app, problems, set_and_run, strings, texts

EN, ZH = strings("en"), strings("zh")


def test_digits_test_split_adjusts_n_with_a_note_instead_of_an_error():
    at = new_app(dataset="digits", n_way=5, k_shot=1, n_query=2)
    assert problems(at) == [] and not at.error, [e.value for e in at.error]
    assert at.session_state["n_way"] == 3 and at.query_params["n_way"] == "3"
    note = EN["sidebar.n_way_adjusted"].format(asked=5, n=3, split=EN["split.test"])
    assert note in texts(at)
    assert "episode_support" in {el.proto.id.rsplit("-", 1)[-1] for el in at.get("plotly_chart")}
    set_and_run(at, lang="zh")  # the note in the session's language
    assert ZH["sidebar.n_way_adjusted"].format(asked=5, n=3, split=ZH["split.test"]) in texts(at)
    # Another split with enough classes: the note goes, N stays what it became.
    set_and_run(at, split="all", lang="en")
    assert note not in texts(at) and at.session_state["n_way"] == 3
    # Back on the test split, a student typing N = 7 gets 3 again, with the note.
    set_and_run(at, split="test", n_way=7)
    assert problems(at) == [] and not at.error and at.session_state["n_way"] == 3
    assert EN["sidebar.n_way_adjusted"].format(asked=7, n=3, split=EN["split.test"]) in texts(at)


def test_a_students_first_training_starts_from_a_fresh_initialisation():
    at = new_app()
    goto(at, "train")
    assert problems(at) == []
    # the session's model is the shipped checkpoint: training on from it shows flat curves
    assert EN["model.source.shipped"].split("(")[0] in texts(at)
    assert at.toggle(key="train_fresh").value is True
    # a model the student made is continued by default (the toggle is made again when the
    # Train page is opened again)
    key = ("protonet", state.DEFAULTS.dataset, 5, (1, 28, 28))
    shipped = at.session_state["models"][key]
    at.session_state["models"] = {key: state.SessionModel(shipped.learner, "trained", {"steps": 3}, 99)}
    goto(at, "episodes")
    goto(at, "train")
    assert problems(at) == [] and at.toggle(key="train_fresh").value is False


def test_draw_page_controls_set_the_number_of_drawings_and_it_needs_images():
    at = new_app()
    goto(at, "draw")
    assert problems(at) == [] and not at.error
    assert EN["draw.missing"].format(n=10) in texts(at)  # 5 characters x (1 example + 1 query)
    set_and_run(at, draw_n_way=3, draw_k_shot=2, draw_n_query=1)
    assert EN["draw.missing"].format(n=9) in texts(at)
    assert texts(at).count(EN["draw.example"].format(n=2)) == 3
    set_and_run(at, dataset="sinusoid")
    assert EN["draw.needs_images"] in texts(at) and problems(at) == []
