"""The review desk's job page with many takes: server time and the browser's load event.

A job with --takes output records (each with a script, checks, a review on some and a
short WAV file) is put into the store directly (no model runs), then a real
`aicp serve --no-worker` on loopback serves its page:

1. server time: GET /jobs/ID over loopback, median of --repeat after one warm-up
   (target < 300 ms for 200 takes);
2. Debian's Chromium (headless, Playwright) opens the page: the navigation's load event
   (`loadEventStart` of the navigation timing entry), median of --repeat (target < 1 s).

Usage: .venv/bin/python bench/desk.py [--takes 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fill(data: Path, takes: int) -> str:
    """A finished job of ``takes`` voiced station ids in ``data``'s store; its id."""
    import numpy as np
    import soundfile as sf

    from ai_content_pipeline.service.db import database_url, make_engine, migrate
    from ai_content_pipeline.service.store import JobStore

    engine = make_engine(database_url(None, str(data)))
    migrate(engine)
    store = JobStore(engine)
    job_id = "b" * 32
    audio = data / "jobs" / job_id / "out" / "audio"
    audio.mkdir(parents=True)
    tone = (0.1 * np.sin(np.arange(22050) * 2 * np.pi * 440 / 22050)).astype("float32")
    records, files = [], []
    for i in range(takes):
        name = f"id-{i:03d}_max_0.wav"
        sf.write(audio / name, tone, 22050)
        failed = ["mentions"] if i % 7 == 3 else []
        records.append({
            "id": f"id-{i:03d}", "station": "Night Owl FM",
            "script": {"text": f"You're listening to Night Owl FM, take {i}: music after midnight, "
                               "all night long, with Max.", "words": 15, "persona": "max",
                       "template": "station-id@3", "checks": {"passed": not failed, "failed": failed,
                                                               "details": {"mentions": ["Night Owl FM"]} if failed else {}}},
            "audio": {"path": str(audio / name), "format": "wav", "sample_rate": 22050, "seconds": 1.0}})
        files.append({"name": name, "bytes": (audio / name).stat().st_size})
    store.create(job_id, "station-id", {"name": "station-id", "steps": [
        {"type": "script", "params": {"template": "station-id"}}, {"type": "voice"}]}, [{"id": "x"}])
    store.register_worker("bench", "bench", 0)
    claimed = store.claim("bench")
    assert claimed is not None and claimed.id == job_id
    assert store.finish(job_id, "bench", "completed", result={}, error=None, records=records, files=files)
    for i in range(0, takes, 3):
        store.set_review(job_id, i, "approved" if i % 2 else "rejected", None if i % 2 else "too fast")
    engine.dispose()
    return job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--takes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from tests.browser.browser import chromium_path, launch
    from tests.service.serve_process import ServeProcess

    with tempfile.TemporaryDirectory(prefix="aicp-desk-bench-") as tmp:
        data = Path(tmp) / "data"
        job_id = fill(data, args.takes)
        server = ServeProcess(data, "--no-worker")
        try:
            url = f"/jobs/{job_id}"
            first = server.client.get(url)
            assert first.status_code == 200 and first.text.count('<article class="take') == args.takes
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                r = server.client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            print(f"job page, {args.takes} takes: {len(first.content) / 1024:.0f} KiB HTML; server time "
                  f"median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}; "
                  f"target < 300 ms)")
            chromium = chromium_path()
            if chromium is None:
                print("browser load event: skipped (Chromium is not installed)")
                return
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = launch(p, chromium)
                loads = []
                for _ in range(args.repeat + 1):
                    context = browser.new_context(base_url=server.base)
                    page = context.new_page()
                    page.goto(url, wait_until="load")
                    loads.append(page.evaluate(
                        "() => performance.getEntriesByType('navigation')[0].loadEventStart"))
                    context.close()
                browser.close()
            loads = loads[1:]  # the first warms the browser's own caches
            print(f"browser load event: median {statistics.median(loads):.0f} ms (min {min(loads):.0f}, "
                  f"max {max(loads):.0f}; target < 1000 ms)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
