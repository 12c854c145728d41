"""Fixtures for the real-browser tests: the Streamlit server and Chromium.

Kept minimal and light at import (no torch, no Playwright until a browser test asks);
other areas keep their fixtures in their own test files.
"""
from __future__ import annotations

import pytest

try:  # tests/ is a rootdir on sys.path (no __init__.py) ...
    from browser_harness import TEST_CHROMIUM, StreamlitServer, launch_chromium
except ImportError:  # ... or a package, if someone adds tests/__init__.py
    from tests.browser_harness import TEST_CHROMIUM, StreamlitServer, launch_chromium


def pytest_collection_modifyitems(config, items):
    """The modules marked ``child_processes`` run after the others (their own order kept):
    the fork server started below is then ready when they need it, its ~5 s of imports
    spent beside other tests instead of waited for."""
    items.sort(key=lambda item: item.get_closest_marker("child_processes") is not None)


def pytest_collection_finish(session):
    """Start the training processes' fork server (metarep_core/process_runner.py: torch,
    the learners, a first training step; ~5 s) as soon as the tests are collected, when a
    selected test is marked ``child_processes``. The served app starts it the same way,
    before it reports healthy (app/serve.py), so a user's first run finds it ready; here
    the first such test would otherwise wait for its imports. Returns at once: the server
    imports in its own process."""
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("child_processes") for item in session.items):
        from metarep_core import process_runner
        process_runner.preload()


@pytest.fixture(scope="session")
def app_server():
    """`streamlit run app/main.py` on a free port, healthy; torn down with its process group."""
    server = StreamlitServer().start()
    try:
        server.wait_healthy(timeout_s=90)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's headless Chromium (its headless shell where installed) driven by
    Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, TEST_CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh browser context (its own cookies, hence its own Streamlit session) per test."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread for in-process tests: the suite's learners are small, and on a
    2-core machine (with a Streamlit server beside it in the browser tests) more threads
    only fight each other. torch is imported here, not at module level, to keep
    collection light."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def private_run_store(tmp_path_factory):
    """The app's run store in a temporary SQLite file for the whole test session (also
    inherited by the Streamlit servers the browser tests start), never the user's own
    ``~/.cache/metarep_explorer/runs.sqlite3``. A URL set from outside (PostgreSQL in CI)
    is kept."""
    import os

    if os.environ.get("METAREP_DB_URL"):
        yield os.environ["METAREP_DB_URL"]
        return
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'runs.sqlite3'}"
    os.environ["METAREP_DB_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("METAREP_DB_URL", None)
