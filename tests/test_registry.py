"""Backend registry: ``auto`` resolution of the LLM backend against a local fake Ollama."""

from __future__ import annotations

import time

import pytest

from ai_content_pipeline.backends import registry
from ai_content_pipeline.backends.ollama import OllamaBackend
from ai_content_pipeline.errors import BackendUnavailable, UsageError
from tests.ollama_server import OllamaServer, free_port, silent_listener


@pytest.fixture
def server():
    with OllamaServer(models=["llama3.2", "qwen2.5:7b"]) as srv:
        yield srv


def resolve(model=None, host=None):
    notices: list[str] = []
    name, chosen = registry.resolve_llm_name("auto", model, host, notices.append)
    return name, chosen, notices


@pytest.mark.parametrize("model", ["/models/x.gguf", "SmolLM2.Q4_1.GGUF"])
def test_gguf_model_means_llamacpp_without_asking_ollama(server, model):
    assert resolve(model, server.url) == ("llamacpp", model, [])
    assert server.requests == []


def test_ollama_with_the_default_model_wins(server):
    assert resolve(host=server.url) == ("ollama", "llama3.2", [])
    assert [r.path for r in server.requests] == ["/api/tags"]


def test_host_and_model_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", server.url.removeprefix("http://"))  # scheme is optional
    monkeypatch.setenv("AICP_OLLAMA_MODEL", "qwen2.5:7b")
    assert resolve() == ("ollama", "qwen2.5:7b", [])


def test_ollama_without_the_default_model_falls_back_with_one_notice():
    with OllamaServer(models=["mistral"]) as srv:
        name, model, notices = resolve(host=srv.url)
    assert (name, model) == ("llamacpp", None)
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "has no 'llama3.2'" in notices[0] and "llama.cpp" in notices[0]


def test_no_ollama_and_no_model_falls_back_with_one_notice():
    name, model, notices = resolve(host=f"http://127.0.0.1:{free_port()}")
    assert (name, model) == ("llamacpp", None)
    assert len(notices) == 1 and notices[0].startswith("backend auto: no Ollama at")


def test_explicit_model_without_ollama_is_unavailable():
    with pytest.raises(BackendUnavailable) as info:
        resolve("llama3.2", f"http://127.0.0.1:{free_port()}")
    assert info.value.exit_status == 4 and "ollama serve" in info.value.hint


def test_explicit_model_missing_on_ollama_fails_at_load_with_pull_hint(server):
    llm = registry.create_llm("auto", model="phi4", host=server.url, keep_alive="1m")
    assert isinstance(llm, OllamaBackend) and llm.model == "phi4" and llm.keep_alive == "1m"
    with pytest.raises(BackendUnavailable, match="no model 'phi4'") as info:
        llm.load()
    assert "ollama pull phi4" in info.value.hint


def test_create_llm_auto_builds_the_resolved_backend(server):
    llm = registry.create_llm("auto", host=server.url)
    assert isinstance(llm, OllamaBackend) and llm.host == server.url and not llm.loaded
    fallback = registry.create_llm("auto", host=f"http://127.0.0.1:{free_port()}", notice=lambda m: None)
    assert fallback.name == "llamacpp" and not fallback.loaded


def test_explicit_backend_names_skip_the_ollama_check(server):
    assert registry.resolve_llm_name("ollama", None, server.url) == ("ollama", None)
    assert registry.resolve_llm_name("llamacpp", "m.gguf", server.url) == ("llamacpp", "m.gguf")
    assert server.requests == []


@pytest.mark.parametrize("call", [
    lambda: registry.resolve_llm_name("gpt5", None, None),
    lambda: registry.create_llm("gpt5"),
    lambda: registry.create_tts("espeak"),
])
def test_unknown_backend_is_a_usage_error(call):
    with pytest.raises(UsageError) as info:
        call()
    assert info.value.exit_status == 2 and "choose one of" in info.value.hint


def test_ollama_detection_gives_up_quickly_on_a_server_that_never_answers():
    with silent_listener() as host:
        t0 = time.monotonic()
        name, model, notices = resolve(host=host)
        took = time.monotonic() - t0
    assert (name, model) == ("llamacpp", None) and "no Ollama" in notices[0]
    assert took < 2.0  # the probe waits about 1 s, not the client's default (forever)


def test_auto_tts_with_a_piper_voice_file_is_piper(monkeypatch):
    from ai_content_pipeline.backends import chatterbox

    monkeypatch.setattr(chatterbox, "chatterbox_available", lambda: True)
    monkeypatch.setattr(chatterbox, "detect_device", lambda: "cuda")
    assert registry.resolve_tts_name("auto") == "chatterbox"
    assert registry.resolve_tts_name("auto", voice="voices/en_US-joe.ONNX") == "piper"


def test_options_a_backend_does_not_declare_are_left_out_and_declared_ones_checked(tmp_path):
    from pathlib import Path

    from ai_content_pipeline.backends.registry import backend_options, get

    piper = get("tts", "piper")
    given = {"voice": Path("v.onnx"), "exaggeration": 1.0, "device": None, "checkpoint_dir": "x"}
    assert backend_options(piper, given) == {"voice": Path("v.onnx")}  # a Path stays a Path
    with pytest.raises(UsageError, match="piper: option use_cuda"):
        backend_options(piper, {"use_cuda": "maybe"})
    llm = registry.create_llm("llamacpp", n_threads=3, keep_alive="1m", timeout=5.0)
    assert llm.n_threads == 3


def test_choices_are_read_when_used_and_compare_like_tuples():
    assert registry.TTS_CHOICES == ("auto", "piper", "kokoro", "chatterbox") and "piper" in registry.TTS_CHOICES
    assert list(registry.LLM_CHOICES) == ["auto", "llamacpp", "ollama"] and registry.LLM_CHOICES[1] == "llamacpp"
    assert "espeak" not in registry.TTS_CHOICES


def test_aicp_help_reads_no_package_metadata():
    """The --backend choices are read when used: ``aicp --help`` (every command module imported)
    neither scans the installed packages' entry points nor imports a backend module."""
    import subprocess
    import sys

    code = ("import sys; sys.argv = ['aicp', '--help']\n"
            "from ai_content_pipeline.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'importlib.metadata' or m.startswith("
            "('ai_content_pipeline.backends.piper', 'ai_content_pipeline.backends.llamacpp', "
            "'ai_content_pipeline.backends.ollama', 'ai_content_pipeline.backends.chatterbox'))), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "Usage:" in done.stdout and done.stderr.strip().splitlines()[-1] == "[]"


# -- settings: plain data, the one source ----------------------------------------------------------
def test_a_built_in_backend_settings_are_read_without_its_module_or_pydantic() -> None:
    """The commands build their flags from the settings for ``--help``: reading a built-in's
    imports neither its engine module nor pydantic."""
    import subprocess
    import sys

    code = ("import sys; from ai_content_pipeline.backends import registry\n"
            "for kind in registry.KINDS:\n    [registry.settings(kind, n) for n in registry.BUILTINS[kind]]\n"
            "print(sorted(m for m in sys.modules if m.startswith('pydantic') or m in "
            "{'ai_content_pipeline.backends.' + n for t in registry.BUILTINS.values() for n in t}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_every_built_in_setting_is_an_adapter_keyword_and_its_model_checks_it() -> None:
    import inspect

    from ai_content_pipeline.backends import registry

    for kind, table in registry.BUILTINS.items():
        for name in table:
            info = registry.get(kind, name)
            settings = registry.settings(kind, name)
            assert settings == info.setting_list() and settings
            adapter = info.load("adapter")
            target = adapter.__init__ if inspect.isclass(adapter) else adapter
            params = inspect.signature(target).parameters
            passes_on = not inspect.isclass(adapter) and any(p.kind is p.VAR_KEYWORD for p in params.values())
            assert passes_on or {s.name for s in settings} - {"host"} <= set(params), name  # host: create_llm's
            assert set(info.options_model().model_fields) == {s.name for s in settings}


def test_step_settings_map_keys_to_keywords_and_unset_values() -> None:
    from ai_content_pipeline.backends import registry
    from ai_content_pipeline.errors import UsageError

    assert registry.step_settings("llm", "llamacpp", {"threads": 2}) == {"n_threads": 2}
    assert registry.step_settings("tts", "auto", {"device": "auto", "voice": "a.onnx"}) == {"voice": "a.onnx"}
    with pytest.raises(UsageError, match="the TTS backend 'piper' has no setting 'device'") as info:
        registry.step_settings("tts", "piper", {"device": "cpu"})
    assert info.value.loc == ("device",) and "voice" in (info.value.hint or "")
