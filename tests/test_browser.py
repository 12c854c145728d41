"""End to end in a real browser: `streamlit run app/main.py` driven by Debian's headless
Chromium. Visits every page, samples an episode, trains briefly, scrubs the adaptation
slider, computes a UMAP, switches to Chinese; no page may show an exception. Waits on
the app's own signals (health endpoint, the script-state attribute, the websocket's
script_finished), never on sleeps. A full-page screenshot of every page goes to
test-artifacts/screenshots/.

Widgets are found by their keys (`.st-key-<key>`), listed in app/main.py's docstring,
so the test does not depend on the language of the labels.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from app.i18n import t  # the app's own strings (plain JSON), to match what it shows

try:
    from browser_harness import EXCEPTION, RunWatcher, full_page_screenshot, wait_idle
except ImportError:  # tests/ as a package
    from tests.browser_harness import EXCEPTION, RunWatcher, full_page_screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
CJK = re.compile(r"[\u4e00-\u9fff]")
SLOW_MS = 120_000  # first UMAP / first model load on a loaded 2-core machine
# Notes the first exception element that appears at any moment (a fragment run during
# training, a transient rerun), not only when the test happens to look.
SEE_EXCEPTIONS_JS = """
new MutationObserver((records) => {
  const sel = "[data-testid='stException']";
  for (const r of records) for (const n of r.addedNodes) {
    if (window.__stException || n.nodeType !== 1) continue;
    const e = n.matches(sel) ? n : n.querySelector(sel);
    if (e) window.__stException = e.innerText || e.textContent || "stException";
  }
}).observe(document, {childList: true, subtree: true});
"""


class App:
    """One browser session on the app: navigate, act and wait for the rerun, check, shoot."""

    def __init__(self, page, server):
        self.page, self.server = page, server
        self.runs = RunWatcher(page)
        page.add_init_script(SEE_EXCEPTIONS_JS)

    def exception_ever_shown(self) -> str | None:
        """The text of the first exception element the page showed at any moment."""
        return self.page.evaluate("() => window.__stException || null")

    def open(self, path: str = "", timeout_ms: float = SLOW_MS) -> None:
        """Load /<path> as a new session and wait for its first run to finish."""
        self.runs.run(lambda: self.page.goto(f"{self.server.url}/{path}"), timeout_ms)
        self.assert_no_exception(f"opening /{path}")
        dialogs = self.page.locator("[role='dialog']")  # e.g. Streamlit's "Page not found"
        assert not dialogs.count(), f"/{path} opens a dialog: {dialogs.first.inner_text()[:300]}"

    def act(self, action, what: str, timeout_ms: float = SLOW_MS) -> float:
        """Do `action()`, wait for the rerun it causes; fail on an exception element."""
        ms = self.runs.run(action, timeout_ms)
        self.assert_no_exception(what)
        return ms

    def key(self, key: str):
        """The element container of the widget or chart with Streamlit key `key`."""
        return self.page.locator(f".st-key-{key}")

    def nav(self, url_path: str, timeout_ms: float = SLOW_MS) -> None:
        """Go to another page with the sidebar link: same session (unlike a page load)."""
        link = self.page.locator(f"[data-testid='stSidebarNav'] a[href$='/{url_path}']")
        self.act(link.click, f"navigating to /{url_path}", timeout_ms)

    def assert_no_exception(self, what: str) -> None:
        errors = self.page.locator(EXCEPTION)
        if errors.count():
            texts = "\n---\n".join(e.inner_text()[:2000] for e in errors.all())
            full_page_screenshot(self.page, SCREENSHOTS / "FAILED.png")
            pytest.fail(f"exception shown on the page after {what}:\n{texts}\n{self.server.log_tail(1500)}")

    def drawn(self, key: str, timeout_ms: float = 30_000) -> None:
        """Wait until the Plotly chart with key `key` has drawn (Plotly loads lazily)."""
        self.page.wait_for_selector(f".st-key-{key} .main-svg", state="attached", timeout=timeout_ms)

    def main_text(self) -> str:
        return self.page.locator("[data-testid='stMain']").inner_text()

    def screenshot(self, name: str) -> None:
        wait_idle(self.page)  # no stale elements of a run in progress in the picture
        self.assert_no_exception(f"the {name} page")
        full_page_screenshot(self.page, SCREENSHOTS / f"{name}.png")


@pytest.fixture
def app(page, app_server):
    app = App(page, app_server)
    yield app
    seen = app.exception_ever_shown()
    assert seen is None, f"an exception was shown on the page during the test:\n{seen[:2000]}"


def test_exception_watch_sees_a_transient_exception(page):
    """The watch behind the `app` fixture's final check can fail: an exception element
    shown for a moment and removed again is still reported."""
    page.add_init_script(SEE_EXCEPTIONS_JS)
    page.goto("data:text/html,<html><body><div id='root'></div></body></html>")
    assert page.evaluate("() => window.__stException || null") is None
    page.evaluate("""() => { const d = document.createElement('div');
        d.innerHTML = "<div data-testid='stException'>ValueError: boom</div>";
        document.getElementById('root').appendChild(d); d.remove(); }""")
    assert "boom" in page.evaluate("() => window.__stException || ''")


def test_episodes_new_episode(app):
    app.open("")  # the default page (episodes) lives at the root URL
    support = app.key("episode_support")
    app.drawn("episode_support")
    seed = app.key("seed").locator("input")
    expect(seed).to_have_value("0", timeout=5000)
    before = support.inner_html()

    app.act(app.key("new_episode").locator("button").click, "new episode")

    expect(seed, "new episode did not move to the next seed").to_have_value("1", timeout=5000)
    assert "seed=1" in app.page.url, f"the seed is not kept in the URL: {app.page.url}"
    app.page.wait_for_function(  # the grid is redrawn by Plotly after the rerun
        "([sel, html]) => document.querySelector(sel).innerHTML !== html",
        arg=[".st-key-episode_support", before])
    app.screenshot("episodes")


def test_episode_link_opens_the_same_episode(app):
    """A teacher's link: the settings and seed in the URL open the same episode."""
    app.open("?n_way=3&k_shot=2&seed=7")
    # expect() retries for a moment: right after the run ends the browser may not have
    # committed the widget values yet (seen once as a transient "1", the input's minimum).
    for key, value in (("n_way", "3"), ("k_shot", "2"), ("seed", "7")):
        expect(app.key(key).locator("input")).to_have_value(value, timeout=5000)


def test_train_briefly_then_watch_adaptation(app):
    app.open("train")
    steps = app.key("train_steps").locator("input")
    app.act(lambda: (steps.fill("2"), steps.press("Enter")), "setting 2 training steps")
    assert steps.input_value() == "2"

    app.act(app.key("train_start").locator("button").click, "starting training")
    # When the background job ends the page adopts the model and says so (st.success).
    app.page.wait_for_selector("[data-testid='stAlertContentSuccess']", timeout=SLOW_MS)
    wait_idle(app.page)
    app.assert_no_exception("training")
    app.drawn("train_curves")
    how = t("fig.how.training_curves", lang="en")
    assert how in app.main_text(), "the training curves' how-to-read caption is not under them"
    assert app.key("train_start").locator("button").is_enabled(), "start stays disabled after training"
    app.screenshot("train")

    # The trained model is this session's model on the other pages.
    app.nav("adapt")
    trained = t("model.source.trained", lang="en", steps=2)
    assert trained in app.main_text(), f"the adapt page does not use the model just trained ({trained!r})"


def test_adaptation_slider_scrubs_the_trace(app):
    app.open("adapt?k_shot=3")
    slider = app.key("adapt_step").locator("input[type='range']")
    # ProtoNet's steps are shots per class, 1 to 3: the slider counts as the curves' x axis
    first, last = int(slider.get_attribute("min")), int(slider.get_attribute("max"))
    assert (first, last) == (1, 3), f"a 3-shot ProtoNet trace has steps 1..3, the slider {first}..{last}"
    assert slider.input_value() == "1"
    for expected in (2, 3):
        app.act(lambda: (slider.focus(), slider.press("ArrowRight")), f"slider to step {expected}")
        assert slider.input_value() == str(expected)
        label = f"{t('adapt.step', lang='en')} {expected}/{last}"
        assert label in app.main_text(), f"{label!r} is not shown after moving the slider"
    app.act(lambda: slider.press("ArrowLeft"), "slider back one step")
    assert slider.input_value() == "2"
    app.drawn("adapt_support")
    app.drawn("adapt_curves")
    app.drawn("adapt_predictions")
    app.screenshot("adapt")


def test_compare_page(app):
    app.open("compare")
    episodes = app.key("compare_episodes").locator("input[type='range']")
    app.act(lambda: (episodes.focus(), episodes.press("Home")), "fewest comparison episodes")
    app.act(app.key("compare_run").locator("button").click, "running the comparison")
    app.drawn("compare_bars")
    app.screenshot("compare")


def test_you_against_the_model_then_compare_shows_you(app):
    """A student answers one episode (5 queries, timed) and finds "You" in Compare."""
    app.open("human?n_query=1")
    assert not app.page.locator("[class*='st-key-human_answer_']").count(), "queries before Start"
    app.act(app.key("human_start").locator("button").click, "starting the timer")
    for j in range(5):  # answer every query "A": one of the five is right
        choice = app.key(f"human_answer_0_{j}").get_by_text("A", exact=True)
        app.act(choice.click, f"answering query {j + 1}")
    app.act(app.key("human_submit").locator("button").click, "handing in")
    result = t("human.result", lang="en", right=1, total=5, seconds="")
    assert result.split(" in ")[0] in app.main_text(), app.main_text()[:800]
    app.screenshot("human")

    app.nav("compare")
    episodes = app.key("compare_episodes").locator("input[type='range']")
    app.act(lambda: (episodes.focus(), episodes.press("Home")), "fewest comparison episodes")
    app.act(app.key("compare_run").locator("button").click, "running the comparison")
    app.drawn("compare_bars")
    you = t("compare.you", lang="en")
    expect(app.key("compare_bars").get_by_text(you, exact=True)).to_have_count(1)
    app.drawn("compare_paired")
    app.screenshot("compare_with_you")


# the tests above and below; the teacher's page is visited by tests/test_browser_class.py
PAGES = {"", "train", "adapt", "embedding", "compare", "human", "draw", "lessons", "theory", "teacher"}


def test_lessons_open_the_sinusoid_adaptation(app):
    """A lesson's step sets the sidebar and its button opens the step's page: here MAML
    adapting to a sinusoid, the regression view of Watch adaptation."""
    app.open("lessons")
    links = app.page.locator("[data-testid='stSidebarNav'] a").evaluate_all(
        "links => links.map(a => new URL(a.href).pathname.replace(/^\\//, ''))")
    assert set(links) == PAGES, f"the app's pages {sorted(links)} are not the ones this module visits"
    app.screenshot("lessons")

    app.act(app.key("lesson_sinusoid").locator("button").click, "starting the sinusoid lesson")
    app.act(app.key("lesson_open").locator("button").click, "opening its first step's page")
    app.page.wait_for_url("**/adapt?*")
    assert "dataset=sinusoid" in app.page.url and "algorithm=maml" in app.page.url, app.page.url
    app.page.wait_for_selector("[class*='st-key-adapt_regression_'] .main-svg", state="attached",
                               timeout=SLOW_MS)
    slider = app.key("adapt_step").locator("input[type='range']")
    app.act(lambda: (slider.focus(), slider.press("End")), "slider to the last inner step")
    app.screenshot("adapt_sinusoid")


def _protonet_shots_answer() -> str:
    """What the shipped ProtoNet does on the episode lesson's exercise (its own trace:
    query accuracy with 1 shot, then 5), computed here without the app."""
    from app import services
    from app.exercises import direction
    from app.lessons import load_lesson
    from metarep_core.checkpoints import load_checkpoint
    from metarep_core.data import load_dataset
    from metarep_core.episodes import EpisodeSampler
    s = load_lesson(Path(services.ROOT) / "assets" / "lessons" / "episode.json").step_settings(1)
    learner, _ = load_checkpoint(str(services.CHECKPOINT_DIR / "protonet_glyphs_5w1s.safetensors"))
    episode = EpisodeSampler(load_dataset("glyphs", seed=0), s["split"], s["n_way"], s["k_shot"],
                             s["n_query"], s["seed"]).sample(s["seed"])
    trace = {step.step: step.query_accuracy for step in learner.eval().adapt(episode, record=True).trace}
    return direction(trace[1], trace[5])


def test_a_student_walks_a_whole_lesson_in_chinese(app):
    """The episode lesson as a student in 简体中文: start it, open its page (still in
    Chinese), come back by the lesson's link, answer wrong (the hint shows), answer
    right (the model's numbers show), finish; the language is kept throughout."""
    zh = lambda key, **kw: t(key, lang="zh", **kw)  # noqa: E731
    app.open("lessons?lang=zh")
    start = app.key("lesson_episode").locator("button")
    expect(start).to_have_text(zh("lesson.start"))
    app.act(start.click, "starting the lesson")
    main = app.page.locator("[data-testid='stMain']")  # expect() retries while it renders
    expect(main).to_contain_text(zh("lesson.step_of", step=1, steps=2))

    app.act(app.key("lesson_open").locator("button").click, "opening the step's page")
    app.drawn("episode_support")
    assert "lang=zh" in app.page.url, app.page.url
    assert app.page.locator("h1").first.inner_text().strip() == zh("page.episodes")
    app.screenshot("lesson_zh_page")

    back = app.page.get_by_role("link", name=zh("lesson.back_to_lesson"))
    app.act(back.click, "back to the lesson")
    app.act(app.key("lesson_next").locator("button").click, "the next step")
    expect(main).to_contain_text(zh("lesson.step_of", step=2, steps=2))

    right = _protonet_shots_answer()
    wrong = "lower" if right != "lower" else "higher"
    choice = app.key("lesson_choice_episode_2")
    check = app.key("lesson_check").locator("button")
    app.act(choice.get_by_text(zh("lesson.option." + wrong), exact=True).click, "a wrong answer")
    app.act(check.click, "checking it")
    error = app.page.locator("[data-testid='stAlertContentError']")
    expect(error).to_contain_text(zh("lesson.wrong"))
    expect(app.page.locator("[data-testid='stAlertContentInfo']")).to_contain_text(zh("lesson.hint", hint="")[:3])

    app.act(choice.get_by_text(zh("lesson.option." + right), exact=True).click, "the right answer")
    app.act(check.click, "checking it")
    success = app.page.locator("[data-testid='stAlertContentSuccess']")
    expect(success).to_contain_text(zh("lesson.correct"))
    expect(success).to_contain_text("%")  # the model's own accuracies, 1 shot and 5
    app.screenshot("lesson_zh_answered")

    app.act(app.key("lesson_next").locator("button").click, "finishing the lesson")
    expect(app.key("lesson_episode").locator("button")).to_have_text(zh("lesson.start"))
    assert "lang=zh" in app.page.url, app.page.url
    expect(main).to_contain_text(zh("lesson.answers", n=2, right=1))
    assert len(CJK.findall(app.main_text())) > 20


def test_a_lesson_link_opens_its_step_with_the_sidebar_hidden(app):
    """A teacher's link to a step in 简体中文 that hides the sidebar (as TensorFlow
    Playground's links hide controls); the step's page keeps it hidden."""
    sidebar = app.page.locator("[data-testid='stSidebar']")
    app.open("lessons?lesson=inner_loop&step=3&hide=sidebar&lang=zh")
    main = app.page.locator("[data-testid='stMain']")  # expect() retries while it renders
    expect(main).to_contain_text(t("lesson.step_of", lang="zh", step=3, steps=3))
    expect(app.key("lesson_value_inner_loop_3")).to_be_visible()
    expect(sidebar).to_be_hidden()
    app.screenshot("lesson_link_hidden_sidebar")
    app.act(app.key("lesson_back").locator("button").click, "back to step 2")
    app.act(app.key("lesson_back").locator("button").click, "back to step 1")
    app.act(app.key("lesson_open").locator("button").click, "opening the step's page")
    app.page.wait_for_url("**/adapt?*")
    assert "lang=zh" in app.page.url and "algorithm=maml" in app.page.url, app.page.url
    expect(sidebar).to_be_hidden()

    app.open("lessons?lesson=episode&hide=settings")  # only the settings: the pages stay
    expect(app.page.locator("[data-testid='stSidebarNav']")).to_be_visible()
    expect(app.key("lang")).to_be_hidden()


def test_reading_a_figure_a_clicked_prototype_answers(app):
    """"Which prototype will this query go to?" answered by clicking a star: the click
    selects that class as the answer, which is then checked against the model."""
    app.open("lessons?lesson=prototypes&step=2&lang=zh")
    app.drawn("lesson_figure_prototypes_2")
    star = app.key("lesson_figure_prototypes_2").locator(".scatterlayer .trace").first.locator("path.point").nth(2)
    app.act(lambda: star.click(force=True), "clicking prototype C")
    radio = app.key("lesson_choice_prototypes_2")
    expect(radio.locator("input[type='radio']").nth(2)).to_be_checked()
    app.act(app.key("lesson_check").locator("button").click, "checking the clicked answer")
    verdict = app.page.locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentError']")
    expect(verdict.first).to_contain_text("C ")  # the model's probabilities, class by class
    app.screenshot("lesson_read_a_figure")


def test_theory_page_switches_to_chinese(app):
    app.open("theory")
    assert not CJK.search(app.main_text()), "the English theory page shows Chinese text"
    app.screenshot("theory")

    app.key("lang").get_by_role("combobox").click()  # opens the menu: no rerun yet
    app.act(lambda: app.page.get_by_role("option", name="简体中文").click(), "choosing 简体中文")

    text = app.main_text()
    assert len(CJK.findall(text)) > 20, f"no Chinese on the theory page after switching:\n{text[:500]}"
    assert "lang=zh" in app.page.url, f"the language is not kept in the URL: {app.page.url}"
    # The sidebar's choices are shown in the new language too, not just the page.
    dataset = app.key("dataset").get_by_role("combobox").input_value()
    assert dataset == t("dataset.omniglot", lang="zh"), f"dataset still shown as {dataset!r} in 中文"
    app.screenshot("theory_zh")


# Two characters a student might invent, as pen strokes in fractions of the canvas: a "Z"
# and a ring (hand-drawn, so not one perfectly vertical line: the canvas drops a path
# with no width).
CHARACTERS = {
    0: [[(0.2, 0.25), (0.8, 0.25), (0.2, 0.75), (0.8, 0.75)]],
    1: [[(0.5 + 0.3 * math.cos(a / 12 * 2 * math.pi), 0.5 + 0.3 * math.sin(a / 12 * 2 * math.pi))
         for a in range(13)]],
}


def test_draw_characters_then_the_learners_adapt_and_the_set_uploads_back(app):
    """Draw two characters (an example and a query each) with the mouse; the page makes
    an episode, ProtoNet and MAML predict the queries; the drawn set becomes the
    session's uploaded dataset through the ordinary upload path."""
    app.open("draw")
    n_way = app.key("draw_n_way").locator("input")
    app.act(lambda: (n_way.fill("2"), n_way.press("Enter")), "two characters")

    def pen(canvas, strokes):
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        at = lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])  # noqa: E731
        for points in strokes:
            app.page.mouse.move(*at(*points[0]))
            app.page.mouse.down()
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                for f in (0.25, 0.5, 0.75, 1.0):  # several moves per segment, as a hand would
                    app.page.mouse.move(*at(x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
            app.page.mouse.up()

    for role in ("support", "query"):
        for c, strokes in CHARACTERS.items():
            canvas = app.key(f"draw_canvas_{role}_{c}_0").locator("canvas.upper-canvas")
            app.act(lambda: pen(canvas, strokes), f"drawing character {c + 1} ({role})")
    for name in ("protonet", "maml"):
        app.drawn(f"draw_pred_{name}")
    app.drawn("draw_support")
    text = app.main_text()
    protonet = re.search(r"Prototypical Networks[^\n]*? — (\d+)%", text)
    assert protonet and int(protonet.group(1)) == 100, "ProtoNet does not tell a Z from a ring"
    shipped = t("model.source.shipped", lang="en", file="protonet_omniglot_5w1s.safetensors")
    assert shipped in text, "the 2-way drawn episode is not adapted to by the shipped ProtoNet"
    app.screenshot("draw")

    use = app.key("draw_use").get_by_role("button", name=t("draw.use", lang="en"), exact=True)
    app.act(use.click, "using the drawings as the dataset")
    assert "dataset=upload" in app.page.url, app.page.url
    summary = t("upload.summary", lang="en", name="my_characters.zip", classes=2, images=4)
    assert summary in app.page.locator("[data-testid='stSidebar']").inner_text()


def test_embedding_space_umap(app):
    """Last in the module on purpose: with a cold numba cache (a fresh clone in CI) the
    server compiles UMAP in the background from its start; the other tests run meanwhile."""
    app.open("embedding")  # UMAP is the default method; the page computes on load
    umap = app.key("emb_method").get_by_role("radio").first
    assert umap.is_checked(), "UMAP is not the default projection"
    for key in ("emb_before", "emb_after"):
        app.drawn(key)
        points = app.page.evaluate(  # WebGL scatter: count the points in the figure's data
            "(sel) => document.querySelector(sel)._fullData.reduce((n, tr) => n + (tr._length || 0), 0)",
            f".st-key-{key} .js-plotly-plot")
        assert points > 200, f"{key} shows {points} points, expected the episode + 200 samples"
    app.screenshot("embedding")


def test_embedding_click_shows_the_point(app):
    """Clicking a query in the map shows its image and says what it is, under the map
    (after the UMAP test: the server's UMAP is compiled by then; PCA here is quick).
    On glyphs: the click lands where this dataset's PCA puts a query."""
    app.open("embedding?dataset=glyphs")
    pca = app.key("emb_method").locator("label").filter(has_text=t("embedding.method.pca", lang="en"))
    app.act(pca.click, "choosing PCA")
    assert app.key("emb_method").get_by_role("radio").nth(2).is_checked(), "PCA is not chosen"
    app.drawn("emb_after")
    details = app.key("emb_after_point")
    assert not details.locator("[data-testid='stImage']").count(), "an image shown before any click"
    # where Plotly draws the first query point, from the chart's own axes
    where = app.page.evaluate(
        """([sel, name]) => { const gd = document.querySelector(sel), fl = gd._fullLayout;
             const tr = gd._fullData.find(t => t.name === name);
             const box = gd.getBoundingClientRect();
             return {x: box.left + fl._size.l + fl.xaxis.l2p(tr.x[0]),
                     y: box.top + fl._size.t + fl.yaxis.l2p(tr.y[0])}; }""",
        [".st-key-emb_after .js-plotly-plot", t("fig.query", lang="en")])
    app.act(lambda: app.page.mouse.click(where["x"], where["y"]), "clicking a query point")
    expect(details.locator("[data-testid='stImage'] img")).to_have_count(1, timeout=10_000)
    text = details.inner_text()
    assert t("fig.query", lang="en") in text, f"the clicked point is not said to be a query: {text!r}"
    assert (t("embedding.point_right", lang="en") in text
            or t("embedding.point_wrong", lang="en") in text), text
    app.screenshot("embedding_clicked")
