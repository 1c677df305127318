"""A two-host dialogue voiced offline with the real engines (``--backend auto``: julie on
Kokoro, max on Piper): two voices apart in pitch, turn timings that match the audio (speech
inside each turn, silence in the gaps), valid captions; ``--backend piper`` gives both hosts
one voice, says so once and still voices."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import soundfile as sf
import webvtt

from ai_content_pipeline.audio import measure_loudness
from ai_content_pipeline.templates import load_persona, persona_voice
from ai_content_pipeline.turns import GAP_RANGE
from tests.cli_helpers import run_bin
from tests.e2e.test_persona_voices_e2e import median_f0, needs_kokoro

pytestmark = pytest.mark.e2e

TURNS = [{"speaker": "julie", "text": "Good evening, night owls. Tonight we talk about the tides."},
         {"speaker": "max", "text": "Turn it up! The moon pulls the sea twice a day."}]
RECORD = {"id": "talk-1", "topic": "tides", "script": {
    "text": "\n".join(f"{t['speaker'].title()}: {t['text']}" for t in TURNS), "persona": "julie",
    "persona_voice": persona_voice(load_persona("julie")), "take": 0, "turns": TURNS, "hosts": ["julie", "max"],
    "hosts_voice": {n: persona_voice(load_persona(n)) for n in ("julie", "max")}}}


def _voice(tmp_path, *args: str) -> tuple[dict, str]:
    proc = run_bin("aicp-voice", "--out-dir", str(tmp_path / "audio"), *args, input=orjson.dumps(RECORD) + b"\n",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    return orjson.loads(proc.stdout), proc.stderr.decode()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


@needs_kokoro
def test_a_dialogue_is_voiced_turn_by_turn_with_two_voices(tmp_path) -> None:
    out, err = _voice(tmp_path, "--backend", "auto", "--captions", "vtt")
    audio = out["audio"]
    assert audio["voices"]["julie"]["backend"] == "kokoro" and audio["voices"]["max"]["backend"] == "piper"
    assert "share one voice" not in err
    samples, rate = sf.read(audio["path"], dtype="float32")
    assert abs(len(samples) / rate - audio["seconds"]) < 0.01
    [first, second] = audio["turns"]
    assert [first["speaker"], second["speaker"]] == ["julie", "max"]
    assert abs(second["end"] - audio["seconds"]) < 0.01
    assert GAP_RANGE[0] - 0.002 <= second["start"] - first["end"] <= GAP_RANGE[1] + 0.002
    cut = lambda t: samples[int(t["start"] * rate):int(t["end"] * rate)]  # noqa: E731
    gap = samples[int(first["end"] * rate) + 1:int(second["start"] * rate) - 1]
    assert _rms(gap) < 1e-4 and float(np.max(np.abs(gap))) < 1e-3  # silence between
    for turn in audio["turns"]:  # speech across each turn, not just at one end
        inside = cut(turn)
        thirds = np.array_split(inside, 3)
        assert all(_rms(part) > 0.1 * _rms(inside) for part in thirds), turn
    loud = [measure_loudness(cut(t), rate) for t in audio["turns"]]
    assert abs(loud[0] - loud[1]) < 1.5, loud  # Kokoro and Piper speak at different levels; the hosts do not
    julie, max_ = median_f0(cut(first), rate), median_f0(cut(second), rate)
    assert julie > 1.2 * max_, (julie, max_)  # two voices
    cues = list(webvtt.read(audio["captions"]))
    assert [c.voice for c in cues] == ["Julie", "Max"] and [c.text for c in cues] == [t["text"] for t in TURNS]


def test_one_piper_voice_for_both_hosts_warns_and_still_voices(tmp_path) -> None:
    out, err = _voice(tmp_path, "--backend", "piper")
    assert err.count("hosts share one voice") == 1
    assert len(out["audio"]["turns"]) == 2 and out["audio"]["seconds"] > 2
