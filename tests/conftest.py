"""Shared fixtures; the test doubles themselves are in tests/doubles.py."""

from __future__ import annotations

import os

import pytest

from tests.doubles import FakeLLM, FakeTTS, RecordingEmitter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.fixture(autouse=True)
def _no_real_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `auto` at a closed port so no test ever talks to a real Ollama by accident."""
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    monkeypatch.delenv("AICP_OLLAMA_MODEL", raising=False)


@pytest.fixture(autouse=True)
def _own_user_folder(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test gets an empty user folder (AICP_HOME) and no take log: the developer's own
    templates and personas in ~/.config/aicp never change what a test sees."""
    monkeypatch.setenv("AICP_HOME", str(tmp_path_factory.mktemp("aicp-home")))
    monkeypatch.delenv("AICP_LOG_DB", raising=False)  # nor does their take log get test takes


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def fake_tts() -> FakeTTS:
    return FakeTTS()


@pytest.fixture
def emitter() -> RecordingEmitter:
    return RecordingEmitter()

