"""Event streams of the real ``aicp serve`` on loopback: at most --max-streams open per client
address (more: 429 with Retry-After), a closed stream frees its place, resume still works."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import SONGS
from tests.service.serve_process import ServeProcess

CAP = 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    """``aicp serve --no-worker --max-streams 3``: a submitted job stays queued, its stream open."""
    proc = ServeProcess(tmp_path / "data", "--no-worker", "--max-streams", str(CAP))
    try:
        yield proc
    finally:
        proc.stop()


def test_concurrent_streams_past_the_cap_are_429_with_retry_after(server: ServeProcess) -> None:
    url = f"{server.base}/api/v1/generate/{server.submit({'records': SONGS[:1]})}/events"
    start, done = threading.Barrier(8), threading.Event()
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=httpx.Timeout(20, read=20)) as c:
            start.wait(10)
            with c.stream("GET", url) as r:
                with lock:
                    answers.append((r.status_code, r.headers.get("retry-after")))
                if r.status_code == 200:
                    done.wait(20)  # hold the stream open

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(answers) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    for t in threads:
        t.join(30)
    assert sorted(s for s, _ in answers) == [200] * CAP + [429] * (8 - CAP), answers
    assert all(int(after) > 0 for s, after in answers if s == 429 and after is not None)
    assert all(after is not None for s, after in answers if s == 429)


def test_a_closed_stream_frees_its_place(server: ServeProcess) -> None:
    job = server.submit({"records": SONGS[:1]})
    url = f"{server.base}/api/v1/generate/{job}/events"
    with httpx.Client(timeout=httpx.Timeout(10, read=10)) as c:
        for _ in range(2):  # twice: every place is given back each time
            with ExitStack() as stack:
                opened = [stack.enter_context(c.stream("GET", url)) for _ in range(CAP)]
                assert [r.status_code for r in opened] == [200] * CAP
                refused = c.get(url)
                assert refused.status_code == 429 and refused.json()["error"]["type"] == "TooManyStreams"
            deadline = time.monotonic() + 10
            while True:  # the server sees the disconnects at once, or at its next poll
                with c.stream("GET", url) as r:
                    if r.status_code == 200:
                        break
                assert time.monotonic() < deadline, "closed streams were not given back"
                time.sleep(0.1)
        # finished streams give their place back too: a cancelled job's stream ends by itself
        assert c.delete(f"{server.base}/api/v1/generate/{job}").status_code == 200
        for _ in range(CAP + 2):
            r = c.get(url, headers={"Last-Event-ID": "0"})
            assert r.status_code == 200 and r.text.startswith("retry: 1000")
