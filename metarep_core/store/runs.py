"""Runs: a session's settings, page state, checkpoints, datasets and exercise answers.

A run is what a link reopens (``?run=<token>``): the token is 32 random URL-safe
characters (192 bits from :mod:`secrets`), so it cannot be guessed; whoever holds it
holds the run. Every write that reads first (page state merged per page, a blob
replacing another under the run's byte limit, the next attempt number) locks the
run's row for its transaction, so two servers writing the same run at once queue
instead of losing one update or passing a limit together.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from .. import limits
from ..errors import MetaRepError
from . import checks
from .engine import WRITE, database_url, describe, make_engine
from .schema import answers, blobs, ensure_schema, runs

CHECKPOINT, DATASET = "checkpoint", "dataset"


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def utc(value: _dt.datetime) -> _dt.datetime:
    """A time read back from the store, in UTC (SQLite returns it without a zone)."""
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


@dataclass(frozen=True)
class BlobInfo:
    """A stored checkpoint or dataset, without its bytes."""
    kind: str
    slot: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Run:
    """A run as loaded: ``page_state`` is ``{page: its state}``; ``class_code`` and
    ``student`` are set when the run is a student's in a class."""
    token: str
    created: _dt.datetime
    updated: _dt.datetime
    settings: dict
    page_state: dict
    blobs: tuple[BlobInfo, ...]
    class_code: str | None = None
    student: str | None = None


@dataclass(frozen=True)
class StoredDataset:
    """An uploaded or drawn dataset's bytes as they were sent (a zip, a drawing):
    the caller decodes them with the same checks as a fresh upload."""
    slot: str
    name: str
    data: bytes
    sha256: str


@dataclass(frozen=True)
class AnswerRecord:
    lesson: str
    step: int
    attempt: int
    answer: object
    correct: bool | None
    seconds: float | None
    time: _dt.datetime


class RunStoreBase:
    """The run store at ``url`` (default: :func:`.engine.database_url`), created or
    migrated on first use. One instance per process is enough (it pools connections);
    call :meth:`close` to release them."""

    def __init__(self, url: str | None = None):
        self.url = database_url(url)
        self.where = describe(self.url)
        self.engine: Engine = make_engine(self.url)
        with self._write() as conn:
            self.found_version = ensure_schema(conn, self.where)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def _run_id(self, conn: Connection, token: str, *, lock: bool = False) -> int:
        query = select(runs.c.id).where(runs.c.token == checks.token(token))
        if lock:
            query = query.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the lock
        run_id = conn.execute(query).scalar()
        if run_id is None:
            raise MetaRepError(f"there is no run {token!r} in the run store (it was never made here, "
                               "or the store was reset)")
        return run_id

    def _touch(self, conn: Connection, run_id: int) -> None:
        conn.execute(update(runs).where(runs.c.id == run_id).values(updated=now()))

    # ------------------------------------------------------------------ runs
    def _insert_run(self, conn: Connection) -> tuple[int, str]:
        token = secrets.token_urlsafe(24)
        stamp = now()
        run_id = conn.execute(insert(runs).values(token=token, created=stamp, updated=stamp,
                                                  settings="{}", page_state="{}")).inserted_primary_key[0]
        return run_id, token

    def create_run(self) -> str:
        """A new, empty run; returns its token."""
        with self._write() as conn:
            return self._insert_run(conn)[1]

    def load_run(self, token: str) -> Run:
        """The run ``token``: settings, page state and the list of its blobs."""
        from .schema import classes, students
        with self._read() as conn:
            run_id = self._run_id(conn, token)
            row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
            stored = conn.execute(select(blobs.c.kind, blobs.c.slot, blobs.c.name, blobs.c.size,
                                         blobs.c.sha256).where(blobs.c.run_id == run_id)
                                  .order_by(blobs.c.kind, blobs.c.slot)).all()
            member = conn.execute(select(classes.c.code, students.c.name)
                                  .join(classes, classes.c.id == students.c.class_id)
                                  .where(students.c.run_id == run_id)).first()
        return Run(token=row.token, created=utc(row.created), updated=utc(row.updated),
                   settings=json.loads(row.settings), page_state=json.loads(row.page_state),
                   blobs=tuple(BlobInfo(*b) for b in stored),
                   class_code=member.code if member else None, student=member.name if member else None)

    def save_settings(self, token: str, settings: dict) -> None:
        """Replace the run's settings (the sidebar's: a mapping of names to JSON values)."""
        data = checks.json_text(settings, "the settings", limits.STORE_JSON_MAX_CHARS)
        with self._write() as conn:
            run_id = self._run_id(conn, token, lock=True)
            conn.execute(update(runs).where(runs.c.id == run_id).values(settings=data, updated=now()))

    def save_page_state(self, token: str, page: str, state: dict) -> None:
        """Replace one page's state in the run (the other pages' states are kept)."""
        page = checks.printable(page, "the page name", 64)
        checks.json_text(state, f"the state of page {page!r}", limits.STORE_JSON_MAX_CHARS)
        with self._write() as conn:
            run_id = self._run_id(conn, token, lock=True)  # read-merge-write: no lost page
            current = json.loads(conn.execute(select(runs.c.page_state).where(runs.c.id == run_id)).scalar())
            current[page] = state
            merged = checks.json_text(current, "the page state of all pages",
                                      limits.STORE_JSON_MAX_CHARS * 4)
            conn.execute(update(runs).where(runs.c.id == run_id).values(page_state=merged, updated=now()))

    # ------------------------------------------------------------------ blobs
    def _put_blob(self, token: str, kind: str, slot: str, name: str, data: bytes) -> BlobInfo:
        digest = hashlib.sha256(data).hexdigest()
        with self._write() as conn:
            run_id = self._run_id(conn, token, lock=True)
            others = (blobs.c.run_id == run_id) & ~((blobs.c.kind == kind) & (blobs.c.slot == slot))
            count, total = conn.execute(select(func.count(), func.coalesce(func.sum(blobs.c.size), 0))
                                        .where(others)).one()
            if count + 1 > limits.STORE_RUN_MAX_BLOBS:
                raise MetaRepError(f"this run already keeps {count} checkpoints and datasets; at most "
                                   f"{limits.STORE_RUN_MAX_BLOBS} are kept per run")
            if total + len(data) > limits.STORE_RUN_MAX_BYTES:
                raise MetaRepError(f"keeping {name!r} ({len(data) / 2**20:.1f} MB) would bring this run to "
                                   f"{(total + len(data)) / 2**20:.1f} MB; the run store keeps at most "
                                   f"{limits.STORE_RUN_MAX_BYTES / 2**20:.0f} MB per run")
            conn.execute(delete(blobs).where((blobs.c.run_id == run_id) & (blobs.c.kind == kind)
                                             & (blobs.c.slot == slot)))
            conn.execute(insert(blobs).values(run_id=run_id, kind=kind, slot=slot, name=name, size=len(data),
                                              sha256=digest, data=data, created=now()))
            self._touch(conn, run_id)
        return BlobInfo(kind, slot, name, len(data), digest)

    def _get_blob(self, token: str, kind: str, slot: str):
        slot = checks.slot(slot)
        with self._read() as conn:
            run_id = self._run_id(conn, token)
            row = conn.execute(select(blobs.c.name, blobs.c.data, blobs.c.sha256)
                               .where((blobs.c.run_id == run_id) & (blobs.c.kind == kind)
                                      & (blobs.c.slot == slot))).first()
        if row is None:
            raise MetaRepError(f"this run keeps no {kind} in slot {slot!r}")
        data = bytes(row.data)
        if hashlib.sha256(data).hexdigest() != row.sha256:  # a damaged row is never handed on
            raise MetaRepError(f"the stored {kind} {row.name!r} is damaged (its SHA-256 changed)")
        return row.name, data, row.sha256

    def put_checkpoint(self, token: str, slot: str, data: bytes, name: str = "checkpoint.safetensors") -> BlobInfo:
        """Keep checkpoint bytes (safetensors, as :func:`checkpoints.checkpoint_to_bytes`
        makes them) in ``slot`` (e.g. the app's model key), replacing what was there.
        The header is checked before anything is written (:func:`checkpoints.read_config`:
        safetensors only, MetaRep metadata, the config within the bounds)."""
        from ..checkpoints import read_config  # late: imports torch
        slot, name = checks.slot(slot), checks.blob_name(name)
        data = checks.blob_size(data, f"the checkpoint {name!r}", "checkpoint", limits.CHECKPOINT_MAX_BYTES)
        read_config(data, name=f"the checkpoint {name!r}")
        return self._put_blob(token, CHECKPOINT, slot, name, data)

    def get_checkpoint(self, token: str, slot: str, *, algorithm: str, n_way: int, input_shape, task: str):
        """``(learner, metadata)`` rebuilt from the checkpoint in ``slot`` by
        :func:`checkpoints.load_checkpoint` (never unpickled), refused unless it is a
        checkpoint of ``algorithm`` for ``n_way`` classes of ``input_shape`` and ``task``."""
        from ..checkpoints import load_checkpoint  # late: imports torch
        name, data, _ = self._get_blob(token, CHECKPOINT, slot)
        return load_checkpoint(data, expected_algorithm=algorithm, name=f"the stored checkpoint {name!r}",
                               expected_n_way=n_way, expected_input_shape=input_shape, expected_task=task)

    def put_dataset(self, token: str, slot: str, name: str, data: bytes) -> BlobInfo:
        """Keep a dataset's bytes as sent (``slot`` "upload": the zip; "drawing": the
        drawn images, in a format that is not pickled), replacing what was there."""
        slot, name = checks.slot(slot), checks.blob_name(name)
        data = checks.blob_size(data, f"the dataset {name!r}", "dataset", limits.STORE_DATASET_MAX_BYTES)
        return self._put_blob(token, DATASET, slot, name, data)

    def get_dataset(self, token: str, slot: str) -> StoredDataset:
        name, data, digest = self._get_blob(token, DATASET, slot)
        return StoredDataset(slot, name, data, digest)

    # ------------------------------------------------------------------ answers
    def record_answer(self, token: str, lesson: str, step: int, answer, correct: bool | None = None,
                      seconds: float | None = None) -> int:
        """Keep one attempt at exercise ``(lesson, step)``: ``answer`` is what the student
        chose or typed (a short JSON value: the distribution a teacher sees counts equal
        answers), ``correct`` as checked, ``seconds`` taken. Returns the attempt number."""
        lesson, step = checks.lesson(lesson), checks.step(step)
        text = checks.json_text(answer, "the answer", limits.STORE_ANSWER_MAX_CHARS, mapping=False)
        correct, seconds = checks.correct(correct), checks.seconds(seconds)
        with self._write() as conn:
            run_id = self._run_id(conn, token, lock=True)  # numbers attempts one writer at a time
            mine = answers.c.run_id == run_id
            if conn.execute(select(func.count()).where(mine)).scalar() >= limits.STORE_RUN_MAX_ANSWERS:
                raise MetaRepError(f"this run already keeps {limits.STORE_RUN_MAX_ANSWERS:,} answers, the "
                                   "most kept per run")
            last = conn.execute(select(func.max(answers.c.attempt))
                                .where(mine & (answers.c.lesson == lesson) & (answers.c.step == step))).scalar()
            attempt = (last or 0) + 1
            conn.execute(insert(answers).values(run_id=run_id, lesson=lesson, step=step, attempt=attempt,
                                                answer=text, correct=correct, seconds=seconds, created=now()))
            self._touch(conn, run_id)
        return attempt

    def run_answers(self, token: str) -> list[AnswerRecord]:
        """The run's own answers, every attempt, in the order given."""
        with self._read() as conn:
            run_id = self._run_id(conn, token)
            rows = conn.execute(select(answers).where(answers.c.run_id == run_id)
                                .order_by(answers.c.id)).all()
        return [AnswerRecord(r.lesson, r.step, r.attempt, json.loads(r.answer), r.correct, r.seconds,
                             utc(r.created)) for r in rows]
