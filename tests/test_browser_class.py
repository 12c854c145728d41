"""A class on the real server (issue 11, a teacher's view): a teacher creates a class, a
student (a browser context of her own) joins and answers an exercise, the teacher's
page opened with the key shows that answer (and the CSV has it), another student's
page does not; projector mode at 1024x768 has no "Deploy" button and larger type.
The server's run store is a SQLite file of this test's own (``METAREP_DB_URL``).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

try:
    from browser_harness import EXCEPTION, RunWatcher, StreamlitServer, wait_idle
    from app_harness import strings
except ImportError:  # tests/ as a package
    from tests.app_harness import strings
    from tests.browser_harness import EXCEPTION, RunWatcher, StreamlitServer, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

EN = strings("en")
SLOW_MS = 90_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("class") / "runs.sqlite3"
    server = StreamlitServer(extra_env={"METAREP_DB_URL": f"sqlite:///{db}"}).start()
    try:
        server.wait_healthy(timeout_s=90)
        yield server
    finally:
        server.stop()


def _open(chromium, url: str, viewport=(1400, 1000)):
    context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, locale="en-US")
    context.set_default_timeout(SLOW_MS)
    page = context.new_page()
    runs = RunWatcher(page)
    runs.run(lambda: page.goto(url), SLOW_MS)
    return context, page, runs


def _type(page, runs, key: str, text: str) -> None:
    box = page.locator(f".st-key-{key} input")
    runs.run(lambda: (box.fill(text), box.press("Enter")), SLOW_MS)


def _click(page, runs, key: str) -> None:
    runs.run(page.locator(f".st-key-{key} button").click, SLOW_MS)


def _main_text(page) -> str:
    wait_idle(page, SLOW_MS)
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()
    return page.locator("[data-testid='stMain']").inner_text()


def test_the_teacher_sees_a_students_answer_and_another_student_does_not(server, chromium):
    teacher, t_page, t_runs = _open(chromium, f"{server.url}/teacher")
    zora = quinn = None
    try:
        _click(t_page, t_runs, "teacher_create")
        code = re.search(r"Class ([A-Z0-9]{6})", _main_text(t_page)).group(1)
        key = t_page.locator("[data-testid='stCode'] code").inner_text().strip()
        assert len(key) == 24

        step = f"{server.url}/lessons?class={code}&lesson=inner_loop&step=2"
        zora, z_page, z_runs = _open(chromium, step)
        _type(z_page, z_runs, "class_name", "Zora")
        _click(z_page, z_runs, "class_join")
        assert f"You are in class {code} as Zora" in _main_text(z_page)
        z_runs.run(z_page.locator(".st-key-lesson_choice_inner_loop_2 label", has_text=EN["lesson.option.higher"])
                   .click, SLOW_MS)
        _click(z_page, z_runs, "lesson_check")
        assert EN["lesson.correct"] in _main_text(z_page) or EN["lesson.wrong"] in _main_text(z_page)

        quinn, q_page, q_runs = _open(chromium, step)
        _type(q_page, q_runs, "class_name", "Quinn")
        _click(q_page, q_runs, "class_join")
        seen_by_quinn = _main_text(q_page)
        assert "as Quinn" in seen_by_quinn and EN["class.not_revealed"] in seen_by_quinn
        assert "Zora" not in seen_by_quinn and EN["class.revealed_title"] not in seen_by_quinn

        t_page.reload(wait_until="domcontentloaded")  # a new session: the key is asked again
        wait_idle(t_page, SLOW_MS)
        assert "Zora" not in _main_text(t_page)
        _type(t_page, t_runs, "teacher_code", code)
        _type(t_page, t_runs, "teacher_key", key)
        _click(t_page, t_runs, "teacher_open")
        t_page.get_by_text(EN["teacher.each_student"]).first.click()  # the first exercise with answers
        seen_by_teacher = _main_text(t_page)
        assert "1 / 2" in seen_by_teacher  # inner_loop step 2: Zora answered, of two students
        assert re.search(rf"Zora\s+{EN['lesson.option.higher']}", seen_by_teacher), seen_by_teacher
        with t_page.expect_download() as download:
            t_page.locator(".st-key-teacher_csv button").click()
        csv_text = Path(download.value.path()).read_text(encoding="utf-8")
        assert re.search(r"^Zora,inner_loop,2,1,higher,(true|false),", csv_text, re.MULTILINE), csv_text
        assert "Quinn" not in csv_text  # Quinn answered nothing
    finally:
        for context in (teacher, zora, quinn):
            if context is not None:
                context.close()


# How high the first letter of the page's intro (a caption) is drawn, in screen pixels:
# the type as a reader sees it (zoom included, unlike a computed font-size).
LETTER_PX = """() => {
    const p = document.querySelector("[data-testid='stMain'] [data-testid='stCaptionContainer'] p");
    const letter = document.createRange();
    letter.setStart(p.firstChild, 0);
    letter.setEnd(p.firstChild, 1);
    return letter.getBoundingClientRect().height;
}"""


def test_projector_mode_at_1024x768_has_no_deploy_button_and_larger_type(server, chromium):
    normal, n_page, _ = _open(chromium, f"{server.url}/teacher", viewport=(1024, 768))
    projected, page, _ = _open(chromium, f"{server.url}/teacher?projector=1", viewport=(1024, 768))
    try:
        _main_text(n_page)
        _main_text(page)
        for shown in (n_page, page):  # toolbarMode "viewer": no developer options, for anyone
            assert shown.get_by_role("button", name="Deploy").count() == 0
            assert shown.locator("[data-testid='stAppDeployButton']").count() == 0
        expect(page.locator("[data-testid='stSidebarUserContent']")).to_be_hidden()
        normal_px = n_page.evaluate(LETTER_PX)
        try:  # the page's style arrives with the run's last messages: wait for it, not a fixed time
            page.wait_for_function(f"() => ({LETTER_PX})() > {1.25 * normal_px}", timeout=15_000)
        except Exception:
            pytest.fail(f"projector mode's type is {page.evaluate(LETTER_PX)} px high, normal {normal_px} px")
        assert "projector=1" in page.url
    finally:
        normal.close()
        projected.close()
