"""You against the model: the student's record (app/human.py), its episodes being the
comparison's, its row and paired differences in Compare (app/services.py), the exports;
then the page itself in AppTest: answer the queries, Compare shows "You"."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app import comparison, exports, human, services, state
from app.figures import WRONG_COLOR
from app_harness import charts, goto, new_app, problems, set_and_run, texts
from metarep_core.data import load_dataset
from metarep_core.errors import MetaRepError
from metarep_core.evaluation import episode_scores

SETTING = ("glyphs", "test", 5, 1, 2, 3)  # dataset id, split, N, K, queries per class, seed


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs", seed=0)


def _record(answers_per_episode, truths, seconds=2.0):
    record = human.new_record(*SETTING)
    for answers, truth in zip(answers_per_episode, truths):
        record = record.with_answers(answers, truth, seconds)
    return record


# ------------------------------------------------------------------ the record
def test_record_scores_time_and_json_round_trip():
    truth = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    record = _record([truth, [1] * 10], [truth, truth], seconds=5.0)
    assert list(record.scores()) == [1.0, 0.2] and record.next_index == 2
    assert record.seconds == 10.0 and record.seconds_per_query == pytest.approx(0.5)
    text = record.to_json()
    assert json.loads(text)["episodes"][1]["answers"] == [1] * 10  # plain JSON
    assert human.HumanRecord.from_json(text) == record


@pytest.mark.parametrize("text,match", [
    ("[]", "not a human-vs-model record"),
    ('{"format": 99}', "format 99"),
    (json.dumps({"format": 1, "dataset": "glyphs", "split": "test", "n_way": 2, "k_shot": 1,
                 "n_query": 1, "seed": 0, "episodes": [{"index": 0, "answers": [0, 5],
                                                        "truth": [0, 1], "seconds": 1}]}),
     "between 0 and 1"),
])
def test_a_bad_record_is_refused_naming_the_problem(text, match):
    with pytest.raises(MetaRepError, match=match):
        human.HumanRecord.from_json(text)


def test_answers_must_cover_every_query():
    with pytest.raises(MetaRepError, match="3 queries, got 2 answers"):
        human.new_record(*SETTING).with_answers([0, 1], [0, 1, 2], 1.0)


def test_the_students_episodes_are_the_ones_the_learners_are_scored_on(glyphs):
    # Answer each episode with a learner's own predictions: the record's per-episode
    # accuracy is then that learner's, episode by episode, only if episode i is the
    # comparison's episode i.
    learner = services.fresh_learner("protonet", glyphs.input_shape, 5, "classification", seed=1)
    record = human.new_record(*SETTING)
    for i in range(4):
        episode = human.comparison_episode(glyphs, record, i)
        predicted = learner.adapt(episode).predict(episode.query_x).argmax(1)
        record = record.with_answers(predicted.tolist(), episode.query_y.tolist(), 1.0)
    direct = episode_scores(learner, glyphs, "test", n_way=5, k_shot=1, n_query=2, episodes=4,
                            seed=3)
    assert list(record.scores()) == pytest.approx(list(direct))
    assert len(set(direct)) > 1  # the episodes differ, so the order is checked too


def test_queries_are_shown_shuffled_the_same_way_each_time():
    order = human.query_order(10, 5)
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    assert list(order) == list(human.query_order(10, 5))


# ------------------------------------------------------------------ in Compare
def _results():
    return {"protonet": {"scores": np.array([1.0, 0.8, 0.6, 0.8, 1.0]), "source": "shipped",
                         "summary": {"accuracy": 84.0, "ci95": 1.0}},
            "maml": {"scores": np.array([0.8, 0.8, 0.4, 1.0, 0.6]), "source": "shipped",
                     "summary": {"accuracy": 72.0, "ci95": 1.0}}}


def test_you_join_the_comparison_only_for_the_same_episodes():
    truth = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    record = _record([truth, truth[:5] + [0] * 5], [truth, truth])  # 100%, then 50%
    settings = state.Settings(dataset="glyphs", n_way=5, k_shot=1, n_query=2, seed=3)
    shown = comparison.with_human(_results(), record, settings, "glyphs")
    assert list(shown) == ["protonet", "maml", comparison.YOU]
    you = shown[comparison.YOU]
    assert list(you["scores"]) == [1.0, 0.5] and you["summary"]["accuracy"] == pytest.approx(75.0)
    assert you["seconds_per_query"] == pytest.approx(0.2)
    for other in (dict(seed=4), dict(n_query=3), dict(split="val")):
        assert comparison.YOU not in comparison.with_human(
            _results(), record, state.Settings(**{**vars(settings), **other}), "glyphs")
    assert comparison.YOU not in comparison.with_human(_results(), record, settings, "upload:abc")


def test_paired_differences_against_the_best_and_against_you():
    results = _results()
    assert comparison.best_learner(results, regression=False) == "protonet"
    (row,) = comparison.paired_differences(results, "protonet", regression=False)
    # maml - protonet per episode: [-0.2, 0, -0.2, 0.2, -0.4] (the hand example, negated)
    assert row["learner"] == "maml" and row["mean"] == pytest.approx(-12.0)
    assert row["ci95"] == pytest.approx(28.31429, abs=1e-4)
    assert (row["wins"], row["ties"], row["losses"]) == (1, 1, 3)
    results[comparison.YOU] = {"scores": np.array([1.0, 1.0]), "source": "you",
                             "summary": {"accuracy": 100.0, "ci95": 0.0}}
    assert comparison.best_learner(results, regression=False) == "protonet"  # never "you"
    rows = {r["learner"]: r for r in comparison.paired_differences(results, "protonet", False)}
    assert rows[comparison.YOU]["episodes"] == 2 and rows[comparison.YOU]["mean"] == pytest.approx(10.0)
    csv_lines = exports.paired_csv(list(rows.values())).strip().splitlines()
    assert csv_lines[0].startswith("learner,reference,mean,ci95") and len(csv_lines) == 3
    payload = json.loads(exports.comparison_json(results, 100.0, metric="accuracy", settings={},
                                                 dataset="glyphs", paired=list(rows.values())))
    assert [p["learner"] for p in payload["paired"]] == ["maml", comparison.YOU]
    assert exports.per_episode_table(results, 100.0)[comparison.YOU] == [100.0, 100.0, None, None, None]


# ------------------------------------------------------------------ the page (AppTest)
def test_answering_the_queries_puts_you_in_compare_with_your_accuracy(glyphs):
    at = new_app(dataset="glyphs", n_query=2, seed=3)
    goto(at, "human")
    assert problems(at) == [] and not at.error
    assert not at.radio  # the queries appear only once the timer starts
    at.button(key="human_start").click().run()
    record = human.new_record(*SETTING)
    truth = human.comparison_episode(glyphs, record, 0).query_y.tolist()
    wrong = {1, 4, 8}  # three of ten answered wrong: 70%
    for j, y in enumerate(truth):
        at.radio(key=f"human_answer_0_{j}").set_value((y + 1) % 5 if j in wrong else y)
    at.button(key="human_submit").click().run()
    assert problems(at) == []
    kept = at.session_state[human.STATE_KEY]
    assert list(kept.scores()) == [pytest.approx(0.7)] and kept.setting() == SETTING
    assert "7 of 10 right" in texts(at)
    shown = json.loads(charts(at)["human_last"])  # the answers, captioned right/wrong
    captions = next(d for d in shown["data"] if d.get("name") == "captions")
    assert [c == WRONG_COLOR for c in captions["textfont"]["color"]].count(True) == len(wrong)

    goto(at, "compare")
    set_and_run(at, compare_algorithms=["protonet", "maml"], compare_episodes=10)
    at.button(key="compare_run").click().run()
    assert problems(at) == [] and not at.error
    tables = [d.value for d in at.dataframe]
    table = next(d for d in tables if "algorithm" in d.columns)  # the summary
    you = table[table["algorithm"] == "You"]
    assert len(you) == 1 and float(you["accuracy (%)"].iloc[0]) == pytest.approx(70.0)
    assert int(you["episodes"].iloc[0]) == 1
    pairs = next(d for d in tables if "pair" in d.columns)
    assert any(p.startswith("You − ") for p in pairs["pair"])
