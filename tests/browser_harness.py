"""Start the real Streamlit server and drive Debian's Chromium with Playwright.

Shared by the browser test (tests/conftest.py fixtures) and the latency benchmark
(benchmarks/app_latency.py). Waits only on the app's own signals: the health endpoint,
then the `data-test-script-state` attribute of the app root (as Streamlit's own
e2e suite does), never on fixed sleeps. Imports nothing heavy: Playwright is imported
by the caller, torch never.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_ENTRY = "app/main.py"
# The benchmarks drive the full browser a student runs. The tests drive Debian's headless
# shell of the same Chromium (same Blink, no browser UI around it) where it is installed
# (make test installs it): 38 CPU-s to open 20 sessions against 49 (one run each), on a
# 2-core machine where the 60-session test's tabs cost several times what the servers do.
CHROMIUM = os.environ.get("METAREP_CHROMIUM", "/usr/bin/chromium")
HEADLESS_SHELL = "/usr/bin/chromium-headless-shell"
TEST_CHROMIUM = os.environ.get("METAREP_CHROMIUM") or (
    HEADLESS_SHELL if Path(HEADLESS_SHELL).exists() else CHROMIUM)
# Offline, sandbox-less container: no GPU, no QUIC, no background fetches of any kind.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
APP_IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
APP_CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"
EXCEPTION = "[data-testid='stException']"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """`python -m app.serve run app/main.py` (the app's own entry: `streamlit run` with the
    heavy imports first) on a free loopback port, in its own process group.

    The normal user cache is kept (so UMAP's numba disk cache is reused between runs);
    output goes to temp files rather than pipes so a chatty server can never block.
    """

    def __init__(self, entry: str = APP_ENTRY, port: int | None = None, extra_env: dict | None = None):
        self.entry = entry
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self._log_dir = tempfile.mkdtemp(prefix="metarep-e2e-")
        self.stdout_path = Path(self._log_dir) / "stdout.log"
        self.stderr_path = Path(self._log_dir) / "stderr.log"

    def start(self) -> "StreamlitServer":
        cmd = [
            sys.executable, "-m", "app.serve", "run", self.entry,
            "--server.headless", "true",
            "--server.port", str(self.port),
            "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
            # Other people edit the sources while tests run; a watcher would only add
            # "source changed" prompts and CPU load.
            "--server.fileWatcherType", "none",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    def log_tail(self, n_chars: int = 3000) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                text = ""
            parts.append(f"--- {path.name} (last {n_chars} chars) ---\n{text[-n_chars:]}")
        return "\n".join(parts)

    def wait_healthy(self, timeout_s: float = 90.0) -> float:
        """Poll /_stcore/health until it answers "ok"; returns seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {self.proc.returncode} before becoming healthy\n"
                    + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200 and resp.read().strip() == b"ok":
                        return time.monotonic() - t0
                    last_error = f"HTTP {resp.status}"
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last_error = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"streamlit on {self.url} not healthy after {timeout_s:.0f} s ({last_error})\n"
            + self.log_tail())

    def process_tree(self) -> list[int]:
        """The server's pid and every descendant's (training workers may be processes)."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    # Field 4 is the ppid; the command name (field 2) may hold spaces.
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        tree, stack = [], [self.proc.pid]
        while stack:
            pid = stack.pop()
            tree.append(pid)
            stack.extend(children.get(pid, []))
        return tree

    def memory_mb(self) -> dict:
        """Memory of the server's process tree in MB: resident now (VmRSS) and at its peak
        (VmHWM), summed over the processes, and ``pss_mb``: the proportional set size, which
        counts a page shared by several processes once in all (the training processes
        share torch's pages with their fork server: the RSS sum counts them in each)."""
        rss_kb = hwm_kb = pss_kb = 0
        pids = self.process_tree()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            rss_kb += int(line.split()[1])
                        elif line.startswith("VmHWM:"):
                            hwm_kb += int(line.split()[1])
                with open(f"/proc/{pid}/smaps_rollup") as fh:
                    pss_kb += next((int(line.split()[1]) for line in fh if line.startswith("Pss:")), 0)
            except OSError:
                continue
        return {"rss_mb": round(rss_kb / 1024, 1), "peak_rss_mb": round(hwm_kb / 1024, 1),
                "pss_mb": round(pss_kb / 1024, 1), "processes": len(pids)}

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's process tree has used so far. On a shared
        machine this, unlike wall time, hardly depends on what else is running."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.process_tree():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            except (OSError, IndexError, ValueError):
                continue
        return total / ticks

    def stop(self) -> None:
        """Terminate the whole process group; escalate to SIGKILL after 3 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def launch_chromium(playwright, executable: str = CHROMIUM):
    """Headless Debian Chromium (``executable``); Playwright gives every launch a fresh
    temporary profile."""
    if not Path(executable).exists():
        raise RuntimeError(f"{executable} is missing: run `bash scripts/ensure_chromium.sh` (make test does)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)


def wait_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the page is connected to the server and no script run is in progress."""
    page.wait_for_selector(APP_CONNECTED, state="attached", timeout=timeout_ms)
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)


def open_app(page, url: str, timeout_ms: float = 60_000) -> None:
    """Load a URL of the app and wait for its first script run to finish."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    wait_idle(page, timeout_ms)


class RunWatcher:
    """Counts the script runs the server finishes for one page, from the websocket itself.

    Streamlit ends every run (whole script or fragment) with a `script_finished`
    ForwardMsg. Waiting for the next one after an action, then for the idle attribute,
    waits for exactly the rerun the action caused, without guessing a delay.
    """

    def __init__(self, page):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # protobuf only, no server

        self._ForwardMsg = ForwardMsg
        self.page = page
        self.finished = 0
        page.on("websocket", self._on_websocket)

    def _on_websocket(self, ws) -> None:
        if "_stcore/stream" in ws.url:
            ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        if not isinstance(payload, (bytes, bytearray)):
            return
        msg = self._ForwardMsg()
        try:
            msg.ParseFromString(bytes(payload))
        except Exception:  # not a ForwardMsg: not ours to count
            return
        if (msg.WhichOneof("type") == "script_finished"
                and msg.script_finished != ForwardMsgStatus.EARLY_FOR_RERUN):
            self.finished += 1

    def run(self, action, timeout_ms: float = 60_000) -> float:
        """Do `action()`, wait for the rerun it causes to finish and render; return ms."""
        before = self.finished
        t0 = time.perf_counter()
        action()
        deadline = t0 + timeout_ms / 1000
        while self.finished <= before:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no script run finished within {timeout_ms:.0f} ms of the action")
            self.page.wait_for_timeout(5)  # lets Playwright deliver websocket events
        wait_idle(self.page, timeout_ms)
        return (time.perf_counter() - t0) * 1000


class ForwardMsgStatus:
    EARLY_FOR_RERUN = 2  # ForwardMsg.FINISHED_EARLY_FOR_RERUN: superseded, not a finished run


def full_page_screenshot(page, path) -> None:
    """A screenshot of the whole page. Streamlit scrolls inside its main section rather
    than the document, so grow the viewport to the content's height first."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(document.documentElement.scrollHeight,
             ...[...document.querySelectorAll("[data-testid='stMain'], [data-testid='stAppViewContainer'], section.main")]
                 .map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 8000)})
    try:
        # Two animation frames: charts that follow the viewport's size lay out again.
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


# ----------------------------------------------------------- a user's steps in a test
USER_SLOW_MS = 90_000  # a step on a loaded 2-core CI machine


def user_context(browser, slow_ms: float = USER_SLOW_MS):
    """A fresh browser context (its own cookies: a new user), a page in it, and the
    page's :class:`RunWatcher`."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.set_default_timeout(slow_ms)
    page = context.new_page()
    return context, page, RunWatcher(page)


def act(page, runs, action, what: str, slow_ms: float = USER_SLOW_MS) -> None:
    """Do ``action``, wait for the run it causes, and fail if the page shows an exception."""
    runs.run(action, slow_ms)
    errors = page.locator(EXCEPTION)
    assert not errors.count(), f"exception after {what}: {errors.first.inner_text()[:1500]}"


def nav(page, runs, url_path: str) -> None:
    """The sidebar's page link: the same session (a page load would be a new one)."""
    act(page, runs, page.locator(f"[data-testid='stSidebarNav'] a[href$='/{url_path}']").click,
        f"going to /{url_path}")
