"""Lessons as data and the checks of their exercises, without Streamlit's runtime.

The loader: the shipped lessons load and cover the topics the classroom issue names;
a malformed file is refused naming the file and the line; a dropped-in file appears.
Each check kind runs on the shipped (meta-trained) models on a real episode: the
answer the model makes right is accepted, another refused, and the checker's answer is
the one computed here directly from the learner."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app import exercises, services, state
from app.exercises import Answer, Situation, check_target, solve
from app.lessons import KINDS, LESSON_DIR, Exercise, LessonError, load_lessons, parse_lesson
from metarep_core.checkpoints import load_checkpoint
from metarep_core.data import load_dataset
from metarep_core.episodes import EpisodeSampler


# ------------------------------------------------------------------ the loader
def test_the_shipped_lessons_load_and_cover_the_classroom_topics():
    lessons, refused = load_lessons()
    assert refused == []
    ids = [l.id for l in lessons]
    assert {"episode", "prototypes", "inner_loop", "sinusoid", "embedding", "families",
            "memory", "uncertainty"} <= set(ids)
    kinds = {s.exercise.kind for l in lessons for s in l.steps if s.exercise}
    assert kinds == set(KINDS)  # every check kind is used by a shipped lesson
    for lesson in lessons:
        for step in lesson.steps:
            assert set(step.text) == {"en", "zh"} and all(step.text.values())


def _source(name="inner_loop") -> str:
    return (LESSON_DIR / f"{name}.json").read_text("utf-8")


def _line(text: str, needle: str) -> int:
    """The 1-based line of the first occurrence of ``needle``."""
    return text[:text.index(needle)].count("\n") + 1


def _refusal(text: str) -> str:
    with pytest.raises(LessonError) as info:
        parse_lesson(text, Path("teacher.json"))
    return str(info.value)


def test_malformed_json_is_refused_naming_the_file_and_the_line():
    src = _source()
    broken = src.replace('"at_least": 90,', '"at_least": 90,,')
    message = _refusal(broken)
    assert message.startswith(f"teacher.json, line {_line(broken, '90,,')}:"), message
    assert "not valid JSON" in message


def test_a_missing_field_is_refused_with_the_line_of_its_object():
    src = _source()
    # the third step's exercise loses its hint: the line named is the exercise's "{"
    start = src.index('"kind": "reach_target"')
    hint = src.index('"hint"', start)
    end = src.index("}", hint) + 1
    broken = src[:hint].rstrip().rstrip(",") + src[end:]
    json.loads(broken)  # still valid JSON: the schema refuses it
    message = _refusal(broken)
    opening = broken.rfind("{", 0, start)
    assert message.startswith(f"teacher.json, line {broken[:opening].count(chr(10)) + 1}:"), message
    assert "missing the field 'hint'" in message


@pytest.mark.parametrize("old,new,needle,says", [
    ('"kind": "reach_target"', '"kind": "guess_the_number"', "guess_the_number", "unknown check kind"),
    ('"page": "adapt"', '"page": "playground"', "playground", "unknown page"),
    ('"algorithm": "maml"', '"algorithm": "mamal"', "mamal", "unknown algorithm"),
    ('"hyperparam": "inner_lr"', '"hyperparam": "inner_rate"', "inner_rate", "no numeric hyper-parameter"),
    ('"metric": "query_accuracy"', '"metric": "accuracy"', '"accuracy"', "unknown metric"),
    ('"en": "MAML\'s inner loop', '"fr": "MAML\'s inner loop', '"fr"', "unknown language"),
])
def test_unknown_values_are_refused_with_the_line_of_their_key(old, new, needle, says):
    src = _source()
    assert old in src
    broken = src.replace(old, new, 1)
    message = _refusal(broken)
    assert message.startswith(f"teacher.json, line {_line(broken, needle)}:"), message
    assert says in message


def test_a_lesson_dropped_into_the_folder_appears_and_a_broken_one_is_named(tmp_path):
    shutil.copy(LESSON_DIR / "episode.json", tmp_path / "my_class.json")
    (tmp_path / "broken.json").write_text('{\n  "title": {"en": "x", "zh": "x"},\n  "steps": [\n}\n')
    lessons, refused = load_lessons(tmp_path)
    assert [l.id for l in lessons] == ["my_class"]
    assert len(refused) == 1 and refused[0].startswith("broken.json, line 4:")


# ------------------------------------------------------------------ the checks, on real models
@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs", seed=0)


@pytest.fixture(scope="module")
def shipped():
    """The shipped checkpoint of an algorithm as a session model (loaded once)."""
    cache = {}

    def model_for(name: str, task_name: str = "glyphs_5w1s") -> state.SessionModel:
        if (name, task_name) not in cache:
            learner, meta = load_checkpoint(str(services.CHECKPOINT_DIR / f"{name}_{task_name}.safetensors"))
            cache[name, task_name] = state.SessionModel(learner.eval(), "shipped", meta, len(cache) + 1)
        return cache[name, task_name]
    return model_for


def _situation(dataset, model_for, fresh_for=None, **settings):
    return Situation(state.Settings(**settings), dataset, model_for, fresh_for)


def _episode(dataset, s: state.Settings, seed=None, n_way=None):
    return EpisodeSampler(dataset, s.split, n_way or s.n_way, s.k_shot, s.n_query,
                          s.seed).sample(s.seed if seed is None else seed)


def _accepts_only(solution, expected: set[str]):
    assert solution.accepted == frozenset(expected)
    for option in solution.options:
        assert solution.is_correct(option) == (option in expected), option


def test_best_learner_is_the_one_with_the_highest_mean_accuracy(glyphs, shipped):
    algorithms = ["maml", "protonet", "mann", "versa"]
    sit = _situation(glyphs, shipped, algorithm="protonet", seed=0)
    solution = solve(Exercise("best_learner", {"algorithms": algorithms, "episodes": 3}, {}, {}), sit)
    episodes = [_episode(glyphs, sit.settings, seed=i) for i in range(3)]
    mean = {a: sum(shipped(a).learner.evaluate_episode(e)["accuracy"] for e in episodes) / 3 * 100
            for a in algorithms}
    best = max(mean.values())
    _accepts_only(solution, {a for a, v in mean.items() if abs(v - best) < 1e-6})
    assert solution.detail == pytest.approx({a: round(v, 1) for a, v in mean.items()})


def test_trace_change_reads_the_learners_own_trace(glyphs, shipped):
    sit = _situation(glyphs, shipped, algorithm="maml", n_query=3, seed=7)
    ex = Exercise("trace_change", {"metric": "query_accuracy", "from_step": 0, "to_step": 10,
                                   "hyperparams": {"eval_steps": 10}}, {}, {})
    solution = solve(ex, sit)
    learner = exercises.with_hyperparams(shipped("maml"), {"eval_steps": 10})
    trace = learner.adapt(_episode(glyphs, sit.settings), record=True).trace
    assert len(trace) == 11  # the override reached the adaptation (the checkpoint's own: 3)
    first, last = trace[0].query_accuracy, trace[10].query_accuracy
    _accepts_only(solution, {exercises.direction(first, last)})
    assert shipped("maml").learner.hp["eval_steps"] == 3  # the session's model untouched
    with pytest.raises(exercises.MetaRepError, match="to_step = 10"):
        solve(Exercise("trace_change", {"metric": "query_accuracy", "from_step": 0,
                                        "to_step": 10}, {}, {}), sit)


def test_reach_target_scores_the_students_value_on_the_episode(glyphs, shipped):
    sit = _situation(glyphs, shipped, algorithm="maml", n_query=3, seed=7)
    ex = Exercise("reach_target", {"hyperparam": "inner_lr", "metric": "query_accuracy",
                                   "at_least": 90, "hyperparams": {"eval_steps": 1}}, {}, {})
    episode = _episode(glyphs, sit.settings)
    for lr in (0.001, 0.4, 2.0):
        ok, reached = check_target(ex, sit, lr)
        learner = exercises.with_hyperparams(shipped("maml"), {"eval_steps": 1, "inner_lr": lr})
        direct = learner.evaluate_episode(episode)["accuracy"] * 100
        assert reached == pytest.approx(direct) and ok == (direct >= 90), lr
    assert check_target(ex, sit, 0.4)[0] and not check_target(ex, sit, 2.0)[0]
    with pytest.raises(exercises.MetaRepError, match="inner_lr must be between"):
        check_target(ex, sit, 50.0)


def test_query_class_is_the_models_own_prediction(glyphs, shipped):
    sit = _situation(glyphs, shipped, algorithm="protonet", k_shot=5, n_query=3, seed=7)
    solution = solve(Exercise("query_class", {"query": 3}, {}, {}), sit)
    episode = _episode(glyphs, sit.settings)
    probs = shipped("protonet").learner.adapt(episode).predict(episode.query_x)
    _accepts_only(solution, {str(int(probs[3].argmax()))})
    # a query the model gets wrong is judged by the model's answer, not the true class
    wrong = (probs.argmax(1) != episode.query_y).nonzero().view(-1).tolist()
    for q in wrong[:1]:
        s = solve(Exercise("query_class", {"query": q}, {}, {}), sit)
        assert str(int(episode.query_y[q])) not in s.accepted


def test_presentation_accuracy_comes_from_the_streamed_sequence(glyphs, shipped):
    sit = _situation(glyphs, shipped, algorithm="mann", k_shot=5, n_query=1, seed=7)
    solution = solve(Exercise("presentation_accuracy", {"first": 1, "then": 5, "episodes": 3}, {}, {}), sit)
    right = {1: [], 5: []}
    learner = shipped("mann").learner
    for i in range(3):
        pred, true, instance = learner.online_predictions(_episode(glyphs, sit.settings, seed=7 + i))
        for k in right:
            right[k] += (pred[instance == k] == true[instance == k]).tolist()
    first, fifth = (100 * sum(right[k]) / len(right[k]) for k in (1, 5))
    assert solution.detail[1] == pytest.approx(round(first, 1))
    assert solution.detail[5] == pytest.approx(round(fifth, 1))
    _accepts_only(solution, {exercises.direction(first, fifth)})


def test_unseen_uncertainty_compares_entropy_on_classes_outside_the_support(glyphs, shipped):
    sit = _situation(glyphs, shipped, algorithm="versa", n_query=5, seed=7)
    solution = solve(Exercise("unseen_uncertainty", {}, {}, {}), sit)
    ten = _episode(glyphs, sit.settings, n_way=10)
    five = exercises.unseen_split(ten, 5)[0]
    assert five.n_way == 5 and set(five.support_y.tolist()) == set(range(5))
    adapted = shipped("versa").learner.adapt(five)
    probs = adapted.predict(ten.query_x)
    h = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    seen, unseen = h[ten.query_y < 5].mean().item(), h[ten.query_y >= 5].mean().item()
    assert solution.detail == pytest.approx({"seen": round(seen, 3), "unseen": round(unseen, 3)}, abs=1e-3)
    _accepts_only(solution, {exercises.direction(seen, unseen)})


def test_meta_training_gain_compares_with_a_fresh_initialisation(glyphs, shipped):
    fresh = state.SessionModel(services.fresh_learner("protonet", glyphs.input_shape, 5,
                                                      "classification", seed=7), "fresh", {}, 99)
    sit = _situation(glyphs, shipped, lambda a: fresh, algorithm="protonet", seed=7)
    solution = solve(Exercise("meta_training_gain", {}, {}, {}), sit)
    episode = _episode(glyphs, sit.settings)
    before = fresh.learner.evaluate_episode(episode)["accuracy"] * 100
    after = shipped("protonet").learner.evaluate_episode(episode)["accuracy"] * 100
    _accepts_only(solution, {exercises.direction(before, after)})
    assert after > before  # meta-training helps on unseen classes (the lesson's point)


def test_an_answer_is_a_small_record_that_round_trips_through_json():
    answer = Answer.now("inner_loop", 3, "reach_target", 0.4, [">=90"], True, "zh")
    text = answer.to_json()
    assert json.loads(text)["lesson"] == "inner_loop" and json.loads(text)["lang"] == "zh"
    assert Answer.from_json(text) == answer
    with pytest.raises(exercises.MetaRepError, match="fields"):
        Answer.from_json(json.dumps({"lesson": "x"}))


# ------------------------------------------------------------------ read a figure by clicking
def test_a_clicked_prototype_is_the_answer_and_the_figure_carries_the_classes(glyphs, shipped):
    from app.figures.lessons import prototype_choice
    assert exercises.picked_class([{"curve_number": 0, "point_index": 2, "customdata": 2}]) == "2"
    assert exercises.picked_class([{"curve_number": 0, "customdata": [4]}]) == "4"
    assert exercises.picked_class([{"curve_number": 1, "point_index": 0}]) is None  # the query
    assert exercises.picked_class([]) is None

    s = state.Settings(algorithm="protonet", k_shot=5, n_query=3, seed=7)
    episode = _episode(glyphs, s)
    protos, query = exercises.prototype_map(shipped("protonet"), episode, 3)
    assert protos.shape == (5, 2) and query.shape == (2,)
    assert exercises.prototype_map(shipped("maml"), episode, 3) is None  # no prototypes
    fig = prototype_choice(protos, query, list("ABCDE"), title="查询在各原型之间的位置",
                           labels={"prototype": "原型"})
    assert fig.layout.title.text == "查询在各原型之间的位置"
    stars = fig.data[0]
    assert list(stars.customdata) == [0, 1, 2, 3, 4] and list(stars.text) == list("ABCDE")
    assert stars.name == "原型" and stars.marker.symbol == "star"
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_a_step_whose_learner_or_metric_does_not_fit_the_datasets_task_is_refused():
    src = _source("sinusoid")
    broken = src.replace('"metric": "query_loss"', '"metric": "query_accuracy"', 1)
    message = _refusal(broken)
    assert message.startswith(f"teacher.json, line {_line(broken, 'query_accuracy')}:"), message
    assert "regression task has no accuracy" in message

    broken = src.replace('"algorithm": "maml"', '"algorithm": "protonet"', 1)
    message = _refusal(broken)
    first_step = broken.index("{", broken.index('"steps"'))
    assert message.startswith(f"teacher.json, line {broken[:first_step].count(chr(10)) + 1}:"), message
    assert "protonet does not learn regression tasks" in message


def test_an_exercise_needs_its_dataset_and_algorithm_in_the_file():
    src = _source("episode")
    broken = src.replace('"algorithm": "protonet",', "", 1)
    json.loads(broken)
    message = _refusal(broken)
    assert message.startswith(f"teacher.json, line {_line(broken, chr(34) + 'exercise')}:"), message
    assert "settings need 'algorithm'" in message
