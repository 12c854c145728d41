"""A training job belongs to its browser session (issue 12, item 2), on the real server.

Closing the tab stops the job after the grace period (unless "keep training" was
ticked); a reload finds the job again through the ``?job=`` token and can stop it;
SIGTERM with a job running ends the server within 5 s. The server runs with a short
grace period (METAREP_JOB_GRACE_S) so the suite does not wait half a minute; the
mechanism is the same as with the default 30 s.
"""
from __future__ import annotations

import re
import signal
import time

import pytest
from playwright.sync_api import expect

try:
    from browser_harness import RunWatcher, StreamlitServer, wait_idle
except ImportError:  # tests/ as a package
    from tests.browser_harness import RunWatcher, StreamlitServer, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

GRACE_S = 6
SLOW_MS = 120_000
STEPS = 20000  # far more than the test lasts: the job only ends if something stops it


def _server(**env) -> StreamlitServer:
    server = StreamlitServer(extra_env={"METAREP_JOB_GRACE_S": str(GRACE_S), **env}).start()
    server.wait_healthy(timeout_s=90)
    return server


@pytest.fixture(scope="module")
def server():
    server = _server()
    try:
        yield server
    finally:
        server.stop()


def _new_page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.set_default_timeout(SLOW_MS)
    return context, context.new_page()


def _start_long_training(page, url: str, keep: bool = False) -> str | None:
    """Open the Train page, start a STEPS-step run, wait until it trains; its URL token
    (None when the URL names no job)."""
    runs = RunWatcher(page)
    runs.run(lambda: page.goto(f"{url}/train"), SLOW_MS)
    steps = page.locator(".st-key-train_steps input")
    runs.run(lambda: (steps.fill(str(STEPS)), steps.press("Enter")), SLOW_MS)
    if keep:
        runs.run(page.locator(".st-key-train_keep label").click, SLOW_MS)
    page.locator(".st-key-train_start button").click()
    _expect_training(page)
    try:
        page.wait_for_url(re.compile(r"[?&]job="), timeout=10_000)
    except Exception:  # a timeout: the URL names no job
        return None
    return re.search(r"[?&]job=([^&]+)", page.url).group(1)


def _expect_training(page) -> None:
    expect(page.locator("[data-testid='stProgress']")).to_contain_text(
        re.compile(rf"Step \d+/{STEPS}"), timeout=SLOW_MS)


def _wait_for_log(server, pattern: str, timeout_s: float) -> float | None:
    """Seconds until ``pattern`` shows in the server's stderr, or None after ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if re.search(pattern, server.stderr_path.read_text(errors="replace")):
            return time.monotonic() - t0
        time.sleep(0.2)
    return None


def test_closing_the_tab_stops_its_job_unless_kept(server, chromium):
    ctx_a, page_a = _new_page(chromium)
    ctx_b, page_b = _new_page(chromium)
    token_a = _start_long_training(page_a, server.url)
    token_b = _start_long_training(page_b, server.url, keep=True)
    assert token_a and token_b, f"the URL names no job: {page_a.url}"
    ctx_a.close()
    ctx_b.close()
    waited = _wait_for_log(server, rf"job {token_a[:8]} stopped at step \d+/{STEPS}", GRACE_S + 10)
    assert waited is not None, "the closed tab's job was not stopped\n" + server.log_tail()
    assert waited >= GRACE_S - 1, f"stopped after {waited:.1f} s, before the {GRACE_S} s grace period"
    # The kept job still trains, and its link (with the token) shows it and stops it.
    assert f"job {token_b[:8]} stopped" not in server.stderr_path.read_text(errors="replace")
    ctx_c, page_c = _new_page(chromium)
    try:
        RunWatcher(page_c).run(lambda: page_c.goto(f"{server.url}/train?job={token_b}"), SLOW_MS)
        _expect_training(page_c)
        page_c.locator(".st-key-train_stop button").click()
        expect(page_c.locator("[data-testid='stProgress']")).to_contain_text("Stopped at step",
                                                                              timeout=SLOW_MS)
    finally:
        ctx_c.close()


def test_a_reloaded_tab_sees_its_job_and_can_stop_it(server, chromium):
    context, page = _new_page(chromium)
    try:
        token = _start_long_training(page, server.url)
        assert token, f"the URL names no job: {page.url}"
        page.reload(wait_until="domcontentloaded")  # a new Streamlit session
        wait_idle(page, SLOW_MS)
        _expect_training(page)
        assert f"job={token}" in page.url
        # The reloaded session owns the job: it cannot start a second one, it can stop this one.
        expect(page.locator(".st-key-train_start button")).to_be_disabled()
        page.locator(".st-key-train_stop button").click()
        expect(page.locator("[data-testid='stProgress']")).to_contain_text("Stopped at step",
                                                                           timeout=SLOW_MS)
        expect(page.locator(".st-key-train_start button")).to_be_enabled()
    finally:
        context.close()
    # the reload did not leave the job to the reaper: it was stopped by the user, once
    log = server.stderr_path.read_text(errors="replace")
    assert f"job {token[:8]} stopped" not in log


def test_sigterm_with_a_job_running_exits_within_5_s(chromium):
    server = _server()
    context, page = _new_page(chromium)
    try:
        _start_long_training(page, server.url)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # the server process only, as `docker stop` does
        try:
            server.proc.wait(timeout=5)
        except Exception:
            pytest.fail("the server still runs 5 s after SIGTERM with a job running\n"
                        + server.log_tail())
        assert time.monotonic() - t0 <= 5
    finally:
        context.close()
        server.stop()
