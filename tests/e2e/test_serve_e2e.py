"""`aicp serve` end to end: a real server subprocess on loopback, the real embedded models
(SmolLM2-135M on llama.cpp, then Piper), followed over SSE; cancel; kill -9 and restart."""

from __future__ import annotations

import io
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import soundfile as sf

from tests.service.serve_process import ServeProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SONGS = [orjson.loads(line) for line in (ROOT / "examples/songs-demo.jsonl").read_bytes().splitlines()
         if line.strip()]
FAST = {"max_tokens": 60, "seed": 11}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    srv = ServeProcess(tmp_path / "data")
    yield srv
    srv.stop()


def test_songs_with_voice_over_sse_and_a_wav_download(server: ServeProcess) -> None:
    jid = server.submit({"template": "song-intro", "persona": "julie", "voice": True, "records": SONGS,
                         "params": FAST})
    events = [e for _, e in server.events(jid)]
    names = [e["event"] for e in events]
    assert names[0] == "pipeline_start" and names[-1] == "pipeline_complete"
    assert events[-1]["success"] is True and events[-1]["records"]["completed"] == len(SONGS)
    models = [(e["event"], e["backend"]) for e in events if e["event"] in ("model_load", "model_unload")]
    assert models == [("model_load", "llamacpp"), ("model_unload", "llamacpp"),
                      ("model_load", "kokoro"), ("model_unload", "kokoro")]  # julie speaks with Kokoro
    job = server.wait(jid)
    assert job["status"] == "completed" and job["progress"]["percent"] == 100.0
    assert [r["id"] for r in job["records"]] == [s["id"] for s in SONGS]
    assert all(r["script"]["backend"] == "llamacpp" and r["script"]["text"] for r in job["records"])
    assert len(job["files"]) == len(SONGS) and job["audio_seconds"] > 0 and job["tokens"]["completion"] > 0
    wav = server.client.get(job["files"][0]["url"])
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    # the real engines' files (the bundled GGUF and Piper voice), the data and worker folders:
    # none of them named in what a client gets
    seen = server.client.get(f"/api/v1/generate/{jid}").text + server.client.get(f"/api/v1/generate/{jid}/events").text
    for path in (str(Path(server.log.name).parent), sys.prefix, str(ROOT)):
        assert path not in seen, path
    data, rate = sf.read(io.BytesIO(wav.content))
    assert rate == 24000 and len(data) / rate > 1.0  # Kokoro speaks at 24 kHz


def test_cancel_a_running_long_form_job_between_chunks(server: ServeProcess) -> None:
    jid = server.submit({"title": "How vinyl records made a comeback", "description": "sales grew for 15 years",
                         "length_target": 400, "persona": "sam", "params": {"seed": 3}})
    seen: list[dict[str, Any]] = []
    cancelled_at = None
    for _, event in server.events(jid):
        seen.append(event)
        if event["event"] == "chunk_complete" and cancelled_at is None:
            r = server.client.delete(f"/api/v1/generate/{jid}")
            assert r.status_code == 202, r.text
            cancelled_at = len(seen)
    job = server.wait(jid)
    assert job["status"] == "cancelled" and job["error"]["type"] == "Cancelled"
    starts = [e["chunk"] for e in seen if e["event"] == "chunk_start"]
    done = [e["chunk"] for e in seen if e["event"] == "chunk_complete"]
    assert starts == done and 1 <= len(done) <= 2 < 10  # stopped between chunks, far from the end
    names = [e["event"] for e in seen]
    assert "model_unload" in names[cancelled_at:] and names[-1] == "pipeline_complete"
    assert server.client.delete(f"/api/v1/generate/{jid}").status_code == 409


def test_kill_9_mid_job_then_restart_finishes_every_record_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServeProcess(data)
    try:
        jid = first.submit({"template": "song-intro", "voice": True, "records": SONGS[:3], "params": FAST})
        for _, event in first.events(jid):
            if event["event"] == "record_complete" and event.get("stage") == "voice":
                first.kill()  # mid-job: one record voiced, the rest not
                break
    finally:
        first.stop()
    second = ServeProcess(data)
    try:
        job = second.wait(jid)
        events = [e for _, e in second.events(jid)]
    finally:
        second.stop()
    assert job["status"] == "completed" and job["attempts"] == 2
    assert [r["id"] for r in job["records"]] == [s["id"] for s in SONGS[:3]] and len(job["files"]) == 3
    done = Counter((e["stage"], e["id"]) for e in events if e["event"] == "record_complete")
    assert len(done) == 2 * 3 and set(done.values()) == {1}  # every record exactly once
    assert any(e["event"] == "record_skipped" for e in events)  # the restart used the ledgers
    out = data / "jobs" / jid / "out"
    for ledger in ("01-script.ledger.jsonl", "02-voice.ledger.jsonl"):
        keys = [orjson.loads(line)["key"] for line in (out / ledger).read_bytes().splitlines() if line.strip()]
        assert len(keys) == len(set(keys)) == 3, ledger
