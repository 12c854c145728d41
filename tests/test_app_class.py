"""AppTest: a class (issue 11, a teacher's view). The teacher's page needs the key and
shows, per exercise, the counts and the distribution of answers, each student's
answer, the reveal switch and the CSV; a student joins with the code and a name,
answers reach the class, and the student sees the class only once revealed, never
another student's answer; a round of "You vs the model" reaches the teacher;
projector mode from the URL and from the teacher's switch. Each test has a store of
its own (``METAREP_DB_URL`` to a SQLite file in ``tmp_path``)."""
from __future__ import annotations

import pytest

from app import classroom, human, projector, services
from app.i18n import t
from app.safe_text import plain
from app_harness import goto, new_app, problems, texts
from metarep_core.data import load_dataset
from metarep_core.errors import MetaRepError
from metarep_core.store import RunStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'runs.sqlite3'}"
    monkeypatch.setenv("METAREP_DB_URL", url)
    s = RunStore(url)
    yield s
    s.close()


def label(algorithm: str) -> str:
    """A learner as the distribution names it (its title, without the family)."""
    return services.algorithm_label(algorithm, "en").split(" · ")[0]


def frames(at) -> list:
    """Every table on the page (st.table), as pandas DataFrames, the index a column."""
    return [d.value.reset_index() for d in at.table]


def shown(at) -> str:
    """Texts and every table cell, joined: what a reader could find on the page."""
    return texts(at) + "\n".join(f.to_string() for f in frames(at))


def open_class(code: str, key: str):
    at = new_app()
    goto(at, "teacher")
    at.text_input(key="teacher_code").set_value(code)
    at.text_input(key="teacher_key").set_value(key)
    return at.button(key="teacher_open").click().run()


def test_the_teachers_page_needs_the_key_and_shows_counts_distribution_and_csv(store):
    at = new_app()
    goto(at, "teacher")
    assert problems(at) == [] and not at.get("download_button")
    at.button(key="teacher_create").click().run()
    code, key = at.session_state["teacher_class"]
    assert [c.value for c in at.code] == [key] and t("teacher.keep_key") in texts(at)  # the key, once
    assert key not in str(dict(at.query_params))  # never in the URL
    at.button(key="teacher_kept").click().run()
    assert not at.code

    for name, answer in (("Ada", "maml"), ("Bob", "protonet"), ("<b>Mallory</b>", "maml")):
        store.record_answer(store.join_class(code, name), "families", 2, answer, correct=answer == "protonet")

    wrong = open_class(code, key[:-1] + ("x" if key[-1] != "x" else "y"))
    assert problems(wrong) == []
    assert [e.value for e in wrong.error] == [f"that is not the teacher key of class '{code}'"]
    assert not wrong.table and not wrong.get("download_button") and "Ada" not in shown(wrong)

    right = open_class(code.lower(), key)
    assert problems(right) == [] and not right.error
    assert t("teacher.class_title", code=code) in texts(right) and not right.code  # no key shown again
    families = [m for m in right.metric if m.label == t("teacher.answered")]
    assert "3 / 3" in [m.value for m in families]
    dist = next(f for f in frames(right) if t("class.col.share") in f.columns)  # families step 2 comes first
    assert dict(zip(dist[t("class.col.answer")], dist[t("class.col.students")])) == {
        label("maml"): 2, label("protonet"): 1}
    each = next(f for f in frames(right) if t("class.col.student") in f.columns)
    assert set(each[t("class.col.student")]) == {"Ada", "Bob", plain("<b>Mallory</b>")}  # escaped: st.table reads markdown
    assert right.get("download_button")[0].proto.label == t("teacher.csv")

    with pytest.raises(MetaRepError, match="not revealed"):
        store.answer_summary(code, "families", 2)
    right.toggle(key="teacher_reveal_families_2").set_value(True).run()
    assert store.answer_summary(code, "families", 2).distribution == (("maml", 2), ("protonet", 1))
    right.toggle(key="teacher_reveal_families_2").set_value(False).run()
    with pytest.raises(MetaRepError, match="not revealed"):
        store.answer_summary(code, "families", 2)

    # An answer given through another app server (the same store): the open view's
    # Refresh reads it, with no new session and no key asked again.
    store.record_answer(store.join_class(code, "Zed"), "families", 2, "protonet", correct=True)
    assert "Zed" not in shown(right)
    right.button(key="teacher_refresh").click().run()
    assert "Zed" in shown(right) and problems(right) == []
    assert "4 / 4" in [m.value for m in right.metric if m.label == t("teacher.answered")]

    right.toggle(key="projector_toggle").set_value(True).run()  # projector mode from the page
    assert right.query_params["projector"] == "1"
    assert f"zoom: {projector.ZOOM}" in " ".join(h.proto.body for h in right.get("html"))


def test_a_student_joins_answers_and_sees_only_what_the_teacher_revealed(store):
    code, key = store.create_class()
    store.join_class(code, "Bob")
    at = new_app(**{"class": code.lower()})  # the teacher's link fills in the code
    goto(at, "lessons")
    assert at.text_input(key="class_code").value == code
    at.text_input(key="class_name").set_value("Bob").run()
    at.button(key="class_join").click().run()
    assert [e.value for e in at.error] == ["the name 'Bob' is already taken in this class; choose another"]
    assert at.text_input(key="class_name").max_chars == 40
    at.text_input(key="class_name").set_value("Ada_*x*").run()
    at.button(key="class_join").click().run()
    joined = at.session_state[classroom.MEMBER]
    assert (joined["code"], joined["name"]) == (code, "Ada_*x*") and at.query_params["student"] == joined["token"]
    assert t("class.joined", code=code, name="Ada\\_\\*x\\*") in texts(at)  # escaped: no emphasis

    at.button(key="lesson_inner_loop").click().run()
    at.button(key="lesson_next").click().run()
    at.radio(key="lesson_choice_inner_loop_2").set_value("higher").run()
    at.button(key="lesson_check").click().run()
    assert problems(at) == []
    assert [(a.student, a.lesson, a.step, a.answer) for a in store.class_answers(code, key)] == [
        ("Ada_*x*", "inner_loop", 2, "higher")]

    store.record_answer(store.join_class(code, "Cy"), "inner_loop", 2, "lower", correct=False)  # another student
    at.run()
    assert t("class.not_revealed") in texts(at) and t("class.revealed_title") not in texts(at)
    assert not [f for f in frames(at) if t("class.col.share") in f.columns]
    assert "Cy" not in shown(at) and "Bob" not in shown(at)

    store.set_revealed(code, key, "inner_loop", 2)
    at.run()
    assert t("class.revealed_title") in texts(at)
    assert t("class.answered", answered=2, students=3, correct=1) in texts(at)
    dist = next(f for f in frames(at) if t("class.col.share") in f.columns)
    assert dict(zip(dist[t("class.col.answer")], dist[t("class.col.students")])) == {
        t("lesson.option.higher"): 1, t("lesson.option.lower"): 1}
    assert "Cy" not in shown(at) and "Bob" not in shown(at)  # counts, never names

    again = new_app(student=joined["token"])  # a reload keeps the student in the class
    assert again.session_state[classroom.MEMBER] == joined
    goto(again, "lessons")
    again.button(key="class_leave").click().run()
    assert classroom.MEMBER not in again.session_state and "student" not in again.query_params


def test_a_round_of_you_vs_the_model_reaches_the_teacher(store):
    code, key = store.create_class()
    at = new_app(n_query=2, seed=3)
    goto(at, "lessons")
    at.text_input(key="class_code").set_value(code)
    at.text_input(key="class_name").set_value("Ada")
    at.button(key="class_join").click().run()
    goto(at, "human")
    at.button(key="human_start").click().run()
    record = human.new_record("glyphs", "test", 5, 1, 2, 3)
    truth = human.comparison_episode(load_dataset("glyphs", seed=0), record, 0).query_y.tolist()
    for j, y in enumerate(truth):  # all right but the first two: 80%
        at.radio(key=f"human_answer_0_{j}").set_value((y + 1) % 5 if j < 2 else y)
    at.button(key="human_submit").click().run()
    assert problems(at) == []
    (round_,) = store.class_answers(code, key)
    assert (round_.lesson, round_.step, round_.answer["you"], round_.answer["algorithm"]) == (
        classroom.HUMAN_LESSON, 1, 80.0, "protonet")
    assert 0 <= round_.answer["model"] <= 100 and round_.seconds >= 0

    teacher = open_class(code, key)
    rows = next(f for f in frames(teacher) if t("teacher.col.you") in f.columns)
    assert list(rows[t("class.col.student")]) == ["Ada"] and list(rows[t("teacher.col.you")]) == [80.0]
    assert list(rows[t("teacher.col.model")]) == [round_.answer["model"]]


def test_projector_mode_from_the_url_stays_on_every_page():
    at = new_app(projector=1)
    assert problems(at) == []
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert f"zoom: {projector.ZOOM}" in styles and "stSidebarUserContent" in styles
    goto(at, "lessons")
    assert at.query_params["projector"] == "1"
    plain = new_app()
    assert "zoom" not in " ".join(h.proto.body for h in plain.get("html"))
