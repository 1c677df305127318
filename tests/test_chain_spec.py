"""Chain file parsing and validation: key paths and lines in errors, overrides, stdin."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from ai_content_pipeline.chain.spec import apply_override, load_chain, node_line, parse_override
from ai_content_pipeline.errors import ConfigError, UsageError
from ai_content_pipeline.status import ExitStatus
from tests.chain_doubles import write_songs

CHAIN = """\
name: radio-intros
input: {songs}
output_dir: {out}
steps:
  - type: script
    template: song-intro
    persona: julie
    backend: auto
    params: {{variants: 2, temperature: 0.8}}
  - type: voice
    backend: auto
    params: {{format: wav, loudness: -16}}
"""


@pytest.fixture
def chain_text(tmp_path: Path) -> str:
    return CHAIN.format(songs=write_songs(tmp_path / "songs.jsonl"), out=tmp_path / "out")


def _load(tmp_path: Path, text: str, *overrides: str):
    path = tmp_path / "chain.yaml"
    path.write_text(text, encoding="utf-8")
    return load_chain(str(path), overrides)


def _error(tmp_path: Path, text: str, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, *overrides)
    assert info.value.exit_status == ExitStatus.USAGE
    return info.value


def test_valid_chain_loads(tmp_path: Path, chain_text: str) -> None:
    spec = _load(tmp_path, chain_text)
    assert spec.name == "radio-intros" and [s.type for s in spec.steps] == ["script", "voice"]
    assert spec.steps[0].params == {"variants": 2, "temperature": 0.8}
    assert spec.on_error == "continue" and spec.prices.per_1k_tokens == 0.0
    assert spec.output_path(1) == tmp_path / "out/02-voice.jsonl"
    assert spec.ledger_path(0) == tmp_path / "out/01-script.ledger.jsonl"
    assert spec.audio_dir == tmp_path / "out/audio"
    assert spec.source == str(tmp_path / "chain.yaml")


@pytest.mark.parametrize("old, new, where, words", [
    ("    persona: julie\n", "    persona: julie\n    colour: red\n", ":8: steps.0.colour", "Extra inputs"),
    ("name: radio-intros\n", "name: radio-intros\nsteppes: []\n", ":2: steppes", "Extra inputs"),
    ("    template: song-intro\n", "    template: no-such-template\n", ":6: steps.0.template",
     "unknown template 'no-such-template'"),
    ("    persona: julie\n", "    persona: bob\n", ":7: steps.0.persona", "unknown persona 'bob'"),
    ("  - type: voice\n    backend: auto\n", "  - type: voice\n    backend: espeak\n", ":11: steps.1.backend",
     "unknown voice backend 'espeak'"),
    ("{variants: 2,", "{variants: two,", ":9: steps.0.params.variants", "valid integer"),
    ("{variants: 2,", "{variantz: 2,", ":9: steps.0.params.variantz", "unknown script parameter"),
    ("{format: wav,", "{format: wav, resume: true,", ":12: steps.1.params.resume", "set by the chain"),
    ("  - type: voice\n", "  - type: voice\n    template: song-intro\n", ":11: steps.1.template",
     "Extra inputs"),
    ("  - type: voice\n", "  - type: dance\n", ":10: steps.1", "tag 'dance'"),
])
def test_errors_name_key_path_and_line(tmp_path: Path, chain_text: str, old: str, new: str,
                                       where: str, words: str) -> None:
    assert old in chain_text
    err = _error(tmp_path, chain_text.replace(old, new, 1))
    assert f"chain.yaml{where}:" in err.message
    assert words in err.message


def test_missing_key_points_at_the_parent(tmp_path: Path, chain_text: str) -> None:
    text = "\n".join(line for line in chain_text.splitlines() if not line.startswith("output_dir"))
    err = _error(tmp_path, text)
    assert "output_dir" in err.message and "Field required" in err.message


def test_missing_input_file_names_the_input_line(tmp_path: Path, chain_text: str) -> None:
    err = _error(tmp_path, chain_text, "input=nope.jsonl")
    assert "input (from --set)" in err.message and "nope.jsonl" in err.message
    text = chain_text.replace(str(tmp_path / "songs.jsonl"), str(tmp_path / "gone.jsonl"))
    assert "chain.yaml:2: input" in _error(tmp_path, text).message


def test_invalid_yaml_names_the_line(tmp_path: Path, chain_text: str) -> None:
    err = _error(tmp_path, chain_text.replace("    backend: auto\n    params: {variants",
                                              "    backend: [auto\n    params: {variants", 1))
    assert "not valid YAML" in err.message and "chain.yaml:" in err.message


def test_overrides_parse_yaml_scalars(tmp_path: Path, chain_text: str) -> None:
    spec = _load(tmp_path, chain_text, "steps.0.persona=max", "steps.1.enabled=false",
                 "steps.0.params.seed=42", "on_error=stop", "prices.per_1k_tokens=0.5")
    assert spec.steps[0].persona == "max" and spec.steps[1].enabled is False
    assert spec.steps[0].params["seed"] == 42 and spec.on_error == "stop"
    assert spec.prices.per_1k_tokens == 0.5 and spec.enabled_steps() == [0]


def test_bad_override_value_says_from_set(tmp_path: Path, chain_text: str) -> None:
    err = _error(tmp_path, chain_text, "steps.0.persona=nobody")
    assert "steps.0.persona (from --set)" in err.message and "unknown persona 'nobody'" in err.message


@pytest.mark.parametrize("bad", ["steps.5.persona=max", "name.x=1", "noequals", "=3"])
def test_malformed_overrides_are_usage_errors(tmp_path: Path, chain_text: str, bad: str) -> None:
    with pytest.raises(UsageError):
        _load(tmp_path, chain_text, bad)


def test_parse_and_apply_override() -> None:
    assert parse_override("steps.0.params.temperature=0.5") == (("steps", 0, "params", "temperature"), 0.5)
    assert parse_override("name=  ") == (("name",), "")
    data = {"steps": [{"params": {}}]}
    apply_override(data, ("steps", 0, "params", "x"), [1])
    assert data == {"steps": [{"params": {"x": [1]}}]}


def test_config_from_stdin(tmp_path: Path, chain_text: str) -> None:
    spec = load_chain("-", ["name=from-stdin"], stdin=io.StringIO(chain_text))
    assert spec.name == "from-stdin" and spec.source == "<stdin>"
    with pytest.raises(ConfigError, match=r"<stdin>:7: steps.0.persona"):
        load_chain("-", stdin=io.StringIO(chain_text.replace("julie", "bob")))


def test_unreadable_chain_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read chain file"):
        load_chain(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_chain(str(tmp_path / "list.yaml"))


def test_node_line_walks_mappings_and_sequences() -> None:
    root = yaml.compose("a: 1\nb:\n  - x: 2\n  - y: 3\n    z: 4\n")
    assert node_line(root, ("a",)) == 1
    assert node_line(root, ("b", 1, "z")) == 5
    assert node_line(root, ("b", 1, "nope")) == 4  # stops at the deepest node found
    assert node_line(root, ()) == 1


def test_example_chain_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    spec = load_chain("examples/radio-intros.yaml")
    assert spec.name == "radio-intros" and spec.steps[0].params["variants"] == 1
    assert sum(1 for _ in open(root / spec.input)) == 4


# -- backend settings as step keys -------------------------------------------------------------
def test_a_step_key_of_the_chosen_backend_is_checked_by_its_settings_and_reaches_it(
        tmp_path: Path, chain_text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.chain import runner

    seen: dict[str, object] = {}
    monkeypatch.setattr(runner, "create_llm", lambda name, **k: seen.update(name=name, **k))
    monkeypatch.setattr(runner, "create_tts", lambda name, **k: seen.update(name=name, **k))
    text = chain_text.replace("    backend: auto\n    params: {variants",
                              "    backend: llamacpp\n    threads: 3\n    params: {variants", 1)
    spec = _load(tmp_path, text)
    runner.create_backend(spec.steps[0], print)
    assert seen["name"] == "llamacpp" and seen["n_threads"] == 3
    spec = _load(tmp_path, chain_text.replace("{format: wav,", "{format: wav,", 1).replace(
        "  - type: voice\n    backend: auto\n", "  - type: voice\n    backend: chatterbox\n    device: auto\n"
        "    exaggeration: 1.2\n"))
    seen.clear()
    runner.create_backend(spec.steps[1], print)
    assert seen["name"] == "chatterbox" and seen["exaggeration"] == 1.2 and "device" not in seen  # auto: unset
    err = _error(tmp_path, text.replace("threads: 3", "threads: 0"))
    assert ":9: steps.0.threads: llamacpp: Input should be greater than or equal to 1" in err.message


@pytest.mark.parametrize("backend, key, value, words", [
    ("piper", "device", "cuda", "the TTS backend 'piper' has no setting 'device'"),
    ("ollama", "threads", 4, "the LLM backend 'ollama' has no setting 'threads'"),
    ("auto", "pitch", 3, "no TTS backend has a setting 'pitch'"),
    ("chatterbox", "device", "tpu", "chatterbox: Input should be 'auto', 'cuda', 'mps' or 'cpu'"),
])
def test_a_wrong_backend_setting_names_the_backend_and_the_key(tmp_path: Path, chain_text: str, backend: str,
                                                               key: str, value: object, words: str) -> None:
    step = 0 if backend == "ollama" else 1
    if step == 0:
        text = chain_text.replace("    backend: auto\n    params: {variants",
                                  f"    backend: {backend}\n    {key}: {value}\n    params: {{variants", 1)
    else:
        text = chain_text.replace("  - type: voice\n    backend: auto\n",
                                  f"  - type: voice\n    backend: {backend}\n    {key}: {value}\n")
    err = _error(tmp_path, text)
    assert f"steps.{step}.{key}: " in err.message and words in err.message


def test_params_timeout_and_threads_still_reach_the_backend(tmp_path: Path, chain_text: str) -> None:
    from ai_content_pipeline.chain.runner import backend_settings

    text = chain_text.replace("{variants: 2,", "{variants: 2, timeout: 30, threads: 2,", 1)
    assert backend_settings(_load(tmp_path, text).steps[0]) == {"timeout": 30, "n_threads": 2}
    ollama = text.replace("    backend: auto\n    params: {variants", "    backend: ollama\n    params: {variants", 1)
    assert backend_settings(_load(tmp_path, ollama).steps[0]) == {"timeout": 30}  # threads: not ollama's
