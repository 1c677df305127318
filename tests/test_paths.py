"""Every option, argument and chain key that names a file or folder refuses an empty or blank
value: a usage error (exit 2) naming it, never the current folder (a chain key, a NUL
character too: ``os`` raised an unexpected ValueError)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ai_content_pipeline.chain.spec import (
    PARAM_PATH_KEYS,
    PATH_KEYS,
    STEP_PATH_KEYS,
    ChainSpec,
    ScriptStep,
    VoiceStep,
    load_chain,
)
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.cli.options import NameOrPath, PathValue
from ai_content_pipeline.cli.script import script_command
from ai_content_pipeline.cli.voice import voice_command
from ai_content_pipeline.errors import ConfigError, UsageError
from ai_content_pipeline.files import check_output_dir, check_output_file
from ai_content_pipeline.stages.registry import options_class
from tests.chain_doubles import write_chain
from tests.cli_helpers import invoke
from tests.doubles import FakeTTS

ROOTS: list[tuple[str, click.Command]] = [("aicp", cli), ("aicp-script", script_command),
                                          ("aicp-voice", voice_command)]

#: Text options and arguments that name no file or folder, each with what it is instead.
NOT_PATHS: dict[tuple[str, str], str] = {
    ("doctor", "host"): "an Ollama URL",
    ("script", "host"): "an Ollama URL (an empty one sets nothing)",
    ("run-chain", "host"): "an Ollama URL (an empty one sets nothing)",
    ("serve", "host"): "an address to listen on",
    ("script", "keep_alive"): "a duration",
    ("script", "shard"): "K/N or auto (its own check)",
    ("voice", "shard"): "K/N or auto (its own check)",
    ("run-chain", "shard"): "K/N or auto (its own check)",
    ("run-chain", "overrides"): "KEY.PATH=VALUE",
    ("voice", "text_field"): "a dotted field name of the record",
    ("serve", "database_url"): "a database URL",
    ("worker", "database_url"): "a database URL",
    ("serve", "token"): "a bearer token",
    ("serve", "allow_models"): "NAME=FILE pairs: name_map refuses a blank name or file",
    ("serve", "allow_voices"): "NAME=FILE pairs: name_map refuses a blank name or file",
    ("feed", "title"): "the podcast's title", ("feed", "link"): "the podcast's web page URL",
    ("feed", "base_url"): "the URL the files are published under",
    ("feed", "description"): "the podcast's description", ("feed", "author"): "a name",
    ("feed", "image"): "a URL, or a file name under --base-url (read from no disk)",
    ("feed", "language"): "a language code", ("feed", "category"): "an Apple Podcasts category",
    ("feed", "title_field"): "a dotted field name of the record",
    ("feed", "description_field"): "a dotted field name of the record",
    ("feed", "date_field"): "a dotted field name of the record",
    ("mix", "song_field"): "a field name of the record", ("mix", "title"): "a tag",
    ("mix", "artist"): "a tag", ("mix", "album"): "a tag", ("mix", "date"): "a tag", ("script", "voice_backend"): "a TTS backend name",
    ("script", "song_field"): "a field name of the record", ("say", "text"): "the line to speak",
}

#: What an option's value is when it is no text: flags, choices, numbers.
_NOT_TEXT = (click.types.BoolParamType, click.Choice, click.types.IntParamType, click.types.FloatParamType)


def _walk(path: str, command: click.Command) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            found += _walk(f"{path} {name}", sub)
    return found


COMMANDS = [found for prog, root in ROOTS for found in _walk(prog, root)]
TEXT_PARAMS = [(path, command, param) for path, command in COMMANDS for param in command.params
               if not getattr(param, "is_flag", False) and not isinstance(param.type, _NOT_TEXT)]
PATH_PARAMS = [(path, command, param) for path, command, param in TEXT_PARAMS
               if isinstance(param.type, PathValue | NameOrPath)]


def _name(command: click.Command, param: click.Parameter) -> tuple[str, str]:
    return (command.name or "", param.name or "")


def test_every_text_parameter_is_a_path_type_or_said_not_to_be_a_path() -> None:
    """A new option or argument that names a file takes :class:`PathValue` (or
    :class:`NameOrPath`) or is listed above with what it is instead: none skips the check."""
    unclassified = [f"{path} {param.name}" for path, command, param in TEXT_PARAMS
                    if not isinstance(param.type, PathValue | NameOrPath) and _name(command, param) not in NOT_PATHS]
    assert unclassified == []
    assert not [key for key in NOT_PATHS if not any(_name(c, p) == key for _, c, p in TEXT_PARAMS)]
    assert len({p for p, _, _ in PATH_PARAMS}) >= 10  # script, voice, run-chain, merge, logs, catalog, serve, worker


def _root(path: str) -> tuple[click.Command, str, list[str]]:
    prog, *subs = path.split()
    return dict(ROOTS)[prog], prog, subs


@pytest.mark.parametrize("value", ["", "  ", "\t"])
@pytest.mark.parametrize("path,command,param", PATH_PARAMS,
                         ids=[f"{p} {param.name}" for p, _, param in PATH_PARAMS])
def test_a_blank_path_is_a_usage_error_naming_the_option(path: str, command: click.Command,
                                                         param: click.Parameter, value: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root, prog, subs = _root(path)
    given = [value] if isinstance(param, click.Argument) else [max(param.opts, key=len), value]
    res = invoke(root, prog, [*subs, *given], b'{"id": "a", "text": "hello there"}\n')
    assert res.exit_code == 2, res.stderr
    assert res.stdout == ""
    named = (param.human_readable_name if isinstance(param, click.Argument) else max(param.opts, key=len))
    first = res.stderr.splitlines()[0]
    assert named in first and ("empty" in first or "blank" in first)
    assert os.listdir(tmp_path) == []  # nothing written into the current folder


def test_a_blank_path_in_an_environment_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICP_LOG_DB", " ")
    res = invoke(cli, "aicp", ["logs"])
    assert res.exit_code == 2 and "--log" in res.stderr and "$AICP_LOG_DB" in res.stderr


def test_an_empty_out_dir_leaves_the_current_folder_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aicp-voice --out-dir "" wrote its audio into the current folder, over a file of the same name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: FakeTTS())
    mine = tmp_path / "a.wav"
    mine.write_bytes(b"my own file")
    res = invoke(voice_command, "aicp-voice", ["--out-dir", ""], b'{"id": "a", "text": "hello there"}\n')
    assert res.exit_code == 2 and "--out-dir" in res.stderr and res.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["a.wav"] and mine.read_bytes() == b"my own file"


@pytest.mark.parametrize("value", ["", " "])
def test_the_library_checks_refuse_a_blank_path(value: str) -> None:
    with pytest.raises(UsageError, match="--out-dir"):
        check_output_dir(value, "--out-dir")
    with pytest.raises(UsageError, match="--checkpoint"):
        check_output_file(value, "--checkpoint")


# -- chain files ------------------------------------------------------------------------------
#: Keys of a chain file with text in them that name no file or folder (``params``,
#: ``sections`` and ``extra_context`` hold text inside mappings and lists).
CHAIN_NOT_PATHS = {"name", "description", "on_error", "shard", "source", "backend", "host", "keep_alive",
                   "device", "type", "text_field", "format", "params", "sections", "extra_context",
                   "song_field", "voice_backend",
                   # lists: persona names or files, lexicon files; each checked where it is read
                   "personas", "lexicon"}


def _text_fields(cls: Any) -> set[str]:
    if dataclasses.is_dataclass(cls):
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
    else:
        fields = {name: info.annotation for name, info in cls.model_fields.items()}
    return {name for name, kind in fields.items() if "str" in str(kind)}


def test_every_text_key_of_a_chain_is_a_path_key_or_said_not_to_be_one() -> None:
    keys = _text_fields(ChainSpec) | _text_fields(ScriptStep) | _text_fields(VoiceStep)
    params = _text_fields(options_class("script")) | _text_fields(options_class("voice"))
    paths = set(PATH_KEYS) | set(STEP_PATH_KEYS) | set(PARAM_PATH_KEYS) | {"out_dir"}  # out_dir: output_dir's
    assert (keys | params) - paths - CHAIN_NOT_PATHS == set()


CHAIN_CASES = [*[(key, None) for key in PATH_KEYS],
               *[(key, 0) for key in ("template", "persona", "model")],
               *[(key, 1) for key in ("persona", "voice", "checkpoint_dir")],
               *[(f"params.{key}", 0) for key in PARAM_PATH_KEYS]]


@pytest.mark.parametrize("value", ["", "   ", "out\x00put"])
@pytest.mark.parametrize("key,step", CHAIN_CASES, ids=[f"{k}@{s}" for k, s in CHAIN_CASES])
def test_a_blank_path_key_of_a_chain_is_a_config_error(key: str, step: int | None, value: str,
                                                       tmp_path: Path) -> None:
    chain = write_chain(tmp_path)
    data = yaml.safe_load(chain.read_text())
    target = data if step is None else data["steps"][step]
    *parents, last = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    chain.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_chain(str(chain))
    where = key if step is None else f"steps.{step}.{key}"
    said = "NUL character" if "\x00" in value else "empty" if not value else "blank"
    assert where in caught.value.message and said in caught.value.message
    assert caught.value.exit_status == 2
