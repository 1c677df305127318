"""aicp-voice end to end with the real embedded Piper voice (en_US-joe-medium)."""

from __future__ import annotations

import numpy as np
import orjson
import pyloudnorm
import pytest
import soundfile as sf

from ai_content_pipeline.audio import duration_bounds
from tests.cli_helpers import run_bin

pytestmark = pytest.mark.e2e

# What aicp-script writes for examples/songs.jsonl, with fixed texts so the test is repeatable.
SCRIPTS = [
    {"id": "song-001", "artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975,
     "script": {"text": "Good evening, night owls. Here is Queen with Bohemian Rhapsody. Stay cozy.",
                "persona": "julie", "take": 0}},
    {"id": "song-002", "artist": "Fleetwood Mac", "title": "Dreams", "year": 1977,
     "script": {"text": "Turn it up! Fleetwood Mac, Dreams, from Rumours. Wake up and rock out!",
                "persona": "max", "take": 0}},
    {"id": "song-003", "artist": "Michael Jackson", "title": "Billie Jean", "year": 1982,
     "script": {"text": "Here's the story: Billie Jean, from Thriller, and that bass line.",
                "persona": "sam", "take": 1}},
]


def test_piper_voices_script_records(tmp_path) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in SCRIPTS)
    out_dir = tmp_path / "audio"
    ledger = tmp_path / "voice.ledger"
    args = ["--backend", "piper", "--out-dir", str(out_dir), "--sample-rate", "24000",
            "--checkpoint", str(ledger), "--stream"]
    proc = run_bin("aicp-voice", *args, input=data, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in out] == ["song-001", "song-002", "song-003"]
    assert [r["audio"]["path"].rsplit("/", 1)[1] for r in out] == [
        "song-001_julie_0.wav", "song-002_max_0.wav", "song-003_sam_1.wav"]
    for before, rec in zip(SCRIPTS, out, strict=True):
        assert {k: v for k, v in rec.items() if k != "audio"} == before
        audio = rec["audio"]
        samples, rate = sf.read(audio["path"])
        assert rate == 24000 == audio["sample_rate"] and samples.ndim == 1
        seconds = len(samples) / rate
        low, high = duration_bounds(len(before["script"]["text"].split()))
        assert low <= seconds <= high and abs(seconds - audio["seconds"]) < 0.01
        assert np.sqrt(np.mean(samples**2)) > 0.01  # not silent
        assert 20 * np.log10(np.max(np.abs(samples))) <= -0.99
        loudness = pyloudnorm.Meter(rate).integrated_loudness(samples)
        assert abs(loudness - -16.0) <= 1.0
        assert audio["backend"] == "piper" and audio["voice"] == "en_US-joe-medium"
        assert audio["rtf"] > 0 and audio["chunks"] == 1
    events = [orjson.loads(line)["event"] for line in proc.stderr.splitlines()]
    assert events.count("model_load") == 1 and events.count("model_unload") == 1

    again = run_bin("aicp-voice", *args, "--resume", input=data, timeout=120)
    assert again.returncode == 0
    assert all(orjson.loads(line)["audio"]["skipped"] for line in again.stdout.splitlines())
    assert b"model_load" not in again.stderr
