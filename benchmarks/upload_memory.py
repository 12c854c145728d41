"""30 sessions each uploading the largest accepted zip at once (issue 12: "server stays
under 4 GB"). Not a test: prints one JSON object.

    .venv/bin/python benchmarks/upload_memory.py                  # 30 sessions
    .venv/bin/python benchmarks/upload_memory.py --sessions 4

The zip is the largest the app accepts and the one that keeps the most memory per
session: just under ``server.maxUploadSize`` (as the browser counts it, MB * 10**6) (read from ``.streamlit/config.toml``;
Streamlit holds the raw bytes while the widget holds the file) with MAX_IMAGES images
(the decoded dataset, 28x28 uint8, grows with the number of images, not their size):
20,000 random-noise grayscale PNGs in 100 class folders, of the largest side that fits
(54x54 and 55x55 at 64 MB), stored (PNG does not compress further; ~60 megapixels,
well under the 250 MP budget).

Sessions are real browser sessions: one Chromium, one context (own Streamlit session)
per user, each opening the app with ``?dataset=upload``. Once every page is idle, the
file is set on every session's uploader (``.st-key-upload_file input[type=file]``) one
after another without waiting, so the uploads and the archive reads overlap; then each
page is watched until its sidebar shows the upload's summary ("<name>: 100 classes,
20000 images.") or an error. Memory is the server process tree's RSS (/proc), sampled
every 0.25 s in a thread, and the tree's VmHWM (the kernel's peak, between samples too):
after one warm-up session has uploaded a small zip and gone (the archive-reading code
loaded), throughout, with every session holding its upload, and once Streamlit has
dropped the closed sessions (server.disconnectedSessionTTL, 10 s here), and 30 s
later (app/memory.py hands freed pages back every 10 s).
"""
from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from browser_harness import StreamlitServer, launch_chromium, open_app  # noqa: E402
from metarep_core.limits import MAX_IMAGES  # noqa: E402

SLOW_MS = 600_000
SESSION_TTL_S = 10
N_CLASSES = 100
SUMMARY = re.compile(r": \d+ classes, \d+ images\.")
TOO_BIG = re.compile(r"File must be .* or smaller")


def max_upload_bytes() -> int:
    """``server.maxUploadSize`` of the project's config in bytes, as the browser counts
    it (MB * 10**6: it refuses a 67.0 MB file at 64; the server's own check is MB * 2**20)."""
    with open(ROOT / ".streamlit" / "config.toml", "rb") as fh:
        mb = tomllib.load(fh).get("server", {}).get("maxUploadSize", 200)  # Streamlit's default
    return int(mb) * 10**6


def _png(rng, side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def noise_zip(n_images: int, n_bigger: int, side: int) -> bytes:
    """``n_images`` noise PNGs of side x side in N_CLASSES folders, the first ``n_bigger``
    one pixel wider and taller."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n_images):
            zf.writestr(f"set/c{i % N_CLASSES:03d}/{i:05d}.png", _png(rng, side + (i < n_bigger)))
    return buf.getvalue()


def largest_zip(limit: int) -> tuple[bytes, int]:
    """(zip, side): MAX_IMAGES noise PNGs of the largest side that fits in ``limit``
    bytes, as many of them one pixel bigger as still fit."""
    # ~190 bytes per image besides its pixels: PNG chunks, filter bytes, zip headers
    side = int(((limit / MAX_IMAGES - 190) ** 0.5))
    while len(base := noise_zip(MAX_IMAGES, 0, side)) > limit:
        side -= 1
    step = len(_png(np.random.default_rng(1), side + 1)) - len(_png(np.random.default_rng(1), side))
    n_bigger = min(MAX_IMAGES, (limit - len(base)) // (step + 8))  # +8: zlib's slack
    while len(data := noise_zip(MAX_IMAGES, n_bigger, side)) > limit:
        n_bigger -= 50  # rare: PNGs a few bytes longer than the estimate
    return data, side


class Sampler(threading.Thread):
    """The server tree's RSS every ``period`` s: [(seconds since start, MB)]."""

    def __init__(self, server, period: float = 0.25):
        super().__init__(daemon=True)
        self.server, self.period, self.samples = server, period, []
        self.t0, self.stopping = time.monotonic(), threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.samples.append((time.monotonic() - self.t0, self.server.memory_mb()["rss_mb"]))
            self.stopping.wait(self.period)

    def peak_since(self, t: float) -> float:
        return max((mb for s, mb in self.samples if s >= t), default=0.0)


def upload(page, path: Path) -> None:
    """Set the file at ``path`` on the page's zip uploader (returns without waiting; a
    path, since Playwright refuses in-memory buffers past 50 MB)."""
    page.locator(".st-key-upload_file input[type=file]").set_input_files(path)


def outcome(page) -> str | None:
    """"accepted" once the sidebar shows the summary, "refused: ..." on an error, else None."""
    sidebar = page.locator("[data-testid='stSidebar']")
    if sidebar.get_by_text(SUMMARY).count():
        return "accepted"
    error = sidebar.locator("[data-testid='stAlertContentError']")
    if error.count():
        return "refused: " + error.first.inner_text()[:200]
    too_big = sidebar.get_by_text(TOO_BIG)  # the uploader's own check, in the browser
    if too_big.count():
        return "refused: " + too_big.first.inner_text()[:200]
    return None


def loadavg() -> list[str]:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    args = parser.parse_args()
    limit = max_upload_bytes()
    t_build = time.monotonic()
    data, side = largest_zip(limit)
    build_s = time.monotonic() - t_build
    tmp = Path(tempfile.mkdtemp(prefix="metarep-upload-bench-"))
    largest, small = tmp / "largest.zip", tmp / "warm.zip"
    largest.write_bytes(data)
    small.write_bytes(noise_zip(N_CLASSES * 2, 0, 28))
    load_start = loadavg()

    from playwright.sync_api import sync_playwright
    env = {"STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(SESSION_TTL_S)}
    server = StreamlitServer(extra_env=env).start()
    sampler = Sampler(server)
    outcomes: list[str] = []
    try:
        server.wait_healthy(timeout_s=120)
        url = f"{server.url}/?dataset=upload"
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            warm = browser.new_context()
            page = warm.new_page()
            open_app(page, url, SLOW_MS)
            upload(page, small)
            while (warm_result := outcome(page)) is None:
                page.wait_for_timeout(250)
            if warm_result != "accepted":
                raise SystemExit(f"the warm-up upload was {warm_result}")
            warm.close()
            time.sleep(SESSION_TTL_S + 5)
            rss_before = server.memory_mb()["rss_mb"]
            sampler.start()

            t_open = time.monotonic()
            contexts, pages = [], []
            for i in range(args.sessions):
                context = browser.new_context()
                context.set_default_timeout(SLOW_MS)
                contexts.append(context)
                pages.append(context.new_page())
                open_app(pages[-1], url, SLOW_MS)
                print(f"session {i} open at {time.monotonic() - t_open:.0f} s",
                      file=sys.stderr, flush=True)
            open_s = time.monotonic() - t_open
            rss_open = server.memory_mb()["rss_mb"]

            t_up = time.monotonic()
            t_up_rel = t_up - sampler.t0
            for i, page in enumerate(pages):
                upload(page, largest)
            done: dict[int, tuple[str, float]] = {}
            while len(done) < len(pages) and time.monotonic() - t_up < SLOW_MS / 1000:
                for i, page in enumerate(pages):
                    if i not in done and (result := outcome(page)):
                        done[i] = (result, time.monotonic() - t_up)
                        print(f"session {i}: {result[:60]} at {done[i][1]:.0f} s",
                              file=sys.stderr, flush=True)
                pages[0].wait_for_timeout(250)
            upload_s = time.monotonic() - t_up
            outcomes = [done.get(i, ("no answer", upload_s))[0] for i in range(len(pages))]
            time.sleep(2)  # the pages' reruns after the summary (an episode is drawn)
            mem_held = server.memory_mb()
            peak_uploading = sampler.peak_since(t_up_rel)

            t_close = time.monotonic()
            for context in contexts:
                context.close()
            time.sleep(max(0.0, SESSION_TTL_S + 5 - (time.monotonic() - t_close)))
            rss_after = server.memory_mb()["rss_mb"]
            # + the app's malloc_trim period (app/memory.py) and a margin
            time.sleep(max(0.0, SESSION_TTL_S + 30 - (time.monotonic() - t_close)))
            rss_later = server.memory_mb()["rss_mb"]
            browser.close()
    finally:
        sampler.stopping.set()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({
        "bench": "upload-memory", "sessions": args.sessions,
        "zip_bytes": len(data), "max_upload_bytes": limit, "zip_images": MAX_IMAGES, "image_sides": [side, side + 1],
        "zip_build_s": round(build_s, 1),
        "accepted": outcomes.count("accepted"),
        "refused": sum(o.startswith("refused") for o in outcomes),
        "no_answer": outcomes.count("no answer"),
        "refusals": sorted({o for o in outcomes if o.startswith("refused")})[:3],
        "opening_all_s": round(open_s, 1), "all_answered_s": round(upload_s, 1),
        "rss_before_mb": rss_before, "rss_sessions_open_mb": rss_open,
        "rss_peak_sampled_mb": max(peak_uploading, mem_held["rss_mb"]),
        "peak_vmhwm_mb": mem_held["peak_rss_mb"],
        "rss_uploads_held_mb": mem_held["rss_mb"],
        "rss_after_sessions_dropped_mb": rss_after, "rss_30s_later_mb": rss_later,
        "rss_later_vs_before": round(rss_later / rss_before, 3),
        "goal_peak_mb": 4096,
        "loadavg_start": load_start, "loadavg_end": loadavg(),
    }))


if __name__ == "__main__":
    main()
