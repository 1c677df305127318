"""podcast-dialogue end to end on the embedded models: five topics written turn by turn by
SmolLM2-135M (llama.cpp), then voiced offline (``--backend auto``: sam and julie on Kokoro) into
files with two distinct voices, turn timings that match the audio and captions that parse.

The run is kept short: podcast-dialogue's own prompts and checks with two turns (one line
each) instead of six, so five topics are written and voiced in about a minute."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import soundfile as sf
import webvtt
import yaml

from ai_content_pipeline.templates import load_template
from ai_content_pipeline.turns import GAP_RANGE
from tests.cli_helpers import run_bin
from tests.e2e.test_persona_voices_e2e import APART, median_f0, needs_kokoro

pytestmark = pytest.mark.e2e
TOPICS = [
    {"id": "topic-001", "topic": "How vinyl records made a comeback"},
    {"id": "topic-002", "topic": "Why the three-minute pop song became the standard"},
    {"id": "topic-003", "topic": "How city parks cool down hot summers"},
    {"id": "topic-004", "topic": "Why people still write letters by hand"},
    {"id": "topic-005", "topic": "How lighthouses guided ships before radar"},
]
LABELS = {"sam": "Sam", "julie": "Julie"}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _seconds(stamp: str) -> float:
    """``HH:MM:SS.mmm`` in seconds."""
    h, m, sec = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def _short_podcast_dialogue(tmp_path) -> str:
    """podcast-dialogue as built in, with two turns."""
    data = load_template("podcast-dialogue").model_dump(mode="json", exclude={"source"})
    data.update(turns=2, target_words=30)
    data["checks"]["speakers"] = 1  # one line each
    path = tmp_path / "podcast-dialogue.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@needs_kokoro
def test_five_topics_become_voiced_conversations_with_two_voices_timed_turns_and_captions(tmp_path):
    topics = b"".join(orjson.dumps(t) + b"\n" for t in TOPICS)
    proc = run_bin("aicp-script", "--backend", "llamacpp", "-t", _short_podcast_dialogue(tmp_path),
                   "-p", "sam", "-p", "julie", "--seed", "1", "--stream", input=topics, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()
    scripts = [orjson.loads(line) for line in proc.stdout.splitlines()]
    events = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith(b"{")]
    complete = {e["id"]: e["turns"] for e in events if e["event"] == "record_complete"}
    for rec in scripts:  # written turn by turn: the labels and the alternation hold by construction
        s = rec["script"]
        assert s["hosts"] == ["sam", "julie"] and [t["speaker"] for t in s["turns"]] == ["sam", "julie"], s
        assert s["text"].split("\n") == [f"{LABELS[t['speaker']]}: {t['text']}" for t in s["turns"]]
        assert complete[rec["id"]] == 2 and "stray" not in s["checks"]["failed"], s["checks"]

    check_voiced(proc.stdout, tmp_path)


def check_voiced(scripts: bytes, tmp_path) -> None:
    """``scripts`` (JSON Lines of two-host dialogue records) voiced with ``--backend auto`` and
    captions: two voices, timings that match the audio, captions that parse."""
    proc = run_bin("aicp-voice", "--backend", "auto", "--out-dir", str(tmp_path / "audio"), "--captions", "vtt",
                   input=scripts, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"share one voice" not in proc.stderr
    for rec in (orjson.loads(line) for line in proc.stdout.splitlines()):
        audio, turns = rec["audio"], rec["script"]["turns"]
        assert {v["backend"] for v in audio["voices"].values()} == {"kokoro"}
        samples, rate = sf.read(audio["path"], dtype="float32")
        assert abs(len(samples) / rate - audio["seconds"]) < 0.01
        timed = audio["turns"]
        assert [t["speaker"] for t in timed] == [t["speaker"] for t in turns]
        assert timed[0]["start"] == 0.0 and abs(timed[-1]["end"] - audio["seconds"]) < 0.01
        def cut(t, samples=samples, rate=rate):
            return samples[int(t["start"] * rate):int(t["end"] * rate)]

        for a, b in zip(timed, timed[1:], strict=False):  # silence at the gaps
            assert GAP_RANGE[0] - 0.002 <= b["start"] - a["end"] <= GAP_RANGE[1] + 0.002
            gap = samples[int(a["end"] * rate) + 1:int(b["start"] * rate) - 1]
            assert _rms(gap) < 1e-4 and float(np.max(np.abs(gap))) < 1e-3, (rec["id"], a, b)
        for turn in timed:  # speech inside each turn, not just at one end
            inside = cut(turn)
            assert all(_rms(part) > 0.1 * _rms(inside) for part in np.array_split(inside, 3)), (rec["id"], turn)
        sam, julie = (median_f0(np.concatenate([cut(t) for t in timed if t["speaker"] == who]), rate)
                      for who in ("sam", "julie"))
        assert julie > APART * sam, (rec["id"], sam, julie)  # two distinct voices
        cues = list(webvtt.read(audio["captions"]))
        assert [c.voice for c in cues] == [LABELS[t["speaker"]] for t in turns]
        assert [c.text for c in cues] == [t["text"] for t in turns]
        assert all(abs(_seconds(c.start) - t["start"]) < 0.01 for c, t in zip(cues, timed, strict=True))
