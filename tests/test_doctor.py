"""`aicp doctor`: the JSON report, hints for missing pieces, no engine imports, exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline import doctor
from ai_content_pipeline.cli.errors import run_cli
from ai_content_pipeline.cli.main import cli
from tests.ollama_server import OllamaServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ollama_host() -> Iterator[str]:
    with OllamaServer(models=("llama3.2", "qwen2.5:7b")) as server:
        yield server.url


def test_report_shape_and_hints_without_ollama() -> None:
    report = doctor.run_doctor()
    assert set(report["checks"]) == {"ollama", "llamacpp", "bundled_model", "piper", "chatterbox", "cuda"}
    for name, check in report["checks"].items():
        assert isinstance(check["ok"], bool)
        assert check["ok"] or check["hint"], f"{name} is missing without a fix-it hint"
    assert report["checks"]["ollama"]["ok"] is False and "ollama serve" in report["checks"]["ollama"]["hint"]
    assert "ollama" not in report["usable"]["llm"]


def test_ollama_models_are_listed(ollama_host: str) -> None:
    check = doctor.check_ollama(ollama_host)
    assert check["ok"] is True and check["models"] == ["llama3.2", "qwen2.5:7b"]
    assert check["default_model_present"] is True and "hint" not in check


def test_missing_default_model_gets_a_pull_hint(ollama_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICP_OLLAMA_MODEL", "mistral")
    check = doctor.check_ollama(ollama_host)
    assert check["ok"] is True and "ollama pull mistral" in check["hint"]


def test_missing_packages_get_install_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "_installed", lambda module, dist: (False, None))
    for check, words in ((doctor.check_llamacpp(), "pip install llama-cpp-python"),
                         (doctor.check_piper(), "pip install piper-tts"),
                         (doctor.check_chatterbox(), "ai_content_pipeline[chatterbox]"),
                         (doctor.check_cuda(), "torch")):
        assert check["ok"] is False and words in check["hint"]


def test_nothing_usable_exits_4(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(doctor, "_installed", lambda module, dist: (False, None))
    code = run_cli(cli, "aicp", ["doctor"])
    report = orjson.loads(capsys.readouterr().out)
    assert code == 4 and report["ok"] is False and report["usable"] == {"llm": [], "tts": []}


def test_cli_prints_one_json_object_and_imports_no_engine(ollama_host: str) -> None:
    code = ("import sys; from ai_content_pipeline.cli.errors import run_cli; "
            "from ai_content_pipeline.cli.main import cli; rc = run_cli(cli, 'aicp', ['doctor', '--host', "
            f"'{ollama_host}']); sys.stdout.flush(); "
            "heavy = [m for m in ('llama_cpp', 'piper', 'onnxruntime', 'chatterbox') if m in sys.modules]; "
            "sys.stderr.write(repr(heavy)); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    report = orjson.loads(proc.stdout)
    assert proc.stdout.count("\n") == 1
    assert report["checks"]["ollama"]["ok"] is True and "ollama" in report["usable"]["llm"]
    assert report["auto"]["llm"] == "ollama"
    assert proc.returncode == (0 if report["ok"] else 4)
    assert proc.stderr.strip().endswith("[]"), proc.stderr  # no engine imported (torch only for the CUDA check, when installed)
