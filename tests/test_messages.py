"""Messages a person reads: -h/--version everywhere, failed-record lines, the summary, notice
width and prefix, the progress bar's choices."""

from __future__ import annotations

import ast
import importlib
import io
import subprocess
import sys
from pathlib import Path

import click
import orjson
import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

import ai_content_pipeline.cli.script as script_cli
import ai_content_pipeline.cli.voice as voice_cli
from ai_content_pipeline.chain import runner
from ai_content_pipeline.events import ConsoleEmitter, ProgressBarEmitter
from ai_content_pipeline.report import (
    FAILURE_CAP,
    WIDTH,
    columns,
    message_lines,
    notice_lines,
    one_line,
    printable,
    progress_bar_options,
    summary_text,
)
from ai_content_pipeline.stages.common import StageStats
from tests.chain_doubles import FakeFactory, write_chain
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, SpeechTTS

ROOT = Path(__file__).resolve().parents[1]


def _entry_commands() -> list[tuple[str, click.Command]]:
    """Every command reachable from the console scripts in pyproject, as (path, command)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    found: list[tuple[str, click.Command]] = []

    def walk(path: str, command: click.Command) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=path)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(f"{path} {name}", sub)

    for entry_name, target in sorted(scripts.items()):
        prog = entry_name.removeprefix("_")  # _aicp-script: the Python entry of bin/aicp-script
        module = importlib.import_module(target.partition(":")[0])
        commands = [v for v in vars(module).values() if isinstance(v, click.Command)
                    and v.name in (prog, prog.removeprefix("aicp-"))]
        assert len(commands) == 1, (prog, commands)
        walk(prog, commands[0])
    return found


COMMANDS = _entry_commands()


def test_entry_points_reach_every_command() -> None:
    paths = [p for p, _ in COMMANDS]
    for expected in ("aicp", "aicp-script", "aicp-voice", "aicp run-chain", "aicp doctor", "aicp serve",
                     "aicp worker", "aicp templates show", "aicp personas list"):
        assert expected in paths


@pytest.mark.parametrize("path,command", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_h_is_help_and_version_everywhere(path: str, command: click.Command) -> None:
    prog, *subs = path.split()
    root = dict(COMMANDS)[prog]
    short = invoke(root, prog, [*subs, "-h"])
    long = invoke(root, prog, [*subs, "--help"])
    assert short.exit_code == long.exit_code == 0, short.stderr
    assert short.stdout == long.stdout and short.stdout.startswith(f"Usage: {path} ")
    assert "-h, --help" in short.stdout and "--version" in short.stdout
    version = invoke(root, prog, [*subs, "--version"])
    assert version.exit_code == 0 and version.stdout.startswith(f"{prog} ") and version.stdout[-2].isdigit()


def _usage_case(path: str, command: click.Command) -> tuple[list[str], list[str]]:
    """The words that make ``path`` fail while parsing, and the two lines it must print: a
    group, an unknown command; a command, its first option that takes a value, given none
    (click raised that one without a context: no prefix of its own, no hint), or an unknown
    option where it takes none."""
    if isinstance(command, click.Group):
        names = ", ".join(command.list_commands(click.Context(command, info_name=path)))
        return (["zzz"], [f"{path}: error: No such command 'zzz'.",
                            f"{path}: hint: the commands: {names} ('{path} -h' says what each does)"])
    hint = f"{path}: hint: '{path} -h' shows the options"
    option = next((p for p in command.params if isinstance(p, click.Option) and not p.is_flag
                   and not p.count and p.nargs == 1), None)
    if option is None:  # only flags (aicp personas list)
        return ["--zzz"], [f"{path}: error: No such option '--zzz'.", hint]
    name = max(option.opts, key=len)
    return [name], [f"{path}: error: Option '{name}' requires an argument.", hint]


def test_every_entry_point_says_a_usage_error_in_one_line_and_a_hint(tmp_path: Path) -> None:
    """Each console script and subcommand, as a user runs it: stdout empty, stderr the error
    and the hint (each with the command's prefix), exit 2."""
    runs = []
    for path, command in COMMANDS:
        prog, *subs = path.split()
        words, expected = _usage_case(path, command)
        proc = subprocess.Popen([str(Path(sys.executable).parent / prog), *subs, *words], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs.append((path, proc, expected))
    for path, proc, expected in runs:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out.decode(), err.decode().splitlines()) == (2, "", expected), path


def _voice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lines: bytes, *args: str):
    monkeypatch.setattr(voice_cli, "create_tts", lambda name, notice=None, **o: SpeechTTS())
    return invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path), *args], lines)


def test_each_failed_record_gets_one_line_capped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lines = b"".join(orjson.dumps({"id": f"song-{i:03d}"}) + b"\n" for i in range(FAILURE_CAP + 4))
    res = _voice(monkeypatch, tmp_path, lines + b"not json\n")
    assert res.exit_code == 3
    err = res.stderr.splitlines()
    assert err[0] == "aicp-voice: song-000: no text to voice (script.text and text missing)"
    assert err[1].startswith("aicp-voice: song-001: ")
    assert len([e for e in err if ": song-0" in e]) == FAILURE_CAP
    assert err[FAILURE_CAP].startswith("aicp-voice: … and 5 more failed records")
    assert err[-1].startswith("aicp-voice: 0 ok, 15 failed, 0 skipped")


def test_a_few_failures_get_no_rest_line_and_stream_gets_none(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    ok = orjson.dumps({"id": "s1", "script": {"text": "Good evening, this is Queen on the radio."}})
    res = _voice(monkeypatch, tmp_path, ok + b"\n" + b'{"id": "s2"}\nnot json\n')
    assert res.stderr.splitlines()[:2] == [
        "aicp-voice: s2: no text to voice (script.text and text missing)",
        "aicp-voice: line 3 is not valid JSON: " + res.stderr.split("line 3 is not valid JSON: ")[1].split("\n")[0],
    ]
    assert "more failed" not in res.stderr
    streamed = _voice(monkeypatch, tmp_path / "s", b'{"id": "s2"}\n', "--stream")
    assert all(line.startswith("{") for line in streamed.stderr.splitlines())


def test_upstream_failures_are_counted_not_listed_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    line = orjson.dumps({"id": "s1", "error": {"stage": "script", "message": "boom"}})
    res = _voice(monkeypatch, tmp_path, line + b"\n")
    assert res.exit_code == 3 and res.stderr.splitlines() == [res.stderr.splitlines()[-1]]
    assert "0 ok, 1 failed" in res.stderr


def test_summary_names_failed_truncated_and_failed_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLLM(["Queen played Bohemian Rhapsody and it was", "x"], done_reason="length")
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: fake)
    songs = b'{"id": "a", "artist": "Queen", "title": "Bohemian Rhapsody"}\n{"id": "b"}\n'
    res = invoke(script_cli.script_command, "aicp-script", [], songs)
    summary = res.stderr.splitlines()[-1]
    assert summary.startswith("aicp-script: 1 ok, 1 failed, 0 skipped; checks: 0 passed, 1 failed; 1 truncated")
    stats = StageStats(completed=9000, failed=2, skipped=3, checks_passed=8000, checks_failed=1000,
                       truncated=5, prompt_tokens=10**9, audio_seconds=12345.6, seconds=99999.9)
    text = summary_text(stats)
    assert "2 failed" in text and "5 truncated" in text and "1000 failed" in text
    assert "tokens" not in text and text.endswith("99999.9 s")  # details dropped first
    assert all(len(line) <= WIDTH for line in notice_lines("aicp run-chain", text))
    assert "10 tokens" in summary_text(StageStats(completed=3, prompt_tokens=10))


def test_notice_lines_fit_100_columns_with_one_prefix() -> None:
    out = io.StringIO()
    emitter = ConsoleEmitter("aicp run-chain", stream=out)
    emitter.message("no Ollama at http://127.0.0.1:11434 (connection refused); using the embedded llama.cpp "
                    "with the bundled model /very/long/path/" + "x" * 150 + "/SmolLM2-135M-Instruct.Q4_1.gguf")
    emitter.record_error(0, "song-001", {"message": "word " * 40})
    emitter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # a notice of 4 lines, the failed record's 1
    assert all(len(line) <= WIDTH and line.startswith("aicp run-chain: ") for line in lines), lines
    assert lines[-1].startswith("aicp run-chain: song-001: word word") and lines[-1].endswith("…")
    assert notice_lines("p", "") == ["p: "]


def test_a_failed_record_is_one_line_without_terminal_escapes(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    long = orjson.dumps({"id": "s1-with-a-longer-id-of-30-chars", "script": {"text": "Hello there."}, "persona": "x/" * 150})
    res = _voice(monkeypatch, tmp_path, long + b"\n" + b'{"id": "s2"}\n')
    err = res.stderr.splitlines()
    assert res.exit_code == 3 and len(err) == 3, err  # one line per failed record, the summary
    assert err[0].startswith("aicp-voice: s1-with-a-longer-id-of-30-chars: field 'persona'") and err[0].endswith("…") and len(err[0]) == WIDTH
    out = io.StringIO()
    emitter = ConsoleEmitter("aicp-voice", stream=out)
    emitter.record_error(0, "s1", {"message": "bad \x1b[2J\x1b[31mred\r\nnext \x07 \u2028 line"})
    emitter.message("file \x1b]0;title\x07 missing")
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u2028" not in text
    assert text.splitlines() == ["aicp-voice: s1: bad \\x1b[2J\\x1b[31mred\\r\\nnext \\x07 \\u2028 line",
                                 "aicp-voice: file \\x1b]0;title\\x07 missing"]


def test_errors_and_hints_are_one_line_each_without_escapes() -> None:
    res = invoke(script_cli.script_command, "aicp-script", ["-t", "\x1b[31mred\nx" + "x" * 30])
    err = res.stderr.splitlines()
    assert res.exit_code == 2 and len(err) == 2, err  # whole lines: paths in them stay copyable
    assert err[0] == "aicp-script: error: unknown template '\\x1b[31mred\\nx" + "x" * 30 + "'"
    assert err[1].startswith("aicp-script: hint: choose one of: ")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_printable_escapes_what_a_terminal_would_not_show_and_reads_back(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()  # no Cc, Cf (bidi, zero-width), Zl, Zp, Co, Cn, Cs, no odd space
    if text.isprintable():
        assert shown == text  # printable text is never changed
    else:  # Python's escape forms: the text reads back exactly
        assert ast.literal_eval("'" + shown.replace("'", "\\'") + "'") == text


def test_printable_uses_python_escape_forms() -> None:
    assert printable("tag \U000e0001 after") == "tag \\U000e0001 after"  # not \ue0001 (U+E000, "1")
    assert printable("\u202edlrow \u2066x\u2069 \u200b\xad") == "\\u202edlrow \\u2066x\\u2069 \\u200b\\xad"
    assert printable("a\\x1b \x1b") == "a\\\\x1b \\x1b"  # a written backslash is not read as an escape
    assert printable("C:\\dir é 日本") == "C:\\dir é 日本"  # nothing to escape: unchanged
    assert printable("\udc80\ue000\u2028\r") == "\\udc80\\ue000\\u2028\\r"
    assert one_line("aicp-voice", "s1: \u202eevil") == "aicp-voice: s1: \\u202eevil"


def test_errors_and_warnings_share_one_form() -> None:
    """``aicp-x: error: …`` (errors.run_cli) and ``aicp templates list: warning: skipped …``
    (catalog) are written by one function: whole lines, the same escapes."""
    assert message_lines("aicp templates list", "warning", "skipped a\nb.yaml", "fix\tit") == (
        "aicp templates list: warning: skipped a\\nb.yaml\naicp templates list: hint: fix\\tit\n")
    assert message_lines("p", "error", "x" * 300) == f"p: error: {'x' * 300}\n"  # never cut


def test_lines_fit_100_terminal_columns_not_characters() -> None:
    """A CJK failure line took ~178 columns (cut at 100 characters, each 2 columns wide)."""
    out = io.StringIO()
    emitter = ConsoleEmitter("aicp-script", stream=out)
    emitter.record_error(0, "曲-001", {"message": "テンプレートの出力が長すぎます。" * 20})
    emitter.message("ファイルがありません: /音楽/" + "日本語の名前" * 40 + ".yaml を確認してください")
    lines = out.getvalue().splitlines()
    assert columns(lines[0]) in (WIDTH - 1, WIDTH) and lines[0].endswith("…")  # 2-column chars
    assert lines[0].startswith("aicp-script: 曲-001: テンプレートの出力")
    assert all(columns(line) <= WIDTH for line in lines), [columns(line) for line in lines]
    assert "".join(line.removeprefix("aicp-script: ") for line in lines[1:]).replace(" ", "") == (
        "ファイルがありません:/音楽/" + "日本語の名前" * 40 + ".yamlを確認してください")  # nothing lost
    assert columns("e\u0301te\u20dd") == 3 and columns("ＡＢ") == 4 and columns("ab") == 2
    cut = one_line("p", "e\u0301" * 200 + "\x1b")  # e + combining acute: one column each
    assert columns(cut) == WIDTH and cut.count("\u0301") == 96
    assert one_line("p", "x" * 95 + "\x1b" + "y") == "p: " + "x" * 95 + "…"  # never half an escape


def test_one_line_alters_no_text_it_keeps(tmp_path: Path) -> None:
    """Two spaces, a tab, a newline in a path are shown as they are (spaces) or escaped, never
    squeezed into one space: the line names the file that is really there."""
    assert one_line("p", "a  b\tc\nd  ") == "p: a  b\\tc\\nd  "
    cut = one_line("p", "x  " * 60)
    assert len(cut) == WIDTH and cut == ("p: " + "x  " * 60)[:WIDTH - 1] + "…"
    out = io.StringIO()
    ConsoleEmitter("aicp-voice", stream=out).record_error(0, "s1", {"message": "no file 'my  take\t1.wav'"})
    assert out.getvalue() == "aicp-voice: s1: no file 'my  take\\t1.wav'\n"
    missing = tmp_path / "two  spaces\tand a tab.yaml"
    res = invoke(script_cli.script_command, "aicp-script", ["-t", str(missing)])
    assert res.exit_code == 2 and res.stdout == ""
    assert f"{tmp_path}/two  spaces\\tand a tab.yaml" in res.stderr.splitlines()[0], res.stderr


def test_usage_errors_carry_the_prefix_and_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.cli.main import cli

    res = invoke(script_cli.script_command, "aicp-script", ["--bogus"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        "aicp-script: error: No such option '--bogus'. (Did you mean one of: '--host', '--jobs', '--log'?)",
        "aicp-script: hint: 'aicp-script -h' shows the options"]
    sub = invoke(cli, "aicp", ["templates", "show"])
    assert sub.exit_code == 2 and sub.stderr.splitlines() == [
        "aicp templates show: error: Missing argument 'NAME|PATH'.",
        "aicp templates show: hint: 'aicp templates show -h' shows the options"]
    bad = invoke(cli, "aicp", ["scrip"])  # the lazy group's commands are matched too
    assert bad.exit_code == 2 and bad.stderr.splitlines()[0] == "aicp: error: No such command 'scrip'. Did you mean 'script'?"
    streamed = invoke(voice_cli.voice_command, "aicp-voice", ["--bitrate", "999", "--stream"])
    event = orjson.loads(streamed.stderr)  # --stream after the bad option: still one JSON event
    assert streamed.exit_code == 2 and event["event"] == "error" and event["exit_code"] == 2
    assert "--bitrate" in event["message"] and event["hint"] == "'aicp-voice -h' shows the options"


def test_one_command_one_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.cli.main import cli

    monkeypatch.setattr(runner, "create_backend", FakeFactory(FakeLLM(fail_on=("Queen",))))
    path = write_chain(tmp_path)
    res = invoke(cli, "aicp", ["run-chain", "--config", str(path)])
    lines = res.stderr.splitlines()
    assert res.exit_code == 3 and len(lines) >= 3
    assert all(line.startswith("aicp run-chain: ") for line in lines), lines
    bad = invoke(cli, "aicp", ["run-chain", "--config", str(path), "--set", "steps.0.persona=bob"])
    assert bad.exit_code == 2 and bad.stderr.startswith("aicp run-chain: error: ")
    assert all(line.startswith("aicp run-chain: ") for line in bad.stderr.splitlines())


def test_progress_bar_choices() -> None:
    assert progress_bar_options(None, "xterm", True) is None  # no "1rec [00:00, 14716rec/s]"
    assert progress_bar_options(5, "dumb", True) is None and progress_bar_options(5, None, True) is None
    assert progress_bar_options(5, "xterm", False) is None
    options = progress_bar_options(5, "xterm-256color", True)
    assert options is not None and options["total"] == 5 and options["leave"] is False


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_waits_for_a_total_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    out = _Tty()
    bar = ProgressBarEmitter("aicp-voice", stream=out)
    bar.progress(None, 1, 0, 0)
    assert out.getvalue() == "" and bar._bar is None
    bar.progress(3, 2, 0, 0)
    assert "2/3" in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\r") or out.getvalue().rstrip(" ").endswith("\r")
    monkeypatch.setenv("TERM", "dumb")
    dumb = _Tty()
    plain = ProgressBarEmitter("aicp-voice", stream=dumb)
    plain.progress(3, 1, 0, 0)
    plain.message("hello")
    plain.close()
    assert dumb.getvalue() == "aicp-voice: hello\n"


def test_progress_bar_first_drawn_at_its_first_count_has_no_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first ``progress`` event comes after the first record: a bar made then at 0 and
    moved to 1 at once drew a rate of thousands of records a second (``1/2 [00:00, 12018rec/s]``)."""
    import re

    monkeypatch.setenv("TERM", "xterm")
    out = _Tty()
    bar = ProgressBarEmitter("aicp-voice", stream=out)
    bar.progress(2, 1, 0, 0)
    drawn = out.getvalue()
    assert "1/2" in drawn and "0/2" not in drawn
    rates = [float(r) for r in re.findall(r"([0-9.]+)rec/s", drawn)]
    assert rates == [], drawn  # no rate from one count: "?rec/s"
    bar.close()


def test_console_scripts_say_h_in_a_subprocess() -> None:
    import subprocess

    proc = subprocess.run([str(Path(sys.executable).parent / "aicp-voice"), "-h"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: aicp-voice")


def test_missing_input_file_has_a_hint_before_any_backend_notice(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    (tmp_path / "songs.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    called: list[str] = []
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: called.append("llm"))
    res = invoke(script_cli.script_command, "aicp-script", ["song.jsonl"])
    assert res.exit_code == 2 and called == []
    assert res.stderr.splitlines() == ["aicp-script: error: cannot read song.jsonl: no such file",
                                       "aicp-script: hint: did you mean songs.jsonl? (- or no FILE reads "
                                       "standard input)"]
    far = invoke(voice_cli.voice_command, "aicp-voice", ["zzz.jsonl"])
    assert far.exit_code == 2 and f"hint: relative paths start at {tmp_path}" in far.stderr


def test_a_missing_model_file_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.gguf").write_bytes(b"")
    for backend in ("llamacpp", "auto"):
        res = invoke(script_cli.script_command, "aicp-script", ["--backend", backend, "-m", "./nope.gguf"], b"{}\n")
        assert res.exit_code == 4 and res.stdout == ""  # said before any record is read
        assert res.stderr.splitlines()[0] == "aicp-script: error: model file ./nope.gguf does not exist"
        assert res.stderr.splitlines()[1].startswith("aicp-script: hint: ")
    close = invoke(script_cli.script_command, "aicp-script", ["--backend", "llamacpp", "-m", "modell.gguf"], b"")
    assert "hint: did you mean model.gguf?" in close.stderr
    voice = invoke(voice_cli.voice_command, "aicp-voice", ["--backend", "piper", "--voice", "v.onnx"], b"")
    assert voice.exit_code == 2 and "hint: relative paths start at" in voice.stderr
    template = invoke(script_cli.script_command, "aicp-script", ["-t", "./intro.yaml"], b"")
    assert template.exit_code == 2 and "aicp templates list" in template.stderr


def _read_terminal(leader: int) -> bytes:
    """Everything written to a pseudo-terminal until its last writer closes it; closes ``leader``."""
    import os

    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the follower side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return b"".join(chunks)


def _on_a_terminal(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a console script with stdout and stderr on a pseudo-terminal; (exit status, output)."""
    import os
    import pty
    import subprocess

    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(Path(sys.executable).parent / args[0]), *args[1:]], stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "100", **(env or {})})
    os.close(follower)
    return proc.wait(timeout=60), _read_terminal(leader).decode().replace("\r\n", "\n")


def test_doctor_table_on_a_terminal_json_when_piped_or_asked() -> None:
    code, out = _on_a_terminal(["aicp", "doctor"], env={"OLLAMA_HOST": "http://127.0.0.1:9"})
    assert code == 0 and not out.lstrip().startswith("{"), out
    rows = out.splitlines()
    assert rows[0].split() == ["check", "status", "details"]
    assert any(r.startswith("ollama") and "missing" in r and "ollama serve" in r for r in rows)
    assert any(r.startswith("llamacpp") and " ok " in r for r in rows)
    assert "--backend auto picks: LLM llamacpp, TTS piper" in out
    assert all(len(r) <= 100 for r in rows)
    code, out = _on_a_terminal(["aicp", "doctor", "--json"], env={"OLLAMA_HOST": "http://127.0.0.1:9"})
    assert orjson.loads(out)["auto"]["llm"] == "llamacpp"
    piped = invoke(dict(COMMANDS)["aicp"], "aicp", ["doctor", "--host", "http://127.0.0.1:9"])
    assert orjson.loads(piped.stdout)["checks"]["ollama"]["ok"] is False


def test_chain_step_lines_name_failed_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.cli.main import cli

    monkeypatch.setattr(runner, "create_backend", FakeFactory(FakeLLM(["Sure! Here's the intro: hello"])))
    res = invoke(cli, "aicp", ["run-chain", "--config", str(write_chain(tmp_path))])
    step1 = [line for line in res.stderr.splitlines() if "step 1 script:" in line]
    assert len(step1) == 1 and "; checks: 0 passed, " in step1[0], res.stderr


def _voice_on_a_pty(tmp_path: Path, term: str, args: list[str], stdin: bytes | None = None) -> str:
    """``aicp voice`` (test doubles) with stderr on a pseudo-terminal; what the terminal got."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with open(tmp_path / "out.jsonl", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.chain_doubles", "voice", "--overwrite", "--out-dir",
                                 str(tmp_path / "audio"), *args], cwd=ROOT, stdout=out, stderr=follower,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                env={**os.environ, "TERM": term, "COLUMNS": "100"})
        os.close(follower)
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        out_bytes = _read_terminal(leader)
        assert proc.wait(timeout=120) == 0
    return out_bytes.decode()


SCRIPTED = b"".join(orjson.dumps({"id": f"s{i}", "script": {"text": "Good evening, this is the late show."}}) + b"\n"
                    for i in range(3))


def test_progress_bar_on_a_pseudo_terminal(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(SCRIPTED)
    shown = _voice_on_a_pty(tmp_path, "xterm", [str(tmp_path / "in.jsonl")]).replace("\r\n", "\n")
    assert "3/3" in shown and "\r" in shown  # a bar was drawn and redrawn
    after_bar = shown.rsplit("\r", 1)[1]
    assert after_bar.lstrip(" \x1b[A").startswith("aicp voice: 3 ok, 0 failed")  # erased before the summary
    piped = _voice_on_a_pty(tmp_path, "xterm", ["--no-barrier"], stdin=SCRIPTED)
    assert "rec [" not in piped and "rec/s" not in piped  # no counter without a total
    dumb = _voice_on_a_pty(tmp_path, "dumb", [str(tmp_path / "in.jsonl")])
    assert "\r" not in dumb.replace("\r\n", "\n") and "rec" not in dumb
    assert dumb.replace("\r\n", "\n").splitlines()[-1].startswith("aicp voice: 3 ok, 0 failed")


def test_version_and_help_piped_to_a_reader_that_leaves_exit_0() -> None:
    """``aicp --version | head -1``: the whole output was taken, so the exit status is 0, every
    time: the stdout watch never interrupts a process that is ending (which would make it 141)."""
    import os
    import subprocess

    bin_dir = os.path.dirname(sys.executable)
    codes = []
    for args in [["aicp", "--version"], ["aicp-script", "--version"], ["aicp", "logs", "-h"]] * 7:
        proc = subprocess.Popen([os.path.join(bin_dir, args[0]), *args[1:]], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.stdout.close()  # as head -1 does once it has its line
        codes.append(proc.wait(timeout=60))
    assert codes == [0] * len(codes)


def test_a_group_run_bare_prints_its_help_not_an_error_line() -> None:
    """``aicp`` and ``aicp templates`` with no command: click's help on stderr, exit 2 (click's
    NoArgsIsHelpError is a usage error whose message is the whole help: it is printed as help,
    never as one ``aicp: error: Usage: …`` line)."""
    from ai_content_pipeline.cli.main import cli

    for args in ([], ["templates"]):
        res = invoke(cli, "aicp", args)
        assert res.exit_code == 2 and res.stdout == ""
        assert res.stderr.startswith("Usage: aicp") and "error:" not in res.stderr.splitlines()[0]
        assert "Commands:" in res.stderr


def test_an_empty_default_persona_is_no_default() -> None:
    from ai_content_pipeline.templates import Personas

    assert Personas("").default is None and Personas("", required=False).for_record({}) is None


@pytest.mark.parametrize("text", ["x" * 86 + "\x1b" * 8, "see " + "\U000e0001" * 12, "a" * 30 + "\u202e" * 40])
def test_a_wrapped_notice_never_splits_an_escape(text: str) -> None:
    import re as _re

    from ai_content_pipeline.report import columns, notice_lines

    lines = notice_lines("aicp-voice", text)
    body = "".join(line[len("aicp-voice: "):] for line in lines)
    assert all(columns(line) <= 100 for line in lines)
    for line in lines:  # each line ends on a whole escape
        assert not _re.search(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3}|U[0-9a-f]{0,7})$", line)
    assert body.encode().decode("unicode_escape") == text


# -- hints name only options of the command that runs ---------------------------------------
@pytest.mark.parametrize("path,command", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_hints_name_only_options_the_command_has(path: str, command: click.Command) -> None:
    from ai_content_pipeline.cli.errors import fit_hint

    have = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    ctx = click.Context(command, info_name=path)
    resume = fit_hint("free some space and run again with --resume", ctx)
    traceback = fit_hint("run again with --traceback and report it", ctx)
    assert ("--resume" in resume) == ("--resume" in have) and resume.startswith("free some space and run again")
    assert ("--traceback" in traceback) == ("--traceback" in have)
    assert "--traceback" in have or "AICP_TRACEBACK=1" in traceback
    ctx.params = {"checkpoint": None}  # aicp-script / aicp-voice without a ledger: nothing to resume
    if "--checkpoint" in have:
        assert fit_hint("run again with --resume to keep the completed chunks", ctx) == "run again"


def test_a_full_disk_under_merge_does_not_suggest_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aicp merge has no --resume: its hint for a full disk said to run again with one."""
    import errno

    from ai_content_pipeline import merge
    from ai_content_pipeline.cli.main import cli

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.jsonl"))

    monkeypatch.setattr(merge, "merge_files", full)
    (tmp_path / "a.jsonl").write_text("")
    res = invoke(cli, "aicp", ["merge", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 1 and "no space left" in res.stderr
    assert "aicp merge: hint: free some space" in res.stderr and "--resume" not in res.stderr


def test_an_unexpected_error_hint_names_aicp_traceback_where_there_is_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline import takelog
    from ai_content_pipeline.cli.main import cli

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(takelog, "iter_takes", boom)
    res = invoke(cli, "aicp", ["logs", "--log", "x.db"])
    assert res.exit_code == 1 and "--traceback" not in res.stderr
    assert "aicp logs: hint: run again with AICP_TRACEBACK=1 and report it" in res.stderr


def test_run_chain_hints_name_chain_keys_not_options(tmp_path: Path) -> None:
    """A voice step's missing voice file: `voice:` is the chain's key; run-chain has no --voice."""
    from ai_content_pipeline.cli.errors import fit_hint
    from ai_content_pipeline.cli.main import cli

    chain = write_chain(tmp_path)
    text = chain.read_text().replace("- type: voice\n", "- type: voice\n  voice: nothere.onnx\n")
    chain.write_text(text)
    res = invoke(cli, "aicp", ["run-chain", "--config", str(chain)])
    assert res.exit_code == 2 and "nothere.onnx" in res.stderr
    hint = [line for line in res.stderr.splitlines() if ": hint: " in line]
    assert hint and "--voice" not in hint[0] and "voice:" in hint[0]
    ctx = click.Context(runner_command := cli.get_command(click.Context(cli), "run-chain"), info_name="aicp run-chain")
    assert runner_command is not None
    assert fit_hint("regenerate it (aicp-script --best-of 4), or voice it without --require-checks", ctx) == (
        "regenerate it (aicp-script --best-of 4), or voice it without require_checks:")
    assert fit_hint("run again with --resume, or --traceback", ctx) == "run again with --resume, or --traceback"


def test_columns_count_emoji_sequences_as_a_terminal_shows_them() -> None:
    """U+FE0F makes ❤ a 2-column emoji; a line is cut and wrapped between whole clusters."""
    assert columns("❤\ufe0f") == 2 and columns("👍🏽") == 2 and columns("日本") == 4 and columns("e\u0301") == 1
    cut = one_line("p", "❤\ufe0f" * 60)
    assert columns(cut) <= WIDTH and cut.endswith("❤\ufe0f…")
    lines = notice_lines("p", "❤\ufe0f" * 80)
    assert all(columns(line) <= WIDTH for line in lines) and len(lines) == 2
    assert all(not line.removeprefix("p: ").startswith("\ufe0f") for line in lines)
    assert "".join(line.removeprefix("p: ") for line in lines) == "❤\ufe0f" * 80


def test_run_chain_messages_name_its_keys_and_leave_paths_alone(tmp_path: Path) -> None:
    """on_error: stop said 'stopped at line 1 (--strict)': run-chain has no --strict. A path
    that looks like an option is not rewritten."""
    from ai_content_pipeline.cli.errors import fit_hint
    from ai_content_pipeline.cli.main import cli

    chain = write_chain(tmp_path, on_error="stop")
    (tmp_path / "songs.jsonl").write_text("not json\n")
    res = invoke(cli, "aicp", ["run-chain", "--config", str(chain)])
    error = [line for line in res.stderr.splitlines() if ": error: " in line]
    assert res.exit_code == 1 and error and "(on_error: stop)" in error[0] and "--strict" not in res.stderr
    ctx = click.Context(cli.get_command(click.Context(cli), "run-chain"), info_name="aicp run-chain")
    for text in ("input file --voice.jsonl does not exist", "did you mean ./--strict?", "--no-such-option x"):
        assert fit_hint(text, ctx) == text
