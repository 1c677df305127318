"""A run never replaces a file it did not write in this run (an earlier run's audio, step
records or long-form work files) unless ``--overwrite``: it stops with exit 2 naming the first
such file, before any model loads. ``--resume`` keeps what the ledger vouches for, as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ai_content_pipeline.chain import runner as chain_runner
from ai_content_pipeline.chain.runner import run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.stages.commands import run_script
from ai_content_pipeline.stages.script import ScriptOptions
from tests.chain_doubles import FakeFactory, SlowTTS, write_chain
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter, SpeechTTS

SCRIPTS = b"".join(orjson.dumps(r) + b"\n" for r in [
    {"id": "s1", "script": {"text": "Good evening, night owls. Here is Queen.", "persona": "julie", "take": 0}},
    {"id": "s2", "script": {"text": "Turn it up! This is Max with Dreams.", "persona": "max", "take": 0}},
])


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def voice(monkeypatch: pytest.MonkeyPatch, tts: Any, *args: str, input: bytes = SCRIPTS) -> Any:
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    return invoke(voice_cli.voice_command, "aicp-voice", list(args), input)


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_aicp_voice_again_into_the_same_out_dir_stops_before_the_model_loads(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str) -> None:
    out = tmp_path / "audio"
    src = tmp_path / "in.jsonl"
    src.write_bytes(SCRIPTS)
    files = [str(src)] if source == "file" else []
    first = voice(monkeypatch, SpeechTTS(), "--out-dir", str(out), *files)
    assert first.exit_code == 0, first.stderr
    before = contents(out)
    tts = SpeechTTS()
    again = voice(monkeypatch, tts, "--out-dir", str(out), *files)
    assert again.exit_code == 2 and again.stdout == ""
    assert f"audio file {out / 's1_julie_0.wav'} exists" in again.stderr and "--overwrite" in again.stderr
    assert tts.loads == 0 and contents(out) == before


def test_aicp_voice_overwrite_replaces_and_resume_keeps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out, ledger = tmp_path / "audio", tmp_path / "voice.ledger"
    assert voice(monkeypatch, SpeechTTS(), "--out-dir", str(out), "--checkpoint", str(ledger)).exit_code == 0
    tts = SpeechTTS()
    resumed = voice(monkeypatch, tts, "--out-dir", str(out), "--checkpoint", str(ledger), "--resume")
    assert resumed.exit_code == 0 and tts.loads == 0
    assert all(orjson.loads(line)["audio"]["skipped"] for line in resumed.stdout.splitlines())
    tts = SpeechTTS()
    replaced = voice(monkeypatch, tts, "--out-dir", str(out), "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert tts.loads == 1 and sorted(contents(out)) == ["s1_julie_0.wav", "s2_max_0.wav"]


def test_another_runs_files_that_this_run_does_not_write_are_no_obstacle(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "audio"
    out.mkdir()
    (out / "s9_julie_0.wav").write_bytes(b"another batch")
    assert voice(monkeypatch, SpeechTTS(), "--out-dir", str(out)).exit_code == 0
    assert (out / "s9_julie_0.wav").read_bytes() == b"another batch"


def test_run_chain_again_into_the_same_output_dir_stops_naming_the_step_records(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = str(write_chain(tmp_path))
    monkeypatch.setattr(chain_runner, "create_backend", FakeFactory())
    assert invoke(cli, "aicp", ["run-chain", "--config", config, "-q"]).exit_code == 0
    before = contents(tmp_path / "out")
    factory = FakeFactory()
    monkeypatch.setattr(chain_runner, "create_backend", factory)
    again = invoke(cli, "aicp", ["run-chain", "--config", config, "-q"])
    assert again.exit_code == 2 and factory.built == [] and factory.llm.loads == 0
    assert f"step records {tmp_path / 'out' / '01-script.jsonl'} exists" in again.stderr
    assert orjson.loads(again.stdout)["error"]["type"] == "OverwriteRefused"
    assert contents(tmp_path / "out") == before
    for flag in ("--overwrite", "--resume"):
        monkeypatch.setattr(chain_runner, "create_backend", FakeFactory())
        res = invoke(cli, "aicp", ["run-chain", "--config", config, "-q", flag])
        assert res.exit_code == 0, (flag, res.stderr)


def test_a_chains_voice_step_stops_before_its_model_loads_on_an_earlier_runs_audio(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    audio = Path(spec.output_dir) / "audio"
    audio.mkdir(parents=True)
    (audio / "s2_julie_0.wav").write_bytes(b"an earlier run's intro")
    factory = FakeFactory(tts=SlowTTS())
    outcome = run_chain(spec, emitter=RecordingEmitter(), backend_factory=factory)
    assert outcome.error is not None and outcome.exit_status == 2
    assert f"{audio / 's2_julie_0.wav'} exists" in outcome.error.message
    assert "load" not in factory.tts.events and (audio / "s2_julie_0.wav").read_bytes() == b"an earlier run's intro"
    assert run_chain(load_chain(str(write_chain(tmp_path))), backend_factory=FakeFactory(),
                     overwrite=True).error is None


def test_a_long_form_run_stops_on_an_earlier_runs_work_files_before_the_model(tmp_path: Path) -> None:
    src = tmp_path / "topics.jsonl"
    src.write_bytes(orjson.dumps({"id": "ep1", "topic": "Vinyl", "notes": "sales grew"}) + b"\n")
    work = tmp_path / "work"
    (work / "ep1").mkdir(parents=True)
    (work / "ep1" / "script.txt").write_text("an earlier run's script", encoding="utf-8")
    llm, emitter = FakeLLM(), RecordingEmitter()
    options = ScriptOptions(template="podcast-longform", words=300, work_dir=str(work))
    with pytest.raises(UsageError, match=r"long-form work file .*script\.txt exists"):
        run_script([str(src)], options, backend=llm, emitter=emitter, write=[].append)
    assert llm.loads == 0 and "model_load" not in emitter.names()
    assert (work / "ep1" / "script.txt").read_text(encoding="utf-8") == "an earlier run's script"


def test_aicp_script_has_overwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    res = invoke(script_cli.script_command, "aicp-script", ["--help"])
    assert "--overwrite" in res.stdout
