"""Where the run store lives, and a SQLAlchemy engine that is safe for several processes.

``METAREP_DB_URL`` names the database (``postgresql://user:pass@host/db`` or
``sqlite:////abs/path.sqlite3``); without it the store is the SQLite file
``runs.sqlite3`` in the app's cache directory (``$METAREP_CACHE``, default
``~/.cache/metarep_explorer``; when ``METAREP_CACHE`` switches the dataset cache off
— ``0``, ``off``, ``none`` — the store still lives in the default directory: it is
the users' work, not a cache).

Several app servers (processes) may write at once:

- SQLite: WAL journal (readers never wait for a writer), a 30 s busy timeout (a
  writer waits for the other instead of failing), and every write transaction opened
  with ``BEGIN IMMEDIATE``: it takes the write lock up front, so two transactions that
  both read then write cannot deadlock on the upgrade (SQLite would fail one with
  "database is locked" at once, busy timeout or not).
- PostgreSQL: ordinary transactions; code that reads then writes a run locks the
  run's row first (``SELECT ... FOR UPDATE``, see :mod:`.runs`).
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import MetaRepError

ENV_URL = "METAREP_DB_URL"
FILE_NAME = "runs.sqlite3"
BUSY_TIMEOUT_S = 30
WRITE = "metarep_store_write"  # the execution option that marks a write transaction


def store_dir() -> Path:
    """The folder of the default SQLite store: the app's cache directory, resolved as
    :func:`metarep_core.data.cache.cache_dir` does (not imported: ``metarep_core.data``
    imports torch, which a store-only process does not need)."""
    env = os.environ.get("METAREP_CACHE", "")
    if env.lower() in {"", "0", "off", "none"}:
        return Path.home() / ".cache" / "metarep_explorer"
    return Path(env)


def database_url(url: str | None = None) -> str:
    """``url``, else ``$METAREP_DB_URL``, else the default SQLite file's URL."""
    url = url or os.environ.get(ENV_URL, "").strip()
    return url or f"sqlite:///{store_dir() / FILE_NAME}"


def describe(url: str) -> str:
    """``url`` fit to show: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def make_engine(url: str | None = None) -> Engine:
    """An engine for the store at ``url`` (see :func:`database_url`). Only SQLite files
    and PostgreSQL are accepted; anything else is a :class:`MetaRepError`."""
    url = database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MetaRepError(f"{ENV_URL} is not a database URL; allowed: postgresql://user:password@host:port/"
                           f"database or sqlite:////absolute/path.sqlite3") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):  # "postgres://" is what many hosts hand out
        # SQLAlchemy's default PostgreSQL driver is psycopg2; this project ships psycopg 3.
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True,
                               pool_size=5, max_overflow=5)
        return engine
    if backend != "sqlite":
        raise MetaRepError(f"the run store {describe(url)} is a {backend} database; allowed: "
                           f"postgresql or sqlite")
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        # An in-memory database is private to one connection: a second connection
        # (or server) would see an empty store.
        raise MetaRepError(f"the run store {describe(url)} is not a file; allowed: sqlite:////path/to/file")
    path = Path(parsed.database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Students' names and answers: readable by the app's user only (SQLite gives its
        # -wal and -shm files the database file's permissions).
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    except OSError as err:
        raise MetaRepError(f"cannot create the run store {str(path)!r}: {err.strerror}") from None
    engine = create_engine(parsed.set(drivername="sqlite+pysqlite"),
                           connect_args={"timeout": BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn, _record) -> None:
    # The driver's own transaction handling would issue a deferred BEGIN lazily;
    # switched off here so that _sqlite_begin decides (SQLAlchemy's documented recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")  # before WAL: switching waits too
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")  # WAL's recommended level: durable against app crashes
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")
