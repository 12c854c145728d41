"""Several app servers that share nothing but the database (issue 14), started for real:
one PostgreSQL (:mod:`pg_harness`), N app servers (``python -m app.serve run app/main.py``,
as :class:`browser_harness.StreamlitServer` starts them) with the same ``METAREP_DB_URL``,
and optionally HAProxy in front of them, configured from ``deploy/haproxy.cfg`` (the file
compose.yaml mounts), rendered with this test's loopback ports. Everything listens on
127.0.0.1 only.

Used by tests/test_browser_multi.py and benchmarks/multi_sessions.py. Imports nothing
heavy (no torch, no Playwright).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

try:  # tests/ is a rootdir on sys.path (no __init__.py) ...
    from browser_harness import REPO_ROOT, StreamlitServer, free_port
    from pg_harness import PostgresServer
except ImportError:  # ... or a package
    from tests.browser_harness import REPO_ROOT, StreamlitServer, free_port
    from tests.pg_harness import PostgresServer

HAPROXY_CFG = REPO_ROOT / "deploy" / "haproxy.cfg"
BACKEND = "app_servers"          # the backend of deploy/haproxy.cfg
STICKY_COOKIE = "SERVERID"       # its cookie: the name of the server a browser stays on
# An httplog line: "... frontend backend/server Tq/Tw/Tc/Tr/Ta status ... "METHOD /path HTTP/1.1"".
LOG_LINE = re.compile(rf" {BACKEND}/(?P<server>\S+) \S+ (?P<status>-?\d+) .*\"(?P<method>[A-Z]+) (?P<path>\S+)")


class HAProxyUnavailable(RuntimeError):
    """haproxy is not installed; the message says how to install it."""


def haproxy_bin() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if not found:
        raise HAProxyUnavailable("haproxy is not installed: run `bash scripts/ensure_haproxy.sh` (make test does)")
    return found


def render_haproxy_cfg(template: str, bind: str, servers: dict[str, str]) -> str:
    """``template`` (deploy/haproxy.cfg's text) with its ``bind`` address replaced by
    ``bind`` and its backend's ``server`` lines by one per ``servers`` item (name ->
    ``host:port``), each with the template's first server's options (its ``cookie``
    value set to the server's name). Everything else (stickiness, timeouts, health
    checks) is the deployment's own."""
    out, servers_written = [], False
    for line in template.splitlines():
        words = line.split()
        indent = line[:len(line) - len(line.lstrip())]
        if words[:1] == ["bind"]:
            out.append(f"{indent}bind {bind}")
        elif words[:1] == ["server"]:
            if not servers_written:
                options = words[3:]
                for name, address in servers.items():
                    mine = [name if i and options[i - 1] == "cookie" else w for i, w in enumerate(options)]
                    out.append(f"{indent}server {name} {address} {' '.join(mine)}")
                servers_written = True
        else:
            out.append(line)
    if not servers_written:
        raise ValueError("the proxy template has no `server` line to render")
    return "\n".join(out) + "\n"


def template_servers(template: str) -> dict[str, str]:
    """The template's ``server`` lines: name -> address (e.g. ``{"app1": "app1:8501"}``)."""
    return {w[1]: w[2] for w in (line.split() for line in template.splitlines()) if w[:1] == ["server"]}


class HAProxy:
    """HAProxy on ``127.0.0.1:<free port>`` in front of ``servers`` (name -> host:port),
    from deploy/haproxy.cfg; its request log (one line per HTTP request or finished
    WebSocket, naming the server that answered) in a temp file."""

    def __init__(self, servers: dict[str, str], port: int | None = None):
        self.bin = haproxy_bin()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="metarep-haproxy-"))
        self.cfg = self.root / "haproxy.cfg"
        self.cfg.write_text(render_haproxy_cfg(HAPROXY_CFG.read_text(), f"127.0.0.1:{self.port}", servers))
        self.log = self.root / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    def check(self) -> str:
        """``haproxy -c`` on the rendered configuration; its output (raises if invalid)."""
        done = subprocess.run([self.bin, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"haproxy -c refused {self.cfg}:\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def start(self, timeout_s: float = 30) -> "HAProxy":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.bin, "-db", "-f", str(self.cfg)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # the proxy answers for a server's health: both are up
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.log_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"haproxy on {self.url} did not answer /_stcore/health:\n{self.log_text()[-2000:]}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def requests(self, since: int = 0) -> list[dict]:
        """The logged requests from log byte ``since`` on: ``{"server", "status", "method", "path"}``."""
        text = self.log_text()[since:]
        return [m.groupdict() for m in map(LOG_LINE.search, text.splitlines()) if m]

    def log_size(self) -> int:
        return len(self.log_text())

    def served_by(self, since: int = 0) -> Counter:
        """How many logged requests each server answered (from log byte ``since`` on)."""
        return Counter(r["server"] for r in self.requests(since))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # hard stop: a soft one would wait for open WebSockets
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class Deployment:
    """The deployment of compose.yaml without containers: PostgreSQL, ``n_servers`` app
    servers named ``app1``, ``app2``... with the same ``METAREP_DB_URL``, and HAProxy in
    front of them when ``proxy``. ``with Deployment() as d: d.servers["app1"].url, d.proxy.url``."""

    def __init__(self, n_servers: int = 2, proxy: bool = True, env: dict | None = None):
        self.n_servers, self.with_proxy, self.env = n_servers, proxy, env or {}
        self.postgres: PostgresServer | None = None
        self.db_url: str | None = None
        self.servers: dict[str, StreamlitServer] = {}
        self.proxy: HAProxy | None = None
        self.startup_s: dict[str, float] = {}

    def start(self, timeout_s: float = 180) -> "Deployment":
        began = time.perf_counter()
        try:
            self.postgres = PostgresServer().start()
            self.db_url = self.postgres.create_database("metarep")
            self.startup_s["postgres"] = round(time.perf_counter() - began, 1)
            env = {**self.env, "METAREP_DB_URL": self.db_url}
            self.servers = {f"app{i + 1}": StreamlitServer(extra_env=env).start() for i in range(self.n_servers)}
            for server in self.servers.values():  # started together, waited for in turn
                server.wait_healthy(timeout_s=timeout_s)
            self.startup_s["app_servers"] = round(time.perf_counter() - began, 1)
            if self.with_proxy:
                self.proxy = HAProxy({name: f"127.0.0.1:{s.port}" for name, s in self.servers.items()})
                self.proxy.check()
                self.proxy.start()
                self.startup_s["proxy"] = round(time.perf_counter() - began, 1)
        except BaseException:
            self.stop()
            raise
        return self

    def server_named(self, url: str) -> str:
        """The name of the app server at ``url`` (``http://127.0.0.1:port``)."""
        return next(name for name, s in self.servers.items() if s.url == url.rstrip("/"))

    def memory_mb(self) -> dict:
        return {name: s.memory_mb() for name, s in self.servers.items()}

    def log_tails(self) -> str:
        parts = [f"=== {name} ===\n{s.log_tail(1500)}" for name, s in self.servers.items()]
        if self.proxy:
            parts.append(f"=== haproxy ===\n{self.proxy.log_text()[-1500:]}")
        if self.postgres:
            parts.append(f"=== postgres ===\n{self.postgres.log_tail(800)}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()
        for server in self.servers.values():
            server.stop()
        if self.postgres:
            self.postgres.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
