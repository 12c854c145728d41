"""Two app servers that share nothing but PostgreSQL, and the proxy in front of them
(issue 14), for real: tests/multi_harness.py starts PostgreSQL, two app servers
(``app1``, ``app2``) with the same ``METAREP_DB_URL``, and HAProxy configured from
deploy/haproxy.cfg, all on loopback ports.

- What a student made through app1 (an answer, a trained model, a page's state, the
  sidebar's settings, an upload) reopens through app2 from the ``?run=`` link alone.
- A teacher's view open on app1 shows, after its Refresh, an answer given on app2 by a
  student who joined there.
- Through the proxy a browser stays on one server: its SERVERID cookie names the server,
  HAProxy's request log shows that server answered every request of the session (page,
  scripts, media, the WebSocket), and the images a script run made are served; the same
  image asked of the other server is a 404 (why the stickiness). Two fresh browsers are
  spread over both servers. A browser whose server stopped is sent to the other one,
  where its ``?run=`` link brings its settings back.
"""
from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

try:
    from app_harness import class_folder_zip, strings
    from browser_harness import EXCEPTION, wait_idle
    from browser_harness import USER_SLOW_MS as SLOW_MS, act as _act, nav as _nav, user_context as _context
    from multi_harness import HAPROXY_CFG, STICKY_COOKIE, Deployment, render_haproxy_cfg
except ImportError:  # tests/ as a package
    from tests.app_harness import class_folder_zip, strings
    from tests.browser_harness import EXCEPTION, wait_idle
    from tests.browser_harness import USER_SLOW_MS as SLOW_MS, act as _act, nav as _nav, user_context as _context
    from tests.multi_harness import HAPROXY_CFG, STICKY_COOKIE, Deployment, render_haproxy_cfg

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

EN = strings("en")
STEPS = 3
IMAGES_LOADED = """() => {
    const images = [...document.querySelectorAll("[data-testid='stMain'] img")];
    return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def deployment():
    with Deployment(n_servers=2, proxy=True) as started:
        yield started


def _run_token(page) -> str:
    page.wait_for_url(re.compile(r"[?&]run="))
    return re.search(r"[?&]run=([^&]+)", page.url).group(1)


def _main_text(page) -> str:
    wait_idle(page, SLOW_MS)
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()
    return page.locator("[data-testid='stMain']").inner_text()


def test_work_saved_through_one_server_reopens_through_the_other(deployment, chromium):
    a, b = deployment.servers["app1"].url, deployment.servers["app2"].url
    trained = EN["model.source.trained"].format(steps=STEPS)
    context, page, runs = _context(chromium)
    try:  # on app1: an answer, a trained model, the adaptation slider moved
        _act(page, runs, lambda: page.goto(f"{a}/lessons?lesson=inner_loop&step=2"), "opening the lesson")
        choice = page.locator(".st-key-lesson_choice_inner_loop_2 label:has(input[type='radio'])")
        _act(page, runs, choice.first.click, "choosing an answer")
        _act(page, runs, page.locator(".st-key-lesson_check button").click, "checking it")
        token = _run_token(page)
        _nav(page, runs, "train")
        steps = page.locator(".st-key-train_steps input")
        _act(page, runs, lambda: (steps.fill(str(STEPS)), steps.press("Enter")), "setting the steps")
        page.locator(".st-key-train_start button").click()
        expect(page.get_by_text(EN["train.adopted"])).to_be_visible(timeout=SLOW_MS)
        _nav(page, runs, "adapt")
        slider = page.locator(".st-key-adapt_step input[type='range']")
        first = int(slider.get_attribute("min"))
        for _ in range(2):
            _act(page, runs, lambda: (slider.focus(), slider.press("ArrowRight")), "moving the slider")
        assert slider.input_value() == str(first + 2) and _run_token(page) == token
    finally:
        context.close()

    context, page, runs = _context(chromium)
    try:  # on app2, a fresh browser with nothing but the token: app2 never saw this session
        _act(page, runs, lambda: page.goto(f"{b}/adapt?run={token}"), "opening the run on app2")
        assert "algorithm=maml" in page.url  # the lesson's settings, from the store
        expect(page.locator(".st-key-adapt_step input[type='range']")).to_have_value(str(first + 2))
        expect(page.get_by_text(trained)).to_be_visible()  # the checkpoint trained on app1
        _act(page, runs, lambda: page.goto(f"{b}/lessons?run={token}&lesson=inner_loop&step=2"),
             "opening the lesson on app2")
        answers = EN["lesson.answers"].split("{")[0] + "1 "
        expect(page.get_by_text(re.compile(re.escape(answers)))).to_be_visible()
    finally:
        context.close()


def test_an_upload_made_through_one_server_reopens_through_the_other(deployment, chromium):
    a, b = deployment.servers["app1"].url, deployment.servers["app2"].url
    summary = EN["upload.summary"].format(name="shapes.zip", classes=6, images=48)
    context, page, runs = _context(chromium)
    try:
        _act(page, runs, lambda: page.goto(f"{a}/?dataset=upload"), "choosing the upload")
        box = page.locator(".st-key-upload_file input[type='file']")
        _act(page, runs, lambda: box.set_input_files(
            {"name": "shapes.zip", "mimeType": "application/zip", "buffer": class_folder_zip(n_classes=6)}),
            "uploading the zip to app1")
        expect(page.get_by_text(summary)).to_be_visible()
        token = _run_token(page)
    finally:
        context.close()
    context, page, runs = _context(chromium)
    try:
        _act(page, runs, lambda: page.goto(f"{b}/?run={token}"), "opening the run on app2")
        expect(page.get_by_text(summary)).to_be_visible()
        assert "dataset=upload" in page.url
    finally:
        context.close()


def test_a_teachers_view_on_one_server_shows_an_answer_given_on_the_other(deployment, chromium):
    a, b = deployment.servers["app1"].url, deployment.servers["app2"].url
    teacher, t_page, t_runs = _context(chromium)
    student = None
    try:
        _act(t_page, t_runs, lambda: t_page.goto(f"{a}/teacher"), "opening the teacher's page on app1")
        _act(t_page, t_runs, t_page.locator(".st-key-teacher_create button").click, "creating a class")
        code = re.search(r"Class ([A-Z0-9]{6})", _main_text(t_page)).group(1)
        assert "Zora" not in _main_text(t_page)

        student, s_page, s_runs = _context(chromium)
        _act(s_page, s_runs, lambda: s_page.goto(f"{b}/lessons?class={code}&lesson=inner_loop&step=2"),
             "the join link on app2")
        name = s_page.locator(".st-key-class_name input")
        _act(s_page, s_runs, lambda: (name.fill("Zora"), name.press("Enter")), "typing the name")
        _act(s_page, s_runs, s_page.locator(".st-key-class_join button").click, "joining")
        assert f"You are in class {code} as Zora" in _main_text(s_page)
        _act(s_page, s_runs, s_page.locator(".st-key-lesson_choice_inner_loop_2 label",
                                            has_text=EN["lesson.option.higher"]).click, "answering")
        _act(s_page, s_runs, s_page.locator(".st-key-lesson_check button").click, "checking")

        # The teacher's session on app1 is the one that created the class: no reload, no key again.
        _act(t_page, t_runs, t_page.locator(".st-key-teacher_refresh button").click, "refreshing on app1")
        t_page.get_by_text(EN["teacher.each_student"]).first.click()
        seen = _main_text(t_page)
        assert re.search(rf"Zora\s+{EN['lesson.option.higher']}", seen), seen
        assert "1 / 1" in seen
    finally:
        for context in (teacher, student):
            if context is not None:
                context.close()


# ------------------------------------------------------------------ the proxy
def test_the_proxy_is_configured_from_the_deployments_file(deployment):
    assert "Configuration file is valid" in deployment.proxy.check()  # haproxy -c, as rendered here
    assert deployment.proxy.cfg.read_text() == render_haproxy_cfg(
        HAPROXY_CFG.read_text(), f"127.0.0.1:{deployment.proxy.port}",
        {name: f"127.0.0.1:{s.port}" for name, s in deployment.servers.items()})


def _sticky_server(context) -> str:
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    assert STICKY_COOKIE in cookies, cookies
    return cookies[STICKY_COOKIE]


def test_a_session_through_the_proxy_stays_on_one_server(deployment, chromium):
    proxy = deployment.proxy
    since = proxy.log_size()
    context, page, runs = _context(chromium)
    failed = []  # Streamlit's frontend first asks /<page>/_stcore/... (a base path), a 404 by design
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and not re.search(r"/\w+/_stcore/(health|host-config)$", r.url) else None)
    try:
        # "You vs the model" shows its images with st.image: files in the session's server's
        # memory, at /media/..., fetched by the browser after the run.
        _act(page, runs, lambda: page.goto(f"{proxy.url}/human?dataset=glyphs"), "opening through the proxy")
        server = _sticky_server(context)
        assert server in deployment.servers
        page.wait_for_function(IMAGES_LOADED)
        _act(page, runs, page.locator(".st-key-human_start button").click, "a rerun through the proxy")
        page.wait_for_function(IMAGES_LOADED)  # the queries' images, made by this run
        assert page.locator(".st-key-human_submit").count() == 1 and not failed, failed

        # The cookie is what routes: the same image asked with the other server's name is
        # not there (that server never ran this session).
        image = page.locator("[data-testid='stMain'] img").first.get_attribute("src")
        image = image if image.startswith("http") else proxy.url + image
        assert page.request.get(image).status == 200
        other = next(name for name in deployment.servers if name != server)
        context.add_cookies([{"name": STICKY_COOKIE, "value": other, "url": proxy.url}])
        assert page.request.get(image).status == 404
    finally:
        context.close()
    # HAProxy logs a WebSocket when it closes: wait for that line, then read who answered.
    deadline = time.monotonic() + 30
    while not any(r["path"].startswith("/_stcore/stream") for r in proxy.requests(since)):
        assert time.monotonic() < deadline, proxy.log_text()[-2000:]
        time.sleep(0.05)
    served = proxy.requests(since)
    # Every request of the session went to its server, the WebSocket included; the one
    # exception is the image asked with the other server's name.
    assert [r for r in served if r["server"] != server] == [
        {"server": other, "status": "404", "method": "GET", "path": urlsplit(image).path}], served
    assert sum(r["path"].startswith("/_stcore/stream") for r in served) == 1, served
    assert sum(r["path"].startswith("/media/") for r in served) >= 2, served


def test_fresh_browsers_are_spread_over_both_servers(deployment, chromium):
    opened, servers = [], []
    try:
        for _ in range(2):
            context, page, runs = _context(chromium)
            opened.append(context)
            _act(page, runs, lambda: page.goto(deployment.proxy.url), "opening through the proxy")
            servers.append(_sticky_server(context))
            _act(page, runs, page.locator(".st-key-new_episode button").click, "a rerun")
        assert sorted(servers) == sorted(deployment.servers), servers
    finally:
        for context in opened:
            context.close()


# Last in this module: it stops one of the module's servers.
def test_a_browser_whose_server_went_down_reopens_its_work_on_the_other(deployment, chromium):
    proxy = deployment.proxy
    context, page, runs = _context(chromium)
    try:
        _act(page, runs, lambda: page.goto(f"{proxy.url}/lessons"), "opening through the proxy")
        seed = page.locator(".st-key-seed input")
        _act(page, runs, lambda: (seed.fill("4242"), seed.press("Enter")), "choosing a seed")
        token, gone = _run_token(page), _sticky_server(context)
        deployment.servers[gone].stop()
        # The cookie still names the stopped server: HAProxy sends the browser to the other.
        _act(page, runs, lambda: page.goto(f"{proxy.url}/lessons?run={token}"), "reopening the run")
        assert _sticky_server(context) != gone
        expect(page.locator(".st-key-seed input")).to_have_value("4242")
    finally:
        context.close()
