"""Files a user already has are never replaced or changed behind their back: an output or a
checkpoint named on the command line that holds something else stops the command (exit 2,
naming it) before any work, unless the user says to replace it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke
from tests.doubles import SpeechTTS

SCRIPTS = orjson.dumps({"id": "s1", "script": {"text": "Good evening.", "persona": "julie", "take": 0}}) + b"\n"


def _shards(tmp_path: Path) -> list[str]:
    paths = []
    for k in range(2):
        tag = {"shard": f"{k}/2", "line": k, "seq": 0, "end": {"lines": 2, "counts": [1, 1]}}
        path = tmp_path / f"s{k}.jsonl"
        path.write_bytes(orjson.dumps({"id": k, "_aicp": tag}) + b"\n")
        paths.append(str(path))
    return paths


def test_merge_does_not_replace_a_file_the_user_already_has(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my own notes\n")
    result = invoke(cli, "aicp", ["merge", "-o", str(notes), *_shards(tmp_path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert str(notes) in result.stderr and "--overwrite" in result.stderr
    assert notes.read_text() == "my own notes\n"
    replaced = invoke(cli, "aicp", ["merge", "--overwrite", "-o", str(notes), *_shards(tmp_path)])
    assert replaced.exit_code == 0 and notes.read_text().count("\n") == 2


def test_a_checkpoint_that_is_not_a_ledger_is_refused_before_any_work(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my own notes\n")
    tts = SpeechTTS()
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    result = invoke(voice_cli.voice_command, "aicp-voice",
                    ["--out-dir", str(tmp_path / "audio"), "--checkpoint", str(notes)], SCRIPTS)
    assert result.exit_code == 2 and result.stdout == ""
    assert str(notes) in result.stderr
    assert tts.loads == 0 and notes.read_text() == "my own notes\n"
