"""The lessons are parsed once per change of the lesson folder, not on a timer
(app/lesson_state.py): a teacher's new or edited file shows at the next page run."""
from __future__ import annotations

import os
import shutil

from app import lesson_state
from app.lessons import LESSON_DIR


def test_lessons_are_parsed_again_only_when_a_file_changes(tmp_path, monkeypatch):
    shutil.copy(LESSON_DIR / "episode.json", tmp_path / "episode.json")
    monkeypatch.setattr(lesson_state, "LESSON_DIR", tmp_path)
    parsed = []
    real = lesson_state.load_lessons
    monkeypatch.setattr(lesson_state, "load_lessons",
                        lambda folder: parsed.append(folder) or real(folder))

    first = lesson_state.all_lessons()
    assert [l.id for l in first[0]] == ["episode"] and len(parsed) == 1
    assert lesson_state.all_lessons() is first and len(parsed) == 1  # unchanged: cached

    shutil.copy(LESSON_DIR / "episode.json", tmp_path / "copy_of_episode.json")
    assert sorted(l.id for l in lesson_state.all_lessons()[0]) == ["copy_of_episode", "episode"]
    assert len(parsed) == 2

    (tmp_path / "copy_of_episode.json").write_text("{ broken", "utf-8")
    os.utime(tmp_path / "copy_of_episode.json", ns=(1, 1))  # a different mtime whatever the clock
    lessons, refused = lesson_state.all_lessons()
    assert [l.id for l in lessons] == ["episode"] and len(refused) == 1 and len(parsed) == 3
