"""Chain files are bounded, strict YAML and their params carry the flags' ranges.

Every case goes through the real `aicp run-chain --dry-run` (CliRunner, streams kept apart):
exit 2, one clear `aicp run-chain: error:` line naming the key path, no traceback, nothing on stdout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.cli.errors import run_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.cli.script import script_command
from ai_content_pipeline.errors import ConfigError
from ai_content_pipeline.limits import AUDIO_FORMATS
from ai_content_pipeline.templates import load_persona, load_template
from ai_content_pipeline.yamlfile import MAX_DEPTH, MAX_YAML_BYTES
from tests.chain_doubles import chain_data, write_chain
from tests.cli_helpers import invoke as invoke_cmd


def invoke(args: list[str], input: bytes | str | None = None) -> tuple[int, str, str]:
    with CliRunner().isolation(input=input) as (out, err, _):
        code = run_cli(cli, "aicp", args)
        sys.stdout.flush()
        sys.stderr.flush()
    return code, out.getvalue().decode(), err.getvalue().decode()


def dry_run(path: Path, *extra: str) -> tuple[int, str, str]:
    return invoke(["run-chain", "--config", str(path), "--dry-run", *extra])


def assert_usage_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, err
    assert out == ""
    assert err.startswith("aicp run-chain: error: ") and "Traceback" not in err and "unexpected" not in err
    for needle in needles:
        assert needle in err, err


def chain_with(tmp_path: Path, body: str) -> Path:
    """A chain file whose valid head (name, input, output_dir) is followed by ``body``."""
    data = chain_data(tmp_path)
    head = f"name: t\ninput: {data['input']}\noutput_dir: {data['output_dir']}\n"
    path = tmp_path / "chain.yaml"
    path.write_text(head + body, encoding="utf-8")
    return path


# -- item 3: aliases, size, depth -------------------------------------------------------------
LAUGHS = "".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)]
)


def test_billion_laughs_is_rejected_at_once_without_expanding(tmp_path: Path) -> None:
    path = chain_with(tmp_path, LAUGHS + "steps: [{type: script}]\n")
    assert path.stat().st_size < 1024
    t0 = time.monotonic()
    code, out, err = dry_run(path)
    assert time.monotonic() - t0 < 5
    assert_usage_error(code, out, err, "chain.yaml:4:", "anchors (&name) are not allowed")


def test_an_alias_alone_is_rejected_too(tmp_path: Path) -> None:
    # an undefined alias is a YAML error; a defined one is refused where it is used
    code, out, err = dry_run(chain_with(tmp_path, "steps:\n  - {type: script, name: *x}\n"))
    assert_usage_error(code, out, err, "chain.yaml:5:")


def test_merge_keys_through_aliases_are_rejected(tmp_path: Path) -> None:
    body = "base: &b {type: script}\nsteps:\n  - <<: *b\n"
    code, out, err = dry_run(chain_with(tmp_path, body))
    assert_usage_error(code, out, err, "anchors (&name)")


def test_aliases_in_a_set_value_are_rejected(tmp_path: Path) -> None:
    laughs = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x]"] + ["*a"] * 8) + "]"
    code, out, err = dry_run(write_chain(tmp_path), "--set", f"description={laughs}")
    assert_usage_error(code, out, err, "--set", "anchors (&name)")


def test_chain_file_size_is_bounded(tmp_path: Path) -> None:
    path = chain_with(tmp_path, "steps: [{type: script}]\n" + "#" * MAX_YAML_BYTES + "\n")
    code, out, err = dry_run(path)
    assert_usage_error(code, out, err, "larger than 1024 KiB")


def test_chain_from_stdin_is_bounded_too(tmp_path: Path) -> None:
    text = write_chain(tmp_path).read_text() + "#" * (MAX_YAML_BYTES + 10) + "\n"
    code, out, err = invoke(["run-chain", "--config", "-", "--dry-run"], input=text)
    assert_usage_error(code, out, err, "<stdin>", "larger than")


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "])
def test_deep_nesting_is_an_error_not_a_recursion_crash(tmp_path: Path, opener: str) -> None:
    depth = 5000
    if opener == "- ":
        body = "description:\n" + "".join(" " * i + "-\n" for i in range(1, 300))
    else:
        body = "description: " + opener * depth + "x" + ("]" if opener == "[" else "}") * depth + "\n"
    code, out, err = dry_run(chain_with(tmp_path, body))
    assert_usage_error(code, out, err, f"more than {MAX_DEPTH} levels")


# -- item 15: duplicate keys (chain, template, persona) -----------------------------------
def test_duplicate_key_in_a_chain_names_its_line(tmp_path: Path) -> None:
    body = "steps:\n  - type: script\n    persona: julie\n    persona: max\n"
    code, out, err = dry_run(chain_with(tmp_path, body))
    assert_usage_error(code, out, err, "chain.yaml:7:", "duplicate key 'persona'")


def test_duplicate_top_level_key_is_rejected(tmp_path: Path) -> None:
    code, out, err = dry_run(chain_with(tmp_path, "steps: [{type: script}]\nname: again\n"))
    assert_usage_error(code, out, err, "duplicate key 'name'")


def test_duplicate_keys_in_template_and_persona_files(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("name: t\nsystem: a\nuser: b\nuser: c\n")
    res = invoke_cmd(script_command, "aicp-script", ["-t", str(template), "--backend", "llamacpp"], b"")
    assert res.exit_code == 2 and "duplicate key 'user'" in res.stderr and f"{template}:4" in res.stderr
    persona = tmp_path / "p.yaml"
    persona.write_text("name: p\ndisplay_name: P\nstyle: calm\nseed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        load_persona(str(persona))


# -- item 12: invalid UTF-8, numbers past 64 bits -----------------------------------------
def test_chain_file_with_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = chain_with(tmp_path, "steps: [{type: script}]\n")
    path.write_bytes(path.read_bytes() + b"description: caf\xe9\n")
    code, out, err = dry_run(path)
    assert_usage_error(code, out, err, "chain.yaml:5:", "not UTF-8")


def test_template_with_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"name: t\nsystem: \xff\xfe\nuser: b\n")
    res = invoke_cmd(script_command, "aicp-script", ["-t", str(path), "--backend", "llamacpp"], b"")
    assert res.exit_code == 2 and "not UTF-8" in res.stderr and "unexpected" not in res.stderr


@pytest.mark.parametrize("override", [
    "steps.0.params.seed=123456789012345678901234567890",
    "steps.0.params.max_tokens=99999999999999999999",
    "steps.0.params.sections=[{name: a, brief: b, words: 999999999999999999999999}]",
    "description=-99999999999999999999999",
    "prices.per_1k_tokens=.inf",
])
def test_set_values_past_64_bits_or_infinite_are_usage_errors(tmp_path: Path, override: str) -> None:
    code, out, err = dry_run(write_chain(tmp_path), "--set", override)
    assert_usage_error(code, out, err, "(from --set)")


def test_big_integer_in_the_file_names_its_line(tmp_path: Path) -> None:
    body = "steps:\n  - type: script\n    params: {seed: 184467440737095516160}\n"
    code, out, err = dry_run(chain_with(tmp_path, body))
    assert_usage_error(code, out, err, "chain.yaml:6: steps.0.params.seed")


@pytest.mark.parametrize("flag", ["--seed", "--max-tokens"])
def test_script_flags_past_the_range_are_usage_errors(flag: str) -> None:
    res = invoke_cmd(script_command, "aicp-script", [flag, "99999999999999999999999", "--backend", "llamacpp"], b"")
    assert res.exit_code == 2 and flag in res.stderr and "Traceback" not in res.stderr


def test_persona_seed_past_the_range_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndisplay_name: P\nstyle: calm\nseed: 99999999999999999999999\n")
    with pytest.raises(ConfigError, match="seed"):
        load_persona(str(path))


# -- item 13: params carry the flags' ranges ----------------------------------------------
@pytest.mark.parametrize(("step", "key", "value"), [
    (0, "temperature", 99), (0, "temperature", -1), (0, "top_p", 7), (0, "top_p", 0),
    (0, "variants", -5), (0, "variants", 0), (0, "variants", 101), (0, "jobs", 0), (0, "jobs", 65),
    (0, "max_tokens", 0), (0, "retries", -1), (0, "retries", 11), (0, "seed", -1),
    (0, "seed", 2**32), (0, "words", 10), (0, "timeout", 0), (0, "timeout", -3),
    (1, "loudness", 99), (1, "loudness", -99), (1, "sample_rate", 5), (1, "sample_rate", 10**6),
    (1, "format", "aiff"), (1, "retries", 50), (1, "seed", -2), (1, "bitrate", 999), (1, "bitrate", 4),
])
def test_dry_run_rejects_params_out_of_range(tmp_path: Path, step: int, key: str, value: object) -> None:
    data = chain_data(tmp_path)
    data["steps"][step]["params"][key] = value
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, err = dry_run(path)
    assert_usage_error(code, out, err, f"steps.{step}.params.{key}")
    assert not (tmp_path / "out").exists()  # nothing ran


def test_voice_device_has_the_flag_choices(tmp_path: Path) -> None:
    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.1.device=tpu")
    assert_usage_error(code, out, err, "steps.1.device (from --set)", "'cuda'")
    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.1.device=auto")
    assert code == 0, err


def test_long_form_sections_are_checked_by_dry_run(tmp_path: Path) -> None:
    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.0.params.sections=[{name: a, words: -5}]")
    assert_usage_error(code, out, err, "steps.0.params.sections (from --set)")


@pytest.mark.parametrize(("key", "value"), [("temperature", 99), ("variants", -5), ("format", "aiff")])
def test_set_overrides_are_range_checked_too(tmp_path: Path, key: str, value: object) -> None:
    step = 1 if key == "format" else 0
    code, out, err = dry_run(write_chain(tmp_path), "--set", f"steps.{step}.params.{key}={value}")
    assert_usage_error(code, out, err, f"steps.{step}.params.{key} (from --set)")


def test_the_edges_of_the_ranges_are_accepted(tmp_path: Path) -> None:
    data = chain_data(tmp_path)
    data["steps"][0]["params"] = {"temperature": 2, "top_p": 1, "variants": 100, "jobs": 64,
                                  "max_tokens": 1, "retries": 10, "seed": 2**32 - 1, "timeout": 0.5}
    data["steps"][1]["params"] = {"loudness": -70, "sample_rate": 8000, "format": "mp3", "bitrate": 8}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, err = dry_run(path)
    assert code == 0, err
    assert orjson.loads(out)["ok"] is True


def test_flags_and_chain_schema_share_one_range_table() -> None:
    from ai_content_pipeline.audio import FORMATS
    from ai_content_pipeline.cli.voice import voice_command

    assert tuple(FORMATS) == AUDIO_FORMATS
    params = {p.name: p for p in script_command.params}
    assert params["temperature"].type.max == 2 and params["top_p"].type.min_open  # type: ignore[attr-defined]
    assert params["seed"].type.max == 2**32 - 1  # type: ignore[attr-defined]
    voice = {p.name: p for p in voice_command.params}
    assert (voice["loudness"].type.min, voice["loudness"].type.max) == (-70, -5)  # type: ignore[attr-defined]


def test_template_params_are_range_checked(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsystem: a\nuser: b\nparams: {max_tokens: 99999999999999999999}\n")
    with pytest.raises(ConfigError, match="params.max_tokens"):
        load_template(str(path))


# -- item 15: --set blamed on --set, directories named as such ---------------------------------
def test_unknown_key_from_set_is_blamed_on_set_not_on_line_1(tmp_path: Path) -> None:
    code, out, err = dry_run(write_chain(tmp_path), "--set", "bogus.key=1")
    assert_usage_error(code, out, err, "bogus (from --set)")
    assert "pipeline.yaml:1" not in err


def test_input_that_is_a_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    code, out, err = dry_run(write_chain(tmp_path), "--set", f"input={tmp_path / 'folder'}")
    assert_usage_error(code, out, err, "is a directory")
    assert "does not exist" not in err


def test_config_that_is_a_directory_says_so(tmp_path: Path) -> None:
    code, out, err = dry_run(tmp_path)
    assert_usage_error(code, out, err, "is a directory")


def test_template_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    res = invoke_cmd(script_command, "aicp-script", ["-t", f"{tmp_path}/", "--backend", "llamacpp"], b"")
    assert res.exit_code == 2 and "is a directory" in res.stderr and "does not exist" not in res.stderr


def test_valid_chain_still_loads(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    assert spec.steps[0].params == {"variants": 1, "temperature": 0.8}


@pytest.mark.parametrize("line", ["voice: {piper: {length_scale: .inf}}", "voice: {piper: {speaker_id: 99999999999999}}",
                                  "voice: {chatterbox: {exaggeration: .nan}}"])
def test_persona_numbers_must_be_finite_and_in_range(tmp_path: Path, line: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\ndisplay_name: P\nstyle: calm\n{line}\n")
    with pytest.raises(ConfigError, match="voice"):
        load_persona(str(path))


def test_threads_param_is_range_checked_and_reaches_the_llamacpp_backend(tmp_path: Path, monkeypatch) -> None:
    from ai_content_pipeline.chain import runner
    from ai_content_pipeline.chain.spec import ScriptStep

    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.0.params.threads=0")
    assert_usage_error(code, out, err, "steps.0.params.threads (from --set)")
    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.0.params.threads=1")
    assert code == 0, err
    seen: list[dict] = []
    monkeypatch.setattr(runner, "create_llm", lambda *a, **k: seen.append(k))
    runner.create_backend(ScriptStep(type="script", backend="llamacpp", params={"threads": 1}), print)
    runner.create_backend(ScriptStep(type="script", backend="llamacpp"), print)
    assert seen[0]["n_threads"] == 1 and "n_threads" not in seen[1]


def test_voice_step_takes_require_checks(tmp_path: Path) -> None:
    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.1.params.require_checks=true")
    assert code == 0, err
    code, out, err = dry_run(write_chain(tmp_path), "--set", "steps.1.params.require_checks=[1]")
    assert_usage_error(code, out, err, "steps.1.params.require_checks (from --set)")
