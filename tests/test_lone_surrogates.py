"""A lone surrogate (a YAML ``"\\ud800"`` escape) in a user persona or template is not text: the
listings skip that file with a warning (exit 3) and list the others; a run names the file, the
line and the field in one line (exit 2); a template that makes one in its prompt is refused."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM

BAD = {
    "persona": 'name: bad\ndisplay_name: "B\\ud800"\nstyle: s\n',
    "template": 'name: bad\nsystem: s\nuser: u\ndescription: "\\ud83d\\ude00 two escapes"\n',
}
FIELD = {"persona": ":2: display_name: a lone surrogate (\\ud800)",
         "template": ":4: description: a lone surrogate (\\ud83d)"}


def _write(kind: str, text: str, name: str = "bad") -> Path:
    folder = Path(os.environ["AICP_HOME"]) / f"{kind}s"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _script(monkeypatch, args: list[str]):
    llm = FakeLLM()
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    return invoke(script_cli.script_command, "aicp-script", args, input=b'{"artist": "A", "title": "T"}\n'), llm


@pytest.mark.parametrize("kind", ["persona", "template"])
def test_a_listing_skips_the_file_with_a_warning_and_lists_the_others(kind: str) -> None:
    path = _write(kind, BAD[kind])
    res = invoke(cli, "aicp", [f"{kind}s", "list"])
    assert res.exit_code == 3
    names = [orjson.loads(line)["name"] for line in res.stdout.splitlines()]
    assert "bad" not in names and ("julie" in names or "song-intro" in names)
    assert f"{path}{FIELD[kind]} is not text" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("kind", ["persona", "template"])
def test_show_names_the_file_and_the_field(kind: str) -> None:
    path = _write(kind, BAD[kind])
    res = invoke(cli, "aicp", [f"{kind}s", "show", "bad"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.splitlines()[0].endswith(f"{path}{FIELD[kind]} is not text")


@pytest.mark.parametrize("kind", ["persona", "template"])
def test_a_run_names_the_file_and_the_field_in_one_line(monkeypatch, kind: str) -> None:
    path = _write(kind, BAD[kind])
    res, llm = _script(monkeypatch, ["-p" if kind == "persona" else "-t", "bad"])
    assert res.exit_code == 2 and res.stdout == "" and llm.calls == []
    error = [line for line in res.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1 and error[0].endswith(f"{path}{FIELD[kind]} is not text")


def test_a_template_that_makes_a_lone_surrogate_in_its_prompt_is_refused(monkeypatch) -> None:
    path = _write("template", "name: made\nsystem: s\nuser: '{{ \"\\ud800\" }} and {{ title }}'\n", "made")
    res, llm = _script(monkeypatch, ["-t", "made"])
    assert res.exit_code == 2 and res.stdout == "" and llm.calls == []
    assert f"template 'made' ({path}) made a user prompt holding a lone surrogate (\\ud800)" in res.stderr


def test_a_surrogate_pair_written_as_one_escape_is_text() -> None:
    _write("persona", 'name: fine\ndisplay_name: "Smile \\U0001F600"\nstyle: s\n', "fine")
    res = invoke(cli, "aicp", ["personas", "show", "fine", "--json"])
    assert res.exit_code == 0 and orjson.loads(res.stdout)["display_name"] == "Smile \U0001F600"


@pytest.mark.parametrize("kind", ["persona", "template"])
def test_a_user_folder_whose_name_is_not_utf8_lists_its_files(monkeypatch, tmp_path: Path, kind: str) -> None:
    home = Path(os.fsdecode(os.fsencode(tmp_path) + b"/h\xff"))  # bytes of another encoding
    monkeypatch.setenv("AICP_HOME", str(home))
    text = "name: own\ndisplay_name: Own\nstyle: s\n" if kind == "persona" else "name: own\nsystem: s\nuser: u\n"
    _write(kind, text, "own")
    res = invoke(cli, "aicp", [f"{kind}s", "list"])
    assert res.exit_code == 0, res.stderr
    own = next(orjson.loads(line) for line in res.stdout.splitlines() if '"own"' in line)
    assert own["path"] == f"{tmp_path}/h\\xff/{kind}s/own.yaml" and own["source"] == "user"


@pytest.mark.parametrize(("flag", "text"), [("-p", "display_name: X\nstyle: s\n"), ("-t", "system: s\nuser: u\n")])
def test_a_file_named_in_other_bytes_without_a_name_is_refused(monkeypatch, tmp_path: Path, flag: str,
                                                                text: str) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/x\xff.yaml"))
    path.write_text(text)
    res, llm = _script(monkeypatch, [flag, str(path)])
    assert res.exit_code == 2 and res.stdout == "" and llm.calls == []
    assert "name: the file's name is not UTF-8 text" in res.stderr and "unexpected" not in res.stderr
    path.write_text("name: fine\n" + text)  # a name: in the file names it
    res, llm = _script(monkeypatch, [flag, str(path)])
    assert res.exit_code in (0, 3) and llm.calls, res.stderr


@pytest.mark.parametrize(("line", "where"), [
    ('name: "c\\ud800"', ":1: name: a lone surrogate (\\ud800)"),
    ('description: ["ok", "\\udc00"]', ":1: description.1: a lone surrogate (\\udc00)"),
])
def test_a_chain_file_with_a_lone_surrogate_is_refused_naming_the_key(monkeypatch, tmp_path: Path, line: str,
                                                                      where: str) -> None:
    from yaml import safe_dump

    from ai_content_pipeline.chain import runner
    from tests.chain_doubles import FakeFactory, chain_data
    from tests.test_fault_exits import aicp

    monkeypatch.setattr(runner, "create_backend", FakeFactory())  # never a real model
    data = chain_data(tmp_path)
    data.pop(line.split(":")[0], None)
    path = tmp_path / "chain.yaml"
    path.write_text(line + "\n" + safe_dump(data, sort_keys=False))
    code, out, err = aicp(["run-chain", "--config", str(path)])
    assert code == 2 and f"{path}{where} is not text" in err and "unexpected" not in err
    assert not (tmp_path / "out").exists()


def test_a_template_error_naming_a_file_of_other_bytes_reaches_a_chains_result(monkeypatch, tmp_path: Path) -> None:
    from yaml import safe_dump

    from ai_content_pipeline.chain import runner
    from tests.chain_doubles import FakeFactory, chain_data
    from tests.test_fault_exits import aicp

    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    home = Path(os.fsdecode(os.fsencode(tmp_path) + b"/t\xff"))  # the user folder, in other bytes
    monkeypatch.setenv("AICP_HOME", str(home))
    _write("template", 'name: evil\nsystem: s\nuser: "{{ title.__class__ }}"\n', "evil")
    data = chain_data(tmp_path)
    data["steps"][0]["template"] = "evil"
    path = tmp_path / "chain.yaml"
    path.write_text(safe_dump(data, sort_keys=False))
    code, out, err = aicp(["run-chain", "--config", str(path)])
    assert code == 2, err
    result = orjson.loads(out)
    assert result["success"] is False and f"{tmp_path}/t\\xff/templates/evil.yaml" in result["error"]["message"]
    assert "unexpected" not in err
