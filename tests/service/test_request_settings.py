"""A request's backend settings: checked against the chosen backend's settings like a chain
step's, named by the request field; those only the operator may set (files, folders, servers)
are refused whichever way they come."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ai_content_pipeline.service.requests import (
    GenerateRequest,
    RequestProblem,
    build_chain,
    validate_chain,
)

SONGS = [{"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody"}]


def _check(tmp_path: Path, **body: Any) -> dict[str, Any]:
    (tmp_path / "in.jsonl").write_text("{}\n")
    chain, _, where = build_chain(GenerateRequest.model_validate({"records": SONGS, **body}))
    return validate_chain(chain, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), where)


def test_settings_reach_the_steps_checked_by_the_chosen_backend(tmp_path: Path) -> None:
    steps = _check(tmp_path, backend="ollama", backend_settings={"timeout": 60, "keep_alive": "5m"}, voice=True,
                   voice_backend="chatterbox", voice_settings={"exaggeration": 0.7})["steps"]
    assert (steps[0]["timeout"], steps[0]["keep_alive"], steps[1]["exaggeration"]) == (60, "5m", 0.7)


@pytest.mark.parametrize("body, field, words", [
    ({"backend": "ollama", "backend_settings": {"timeout": 0}}, "backend_settings.timeout", "ollama: "),
    ({"backend": "ollama", "backend_settings": {"threads": 2}}, "backend_settings.threads",
     "the LLM backend 'ollama' has no setting 'threads'"),
    ({"backend_settings": {"model": "/etc/passwd"}}, "backend_settings.model", "no LLM backend has a setting"),
    ({"backend_settings": {"host": "http://evil:11434"}}, "backend_settings.host", "set by the server's operator"),
    ({"voice": True, "voice_settings": {"checkpoint_dir": "/"}}, "voice_settings.checkpoint_dir",
     "set by the server's operator"),
    ({"voice": True, "voice_settings": {"voice": "/etc/passwd"}}, "voice_settings.voice", "not a setting"),
    ({"voice": True, "voice_backend": "piper", "voice_settings": {"device": "cuda"}}, "voice_settings.device",
     "the TTS backend 'piper' has no setting 'device'"),
])
def test_a_wrong_setting_is_refused_naming_the_field(tmp_path: Path, body: dict[str, Any], field: str,
                                                     words: str) -> None:
    with pytest.raises(RequestProblem) as info:
        _check(tmp_path, **body)
    assert info.value.field == field and words in info.value.message


def test_a_chain_step_may_not_set_what_the_operator_sets(tmp_path: Path) -> None:
    for key, value in (("checkpoint_dir", "/models"), ("host", "http://evil")):
        step = {"type": "voice" if key == "checkpoint_dir" else "script", key: value}
        with pytest.raises(RequestProblem, match=f"chain.steps.0.{key}: is set by the server's operator"):
            _check(tmp_path, chain={"steps": [step]})
