"""Many browser sessions over two app servers behind the proxy, one training running
(issue 14): latency, errors, cross-talk, and how the sessions spread.

    .venv/bin/python benchmarks/multi_sessions.py                  # 60 sessions, ~3 min on 2 cores
    .venv/bin/python benchmarks/multi_sessions.py --sessions 6     # a quick look
    .venv/bin/python benchmarks/multi_sessions.py --concurrency 4  # four sessions acting at once (default 2)

Starts the deployment of compose.yaml without containers (tests/multi_harness.py):
PostgreSQL, app servers app1 and app2 with the same METAREP_DB_URL, HAProxy from
deploy/haproxy.cfg in front, everything on loopback; one Chromium, one browser context
(one Streamlit session) per student. A training session starts a long run first and
keeps it running through the measurement (stopped at the end). Then all sessions open
the app through the proxy at once, on the lessons page (text: the herd of first pages
costs little), and each in turn (``--concurrency`` at a time):

  seed         types its own seed into the sidebar (1000 + 10 i for session i): settings
               other than the defaults, so the session's run is made in the database
  page-switch  goes to the episodes page through the sidebar (the episode grid drawn)
  new-episode  clicks "new episode" (the seed goes one up)

(``--kinds`` picks some of them, in that order).
and finally reads its seed back from the sidebar, from the URL, and from its run in the
database. A seed that is not the session's own is cross-talk. Latency is from the action
to the end of the script run it caused, the page idle (the websocket's script_finished,
then the app's idle attribute; tests/browser_harness.py's RunWatcher).

Prints one JSON object: "p50_ms", "p95_ms", "max_ms" over all interactions (and per
kind), "errors" (exceptions on a page, actions that timed out, HTTP 5xx through the
proxy) with samples, "cross_talk" with samples, "per_server_sessions" (from each
browser's SERVERID cookie), "per_server_latency" (the trainer's server also runs the
training thread, which shares the interpreter with its page runs), "proxy_requests"
(HAProxy's log, per server), the servers' memory (RSS and peak of each process tree,
MB), the CPU seconds of each server and of the rest (Chromium above all) while opening
and while interacting, "load_avg" before and after, and whether
the training ran through the whole measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from browser_harness import APP_IDLE, EXCEPTION, RunWatcher, launch_chromium, wait_idle  # noqa: E402
from multi_harness import STICKY_COOKIE, Deployment  # noqa: E402

SEED0 = 1000
KINDS = ("seed", "page-switch", "new-episode")
EPISODES_TITLE = json.loads((ROOT / "app" / "i18n" / "en.json").read_text(encoding="utf-8"))["page.episodes"]
FIRST_PAGE = "lessons"  # light (text): the herd of first pages costs little; the episode grid comes with the switch


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its living descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        if p in stats:
            total += int(stats[p][11]) + int(stats[p][12])
        stack.extend(children.get(p, []))
    return total / os.sysconf("SC_CLK_TCK")


def cpu_split(deployment) -> dict:
    """CPU seconds so far: each app server's process tree, and everything else this
    benchmark started (Chromium, Playwright, PostgreSQL, HAProxy, this process)."""
    servers = {name: s.cpu_seconds() for name, s in deployment.servers.items()}
    return {**servers, "rest": tree_cpu_s(os.getpid()) - sum(servers.values())}


def used(before: dict, after: dict) -> dict:
    return {k: round(after[k] - before[k], 1) for k in before}


def log(what: str, since: float) -> None:
    """Progress on stderr (the JSON goes to stdout)."""
    print(f"[multi_sessions {time.perf_counter() - since:6.1f} s] {what}", file=sys.stderr, flush=True)


def pct(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))], 1) if values else None


def new_context(browser, timeout_ms: float):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(timeout_ms)
    return context


class Student:
    """One browser tab through the proxy = one Streamlit session (a session is a tab's
    WebSocket), with its own seed; in a browser context of its own unless ``context``
    (a browser whose tabs share cookies, hence the proxy's server, and its HTTP cache)."""

    def __init__(self, browser, index: int, timeout_ms: float, context=None):
        self.index, self.seed = index, SEED0 + 10 * index
        self.own_context = context is None
        self.context = new_context(browser, timeout_ms) if context is None else context
        self.page = self.context.new_page()
        self.runs = RunWatcher(self.page)
        self.server_errors: list[str] = []
        self.page.on("response", lambda r: self.server_errors.append(f"{r.status} {r.url}")
                     if r.status >= 500 else None)

    def key(self, key: str):
        return self.page.locator(f".st-key-{key}")

    def server(self) -> str | None:
        return {c["name"]: c["value"] for c in self.context.cookies()}.get(STICKY_COOKIE)

    def exception(self) -> str | None:
        shown = self.page.locator(EXCEPTION)
        return shown.first.inner_text()[:500] if shown.count() else None

    # The interactions: each returns the action that causes one script run.
    def type_seed(self):
        box = self.key("seed").locator("input")
        return lambda: (box.fill(str(self.seed)), box.press("Enter"))

    def new_episode(self):
        self.seed += 1  # state.next_seed
        return self.key("new_episode").locator("button").click

    def switch_page(self):
        # The default page's link is "/" (no name in its address): found by its title.
        nav = self.page.locator("[data-testid='stSidebarNav']")
        return nav.get_by_role("link", name=EPISODES_TITLE, exact=True).click

    def seeds_seen(self) -> dict:
        wait_idle(self.page)
        in_url = re.search(r"[?&]seed=(\d+)", self.page.url)
        run = re.search(r"[?&]run=([^&]+)", self.page.url)
        return {"sidebar": int(self.key("seed").locator("input").input_value()),
                "url": int(in_url.group(1)) if in_url else None, "run": run.group(1) if run else None}

    def close(self):
        if self.own_context:
            self.context.close()
        else:
            self.page.close()


def timed_together(actions: list, timeout_s: float) -> list:
    """Start every ``(student, action)`` at once; for each, ms until the script run it
    caused finished and its page is idle again, or the exception (timeout) it raised."""
    started = []
    for student, action in actions:
        before = student.runs.finished
        t0 = time.perf_counter()
        try:
            action()
            started.append((student, before, t0, None))
        except Exception as exc:  # a click that timed out: an error of this session
            started.append((student, before, t0, f"{type(exc).__name__}: {str(exc)[:200]}"))
    results: list = [None] * len(started)
    deadline = time.perf_counter() + timeout_s
    while any(r is None for r in results):
        for i, (student, before, t0, failed) in enumerate(started):
            if results[i] is not None:
                continue
            if failed:
                results[i] = failed
            elif student.runs.finished > before and student.page.locator(APP_IDLE).count():
                results[i] = (time.perf_counter() - t0) * 1000
            elif time.perf_counter() > deadline:
                results[i] = f"TimeoutError: no script run finished within {timeout_s:.0f} s"
        if any(r is None for r in results):
            started[0][0].page.wait_for_timeout(5)  # lets Playwright deliver every page's websocket events
    return results


ACTIONS = {"seed": Student.type_seed, "page-switch": Student.switch_page, "new-episode": Student.new_episode}


def start_training(browser, proxy_url: str, steps: int, timeout_ms: float):
    """A session on the training page running a ``steps``-step training (the job's own
    thread in its server's pool); returns it to be checked and stopped at the end."""
    trainer = Student(browser, -1, timeout_ms)
    trainer.runs.run(lambda: trainer.page.goto(f"{proxy_url}/train"), timeout_ms)
    box = trainer.key("train_steps").locator("input")
    trainer.runs.run(lambda: (box.fill(str(steps)), box.press("Enter")), timeout_ms)
    trainer.key("train_start").locator("button").click()
    trainer.key("train_stop").locator("button:enabled").wait_for(timeout=timeout_ms)  # the job runs
    return trainer


def still_training(trainer) -> bool:
    stop = trainer.key("train_stop").locator("button")
    return stop.count() > 0 and stop.is_enabled()


def measure(sessions: int = 60, concurrency: int = 2, train_steps: int = 20_000,
            timeout_s: float = 240, browser=None, kinds=KINDS, tabs: int = 1) -> dict:
    """Run the benchmark (a Chromium of its own unless ``browser`` is given); the JSON's dict."""
    kinds = tuple(kinds)
    if any(k not in ACTIONS for k in kinds) or kinds[:1] != ("seed",) or (
            "new-episode" in kinds and "page-switch" not in kinds[:kinds.index("new-episode")]):
        raise ValueError(f"kinds {list(kinds)}: allowed {list(ACTIONS)}, \"seed\" first (the cross-talk check "
                         f"reads each session's own seed back), \"page-switch\" before \"new-episode\" "
                         f"(its button is on the episodes page)")
    load_before = os.getloadavg()
    began = time.perf_counter()
    with Deployment(n_servers=2, proxy=True) as deployment:
        own = None
        if browser is None:
            from playwright.sync_api import sync_playwright
            own = sync_playwright().start()
            browser = launch_chromium(own)
        students, contexts = [], []
        try:
            return _measure(deployment, browser, sessions, concurrency, train_steps, timeout_s,
                            load_before, began, students, kinds, tabs, contexts)
        finally:
            for s in students:
                s.close()
            for context in contexts:
                context.close()
            if own is not None:
                browser.close()
                own.stop()


def _measure(deployment, browser, sessions, concurrency, train_steps, timeout_s, load_before, began, students,
             kinds, tabs, contexts):
    timeout_ms = timeout_s * 1000
    proxy = deployment.proxy
    log(f"deployment up {deployment.startup_s}", began)
    trainer = start_training(browser, proxy.url, train_steps, timeout_ms)
    students.append(trainer)
    log(f"training on {trainer.server()}", began)
    errors: list[str] = []
    cpu0 = cpu_split(deployment)
    t0 = time.perf_counter()
    contexts.extend(new_context(browser, timeout_ms) for _ in range(0, sessions, tabs) if tabs > 1)
    crowd = [Student(browser, i, timeout_ms, contexts[i // tabs] if tabs > 1 else None) for i in range(sessions)]
    students.extend(crowd)
    for i, s in enumerate(crowd):  # every first page in flight together...
        if tabs > 1 and i % tabs == 0:  # ... but a browser's first answer first: its cookie names its server
            s.page.goto(f"{proxy.url}/{FIRST_PAGE}", wait_until="commit")
    for i, s in enumerate(crowd):
        if tabs == 1 or i % tabs:
            s.page.goto(f"{proxy.url}/{FIRST_PAGE}", wait_until="commit")
    for s in crowd:
        try:
            wait_idle(s.page, timeout_ms)
        except Exception as exc:
            errors.append(f"session {s.index} opening: {type(exc).__name__}: {str(exc)[:200]}")
    open_all_s = time.perf_counter() - t0
    log(f"{sessions} sessions open in {open_all_s:.1f} s", began)
    cpu1 = cpu_split(deployment)
    peak = deployment.memory_mb()

    servers = {s.index: s.server() for s in crowd}  # the proxy's cookie: fixed from the first answer on
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    by_server: dict[str, list[float]] = {}
    for kind in kinds:
        make = ACTIONS[kind]
        for first in range(0, len(crowd), concurrency):
            group = crowd[first:first + concurrency]
            for s, result in zip(group, timed_together([(s, make(s)) for s in group], timeout_s)):
                if isinstance(result, str):
                    errors.append(f"session {s.index} {kind}: {result}")
                else:
                    latencies[kind].append(result)
                    by_server.setdefault(servers[s.index], []).append(result)
            log(f"{kind}: sessions {first}..{first + len(group) - 1} done", began)
            now = deployment.memory_mb()
            peak = {n: max(peak[n], now[n], key=lambda m: m["rss_mb"]) for n in now}
    training_through = still_training(trainer)
    cpu2 = cpu_split(deployment)

    cross_talk, tokens = [], {}
    from metarep_core.store import RunStore
    store = RunStore(deployment.db_url)
    try:
        for s in crowd:
            shown = s.exception()
            if shown:
                errors.append(f"session {s.index}: exception on the page: {shown}")
            errors.extend(f"session {s.index}: {e}" for e in s.server_errors)
            try:
                seen = s.seeds_seen()
                kept = store.load_run(seen["run"]).settings.get("seed") if seen["run"] else None
            except Exception as exc:
                errors.append(f"session {s.index} reading back: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            seen["store"] = kept
            if {seen["sidebar"], seen["url"], kept} != {s.seed}:
                cross_talk.append({"session": s.index, "expected": s.seed, **seen})
            if seen["run"] in tokens:
                cross_talk.append({"session": s.index, "same_run_as": tokens[seen["run"]]})
            tokens.setdefault(seen["run"], s.index)
    finally:
        store.close()
    if still_training(trainer):
        trainer.key("train_stop").locator("button").click()

    everything = [v for kind in kinds for v in latencies[kind]]
    memory = deployment.memory_mb()
    result = {
        "bench": "multi-sessions", "sessions": sessions, "kinds": list(kinds), "tabs_per_browser": tabs,
        "servers": len(deployment.servers),
        "concurrency": concurrency, "interactions": len(everything),
        "p50_ms": pct(everything, 50), "p95_ms": pct(everything, 95),
        "max_ms": round(max(everything), 1) if everything else None,
        "per_kind": {k: {"n": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for k, v in latencies.items()},
        "goal_p95_ms": 2000,
        "errors": len(errors), "error_samples": errors[:10],
        "cross_talk": len(cross_talk), "cross_talk_samples": cross_talk[:10],
        "per_server_sessions": dict(Counter(servers.values())),
        "per_server_latency": {n: {"n": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95)}
                               for n, v in sorted(by_server.items(), key=lambda kv: str(kv[0]))},
        "trainer_server": trainer.server(),
        "proxy_requests": dict(proxy.served_by()),
        "open_all_s": round(open_all_s, 1),
        "cpu_s_opening": used(cpu0, cpu1), "cpu_s_interactions": used(cpu1, cpu2),
        "training_during_measurement": training_through,
        "server_rss_mb": {n: m["rss_mb"] for n, m in memory.items()},
        "server_peak_rss_mb": {n: max(m["peak_rss_mb"], peak[n]["peak_rss_mb"]) for n, m in memory.items()},
        "startup_s": deployment.startup_s,
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - began, 1),
    }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=2, help="sessions acting at the same moment")
    parser.add_argument("--train-steps", type=int, default=20_000,
                        help="the background training's steps (stopped when the measurement ends)")
    parser.add_argument("--timeout-s", type=float, default=240)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--tabs", type=int, default=1,
                        help="sessions per browser context (tabs sharing cookies, so one server, and a cache)")
    args = parser.parse_args(argv)
    # `timeout` and Ctrl-C: stop the servers this started (the finally blocks), not orphan them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(measure(args.sessions, args.concurrency, args.train_steps, args.timeout_s,
                             kinds=tuple(args.kinds.split(",")), tabs=args.tabs)), flush=True)


if __name__ == "__main__":
    main()
