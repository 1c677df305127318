"""Odd kinds of stdin: a folder (which stops Python in its start-up), one open for writing only,
a closed one. Each is said in one clear line (exit 2), or read as empty (closed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest
import tomllib

from tests.cli_helpers import BIN, run_bin

ROOT = Path(__file__).resolve().parents[1]

FOLDER_SAYS = "stdin is a folder: give the records as a file, or redirect stdin from one (< records.jsonl)"


@pytest.fixture
def folder_stdin() -> int:
    fd = os.open("/", os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("args,prefix", [(["aicp-script"], "aicp-script"), (["aicp-voice", "-o", "out"], "aicp-voice"),
                                         (["aicp", "run-chain", "--config", "-"], "aicp"),
                                         (["aicp", "doctor"], "aicp")])
def test_a_folder_as_stdin_is_one_clear_line(args: list[str], prefix: str, folder_stdin: int,
                                             tmp_path: Path) -> None:
    """`aicp-script < /` died in the interpreter's start-up ("Fatal Python error: init_sys_streams")."""
    proc = run_bin(*args, stdin=folder_stdin, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode() == f"{prefix}: error: {FOLDER_SAYS}\n"
    assert os.listdir(tmp_path) == []


def test_a_folder_as_stdin_is_an_error_event_with_stream(folder_stdin: int, tmp_path: Path) -> None:
    proc = run_bin("aicp-script", "--stream", stdin=folder_stdin, cwd=tmp_path, timeout=120)
    event = orjson.loads(proc.stderr)
    assert proc.returncode == 2 and event["event"] == "error" and event["exit_code"] == 2
    assert event["message"] == FOLDER_SAYS


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([os.path.join(BIN, args[0]), *args[1:]], timeout=120, **kw)  # type: ignore[call-overload]


STDOUT_SAYS = "the output has nowhere to go (redirect it to a file, or to /dev/null to discard it)"


def test_a_folder_or_a_read_only_file_as_stdout_is_one_clear_line(folder_stdin: int, tmp_path: Path) -> None:
    """`aicp-voice 1< /` died in Python's start-up; `1< file` failed only after the work, exit 1."""
    proc = _run(["aicp-voice", "-o", "out"], input=b'{"id": "a", "text": "hi"}\n', stdout=folder_stdin,
                stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.decode() == f"aicp-voice: error: stdout is a folder: {STDOUT_SAYS}\n"
    (tmp_path / "r.txt").write_text("")
    with open(tmp_path / "r.txt", "rb") as readonly:
        proc = _run(["aicp", "--version"], stdout=readonly, stderr=subprocess.PIPE)
    assert proc.returncode == 2
    assert proc.stderr.decode() == f"aicp: error: stdout is open for reading only: {STDOUT_SAYS}\n"
    assert sorted(os.listdir(tmp_path)) == ["r.txt"]  # no audio made for output that cannot go out


def test_a_folder_as_stderr_is_discarded_like_a_closed_one(folder_stdin: int) -> None:
    proc = _run(["aicp", "--version"], stderr=folder_stdin, stdout=subprocess.PIPE)
    assert proc.returncode == 0 and proc.stdout.startswith(b"aicp ")


def test_a_stdin_open_for_writing_only_is_a_usage_error(tmp_path: Path) -> None:
    """`aicp-script 0>file` said 'cannot write: Bad file descriptor' (exit 1)."""
    with open(tmp_path / "w.txt", "wb") as handle:
        proc = run_bin("aicp-voice", "-o", str(tmp_path / "out"), stdin=handle, timeout=120)
    assert proc.returncode == 2 and proc.stdout == b""
    assert "aicp-voice: error: cannot read stdin: it is not open for reading" in proc.stderr.decode().splitlines()


def test_a_closed_stdin_reads_as_empty(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(["sh", "-c", f"'{BIN}/aicp-voice' -o '{tmp_path}/out' <&-"], capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"" and b"0 ok, 0 failed" in proc.stderr


def test_every_command_has_a_launcher_that_checks_stdin() -> None:
    """The commands are bin/ launchers; each runs the Python entry point of its name with _."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    launchers = project["tool"]["setuptools"]["script-files"]
    entries = project["project"]["scripts"]
    assert sorted(f"bin/{name.removeprefix('_')}" for name in entries) == sorted(launchers)
    for launcher in launchers:
        text = (ROOT / launcher).read_text()
        name = Path(launcher).name
        assert text.startswith("#!/bin/sh\n") and f'"$here/_{name}"' in text and "[ -d /dev/stdin ]" in text and "[ -d /dev/stdout ]" in text
        assert os.access(ROOT / launcher, os.X_OK)
        assert os.path.isfile(os.path.join(BIN, name)) and os.path.isfile(os.path.join(BIN, f"_{name}"))


def test_a_non_blocking_stdin_loses_no_record(tmp_path: Path) -> None:
    """A parent that leaves stdin's pipe O_NONBLOCK: a first read that finds no data yet is not
    taken as the end of the input; the text written later is read."""
    import subprocess
    import time

    from tests.chain_doubles import write_chain

    chain = write_chain(tmp_path).read_bytes()
    read, write = os.pipe()
    os.set_blocking(read, False)
    proc = subprocess.Popen([os.path.join(BIN, "aicp"), "run-chain", "--config", "-", "--dry-run"],
                            stdin=read, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(read)
    time.sleep(1.5)
    os.write(write, chain)
    os.close(write)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert orjson.loads(out)["dry_run"] is True
