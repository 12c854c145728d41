"""The paired comparison of two learners on the same episodes (Compare's paired
difference), against a hand computation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metarep_core.errors import MetaRepError
from metarep_core.evaluation import paired_difference, summarize


def test_paired_difference_matches_a_hand_computation():
    # Five episodes, accuracies of A and B on each.
    a = [1.0, 0.8, 0.6, 0.8, 1.0]
    b = [0.8, 0.8, 0.4, 1.0, 0.6]
    # d = a - b = [0.2, 0, 0.2, -0.2, 0.4]; mean 0.12; sum of squared deviations
    # 0.0064 + 0.0144 + 0.0064 + 0.1024 + 0.0784 = 0.208, variance 0.208 / 4 = 0.052;
    # standard error sqrt(0.052 / 5) = 0.1019804; t(0.975, df=4) = 2.7764451 (table);
    # half-width 2.7764451 * 0.1019804 = 0.2831429.
    out = paired_difference(a, b, scale=100.0)
    assert out["mean"] == pytest.approx(12.0)
    assert out["ci95"] == pytest.approx(28.31429, abs=1e-4)
    assert out["low"] == pytest.approx(12.0 - 28.31429, abs=1e-4)
    assert out["high"] == pytest.approx(12.0 + 28.31429, abs=1e-4)
    assert (out["wins"], out["ties"], out["losses"], out["episodes"]) == (3, 1, 1, 5)


def test_pairing_is_narrower_than_the_two_own_intervals_when_episodes_vary_together():
    # Episode difficulty shared by both learners: each own interval is wide, the paired
    # one is narrow (B is always 0.05 behind A).
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.2, 0.9, size=40)
    a, b = difficulty + 0.05, difficulty
    paired = paired_difference(a, b, scale=100.0)
    own = summarize(b, regression=False)["ci95"]
    assert paired["mean"] == pytest.approx(5.0)
    assert paired["ci95"] < 1e-6 < own
    assert (paired["wins"], paired["losses"]) == (40, 0)


def test_lower_is_better_for_mse_and_one_episode_has_no_interval():
    out = paired_difference([0.5, 2.0], [1.0, 1.0], higher_is_better=False)
    assert (out["wins"], out["ties"], out["losses"]) == (1, 0, 1)  # 0.5 < 1 wins, 2 > 1 loses
    one = paired_difference([1.0], [0.0])
    assert one["mean"] == 1.0 and math.isnan(one["ci95"]) and one["wins"] == 1


def test_unpaired_lengths_are_refused_with_both_counts():
    with pytest.raises(MetaRepError, match="3 and 2 episodes"):
        paired_difference([1, 0, 1], [1, 0])
    with pytest.raises(MetaRepError, match="at least one episode"):
        paired_difference([], [])


def test_paired_figure_has_a_point_and_interval_per_pair_coloured_by_what_the_interval_says():
    from app.figures import RIGHT_COLOR, how_to_read
    from app.figures.paired import UNCLEAR_COLOR, paired_difference_figure
    from app.i18n import strings
    rows = [{"learner": "maml", "reference": "protonet", **paired_difference(
                [0.8, 0.7, 0.9, 0.8], [0.6, 0.5, 0.8, 0.6], scale=100.0)},
            {"learner": "you", "reference": "protonet", **paired_difference([0.5], [0.6], scale=100.0)}]
    zh = strings("zh")
    fig = paired_difference_figure(rows, {"maml": "MAML", "protonet": "ProtoNet", "you": "You"},
                                   lang="zh")
    points = {tr.name: tr for tr in fig.data}
    # MAML better on every episode, interval clear of 0: green; one episode: grey (no interval)
    assert set(points) == {zh["fig.paired.better"], zh["fig.paired.unclear"]}
    better, unclear = points[zh["fig.paired.better"]], points[zh["fig.paired.unclear"]]
    assert list(better.y) == ["MAML − ProtoNet"] and list(unclear.y) == ["You − ProtoNet"]
    assert list(better.x) == pytest.approx([17.5]) and list(unclear.x) == pytest.approx([-10.0])
    assert better.error_x.array[0] == pytest.approx(rows[0]["ci95"]) and unclear.error_x.array[0] == 0
    assert better.marker.color == RIGHT_COLOR and unclear.marker.color == UNCLEAR_COLOR
    assert "赢 4 / 平 0 / 输 0" in better.hovertext[0]
    assert fig.layout.title.text == zh["fig.title.paired"]
    assert fig.layout.xaxis.title.text == zh["fig.axis.paired_points"]
    assert fig.layout.yaxis.title.text == zh["fig.axis.pair"]
    assert how_to_read(fig) == zh["fig.how.paired_accuracy"]
    assert fig.layout.showlegend and fig.layout.shapes[0].x0 == 0
    assert list(fig.layout.yaxis.categoryarray) == ["MAML − ProtoNet", "You − ProtoNet"]
    # For an error (MSE), a positive difference is worse
    mse = paired_difference_figure(rows[:1], {}, higher_is_better=False, lang="en")
    assert [tr.name for tr in mse.data] == [strings("en")["fig.paired.worse"]]
    assert how_to_read(mse) == strings("en")["fig.how.paired_mse"]
