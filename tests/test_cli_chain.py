"""`aicp run-chain` through the real entry (run_cli) with backend doubles: stdout, stderr, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from ai_content_pipeline.chain import runner
from ai_content_pipeline.cli.errors import run_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.errors import BackendUnavailable
from tests.chain_doubles import FakeFactory, write_chain
from tests.doubles import FakeLLM


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> FakeFactory:
    fake = FakeFactory()
    monkeypatch.setattr(runner, "create_backend", fake)
    return fake


def invoke(args: list[str], input: str | None = None) -> tuple[int, str, str]:
    with CliRunner().isolation(input=input) as (out, err, _):
        code = run_cli(cli, "aicp", args)
        sys.stdout.flush()
        sys.stderr.flush()
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_run_prints_one_json_result_on_stdout(tmp_path: Path, factory: FakeFactory) -> None:
    code, out, err = invoke(["run-chain", "--config", str(write_chain(tmp_path))])
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    result = orjson.loads(lines[0])
    assert result["event"] == "pipeline_complete" and result["success"] is True
    assert result["outputs"]["final"]["path"] == str(tmp_path / "out/02-voice.jsonl")
    assert "{" not in err  # no events without --stream (stderr is not a terminal here)


def test_stream_puts_events_on_stderr_and_only_the_result_on_stdout(tmp_path: Path, factory: FakeFactory) -> None:
    code, out, err = invoke(["run-chain", "--config", str(write_chain(tmp_path)), "--stream"])
    assert code == 0
    assert [orjson.loads(x)["event"] for x in out.splitlines()] == ["pipeline_complete"]
    events = [orjson.loads(x) for x in err.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "pipeline_start" and "pipeline_complete" not in names
    assert names.count("step_start") == names.count("step_complete") == 2


def test_dry_run_builds_no_backend(tmp_path: Path, factory: FakeFactory) -> None:
    code, out, err = invoke(["run-chain", "-c", str(write_chain(tmp_path)), "--dry-run",
                             "--set", "steps.0.persona=max"])
    assert code == 0, err
    plan = orjson.loads(out)
    assert plan["dry_run"] is True and plan["records"] == 3
    assert plan["steps"][0]["persona"] == "max" and plan["steps"][0]["resolved_backend"] == "llamacpp"
    assert factory.built == [] and not (tmp_path / "out").exists()


def test_config_error_exits_2_with_path_and_line(tmp_path: Path, factory: FakeFactory) -> None:
    path = write_chain(tmp_path)
    path.write_text(path.read_text().replace("persona: julie", "persona: bob"))
    code, out, err = invoke(["run-chain", "--config", str(path)])
    assert code == 2 and out == ""
    assert f"aicp run-chain: error: {path}:" in err and "steps.0.persona: unknown persona 'bob'" in err
    assert "aicp run-chain: hint: choose one of:" in err and "Traceback" not in err


def test_config_from_stdin(tmp_path: Path, factory: FakeFactory) -> None:
    text = write_chain(tmp_path).read_text()
    code, out, _ = invoke(["run-chain", "--config", "-", "--set", "steps.1.enabled=false"], input=text)
    assert code == 0
    assert orjson.loads(out)["outputs"]["final"]["type"] == "script"


def test_chain_and_input_both_on_stdin_is_a_usage_error(tmp_path: Path, factory: FakeFactory) -> None:
    text = write_chain(tmp_path, input="-").read_text()
    code, out, err = invoke(["run-chain", "--config", "-"], input=text)
    assert code == 2 and "cannot both come from stdin" in err


def test_input_from_stdin(tmp_path: Path, factory: FakeFactory) -> None:
    path = write_chain(tmp_path, input="-")
    songs = (tmp_path / "songs.jsonl").read_text()
    code, out, _ = invoke(["run-chain", "--config", str(path)], input=songs)
    assert code == 0
    assert orjson.loads(out)["records"]["completed"] == 3


def test_failed_records_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "create_backend", FakeFactory(FakeLLM(fail_on=("Dreams",))))
    code, out, _ = invoke(["run-chain", "--config", str(write_chain(tmp_path))])
    assert code == 3
    assert orjson.loads(out)["records"]["failed"] == 1


def test_unavailable_backend_exits_4_and_still_prints_the_result(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def down(step: Any, notice: Any) -> Any:
        raise BackendUnavailable("cannot reach Ollama", hint="is `ollama serve` running?")

    monkeypatch.setattr(runner, "create_backend", down)
    code, out, err = invoke(["run-chain", "--config", str(write_chain(tmp_path))])
    assert code == 4
    result = orjson.loads(out)
    assert result["success"] is False and result["error"]["type"] == "BackendUnavailable"
    assert "aicp run-chain: error: cannot reach Ollama" in err and "aicp run-chain: hint: is `ollama serve` running?" in err


def test_resume_flag_reaches_the_runner(tmp_path: Path, factory: FakeFactory) -> None:
    path = str(write_chain(tmp_path))
    assert invoke(["run-chain", "--config", path])[0] == 0
    code, out, _ = invoke(["run-chain", "--config", path, "--resume"])
    assert code == 0 and orjson.loads(out)["records"]["skipped"] == 3


def test_help_lists_exit_codes_and_examples() -> None:
    code, out, _ = invoke(["run-chain", "--help"])
    assert code == 0
    assert "--dry-run" in out and "--set KEY.PATH=VALUE" in out and "Exit status" in out
    assert "jq -r '.outputs.final.path'" in out


def test_sigkill_in_the_voice_step_then_resume(tmp_path: Path) -> None:
    """A chain killed mid-voice finishes on --resume: each record once, script step not rerun."""
    import os
    import signal
    import subprocess

    root = Path(__file__).resolve().parents[1]
    write_chain(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(root), OLLAMA_HOST="http://127.0.0.1:9", AICP_FAKE_DELAY="0.5")
    cmd = [sys.executable, "-m", "tests.chain_doubles", "run-chain", "--config", "pipeline.yaml", "--stream"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            event = orjson.loads(raw)
            if event["event"] == "record_complete" and event.get("stage") == "voice":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out/02-voice.jsonl").exists()

    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    events = [orjson.loads(x) for x in done.stderr.splitlines()]
    step1 = [e for e in events if e.get("step") == 1 or e.get("stage") == "script"]
    assert not any(e["event"] in ("record_start", "record_complete") for e in step1)
    loads = [e["backend"] for e in events if e["event"] == "model_load"]
    assert loads == ["fake-tts"]  # the LLM was never loaded again
    skipped_voice = [e for e in events if e["event"] == "record_skipped" and e.get("stage") == "voice"]
    assert len(skipped_voice) >= 1

    records = [orjson.loads(x) for x in (tmp_path / "out/02-voice.jsonl").read_bytes().splitlines()]
    assert sorted(r["id"] for r in records) == ["s1", "s2", "s3"]
    files = sorted(p.name for p in (tmp_path / "out/audio").iterdir())
    assert files == sorted(Path(r["audio"]["path"]).name for r in records)  # no partial or stray file


@pytest.mark.parametrize("stream", [False, True])
def test_an_output_dir_error_is_said_once(tmp_path: Path, factory: FakeFactory, stream: bool) -> None:
    """An output_dir that cannot be used stops the chain before its first step; the error is
    reported by the one error handler only (a line, or one ``error`` event)."""
    (tmp_path / "taken").write_text("a file")
    for folder in ("taken", "taken/sub"):
        path = write_chain(tmp_path, output_dir=str(tmp_path / folder))
        code, out, err = invoke(["run-chain", "--config", str(path), *(["--stream"] if stream else [])])
        assert code == 2 and orjson.loads(out)["error"]["stage"] == "chain"
        if stream:
            events = [orjson.loads(line) for line in err.splitlines()]
            said = [e for e in events if "output_dir" in str(e.get("message", ""))]
            assert [e["event"] for e in said] == ["error"], events
        else:
            assert len(err.splitlines()) == 1 and err.startswith("aicp run-chain: error: ") and "output_dir" in err
    assert factory.built == []
