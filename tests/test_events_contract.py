"""The --stream event contract of `aicp run-chain`, checked on a real process (backend doubles).

Every stderr line is one JSON event with schema_version "1", event, timestamp and
elapsed_seconds (never decreasing); stdout carries only pipeline_complete; the
README's jq one-liners run as written.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline.events import StreamEmitter
from tests.chain_doubles import write_chain

ROOT = Path(__file__).resolve().parents[1]
COMMON = ("schema_version", "event", "timestamp", "elapsed_seconds")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9")
    env.update(extra)
    return env


def run_chain_proc(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "tests.chain_doubles", "run-chain", "--config", "pipeline.yaml", *args]
    return subprocess.run(cmd, cwd=tmp, env=_env(**env), capture_output=True, timeout=120)


@pytest.fixture
def chain_dir(tmp_path: Path) -> Path:
    write_chain(tmp_path, prices={"per_1k_tokens": 1.5, "per_audio_minute": 0.25})
    return tmp_path


def test_disabled_emitter_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    em = StreamEmitter(enabled=False)
    em.pipeline_start("x", 2, {})
    em.step_start(1, "script", "m")
    em.step_error(1, "boom", "script")
    em.progress(3, 1, 0, 0)
    em.pipeline_complete({"success": True})
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_stream_contract(chain_dir: Path) -> None:
    proc = run_chain_proc(chain_dir, "--stream")
    assert proc.returncode == 0, proc.stderr.decode()
    out_lines = proc.stdout.decode().splitlines()
    assert len(out_lines) == 1
    final = orjson.loads(out_lines[0])
    assert final["event"] == "pipeline_complete"
    for key in ("success", "steps_completed", "total_steps", "total_cost", "total_time", "outputs",
                "error", "records", "tokens", "audio_seconds", *COMMON):
        assert key in final, key

    events = [orjson.loads(line) for line in proc.stderr.decode().splitlines()]  # each line is JSON
    assert events, "no events on stderr"
    for ev in events:
        assert all(k in ev for k in COMMON) and ev["schema_version"] == "1"
        assert isinstance(ev["timestamp"], float) and isinstance(ev["elapsed_seconds"], (int, float))
    elapsed = [ev["elapsed_seconds"] for ev in events] + [final["elapsed_seconds"]]
    assert elapsed == sorted(elapsed)

    names = [ev["event"] for ev in events]
    assert names[0] == "pipeline_start"
    start = events[0]
    assert start["name"] == "test-chain" and start["total_steps"] == 2 and start["config"]["steps"]
    step_starts = [ev for ev in events if ev["event"] == "step_start"]
    assert [(e["step"], e["type"], e["model"]) for e in step_starts] == [(1, "script", "fake-model"),
                                                                        (2, "voice", "fake-voice")]
    completes = [ev for ev in events if ev["event"] == "step_complete"]
    assert [c["step"] for c in completes] == [1, 2]
    assert all({"cost", "output", "duration_seconds"} <= set(c) for c in completes)
    assert final["total_cost"] == pytest.approx(sum(c["cost"] for c in completes), abs=1e-5)
    assert completes[0]["cost"] > 0 and completes[1]["cost"] > 0
    for stage_event in ("record_start", "record_complete", "progress", "model_load", "model_unload"):
        assert stage_event in names
    # every record, model, progress and chunk event carries the number of its step
    current = None
    stage_events = 0
    for ev in events:
        if ev["event"] == "step_start":
            current = ev["step"]
        elif ev["event"] == "progress" or ev["event"].startswith(("record_", "model_", "chunk_")):
            assert ev.get("step") == current, ev
            stage_events += 1
    assert stage_events > 8
    # the LLM is gone before the TTS loads
    loads = [i for i, ev in enumerate(events) if ev["event"] == "model_load"]
    unloads = [i for i, ev in enumerate(events) if ev["event"] == "model_unload"]
    assert events[unloads[0]]["backend"] == "fake" and events[loads[1]]["backend"] == "fake-tts"
    assert unloads[0] < names.index("step_complete") < loads[1]


def test_a_notice_sent_by_a_step_carries_its_number() -> None:
    from ai_content_pipeline.events import StepEmitter

    out = io.StringIO()
    inner = StreamEmitter(enabled=True, stream=out)
    StepEmitter(inner, 2).message("backend auto: using piper for speech")
    inner.message("between steps")
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "message" and first["step"] == 2 and "step" not in second


def test_step_error_carries_the_message(chain_dir: Path) -> None:
    proc = run_chain_proc(chain_dir, "--stream", "--set", "on_error=stop", AICP_FAKE_FAIL="Dreams")
    assert proc.returncode == 1
    events = [orjson.loads(line) for line in proc.stderr.decode().splitlines()]
    errors = [ev for ev in events if ev["event"] == "step_error"]
    assert len(errors) == 1 and errors[0]["step"] == 1 and errors[0]["type"] == "script"
    assert "forced failure" in errors[0]["error"]
    final = orjson.loads(proc.stdout)
    assert final["success"] is False and "forced failure" in final["error"]["message"]


def test_without_stream_nothing_but_the_result(chain_dir: Path) -> None:
    proc = run_chain_proc(chain_dir)
    assert proc.returncode == 0
    assert orjson.loads(proc.stdout)["event"] == "pipeline_complete"
    assert b'"event"' not in proc.stderr


JQ = shutil.which("jq") or ("/usr/bin/jq" if os.path.exists("/usr/bin/jq") else None)
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: The README's runnable chain block: a run with `2>progress.jsonl`, then jq lines over that log,
#: read from README.md itself (so a change there is tested). Run here on the chain double.
CHAIN = "examples/radio-intros.yaml"
_BLOCK = next(block for block in README.split("```bash\n")[1:]
              if f"aicp run-chain --config {CHAIN} --stream 2>progress.jsonl | jq" in block).split("```")[0]
SHELL_LINES = [line for line in _BLOCK.splitlines()
               if line.startswith(f"aicp run-chain --config {CHAIN} --stream 2>progress.jsonl")
               or (line.startswith("jq -r") and "progress.jsonl" in line and ".step" in line)]


def test_readme_has_the_three_jq_lines() -> None:
    assert len(SHELL_LINES) == 3, SHELL_LINES
    assert 'step \\(.step // "N/A")' in SHELL_LINES[1]


@pytest.mark.skipif(JQ is None, reason="jq is not installed")
def test_readme_jq_lines_run_as_written(chain_dir: Path) -> None:
    outs = []
    for line in SHELL_LINES:  # in order: the later lines read the first one's progress.jsonl
        line = line.replace(CHAIN, "pipeline.yaml")  # the chain double's file
        script = f'set -o pipefail\naicp() {{ "{sys.executable}" -m tests.chain_doubles "$@"; }}\n{line}\n'
        proc = subprocess.run(["bash", "-c", script], cwd=chain_dir, env=_env(), capture_output=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        outs.append(proc.stdout.decode())
    final_path = str(chain_dir / "out/02-voice.jsonl")
    assert outs[0] == final_path + "\n" and Path(final_path).is_file()
    progress = (chain_dir / "progress.jsonl").read_bytes().splitlines()
    assert progress and all(orjson.loads(x)["schema_version"] == "1" for x in progress)
    lines = outs[1].splitlines()
    assert lines[0].endswith("] pipeline_start: step N/A") and lines[0].startswith("[")
    assert any(x.endswith("step_complete: step 2") for x in lines)
    # every event of a step carries its number: none of them prints N/A
    step_events = [x for x in lines if any(f"] {name}" in x for name in (
        "record_", "model_", "progress", "chunk_"))]
    assert len(step_events) > 8
    assert all(x.endswith(("step 1", "step 2")) for x in step_events), step_events
    assert not any("pipeline_complete" in x for x in lines)
    lines = outs[2].splitlines()
    assert len(lines) == 2 and lines[0].startswith("Step 1: $0.") and lines[1].startswith("Step 2: $0.")
