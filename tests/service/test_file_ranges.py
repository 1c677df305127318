"""A job's audio files answer HTTP range requests, so an <audio> player can seek."""

from __future__ import annotations

from pathlib import Path

from tests.service.conftest import SONGS, Service


def _file(svc: Service) -> tuple[str, bytes]:
    job_id = svc.submit({"template": "song-intro", "persona": "julie", "voice": True, "records": SONGS[:1]})
    assert svc.worker().run_once()
    job = svc.client.get(f"/api/v1/generate/{job_id}").json()
    url, name = job["files"][0]["url"], job["files"][0]["name"]
    data = (Path(svc.settings.data_dir) / "jobs" / job_id / "out" / "audio" / name).read_bytes()
    return url, data


def test_a_whole_file_says_it_takes_ranges(svc: Service) -> None:
    url, data = _file(svc)
    r = svc.client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "audio/wav"


def test_a_range_is_206_with_its_bytes_and_content_range(svc: Service) -> None:
    url, data = _file(svc)
    size = len(data)
    r = svc.client.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{size}" and r.headers["content-length"] == "100"
    tail = svc.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert tail.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    rest = svc.client.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert rest.status_code == 206 and rest.content == data[-5:]


def test_a_range_past_the_end_is_416(svc: Service) -> None:
    url, data = _file(svc)
    r = svc.client.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
