"""Nothing leaves this machine (issue 12, items 6 and 8), in a real browser.

Every request a page makes is recorded (and anything not on loopback is aborted, so a
failure costs no network): the pages, their icons and fonts come from this server. A
link whose value is markdown shows it as text: no link or image to the injected URL is
drawn and nothing is fetched from it. `make run`'s command starts a server that looks
nothing up outside either.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import expect

try:
    from browser_harness import REPO_ROOT, RunWatcher, StreamlitServer, free_port
except ImportError:  # tests/ as a package
    from tests.browser_harness import REPO_ROOT, RunWatcher, StreamlitServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SLOW_MS = 120_000
INJECTED = "127.0.0.1:9"  # loopback, but not the app: a stand-in for an outside host
PAYLOAD = f"![x](http://{INJECTED}/x.png)[Click here](http://{INJECTED}/)"
PAGES = ("", "train", "adapt", "compare", "lessons", "theory")


@pytest.fixture(scope="module")
def server():
    with StreamlitServer() as server:
        server.wait_healthy(timeout_s=90)
        yield server


@pytest.fixture
def recorded(chromium, server):
    """A fresh context whose requests are all listed; those not for the app's own
    host:port are aborted before they leave."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.set_default_timeout(SLOW_MS)
    app_netloc = urlsplit(server.url).netloc
    seen: list[str] = []

    def route(r):
        seen.append(r.request.url)
        parts = urlsplit(r.request.url)
        if parts.scheme in ("data", "blob") or parts.netloc == app_netloc:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("websocket", lambda ws: seen.append(ws.url))  # websockets bypass routing
    try:
        yield page, seen, app_netloc
    finally:
        context.close()


def _outside(seen: list[str], app_netloc: str) -> list[str]:
    return [u for u in seen
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != app_netloc]


def test_every_page_loads_from_this_server_only(recorded, server):
    page, seen, netloc = recorded
    runs = RunWatcher(page)
    for path in PAGES:
        runs.run(lambda: page.goto(f"{server.url}/{path}"), SLOW_MS)
        # the navigation's Material icons and the page icon are drawn by now
        expect(page.locator("[data-testid='stSidebarNav']")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert any("page_icon" in u or "/media/" in u for u in seen), "the page icon was not loaded"
    outside = _outside(seen, netloc)
    assert outside == [], f"requests leaving the server: {sorted(set(outside))}"


def test_markdown_in_a_link_value_is_shown_as_text(recorded, server):
    page, seen, netloc = recorded
    RunWatcher(page).run(lambda: page.goto(f"{server.url}/?lang={quote(PAYLOAD)}"), SLOW_MS)
    warning = page.locator("[data-testid='stAlertContentWarning']").filter(has_text="Click here")
    expect(warning).to_be_visible()
    assert PAYLOAD in warning.inner_text().replace("\u2060", "")  # shown as typed
    page.wait_for_load_state("networkidle")
    assert page.locator(f"a[href*='{INJECTED}']").count() == 0
    assert page.locator(f"img[src*='{INJECTED}']").count() == 0
    assert not [u for u in seen if INJECTED in u], [u for u in seen if INJECTED in u]


def test_make_run_starts_a_server_that_looks_nothing_up():
    """The Makefile's run command (its python and port swapped for the test's) with the
    project's .streamlit/config.toml: no external-IP lookup at start-up, no browser."""
    text = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.*)\n", text, re.MULTILINE).group(1)
    port = free_port()
    cmd = recipe.replace("$(PY)", sys.executable).replace("$(PORT)", str(port)).split()
    proc = subprocess.Popen(cmd + ["--server.fileWatcherType", "none"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, t0 = "", time.monotonic()
        while "URL:" not in output and time.monotonic() - t0 < 60:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            output += line
        time.sleep(3)  # a lookup would follow the banner within its 1 s + 1 s timeouts
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
        output += rest
    assert "URL:" in output, output
    assert "Did not auto detect external IP" not in output, output
    assert "External URL" not in output and "Network URL" not in output, output
