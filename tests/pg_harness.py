"""A real, throw-away PostgreSQL server for the tests: Debian's ``postgresql`` package,
a fresh cluster in a temp folder, listening on a free loopback port only.

Used by the run-store tests (tests/test_store.py) and meant for the multi-server
tests of issue 14. ``scripts/ensure_postgres.sh`` (run by ``make test``) installs the
package where it is missing; when it still cannot start, :class:`PostgresServer`
raises :class:`PostgresUnavailable` with the reason, and the tests fail with it
(never skip: a store that only ever ran on SQLite is not tested).

PostgreSQL refuses to run as root. Under root (containers, CI) the cluster is made
and served by an unprivileged user: ``postgres`` (the Debian package's) when it
exists, else ``metarep-pg``, created with ``useradd``. The processes are started with
``subprocess``'s ``user=`` (a plain setuid), so the server's pid is the postmaster's
own and it can be stopped by it. Durability is switched off (``fsync=off``...): the
cluster lives for one test session.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "metarep"  # the cluster's superuser (trust authentication, loopback and its own socket only)
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started; the message says why and how to fix it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_dir() -> Path:
    """The newest installed server's bin folder (Debian keeps them per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    raise PostgresUnavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres, no postgres "
                              "on PATH): run `bash scripts/ensure_postgres.sh` (make test does)")


def server_user() -> str | None:
    """The OS user to run the server as: None when not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "metarep-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "metarep-pg"],
                   check=True, capture_output=True)
    return "metarep-pg"


class PostgresServer:
    """``initdb`` + ``postgres`` on ``127.0.0.1:<free port>``; :meth:`create_database`
    makes a fresh database and returns its SQLAlchemy URL."""

    def __init__(self):
        self.bin = bin_dir()
        self.user = server_user()
        self.root = Path(tempfile.mkdtemp(prefix="metarep-pg-"))
        self.data, self.sockets, self.log = self.root / "data", self.root / "sock", self.root / "server.log"
        self.sockets.mkdir()
        if self.user:
            uid, gid = pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid
            for path in (self.root, self.sockets):
                os.chown(path, uid, gid)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def _run_as(self) -> dict:
        # Also drop supplementary groups: root's would otherwise follow the setuid.
        return {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []} if self.user else {}

    def start(self) -> "PostgresServer":
        began = time.perf_counter()
        init = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                               "-E", "UTF8", "--locale=C", "--no-sync"],
                              capture_output=True, text=True, cwd=self.root, **self._run_as())
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({init.returncode}): {init.stderr.strip()[-1500:]}")
        for attempt in range(3):  # the free port may be taken between free_port() and the bind
            self.port = free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                     "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=60",
                     "-c", "shared_buffers=32MB"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
                    start_new_session=True, **self._run_as())
            if self._wait_ready():
                self.startup_s = time.perf_counter() - began
                return self
        raise PostgresUnavailable(f"postgres did not start on 127.0.0.1; its log ends:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        import psycopg
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        return False

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        """A new empty database ``name`` (letters, digits, _); returns its URL."""
        assert name.isidentifier(), name
        self._admin(f'CREATE DATABASE "{name}"')  # an identifier: CREATE DATABASE takes no parameter
        return self.url(name)

    def drop_database(self, name: str) -> None:
        assert name.isidentifier(), name
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, n_chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, then exits
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
