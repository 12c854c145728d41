"""You against the model: a student's answers on the episodes Compare scores the learners on.

Pure (no Streamlit): the page ``views/human.py`` keeps one :class:`HumanRecord` under
the session-state key :data:`STATE_KEY`, and Compare reads it. The record is small and
plain (ints, floats, strings) with :meth:`HumanRecord.to_json` / :meth:`from_json`, so a
run store can keep it across reloads.

The student's episode ``i`` is the comparison's episode ``i``: sampled from the same
split with seed :func:`metarep_core.evaluation.episode_seed` ``(seed, i)``, which is what
``episode_scores`` uses. So "You" in Compare is scored on exactly the tasks the learners
were, episode by episode, and can be paired with each of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from metarep_core.episodes import EpisodeSampler
from metarep_core.errors import MetaRepError
from metarep_core.evaluation import episode_seed

STATE_KEY = "human_record"
FORMAT = 1  # bump when the JSON layout changes


@dataclass(frozen=True)
class HumanEpisode:
    """One episode answered: ``answers[j]`` the class index the student gave query ``j``
    (in the episode's own query order), ``truth[j]`` the right one, ``seconds`` from the
    moment the queries were shown to the moment the answers were handed in."""

    index: int
    answers: tuple[int, ...]
    truth: tuple[int, ...]
    seconds: float

    @property
    def accuracy(self) -> float:
        """Fraction of queries right, in [0, 1] (as ``episode_scores`` scores a learner)."""
        return float(np.mean(np.array(self.answers) == np.array(self.truth)))


@dataclass(frozen=True)
class HumanRecord:
    """A student's answers for one episode setting (dataset id, split, N, K, queries per
    class, base seed): episodes ``0, 1, ...`` of that setting's comparison stream."""

    dataset: str
    split: str
    n_way: int
    k_shot: int
    n_query: int
    seed: int
    episodes: tuple[HumanEpisode, ...] = field(default=())

    def setting(self) -> tuple:
        """What the record is about: (dataset id, split, n_way, k_shot, n_query, seed)."""
        return (self.dataset, self.split, self.n_way, self.k_shot, self.n_query, self.seed)

    def matches(self, dataset: str, split: str, n_way: int, k_shot: int, n_query: int,
                seed: int) -> bool:
        return self.setting() == (dataset, split, int(n_way), int(k_shot), int(n_query), int(seed))

    @property
    def next_index(self) -> int:
        """The comparison episode the student answers next."""
        return len(self.episodes)

    def with_answers(self, answers, truth, seconds: float) -> "HumanRecord":
        """This record with episode :attr:`next_index` answered (a new record)."""
        answers, truth = tuple(int(a) for a in answers), tuple(int(y) for y in truth)
        if len(answers) != len(truth) or not answers:
            raise MetaRepError(f"answers must give one class per query: {len(truth)} queries, "
                               f"got {len(answers)} answers")
        if any(not 0 <= a < self.n_way for a in answers):
            raise MetaRepError(f"an answer must be a class index between 0 and {self.n_way - 1}, "
                               f"got {list(answers)}")
        ep = HumanEpisode(self.next_index, answers, truth, round(float(seconds), 3))
        return HumanRecord(*self.setting(), episodes=self.episodes + (ep,))

    def scores(self) -> np.ndarray:
        """Per-episode accuracy (episodes,) in [0, 1], episode ``i`` at position ``i``."""
        return np.array([e.accuracy for e in self.episodes], dtype=np.float64)

    @property
    def seconds(self) -> float:
        """Total time spent answering, in seconds."""
        return float(sum(e.seconds for e in self.episodes))

    @property
    def n_answers(self) -> int:
        return sum(len(e.answers) for e in self.episodes)

    @property
    def seconds_per_query(self) -> float:
        return self.seconds / self.n_answers if self.n_answers else float("nan")

    # ------------------------------------------------------------ storage
    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "dataset": self.dataset, "split": self.split,
            "n_way": self.n_way, "k_shot": self.k_shot, "n_query": self.n_query,
            "seed": self.seed,
            "episodes": [{"index": e.index, "answers": list(e.answers), "truth": list(e.truth),
                          "seconds": e.seconds} for e in self.episodes]})

    @classmethod
    def from_json(cls, text: str) -> "HumanRecord":
        """The record :meth:`to_json` wrote; MetaRepError naming what is wrong otherwise."""
        try:
            raw = json.loads(text)
            if raw.get("format") != FORMAT:
                raise MetaRepError(f"a human-vs-model record of format {raw.get('format')!r}; "
                                   f"this app reads format {FORMAT}")
            record = cls(str(raw["dataset"]), str(raw["split"]), int(raw["n_way"]),
                         int(raw["k_shot"]), int(raw["n_query"]), int(raw["seed"]))
            for i, e in enumerate(raw["episodes"]):
                if int(e["index"]) != i:
                    raise MetaRepError(f"episode {i} of the record is numbered {e['index']!r}")
                record = record.with_answers(e["answers"], e["truth"], float(e["seconds"]))
        except MetaRepError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MetaRepError(f"not a human-vs-model record ({type(exc).__name__}: {exc})") from None
        return record


def new_record(dataset: str, split: str, n_way: int, k_shot: int, n_query: int,
               seed: int) -> HumanRecord:
    return HumanRecord(dataset, split, int(n_way), int(k_shot), int(n_query), int(seed))


def comparison_episode(dataset, record: HumanRecord, index: int):
    """Episode ``index`` of the comparison stream of ``record``'s setting: the very episode
    ``episode_scores(..., seed=record.seed)`` gives learners as its ``index``-th."""
    sampler = EpisodeSampler(dataset, record.split, record.n_way, record.k_shot,
                             record.n_query, record.seed)
    return sampler.sample(episode_seed(record.seed, index))


def query_order(n_queries: int, seed: int) -> np.ndarray:
    """The order the queries are shown in: queries are stored class by class, so shown
    as stored the answer would be given away; shuffled, the same for the same seed."""
    return np.random.default_rng([seed, 7]).permutation(n_queries)
