"""A record's carried persona voice (``script.persona_voice``) voiced with the bundled Piper voice."""

from __future__ import annotations

import json
from pathlib import Path

from ai_content_pipeline.cli.voice import voice_command
from tests.cli_helpers import invoke


def test_a_speaker_the_voice_lacks_is_an_error_record_not_the_default_speaker(tmp_path: Path) -> None:
    # piper drops speaker_id on a one-speaker voice: a record asking for speaker 7 must not be
    # voiced with the only speaker, silently (exit 0)
    records = [{"id": "s7", "script": {"text": "Hi.", "persona": "julie",
                                       "persona_voice": {"piper": {"speaker_id": 7}}}},
               {"id": "s0", "script": {"text": "Hi.", "persona": "julie",
                                       "persona_voice": {"piper": {"speaker_id": 0}}}}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    r = invoke(voice_command, "aicp-voice", ["--backend", "piper", "-o", str(tmp_path / "out"), str(src)])
    assert r.exit_code == 3, r.stderr
    out = {rec["id"]: rec for rec in map(json.loads, r.stdout.splitlines())}
    assert "speaker_id 7" in out["s7"]["error"]["message"] and "audio" not in out["s7"]
    assert out["s0"]["audio"]["seconds"] > 0
    assert not (tmp_path / "out" / "s7_julie.wav").exists()
