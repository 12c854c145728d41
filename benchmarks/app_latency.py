"""Latency of the real app in a real browser (Debian's Chromium via Playwright).

    .venv/bin/python benchmarks/app_latency.py            # everything, ~5-10 min
    .venv/bin/python benchmarks/app_latency.py --only first,episode,slider,umap
    .venv/bin/python benchmarks/app_latency.py --sessions 30 --only load
    .venv/bin/python benchmarks/app_latency.py --only pages,tsne,compare

Prints one JSON object per line ("bench": name, figures in ms, "goal_ms" from issue 3):
  app-first-page      first page usable (episode grid drawn) after the server is healthy
  new-episode         click "new episode" -> the support grid redrawn, script idle (p50/p95)
  slider-step         one arrow-key step of the adaptation slider -> that step shown (p50/p95)
  umap-first          the first UMAP a user asks for in a fresh server (numba disk cache warm)
  umap-first-cold     the same with an empty numba cache (a fresh container)
  umap-1000           UMAP of 1,000 samples (+ the episode) once warm (both panels: before/after)
  load                N sessions open at once, one training: the interactions above (p95),
                      the server's RSS (current and peak, process tree)
  page-switch         each page from the sidebar, default settings -> its run finished (p50/p95,
                      and per page)
  tsne-1000-2d/-3d    t-SNE of 1,000 samples (+ the episode), both panels, first time each
  compare-5x100       Compare, five learners x 100 episodes: "Compare" -> results shown
  rerun-empty         the same click on a page with one button and one line of text
                      (benchmarks/empty_app.py): what a Streamlit rerun costs by itself

The goals ("goal_ms", "goal_p95_ms") are issue 13's. The field names are kept from one
version to the next, so figures compare across versions.

"server_cpu_ms_p50" is the CPU time the server process used per interaction: on a shared,
loaded machine it tells what the wall-clock figure would be on an idle core.
Latencies are measured inside the browser: from the input event (a capturing listener on
the document) to the first animation frame where the result is on screen and the app's
script state is notRunning. Everything is on loopback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser_harness import (APP_IDLE, EXCEPTION, RunWatcher, StreamlitServer,  # noqa: E402
                             launch_chromium, wait_idle)

STEP_LABEL = None  # "Step" in English, read from the app's strings at start-up

# Installed in every page: time stamps of the last input event, and a predicate helper
# that notes when it first became true (evaluated by wait_for_function every frame).
INIT_JS = """
window.__t0 = null;
for (const type of ['mousedown', 'keydown']) {
  document.addEventListener(type, () => { window.__t0 = performance.now(); }, true);
}
window.__done = (ok) => { if (ok) window.__t1 = performance.now(); return ok; };
"""
IDLE_JS = f"document.querySelector(\"{APP_IDLE}\") !== null"


# Issue 13's goals, in ms (p95 where a figure is a distribution).
GOALS = {"first": 1500, "click": 150, "pages": 500, "umap_warm": 1000, "umap_first": 4000,
         "tsne": 4000, "compare": 4000, "load_p95": 1000, "load_open_s": 10}


def pct(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))], 1)


def summary(bench, values, goal_ms=None, **extra):
    out = {"bench": bench, "n": len(values), "p50_ms": pct(values, 50), "p95_ms": pct(values, 95),
           "max_ms": round(max(values), 1)}
    if goal_ms is not None:
        out["goal_p95_ms"] = goal_ms
        out["meets_goal"] = out["p95_ms"] <= goal_ms
    out.update(extra)
    return out


def emit(obj):
    print(json.dumps(obj), flush=True)


def timed(page, action, predicate_js="true", changed=None, timeout_ms=120_000):
    """ms from the input event `action` makes to the first frame where `predicate_js`
    holds, the chart with key `changed` (if given) is redrawn differently from before the
    action, and the script is idle; measured with the browser's clock."""
    page.evaluate("() => { window.__t0 = null; window.__t1 = null; }")
    if changed:
        sel = f".st-key-{changed}"
        page.evaluate("(sel) => window.__sig = document.querySelector(sel).innerHTML", sel)
        predicate_js = (f"({predicate_js}) && document.querySelector('{sel} .main-svg') !== null"
                        f" && document.querySelector('{sel}').innerHTML !== window.__sig")
    t_py = time.perf_counter()
    action()
    page.wait_for_function(f"() => window.__done(({predicate_js}) && {IDLE_JS})",
                           polling="raf", timeout=timeout_ms)
    t0, t1 = page.evaluate("() => [window.__t0, window.__t1]")
    if t0 is None:  # the action was not an input event (e.g. a navigation)
        return (time.perf_counter() - t_py) * 1000
    return t1 - t0


def chromium_cpu_seconds() -> float:
    """CPU time (user + system) of every Chromium process on the machine so far."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"chromium" not in fh.read().split(b"\0")[0]:
                    continue
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


class Session:
    """One browser context = one Streamlit session."""

    def __init__(self, browser, server):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.add_init_script(INIT_JS)
        self.page = self.context.new_page()
        self.page.set_default_timeout(180_000)
        self.server = server
        self.runs = RunWatcher(self.page)
        self.cpu_ms: dict[str, list[float]] = {}  # server CPU time per interaction

    def open(self, path=""):
        self.runs.run(lambda: self.page.goto(f"{self.server.url}/{path}"), 180_000)
        self.check()

    def key(self, key):
        return self.page.locator(f".st-key-{key}")

    def check(self):
        if self.page.locator(EXCEPTION).count():
            raise RuntimeError("exception on the page: " + self.page.locator(EXCEPTION).first.inner_text()[:1500])

    def new_episode(self):
        """Click "new episode"; ms until the redrawn support grid is on screen."""
        cpu0 = self.server.cpu_seconds()
        ms = timed(self.page, self.key("new_episode").locator("button").click, changed="episode_support")
        self.cpu_ms.setdefault("new-episode", []).append((self.server.cpu_seconds() - cpu0) * 1000)
        self.check()
        return ms

    def slider_step(self):
        """One arrow-key step of the adaptation slider (bouncing between the ends); ms
        until the page shows "Step i/last" for the new step."""
        slider = self.key("adapt_step").locator("input[type='range']")
        now, last = int(slider.input_value()), int(slider.get_attribute("max"))
        first = int(slider.get_attribute("min"))  # a metric learner's trace starts at 1 shot
        direction = getattr(self, "_dir", 1)
        if not first <= now + direction <= last:
            direction = -direction
        self._dir = direction
        target = now + direction
        slider.focus()
        label = json.dumps(f"{STEP_LABEL} {target}/{last}")
        cpu0 = self.server.cpu_seconds()
        ms = timed(self.page, lambda: slider.press("ArrowRight" if direction > 0 else "ArrowLeft"),
                   f"document.querySelector(\"[data-testid='stMain']\").innerText.includes({label})")
        self.cpu_ms.setdefault("slider-step", []).append((self.server.cpu_seconds() - cpu0) * 1000)
        self.check()
        return ms

    def close(self):
        self.context.close()


def charts_drawn_js(keys):
    return " && ".join(f"document.querySelector('.st-key-{k} .main-svg') !== null" for k in keys)


def bench_fresh_server(browser, args, cold_numba=False):
    """First page, then the first UMAP, in a server started just now."""
    env = {}
    if cold_numba:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="metarep-numba-cold-")
    server = StreamlitServer(extra_env=env).start()
    try:
        healthy_s = server.wait_healthy(180)
        s = Session(browser, server)
        t0, cpu0 = time.perf_counter(), server.cpu_seconds()
        s.open("")  # episodes is the default page, at the root URL
        s.page.wait_for_selector(".st-key-episode_support .main-svg", state="attached")
        first_ms = (time.perf_counter() - t0) * 1000
        if not cold_numba:
            emit({"bench": "app-first-page", "ms": round(first_ms, 1), "goal_ms": GOALS["first"],
                  "meets_goal": first_ms <= GOALS["first"], "server_start_to_healthy_s": round(healthy_s, 2),
                  "server_cpu_ms": round((server.cpu_seconds() - cpu0) * 1000)})
        link = s.page.locator("[data-testid='stSidebarNav'] a[href$='/embedding']")
        cpu0 = server.cpu_seconds()
        ms = timed(s.page, link.click, charts_drawn_js(["emb_before", "emb_after"]), timeout_ms=300_000)
        s.check()
        emit({"bench": "umap-first-cold" if cold_numba else "umap-first", "ms": round(ms, 1),
              "goal_ms": GOALS["umap_first"], "meets_goal": ms <= GOALS["umap_first"],
              "server_cpu_ms": round((server.cpu_seconds() - cpu0) * 1000),
              "points": "episode + 200 samples (page default), before and after panels",
              "since_server_healthy_s": round(time.perf_counter() - t0, 1)})
        if not cold_numba:
            # The first 1,000-sample UMAP in this server (the slider's End key = 1000).
            samples = s.key("emb_samples").locator("input[type='range']")
            samples.focus()
            ms = timed(s.page, lambda: samples.press("End"), changed="emb_after", timeout_ms=300_000)
            s.check()
            emit({"bench": "umap-1000-first-in-server", "ms": round(ms, 1), "goal_ms": GOALS["umap_first"],
                  "meets_goal": ms <= GOALS["umap_first"]})
        s.close()
    finally:
        server.stop()


def bench_interactions(browser, server, args, only):
    s = Session(browser, server)
    s.open("")  # episodes is the default page, at the root URL
    if "episode" in only:
        values = [s.new_episode() for _ in range(args.repeats)]
        emit(summary("new-episode", values, GOALS["click"], server_cpu_ms_p50=pct(s.cpu_ms["new-episode"], 50)))
    if "slider" in only:
        s.open("adapt?k_shot=5")
        values = [s.slider_step() for _ in range(args.repeats)]
        emit(summary("slider-step", values, GOALS["click"], server_cpu_ms_p50=pct(s.cpu_ms["slider-step"], 50),
                     trace="protonet 5-way 5-shot (6 steps)"))
    s.close()


def bench_umap_warm(browser, server, args):
    """1,000 samples, warm: each n_neighbors change is a new UMAP of the same points."""
    s = Session(browser, server)
    s.open("embedding")
    s.page.wait_for_selector(".st-key-emb_after .main-svg", state="attached")
    samples = s.key("emb_samples").locator("input[type='range']")
    samples.focus()
    timed(s.page, lambda: samples.press("End"), changed="emb_after", timeout_ms=300_000)
    assert samples.input_value() == "1000", samples.input_value()
    neighbors = s.key("emb_neighbors").locator("input[type='range']")
    values, cpu = [], []
    for _ in range(args.umap_repeats):
        neighbors.focus()
        cpu0 = server.cpu_seconds()
        values.append(timed(s.page, lambda: neighbors.press("ArrowLeft"), changed="emb_after", timeout_ms=300_000))
        cpu.append((server.cpu_seconds() - cpu0) * 1000)
        s.check()
    emit(summary("umap-1000", values, GOALS["umap_warm"], server_cpu_ms_p50=pct(cpu, 50),
                 points="1,000 samples + episode (~1,035), before and after panels"))
    s.close()


def bench_load(browser, server, args):
    """N sessions at once, one of them training; interactions in the others."""
    t0, cpu0, chromium0 = time.perf_counter(), server.cpu_seconds(), chromium_cpu_seconds()
    sessions = [Session(browser, server) for _ in range(args.sessions)]
    for i, s in enumerate(sessions):  # all navigations in flight together
        path = "train" if i == 0 else ("adapt?k_shot=5" if i % 2 else "")
        s.page.goto(f"{server.url}/{path}", wait_until="commit")
    for s in sessions:
        wait_idle(s.page, 300_000)
        s.check()
    open_s = time.perf_counter() - t0
    # Where the opening's time went: the server's CPU and the browser's (on this machine
    # both share the same two cores, so the wall time is at least their sum / 2).
    open_server_cpu_s = server.cpu_seconds() - cpu0
    open_chromium_cpu_s = chromium_cpu_seconds() - chromium0
    trainer = sessions[0]
    steps = trainer.key("train_steps").locator("input")
    steps.fill(str(args.train_steps))
    steps.press("Enter")
    wait_idle(trainer.page)
    trainer.runs.run(trainer.key("train_start").locator("button").click)
    memory_peak = server.memory_mb()
    episode, slider = [], []
    others = sessions[1:]
    for r in range(args.repeats):
        s = others[r % len(others)]
        if s.key("new_episode").count():
            episode.append(s.new_episode())
        else:
            slider.append(s.slider_step())
        memory_peak = max(memory_peak, server.memory_mb(), key=lambda m: m["rss_mb"])
    still_training = trainer.page.locator("[data-testid='stAlertContentSuccess']").count() == 0
    mem = server.memory_mb()
    everything = episode + slider
    emit(summary("load", everything, GOALS["load_p95"], sessions=args.sessions, open_all_s=round(open_s, 1),
                 open_all_goal_s=GOALS["load_open_s"], open_all_meets_goal=open_s <= GOALS["load_open_s"],
                 open_all_server_cpu_s=round(open_server_cpu_s, 1),
                 open_all_chromium_cpu_s=round(open_chromium_cpu_s, 1),
                 new_episode_p95_ms=pct(episode, 95) if episode else None,
                 slider_step_p95_ms=pct(slider, 95) if slider else None,
                 training_during_measurement=still_training,
                 server_rss_mb=mem["rss_mb"], server_pss_mb=mem["pss_mb"], server_peak_rss_mb=max(mem["peak_rss_mb"], memory_peak["peak_rss_mb"]),
                 rss_goal_mb=4096, rss_meets_goal=mem["peak_rss_mb"] < 4096))
    stop = trainer.key("train_stop").locator("button")
    if stop.is_enabled():
        stop.click()
    for s in sessions:
        s.close()


def bench_pages(browser, server, args):
    """Every page from the sidebar's links, default settings, ``--page-rounds`` times
    round: ms from the click to the end of the run it caused (wall clock)."""
    from app.pages import NAMES
    s = Session(browser, server)
    s.open("")
    order = [n for n in NAMES if n != NAMES[0]] + [NAMES[0]]  # and back to the default page
    per_page: dict[str, list[float]] = {}
    cpu = []
    for _ in range(args.page_rounds):
        for name in order:
            link = s.page.locator(f"[data-testid='stSidebarNav'] a[href$='/{name}']")
            if not link.count():  # the default page's link is the root
                link = s.page.locator("[data-testid='stSidebarNav'] a").first
            cpu0 = server.cpu_seconds()
            ms = s.runs.run(link.click, 300_000)
            wait_idle(s.page, 300_000)
            s.check()
            cpu.append((server.cpu_seconds() - cpu0) * 1000)
            per_page.setdefault(name, []).append(ms)
    values = [v for vs in per_page.values() for v in vs]
    emit(summary("page-switch", values, GOALS["pages"], server_cpu_ms_p50=pct(cpu, 50),
                 per_page_p50_ms={k: pct(v, 50) for k, v in per_page.items()},
                 rounds=args.page_rounds))
    s.close()


def _choose_radio(s, key, text, changed):
    """Click the radio option that reads ``text``; ms until the chart ``changed`` is redrawn."""
    option = s.key(key).locator("[data-testid='stRadioOption']").filter(has_text=text)
    return timed(s.page, option.click, changed=changed, timeout_ms=300_000)


def bench_tsne(browser, server, args):
    """t-SNE of 1,000 samples + the episode (both panels, before and after adaptation):
    2-D, then 3-D, each the first time in this session (each panel is a new t-SNE)."""
    s = Session(browser, server)
    s.open("embedding")
    s.page.wait_for_selector(".st-key-emb_after .main-svg", state="attached")
    _choose_radio(s, "emb_method", "PCA", "emb_after")  # PCA while the samples go to 1,000
    samples = s.key("emb_samples").locator("input[type='range']")
    samples.focus()
    timed(s.page, lambda: samples.press("End"), changed="emb_after", timeout_ms=300_000)
    assert samples.input_value() == "1000", samples.input_value()
    for dim, bench in ((2, "tsne-1000-2d"), (3, "tsne-1000-3d")):
        if dim == 3:
            _choose_radio(s, "emb_method", "PCA", "emb_after")  # back to PCA, then 3-D PCA
            _choose_radio(s, "emb_dim", "3", "emb_after")
        cpu0 = server.cpu_seconds()
        ms = _choose_radio(s, "emb_method", "t-SNE", "emb_after")
        s.check()
        emit({"bench": bench, "ms": round(ms, 1), "goal_ms": GOALS["tsne"], "meets_goal": ms <= GOALS["tsne"],
              "server_cpu_ms": round((server.cpu_seconds() - cpu0) * 1000),
              "points": "1,000 samples + episode, before and after panels"})
    s.close()


COMPARE_LEARNERS = ("protonet", "matching", "maml", "anil", "reptile")


def chosen_tag(s, label):
    """The Compare multiselect's chip for ``label`` (a chip carries its label as title)."""
    return s.key("compare_algorithms").locator(f"[title={json.dumps(label, ensure_ascii=False)}]")


def bench_compare(browser, server, args):
    """Compare: five learners (the sidebar's ProtoNet first) x 100 episodes of the
    default dataset; ms from the click on "Compare" to the end of that run."""
    from app.services import algorithm_label
    s = Session(browser, server)
    s.open("compare")
    s.page.wait_for_selector(".st-key-compare_algorithms input")
    box = s.key("compare_algorithms").locator("input")
    for name in COMPARE_LEARNERS:
        label = algorithm_label(name, "en")
        if chosen_tag(s, label).count():
            continue  # chosen already (the page's default)
        box.click()
        box.fill(label.split(" · ")[0])
        s.runs.run(lambda: s.page.get_by_role("option", name=label).click())
    s.page.keyboard.press("Escape")
    # The episodes select-slider (10, 20, 50, 100, ...): step right until it reads 100.
    episodes = s.key("compare_episodes").locator("input[type='range']")
    for _ in range(6):
        if episodes.get_attribute("aria-valuetext") == "100":
            break
        episodes.focus()
        s.runs.run(lambda: episodes.press("ArrowRight"))
    assert episodes.get_attribute("aria-valuetext") == "100", episodes.get_attribute("aria-valuetext")
    chosen = sum(chosen_tag(s, algorithm_label(n, "en")).count() > 0 for n in COMPARE_LEARNERS)
    cpu0 = server.cpu_seconds()
    ms = s.runs.run(s.key("compare_run").locator("button").click, 600_000)
    wait_idle(s.page, 600_000)
    s.check()
    emit({"bench": "compare-5x100", "ms": round(ms, 1), "goal_ms": GOALS["compare"],
          "meets_goal": ms <= GOALS["compare"], "learners": chosen, "episodes": 100,
          "server_cpu_ms": round((server.cpu_seconds() - cpu0) * 1000),
          "dataset": "omniglot 5-way 1-shot (default settings)"})
    s.close()


def bench_empty(browser, args):
    """Click -> rerun -> idle on benchmarks/empty_app.py, in a server of its own."""
    with StreamlitServer(entry="benchmarks/empty_app.py") as server:
        server.wait_healthy(180)
        s = Session(browser, server)
        s.open("")
        button = s.key("again").locator("button")
        values, cpu = [], []
        for _ in range(args.repeats):
            before = s.page.locator("[data-testid='stMain']").inner_text()
            cpu0 = server.cpu_seconds()
            values.append(timed(s.page, button.click,
                                "document.querySelector(\"[data-testid='stMain']\").innerText !== "
                                + json.dumps(before)))
            cpu.append((server.cpu_seconds() - cpu0) * 1000)
        emit(summary("rerun-empty", values, None, server_cpu_ms_p50=pct(cpu, 50),
                     page="one button and one line of text"))
        s.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="empty,first,cold,episode,slider,umap,pages,tsne,compare,load",
                        help="comma-separated subset of: empty, first, cold, episode, slider, umap, "
                             "pages, tsne, compare, load")
    parser.add_argument("--page-rounds", type=int, default=3, help="rounds over every page")
    parser.add_argument("--repeats", type=int, default=20, help="interactions per latency figure")
    parser.add_argument("--umap-repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=2000, help="the load test's background training")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    global STEP_LABEL
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from app.i18n import t
    STEP_LABEL = t("adapt.step", lang="en")

    from playwright.sync_api import sync_playwright
    emit({"bench": "machine", "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
          "note": "shared machine: the load average above is other work running at the same time"})
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            if "empty" in only:
                bench_empty(browser, args)
            if "first" in only:
                bench_fresh_server(browser, args)
            if "cold" in only:
                bench_fresh_server(browser, args, cold_numba=True)
            if only & {"episode", "slider", "umap", "pages", "tsne", "compare", "load"}:
                with StreamlitServer() as server:
                    server.wait_healthy(180)
                    if "episode" in only or "slider" in only:
                        bench_interactions(browser, server, args, only)
                    if "umap" in only:
                        bench_umap_warm(browser, server, args)
                    if "pages" in only:
                        bench_pages(browser, server, args)
                    if "tsne" in only:
                        bench_tsne(browser, server, args)
                    if "compare" in only:
                        bench_compare(browser, server, args)
                    if "load" in only:
                        bench_load(browser, server, args)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
