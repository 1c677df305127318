"""Fuzzing the chain spec loader: any chain file, any `--set`.

Every input goes through the real `aicp run-chain --config - --dry-run` (CliRunner, stdin) and
must end with an exit code from the documented table (0, 2 or 4 for a dry run), never a
traceback or an "unexpected" error, and a non-zero exit must come with one clear
`aicp run-chain: error:` line on stderr and nothing on stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_content_pipeline.cli.errors import run_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.status import ExitStatus
from tests.chain_doubles import chain_data, write_songs

DRY_RUN_CODES = {ExitStatus.SUCCESS, ExitStatus.USAGE, ExitStatus.BACKEND_UNAVAILABLE}
FUZZ = settings(max_examples=int(os.environ.get("AICP_FUZZ_EXAMPLES", "120")), deadline=None,
                derandomize="AICP_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_songs(tmp_path_factory.mktemp("fuzz") / "songs.jsonl")


def dry_run(text: str | bytes, *sets: str) -> tuple[int, str, str]:
    args = ["run-chain", "--config", "-", "--dry-run"]
    for item in sets:
        args += ["--set", item]
    with CliRunner().isolation(input=text) as (out, err, _):
        code = run_cli(cli, "aicp", args)
        sys.stdout.flush()
        sys.stderr.flush()
    return code, out.getvalue().decode(), err.getvalue().decode(errors="replace")


def check(code: int, out: str, err: str) -> None:
    assert code in DRY_RUN_CODES, (code, err)
    assert "Traceback (most recent call last)" not in err and "error: unexpected" not in err and "report it" not in err, err
    if code == ExitStatus.USAGE:
        assert out == "" and err.startswith("aicp run-chain: error: "), (out, err)
        assert err.count("aicp run-chain: error:") == 1
    else:
        plan = orjson.loads(out)
        assert plan["dry_run"] is True


def base_text(songs: Path, tmp: Path) -> str:
    data = chain_data(tmp)
    data["input"] = str(songs)
    return yaml.safe_dump(data, sort_keys=False)


# -- arbitrary bytes and text -----------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes(raw: bytes) -> None:
    check(*dry_run(raw))


YAML_BITS = st.sampled_from([
    "name: x\n", "input: -\n", "steps:\n", "  - type: script\n", "  - type: voice\n", "    params: {",
    "}\n", "[", "]", "&a ", "*a ", "<<: ", "? ", ": ", "- ", "!!binary ", "!!python/object:os.system ",
    "!!timestamp 2024-13-45\n", "!!int x\n", "!!float y\n", "9" * 30, ".inf", ".nan", "~", "null", "'",
    '"', "\\u0000", "\t", "\n", "#", "%YAML 1.1\n---\n", "---\n", "...\n", "\ufeff", "é", "\x00", "|\n  ",
    ">-\n  ", "{a: 1, a: 2}", "0x", "0o7", "1_000", "2001-12-14t21:59:43.10-05:00", "!!set {a, b}",
    "!!omap [a: 1]", "!!pairs [a: 1]", "!!str", "=", "steps.0", "\r\n", "!!timestamp x\n", "!!bool y",
    "!!null z", "!!map [1]", "!!seq {a: 1}", "!<tag:yaml.org,2002:int> q", "!local x", "%TAG ! tag:x,\n",
])


@FUZZ
@given(st.lists(YAML_BITS, max_size=30))
def test_yaml_like_fragments(parts: list[str]) -> None:
    check(*dry_run("".join(parts)))


# -- a valid chain, then mutated ------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["auto", "ollama", "llamacpp", "piper", "chatterbox", "julie", "song-intro", "-",
                     "wav", "aiff", "/", "..", "/dev/null", "/etc", "stop", "continue"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
PATHS = st.sampled_from([
    ("name",), ("input",), ("output_dir",), ("on_error",), ("prices",), ("prices", "per_1k_tokens"),
    ("steps",), ("steps", 0), ("steps", 0, "type"), ("steps", 0, "template"), ("steps", 0, "persona"),
    ("steps", 0, "backend"), ("steps", 0, "params"), ("steps", 0, "params", "temperature"),
    ("steps", 0, "params", "variants"), ("steps", 0, "params", "seed"), ("steps", 0, "params", "sections"),
    ("steps", 0, "params", "timeout"), ("steps", 0, "params", "words"), ("steps", 0, "enabled"),
    ("steps", 1, "params", "format"), ("steps", 1, "params", "loudness"),
    ("steps", 1, "params", "sample_rate"), ("steps", 1, "voice"), ("steps", 1, "device"), ("extra",),
])


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value


@FUZZ
@given(st.lists(st.tuples(PATHS, VALUES), min_size=1, max_size=4))
def test_mutated_valid_chains(songs: Path, tmp_path: Path, edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = chain_data(tmp_path)
    data["input"] = str(songs)
    for path, value in edits:
        _set(data, path, value)
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return
    check(*dry_run(text))


@FUZZ
@given(st.integers(min_value=0, max_value=2000), st.text(max_size=20))
def test_text_spliced_into_a_valid_chain(songs: Path, tmp_path: Path, at: int, junk: str) -> None:
    text = base_text(songs, tmp_path)
    at = min(at, len(text))
    check(*dry_run(text[:at] + junk + text[at:]))


@FUZZ
@given(st.lists(st.text(max_size=40), max_size=3))
def test_any_set_overrides(songs: Path, tmp_path: Path, sets: list[str]) -> None:
    check(*dry_run(base_text(songs, tmp_path), *sets))


@FUZZ
@given(PATHS, SCALARS)
def test_set_overrides_on_real_keys(songs: Path, tmp_path: Path, path: tuple[Any, ...], value: Any) -> None:
    try:
        rendered = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
    except yaml.YAMLError:
        return
    check(*dry_run(base_text(songs, tmp_path), ".".join(map(str, path)) + "=" + rendered))


def test_the_valid_base_chain_passes(songs: Path, tmp_path: Path) -> None:
    code, out, err = dry_run(base_text(songs, tmp_path))
    assert code == 0, err
