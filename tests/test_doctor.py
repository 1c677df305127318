"""`aicp doctor`: the JSON report, hints for missing pieces, no engine imports, exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline import doctor
from ai_content_pipeline.backends import chatterbox, checkup, llamacpp, ollama, piper
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
    assert set(report["checks"]) == {"ollama", "llamacpp", "bundled_model", "piper", "kokoro", "chatterbox", "cuda"}
    for name, check in report["checks"].items():
        assert isinstance(check["ok"], bool)
        assert check["ok"] or check["hint"], f"{name} is missing without a fix-it hint"
    assert report["checks"]["ollama"]["ok"] is False and "ollama serve" in report["checks"]["ollama"]["hint"]
    assert "ollama" not in report["usable"]["llm"]


def test_ollama_models_are_listed(ollama_host: str) -> None:
    check = ollama.check(ollama_host)
    assert check["ok"] is True and check["models"] == ["llama3.2", "qwen2.5:7b"]
    assert check["default_model_present"] is True and "hint" not in check


def test_missing_default_model_gets_a_pull_hint(ollama_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICP_OLLAMA_MODEL", "mistral")
    check = ollama.check(ollama_host)
    assert check["ok"] is True and "ollama pull mistral" in check["hint"]


def test_missing_packages_get_install_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkup, "installed", lambda module, dist: (False, None))
    for check, words in ((llamacpp.check(), "pip install llama-cpp-python"),
                         (piper.check(), "pip install piper-tts"),
                         (chatterbox.check(), "ai_content_pipeline[chatterbox]"),
                         (chatterbox.check_cuda(), "torch")):
        assert check["ok"] is False and words in check["hint"]


def test_nothing_usable_exits_4(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(checkup, "installed", lambda module, dist: (False, None))
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


# -- several Ollama hosts: each one is checked ------------------------------------------------
def test_each_of_several_hosts_is_checked(ollama_host: str) -> None:
    from tests.ollama_server import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    with OllamaServer(models=("other",)) as lacking:
        check = ollama.check([ollama_host, closed, lacking.url])
    assert [h["host"] for h in check["hosts"]] == [ollama_host, closed, lacking.url]
    assert [h["ok"] for h in check["hosts"]] == [True, False, True]
    assert "ollama serve" in check["hosts"][1]["hint"] and check["hosts"][0]["models"] == ["llama3.2", "qwen2.5:7b"]
    assert check["hosts"][2]["default_model_present"] is False and "ollama pull llama3.2" in check["hosts"][2]["hint"]
    # usable: one host serves the model; the hint names the host that does not answer and the one without it
    assert check["ok"] is True and check["default_model_present"] is True
    assert closed in check["hint"] and lacking.url in check["hint"]
    down = ollama.check(f"{closed},{closed.replace('http://', '')}/")  # one host, written twice
    assert down["ok"] is False and [h["host"] for h in down["hosts"]] == [closed]


@pytest.mark.parametrize("how", ["repeated", "comma", "env"])
def test_cli_checks_every_host_from_host_options_or_ollama_hosts(how: str, ollama_host: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tests.ollama_server import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.delenv("OLLAMA_HOSTS", raising=False)
    args = {"repeated": ["--host", ollama_host, "--host", closed], "comma": ["--host", f"{ollama_host},{closed}"],
            "env": []}[how]
    if how == "env":
        monkeypatch.setenv("OLLAMA_HOSTS", f"{ollama_host} {closed}")
    code = run_cli(cli, "aicp", ["doctor", "--json", *args])
    out = capsys.readouterr()
    report = orjson.loads(out.out)
    hosts = report["checks"]["ollama"]["hosts"]
    assert [(h["host"], h["ok"]) for h in hosts] == [(ollama_host, True), (closed, False)]
    assert "ollama" in report["usable"]["llm"] and report["auto"]["llm"] == "ollama"
    assert code == (0 if report["ok"] else 4)


def test_table_names_each_host() -> None:
    from ai_content_pipeline.report import doctor_table

    check = {"ok": True, "host": "http://a:1,http://b:2", "models": ["llama3.2"], "hint": "http://b:2 does not answer",
             "hosts": [{"ok": True, "host": "http://a:1", "models": ["llama3.2"]},
                       {"ok": False, "host": "http://b:2", "models": [], "hint": "start `ollama serve` at http://b:2"}]}
    text = doctor_table({"ok": True, "checks": {"ollama": check}, "usable": {}, "auto": {}}, width=200)
    assert "http://a:1: llama3.2" in text and "http://b:2: not answering" in text


def test_table_prints_what_the_environment_gave_escaped() -> None:
    """A host or model path comes from the environment (OLLAMA_HOST, a model file's name): it is
    printed escaped, so an escape in it never acts on the terminal; CJK details wrap by columns."""
    from ai_content_pipeline.report import columns, doctor_table

    check = {"ok": True, "path": "/models/\x1b]0;pwned\x07/" + "日本語" * 30 + ".gguf"}
    text = doctor_table({"ok": True, "checks": {"llamacpp": check}, "usable": {}, "auto": {}}, width=80)
    assert "\x1b" not in text and "\x07" not in text and "/models/\\x1b]0;pwned\\x07/" in text
    assert all(columns(line) <= 80 for line in text.splitlines())
