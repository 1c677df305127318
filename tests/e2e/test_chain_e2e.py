"""`aicp run-chain` end to end on the real embedded models: SmolLM2-135M (llama.cpp), then Piper."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import orjson
import pytest
import soundfile as sf

from tests.chain_doubles import write_chain
from tests.cli_helpers import BIN

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
AICP = os.path.join(BIN, "aicp")
# keep it short on 2 CPU cores: small replies, fixed seed
FAST = ["--set", "steps.0.params.max_tokens=60", "--set", "steps.0.params.seed=11"]


def _events(stderr: bytes) -> list[dict]:
    return [orjson.loads(line) for line in stderr.splitlines()]


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_radio_intros_example(tmp_path: Path) -> None:
    out = tmp_path / "radio"
    proc = subprocess.run([AICP, "run-chain", "--config", "examples/radio-intros.yaml", "--stream",
                           "--set", f"output_dir={out}", "--set", "steps.0.params.max_tokens=60"],
                          cwd=ROOT, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result = orjson.loads(proc.stdout)
    assert result["success"] is True and result["records"]["completed"] == 4
    assert result["outputs"]["final"]["path"] == str(out / "02-voice.jsonl")

    events = _events(proc.stderr)
    models = [(e["event"], e["backend"]) for e in events if e["event"] in ("model_load", "model_unload")]
    assert models == [("model_load", "llamacpp"), ("model_unload", "llamacpp"),
                      ("model_load", "kokoro"), ("model_unload", "kokoro")]  # julie speaks with Kokoro

    records = _records(out / "02-voice.jsonl")
    assert [r["id"] for r in records] == ["song-001", "song-002", "song-003", "song-004"]
    for rec in records:
        assert rec["script"]["backend"] == "llamacpp" and rec["script"]["persona"] == "julie"
        audio = rec["audio"]
        assert audio["backend"] == "kokoro" and Path(audio["path"]).parent == out / "audio"
        info = sf.info(audio["path"])
        assert info.samplerate == audio["sample_rate"] and info.duration > 1.0
    assert result["audio_seconds"] == pytest.approx(sum(r["audio"]["seconds"] for r in records), abs=0.01)


def test_killed_in_the_voice_step_then_resumed(tmp_path: Path) -> None:
    write_chain(tmp_path)  # 3 songs, script → voice, output in tmp_path/out
    cmd = [AICP, "run-chain", "--config", "pipeline.yaml", "--stream", *FAST]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            event = orjson.loads(raw)
            if event["event"] == "record_complete" and event.get("stage") == "voice":
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "the chain ended before it could be killed"
    assert (tmp_path / "out/01-script.jsonl").is_file()
    assert not (tmp_path / "out/02-voice.jsonl").exists()

    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    events = _events(done.stderr)
    assert [e["backend"] for e in events if e["event"] == "model_load"] == ["kokoro"]  # no LLM again
    skipped = [e for e in events if e["event"] == "record_skipped"]
    assert sum(e.get("stage") == "script" for e in skipped) == 3
    assert sum(e.get("stage") == "voice" for e in skipped) >= 1

    records = _records(tmp_path / "out/02-voice.jsonl")
    assert sorted(r["id"] for r in records) == ["s1", "s2", "s3"]
    files = sorted((tmp_path / "out/audio").iterdir())
    assert [p.name for p in files] == sorted(Path(r["audio"]["path"]).name for r in records)
    for path in files:  # every file complete and readable
        assert sf.info(str(path)).frames > 0
