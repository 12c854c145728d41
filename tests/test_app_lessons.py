"""AppTest suite for the lessons: a lesson walked in 简体中文 (the language kept through
its page button, answers checked, feedback and hint shown, answers recorded), a lesson
link that opens a step and hides the sidebar, and every step of every shipped lesson
answered in both languages through the page."""
from __future__ import annotations

import pytest

from app import exercises, services
from app.i18n import t
from app.lessons import load_lessons
from app_harness import goto, new_app, problems, texts
from metarep_core.checkpoints import load_checkpoint
from metarep_core.data import load_dataset
from metarep_core.episodes import EpisodeSampler

LESSONS = {l.id: l for l in load_lessons()[0]}


def _maml_direction_after_ten_steps() -> str:
    """What the shipped MAML does on the inner-loop lesson's episode, from its own trace."""
    lesson = LESSONS["inner_loop"]
    s = lesson.step_settings(1)
    learner, _ = load_checkpoint(str(services.CHECKPOINT_DIR / "maml_glyphs_5w1s.safetensors"))
    learner.hp = {**learner.hp, "eval_steps": 10}
    episode = EpisodeSampler(load_dataset("glyphs", seed=0), s["split"], s["n_way"], s["k_shot"],
                             s["n_query"], s["seed"]).sample(s["seed"])
    trace = learner.eval().adapt(episode, record=True).trace
    return exercises.direction(trace[0].query_accuracy, trace[10].query_accuracy)


def test_a_lesson_in_chinese_keeps_the_language_and_checks_the_answers():
    lesson = LESSONS["inner_loop"]
    at = new_app(lang="zh")
    goto(at, "lessons")
    at.button(key="lesson_inner_loop").click().run()
    assert at.session_state["lang"] == "zh" and at.session_state["algorithm"] == "maml"
    assert lesson.steps[0].text["zh"] in texts(at)

    at.button(key="lesson_open").click().run()  # the step's page: still in 简体中文
    assert problems(at) == []
    assert at.title[0].value == t("page.adapt", "zh")
    assert at.query_params["lang"] == "zh" and at.query_params["algorithm"] == "maml"
    assert t("lesson.banner", "zh", title=lesson.title["zh"], step=1, steps=3) in texts(at)

    goto(at, "lessons")  # back in the lesson, where the student left it
    at.button(key="lesson_next").click().run()
    assert (at.query_params["lesson"], at.query_params["step"]) == ("inner_loop", "2")
    assert lesson.steps[1].exercise.question["zh"] in texts(at)
    right = _maml_direction_after_ten_steps()
    wrong = next(o for o in exercises.DIRECTIONS if o != right)

    radio = at.radio(key="lesson_choice_inner_loop_2")
    assert radio.options == [t("lesson.option." + o, "zh") for o in exercises.DIRECTIONS]
    radio.set_value(wrong).run()
    at.button(key="lesson_check").click().run()
    assert problems(at) == []
    assert at.error and at.error[0].value.startswith(t("lesson.wrong", "zh"))
    assert t("lesson.hint", "zh", hint=lesson.steps[1].exercise.hint["zh"]) in [i.value for i in at.info]

    at.radio(key="lesson_choice_inner_loop_2").set_value(right).run()
    at.button(key="lesson_check").click().run()
    assert at.success and at.success[0].value.startswith(t("lesson.correct", "zh"))
    assert "%" in at.success[0].value  # what the model computed, shown once answered
    assert not at.info  # no hint after a right answer

    answers = at.session_state[exercises.ANSWERS_KEY]
    assert [(a.lesson, a.step, a.answer, a.correct, a.lang) for a in answers] == [
        ("inner_loop", 2, wrong, False, "zh"), ("inner_loop", 2, right, True, "zh")]
    assert exercises.Answer.from_json(answers[-1].to_json()) == answers[-1]
    assert at.session_state["lang"] == "zh"


def test_a_lesson_link_opens_its_step_and_hides_the_sidebar():
    at = new_app(lesson="inner_loop", step=3, hide="sidebar,everything", lang="zh")
    assert problems(at) == []
    ss = at.session_state
    assert (ss["lesson"], ss["lesson_step"], ss["lesson_hide"]) == ("inner_loop", 2, ["sidebar"])
    assert at.query_params["algorithm"] == "maml" and at.query_params["lang"] == "zh"
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert "stSidebar" in styles and "display: none" in styles

    goto(at, "lessons")
    assert t("lesson.url_ignored", "zh", value="hide=everything") in [w.value for w in at.warning]
    value = at.number_input(key="lesson_value_inner_loop_3")
    value.set_value(2.0).run()  # far too large a step: MAML overshoots
    at.button(key="lesson_check").click().run()
    assert at.error and at.error[0].value.startswith(t("lesson.wrong", "zh"))
    at.number_input(key="lesson_value_inner_loop_3").set_value(0.4).run()
    at.button(key="lesson_check").click().run()
    assert at.success and at.success[0].value.startswith(t("lesson.correct", "zh"))
    assert [a.correct for a in ss[exercises.ANSWERS_KEY]] == [False, True]


def test_settings_in_a_lesson_link_win_over_the_steps():
    """A link copied from the address bar carries the lesson and the settings shown."""
    at = new_app(lesson="inner_loop", step=1, seed=12, n_query="many")
    assert at.session_state["lesson"] == "inner_loop"
    assert at.session_state["seed"] == 12  # stated in the link (the step says 7)
    assert at.session_state["n_query"] == 3  # not usable in the link (default 5): the step's
    assert at.session_state["algorithm"] == "maml"  # not in the link: the step's


def test_without_a_hide_in_the_link_nothing_is_hidden():
    at = new_app(lesson="inner_loop", step=1)
    assert at.session_state["lesson_hide"] == []
    assert not [h for h in at.get("html") if "stSidebar" in h.proto.body]


def _first_option(ex) -> str:
    return {"best_learner": (ex.params.get("algorithms") or [""])[0],
            "query_class": "0"}.get(ex.kind, exercises.DIRECTIONS[0])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_step_of_every_lesson_is_answered_through_the_page(lang):
    at = new_app(lang=lang)
    goto(at, "lessons")
    for lesson in LESSONS.values():
        at.button(key=f"lesson_{lesson.id}").click().run()
        for n, step in enumerate(lesson.steps, 1):
            assert step.text[lang] in texts(at), (lesson.id, n)
            if step.exercise is not None:
                if step.exercise.kind != "reach_target":
                    radio = at.radio(key=f"lesson_choice_{lesson.id}_{n}")
                    radio.set_value(_first_option(step.exercise)).run()
                at.button(key="lesson_check").click().run()
                assert problems(at) == [] and not [e for e in at.error
                                                   if not e.value.startswith(t("lesson.wrong", lang))], \
                    (lesson.id, n, [e.value for e in at.error])
                assert at.success or at.error, (lesson.id, n)
            at.button(key="lesson_next").click().run()
        assert at.session_state["lesson"] is None  # "finish" goes back to the list
        assert "lesson" not in at.query_params and "step" not in at.query_params
    answered = {(a.lesson, a.step) for a in at.session_state[exercises.ANSWERS_KEY]}
    assert answered == {(l.id, n) for l in LESSONS.values()
                        for n, s in enumerate(l.steps, 1) if s.exercise}
    assert at.session_state["lang"] == lang
