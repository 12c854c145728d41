"""Classes: a teacher's code and key, students who join with a name, what they answered.

A teacher creates a class and gets a short code (for the board: 6 characters from an
alphabet without look-alikes, 0/O, 1/I/L) and a secret teacher key (24 URL-safe
characters, 144 bits). Only an scrypt hash of the key is stored (a leaked database
does not give the teacher's page away); each check costs ~50 ms of scrypt, which
also slows guessing. Students join with the code and a display name (no accounts):
each student gets a run of their own.

Who sees what: the teacher (with the key) sees every answer of the class
(:meth:`class_answers`, :meth:`export_csv`) and the aggregate of any exercise; a
student sees only the aggregate of an exercise the teacher revealed
(:meth:`answer_summary` without a key), never another student's answer.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import statistics
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import MetaRepError
from . import checks
from .runs import AnswerRecord, RunStoreBase, now, utc
from .schema import answers, classes, reveals, students

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
KEY_MAX_CHARS = 128
SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MB and ~50 ms per check (Python's documented safe range)
CSV_FIELDS = ("student", "lesson", "step", "attempt", "answer", "correct", "seconds", "time")


def hash_key(key: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` of a teacher key (the parameters kept, so they can grow)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def key_matches(key: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(key.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got, bytes.fromhex(digest))


def answer_label(text: str) -> str:
    """How an answer is shown in a distribution: a text answer as itself, any other
    JSON value as its canonical JSON."""
    value = json.loads(text)
    return value if isinstance(value, str) else text


def spreadsheet_safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to Excel and LibreOffice ("CSV
    # injection"); a leading apostrophe makes it text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass(frozen=True)
class ClassAnswer(AnswerRecord):
    """A run's answer record as the teacher sees it: with the student's display name."""

    student: str = field(kw_only=True)


@dataclass(frozen=True)
class AnswerSummary:
    """The aggregate of one exercise in a class: ``students`` in the class, how many
    ``answered``, how many of those answered ``correct`` (each student's last attempt),
    ``distribution`` as ``((answer, count), ...)`` most frequent first, and the median
    seconds of those last attempts (None when nobody timed)."""
    lesson: str
    step: int
    students: int
    answered: int
    correct: int
    distribution: tuple[tuple[str, int], ...]
    median_seconds: float | None
    revealed: bool


class ClassroomMixin:
    """The class methods of :class:`metarep_core.store.RunStore`."""

    def create_class(self: RunStoreBase) -> tuple[str, str]:
        """A new class: ``(code, teacher_key)``. The key is shown once; only its hash is kept."""
        key = secrets.token_urlsafe(18)
        stored = hash_key(key)
        for _ in range(8):  # a clash of codes is rare (31**6 codes); try another
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self._write() as conn:
                    conn.execute(insert(classes).values(code=code, key_hash=stored, created=now()))
                return code, key
            except IntegrityError:
                continue
        raise RuntimeError("could not find a free class code in 8 tries")

    def _class_id(self: RunStoreBase, conn, code) -> int:
        if not isinstance(code, str) or not 1 <= len(code) <= 16:
            raise MetaRepError(f"{str(code)[:40]!r} is not a class code; a code is {CODE_LENGTH} letters and digits")
        code = code.strip().upper()
        class_id = conn.execute(select(classes.c.id).where(classes.c.code == code)).scalar()
        if class_id is None:
            raise MetaRepError(f"there is no class {code!r}; check the code on the board")
        return class_id

    def _teacher_class(self: RunStoreBase, conn, code, teacher_key) -> int:
        class_id = self._class_id(conn, code)
        stored = conn.execute(select(classes.c.key_hash).where(classes.c.id == class_id)).scalar()
        if not isinstance(teacher_key, str) or len(teacher_key) > KEY_MAX_CHARS \
                or not key_matches(teacher_key, stored):
            raise MetaRepError(f"that is not the teacher key of class {code.strip().upper()!r}")
        return class_id

    def join_class(self: RunStoreBase, code: str, name: str) -> str:
        """Join class ``code`` as ``name`` (unique in the class); returns the student's
        new run token."""
        name = checks.name(name)
        try:
            with self._write() as conn:
                class_id = self._class_id(conn, code)
                if conn.execute(select(students.c.id).where(and_(students.c.class_id == class_id,
                                                                 students.c.name == name))).first():
                    raise MetaRepError(f"the name {name!r} is already taken in this class; choose another")
                run_id, token = self._insert_run(conn)
                conn.execute(insert(students).values(class_id=class_id, name=name, run_id=run_id,
                                                     joined=now()))
        except IntegrityError:  # another server let the same name in a moment earlier
            raise MetaRepError(f"the name {name!r} is already taken in this class; choose another") from None
        return token

    def set_revealed(self: RunStoreBase, code: str, teacher_key: str, lesson: str, step: int,
                     revealed: bool = True) -> None:
        """Show (or hide again) exercise ``(lesson, step)``'s aggregate to the class."""
        lesson, step = checks.lesson(lesson), checks.step(step)
        with self._write() as conn:
            class_id = self._teacher_class(conn, code, teacher_key)
            where = and_(reveals.c.class_id == class_id, reveals.c.lesson == lesson, reveals.c.step == step)
            conn.execute(delete(reveals).where(where))
            if revealed:
                conn.execute(insert(reveals).values(class_id=class_id, lesson=lesson, step=step, revealed=now()))

    def _answer_rows(self, conn, class_id: int, *extra):
        return conn.execute(
            select(students.c.name, answers.c.lesson, answers.c.step, answers.c.attempt, answers.c.answer,
                   answers.c.correct, answers.c.seconds, answers.c.created)
            .join(answers, answers.c.run_id == students.c.run_id)
            .where(students.c.class_id == class_id, *extra)
            .order_by(students.c.name, answers.c.lesson, answers.c.step, answers.c.attempt)).all()

    def class_answers(self: RunStoreBase, code: str, teacher_key: str) -> list[ClassAnswer]:
        """Every answer of every student of the class, every attempt (needs the key)."""
        with self._read() as conn:
            class_id = self._teacher_class(conn, code, teacher_key)
            rows = self._answer_rows(conn, class_id)
        return [ClassAnswer(r.lesson, r.step, r.attempt, json.loads(r.answer), r.correct, r.seconds,
                            utc(r.created), student=r.name) for r in rows]

    def class_students(self: RunStoreBase, code: str, teacher_key: str) -> list[str]:
        with self._read() as conn:
            class_id = self._teacher_class(conn, code, teacher_key)
            return list(conn.execute(select(students.c.name).where(students.c.class_id == class_id)
                                     .order_by(students.c.name)).scalars())

    def answer_summary(self: RunStoreBase, code: str, lesson: str, step: int,
                       teacher_key: str | None = None) -> AnswerSummary:
        """The aggregate of exercise ``(lesson, step)`` in the class: with the teacher key
        always; without it (a student) only once the teacher revealed it."""
        lesson, step = checks.lesson(lesson), checks.step(step)
        with self._read() as conn:
            if teacher_key is None:
                class_id = self._class_id(conn, code)
            else:
                class_id = self._teacher_class(conn, code, teacher_key)
            summary = self._summary(conn, class_id, lesson, step)
        if teacher_key is None and not summary.revealed:
            raise MetaRepError(f"the answers to lesson {lesson!r} step {step} are not revealed yet; "
                               "the teacher reveals them")
        return summary

    def answer_summaries(self: RunStoreBase, code: str, teacher_key: str,
                         exercises) -> list[AnswerSummary]:
        """:meth:`answer_summary` of each ``(lesson, step)`` in ``exercises`` with one check
        of the key (a teacher's page shows every exercise; each scrypt check costs ~50 ms)."""
        exercises = [(checks.lesson(lesson), checks.step(step)) for lesson, step in exercises]
        with self._read() as conn:
            class_id = self._teacher_class(conn, code, teacher_key)
            return [self._summary(conn, class_id, lesson, step) for lesson, step in exercises]

    def _summary(self, conn, class_id: int, lesson: str, step: int) -> AnswerSummary:
        revealed = conn.execute(select(reveals.c.revealed).where(
            and_(reveals.c.class_id == class_id, reveals.c.lesson == lesson, reveals.c.step == step))).first()
        size = conn.execute(select(func.count()).where(students.c.class_id == class_id)).scalar()
        rows = self._answer_rows(conn, class_id, answers.c.lesson == lesson, answers.c.step == step)
        last = {}
        for r in rows:  # ordered by attempt: the last one per student wins
            last[r.name] = r
        labels = Counter(answer_label(r.answer) for r in last.values())
        times = [r.seconds for r in last.values() if r.seconds is not None]
        return AnswerSummary(lesson, step, size, len(last), sum(1 for r in last.values() if r.correct),
                             tuple(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))),
                             statistics.median(times) if times else None, revealed is not None)

    def export_csv(self: RunStoreBase, code: str, teacher_key: str) -> str:
        """Every answer of the class as CSV (one row per attempt, ``CSV_FIELDS``), texts
        made safe for spreadsheets."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for a in self.class_answers(code, teacher_key):
            shown = a.answer if isinstance(a.answer, str) else json.dumps(a.answer, ensure_ascii=False)
            writer.writerow([spreadsheet_safe(a.student), a.lesson, a.step, a.attempt, spreadsheet_safe(shown),
                             "" if a.correct is None else str(a.correct).lower(),
                             "" if a.seconds is None else f"{a.seconds:.1f}",
                             a.time.isoformat(timespec="seconds")])
        return out.getvalue()
