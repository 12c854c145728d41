"""The run store's tables, their version, and how a store is created or migrated.

Tables (SQLAlchemy Core; every statement is built from these, with bound parameters):

- ``store_info``: ``schema_version`` (one row), so a server knows what it opened.
- ``runs``: one per browser session's lasting work: an unguessable ``token`` (the
  ``?run=`` of a link), ``created``/``updated`` (UTC), ``settings`` (JSON object: the
  sidebar's) and ``page_state`` (JSON object, one entry per page: adaptation step,
  projection method and dimensions, Compare's learners and episodes...).
- ``blobs``: a run's trained checkpoints (``kind`` "checkpoint": safetensors bytes)
  and uploaded or drawn datasets (``kind`` "dataset"), one per ``(run, kind, slot)``,
  as bytes in the database with their size and SHA-256.
- ``answers``: exercise answers, every attempt (``attempt`` 1, 2, ... per run,
  lesson and step): answer (JSON), correct, seconds taken, time.
- ``classes``: a short ``code`` students type, the teacher key's scrypt hash (never the
  key); ``reveals``: the exercises whose aggregate the teacher has shown the class.
- ``students``: a display name in a class, and the run that holds the student's work.

Versions and migrations: a new store is created at :data:`SCHEMA_VERSION` in one
transaction, under a lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN
IMMEDIATE``), so two servers starting at once create it once. A change to the
tables bumps :data:`SCHEMA_VERSION` and adds ``MIGRATIONS[old] = fn(conn)`` taking a
store from ``old`` to ``old + 1`` (``ALTER TABLE``... through SQLAlchemy, data moved
in SQL); :func:`ensure_schema` runs the missing steps in order, in the same locked
transaction, so a failed step leaves the store at its old version. A store newer
than this code is refused, never touched. (With more than a few steps, Alembic would
replace the table of functions; one version does not need it.)
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Table, Text, UniqueConstraint, inspect, select, text)
from sqlalchemy.engine import Connection

from ..errors import MetaRepError

SCHEMA_VERSION = 1
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}  # version -> step to version + 1
ADVISORY_LOCK = 0x4D455452  # "METR": PostgreSQL's lock id for creating/migrating the schema

metadata = MetaData()

store_info = Table(
    "store_info", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("token", String(64), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("settings", Text, nullable=False),
    Column("page_state", Text, nullable=False),
)

blobs = Table(
    "blobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("slot", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "kind", "slot"),
)

answers = Table(
    "answers", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("lesson", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("answer", Text, nullable=False),
    Column("correct", Boolean, nullable=True),
    Column("seconds", Float, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    # A second writer numbering the same attempt fails loudly instead of duplicating it.
    UniqueConstraint("run_id", "lesson", "step", "attempt"),
    Index("answers_by_exercise", "lesson", "step"),
)

classes = Table(
    "classes", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(16), nullable=False, unique=True),
    Column("key_hash", String(256), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

reveals = Table(
    "reveals", metadata,
    Column("class_id", Integer, ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True),
    Column("lesson", String(64), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("revealed", DateTime(timezone=True), nullable=False),
)

students = Table(
    "students", metadata,
    Column("id", Integer, primary_key=True),
    Column("class_id", Integer, ForeignKey("classes.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(160), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("joined", DateTime(timezone=True), nullable=False),
    UniqueConstraint("class_id", "name"),
)


def ensure_schema(conn: Connection, where: str) -> int:
    """Create the tables, or migrate them, inside ``conn``'s write transaction.
    Returns the version found before (0 for a new store). ``where`` names the store
    in messages."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK})
    if not inspect(conn).has_table("store_info"):
        metadata.create_all(conn)
        conn.execute(store_info.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        return 0
    raw = conn.execute(select(store_info.c.value).where(store_info.c.key == "schema_version")).scalar()
    try:
        found = int(raw)
    except (TypeError, ValueError):
        raise MetaRepError(f"the run store {where} has no readable schema version ({raw!r}); "
                           "it was not made by MetaRep") from None
    if found > SCHEMA_VERSION:
        raise MetaRepError(f"the run store {where} has schema version {found}; this version of MetaRep "
                           f"reads versions up to {SCHEMA_VERSION}: upgrade MetaRep")
    for version in range(found, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
    if found != SCHEMA_VERSION:
        conn.execute(store_info.update().where(store_info.c.key == "schema_version")
                     .values(value=str(SCHEMA_VERSION)))
    return found
