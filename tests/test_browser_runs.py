"""Work that survives a reload, and a link that reopens it (issue 11), on the real server.

One browser session answers an exercise, trains a model (3 steps) and moves the
adaptation slider; a reload (a new Streamlit session) finds the trained model and the
answer; the address bar's link opened in a fresh browser context (no cookies, no
session) finds the same slider step and the same model. The server's run store is the
test session's SQLite file (conftest.py's ``private_run_store``); the server is the
suite's shared one (``app_server``).
"""
from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

try:
    from browser_harness import REPO_ROOT, wait_idle
    from browser_harness import USER_SLOW_MS as SLOW_MS, act as _act, nav as _nav, user_context as _context
except ImportError:  # tests/ as a package
    from tests.browser_harness import REPO_ROOT, wait_idle
    from tests.browser_harness import USER_SLOW_MS as SLOW_MS, act as _act, nav as _nav, user_context as _context

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

EN = json.loads((REPO_ROOT / "app" / "i18n" / "en.json").read_text(encoding="utf-8"))
STEPS = 3


def _trained_caption(page):
    return page.get_by_text(EN["model.source.trained"].format(steps=STEPS))


def test_a_reload_and_the_copied_link_reopen_the_model_the_answer_and_the_page(app_server, chromium):
    context, page, runs = _context(chromium)
    try:
        # An exercise answered (the inner-loop lesson sets MAML, 5-way 1-shot).
        _act(page, runs, lambda: page.goto(f"{app_server.url}/lessons?lesson=inner_loop&step=2"),
             "opening the lesson")
        choice = page.locator(".st-key-lesson_choice_inner_loop_2 label:has(input[type='radio'])")
        _act(page, runs, choice.first.click, "choosing an answer")
        _act(page, runs, page.locator(".st-key-lesson_check button").click, "checking it")
        answers = page.get_by_text(re.compile(re.escape(EN["lesson.answers"].split("{")[0]) + "1 "))
        expect(answers).to_be_visible()
        page.wait_for_url(re.compile(r"[?&]run="))  # the answer made the run

        # A short training run, adopted as the session's model (and kept in the run).
        _nav(page, runs, "train")
        steps = page.locator(".st-key-train_steps input")
        _act(page, runs, lambda: (steps.fill(str(STEPS)), steps.press("Enter")), "setting the steps")
        page.locator(".st-key-train_start button").click()
        expect(page.get_by_text(EN["train.adopted"])).to_be_visible(timeout=SLOW_MS)
        expect(_trained_caption(page)).to_be_visible()

        # A reload is a new session: the model and the answer come back from the store.
        page.reload(wait_until="domcontentloaded")
        wait_idle(page, SLOW_MS)
        expect(_trained_caption(page)).to_be_visible()
        _nav(page, runs, "lessons")
        expect(answers).to_be_visible()

        # The adaptation page's state, then the address bar's link in a fresh browser.
        _nav(page, runs, "adapt")
        slider = page.locator(".st-key-adapt_step input[type='range']")
        first = int(slider.get_attribute("min"))
        for _ in range(2):
            _act(page, runs, lambda: (slider.focus(), slider.press("ArrowRight")), "moving the slider")
        assert slider.input_value() == str(first + 2)
        link = page.url
        assert "run=" in link and "/adapt" in link, link
    finally:
        context.close()

    fresh, page, runs = _context(chromium)
    try:
        _act(page, runs, lambda: page.goto(link), "opening the copied link")
        slider = page.locator(".st-key-adapt_step input[type='range']")
        expect(slider).to_have_value(str(first + 2))
        expect(_trained_caption(page)).to_be_visible()
        assert "algorithm=maml" in page.url and "run=" in page.url, page.url
    finally:
        fresh.close()
