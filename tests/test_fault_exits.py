"""Faults are clear errors with the documented exit codes, never tracebacks.

- full disk (a real tiny tmpfs when this machine lets us mount one, plus a monkeypatched ENOSPC);
- stdout closed by its reader, closed before the start (`>&-`) or full (`/dev/full`), for every command;
- Ctrl-C and a reader that leaves stop within a second or two with `--jobs 4` on a hung Ollama;
- `--timeout` makes a hung request a transient per-record error;
- read-only `output_dir`, template sandbox violations;
- the `--stream` error event: real `elapsed_seconds`, no blank line on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from click.testing import CliRunner

from ai_content_pipeline import audio
from ai_content_pipeline.chain import runner
from ai_content_pipeline.chain.spec import ScriptStep
from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.errors import run_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.errors import BackendUnavailable, UsageError
from ai_content_pipeline.faults import DiskFull, os_error, path_problem
from ai_content_pipeline.stages.common import ordered_map
from ai_content_pipeline.status import ExitStatus
from tests.chain_doubles import FakeFactory, chain_data, write_chain, write_songs
from tests.cli_helpers import BIN, invoke
from tests.conftest import EXAMPLES
from tests.doubles import FakeLLM, SpeechTTS
from tests.ollama_server import OllamaServer, Reply

ROOT = Path(__file__).resolve().parents[1]
SONGS = os.path.join(EXAMPLES, "songs.jsonl")
SCRIPTS = b"".join(orjson.dumps(r) + b"\n" for r in [
    {"id": "s1", "script": {"text": "Good evening, night owls. Here is Queen.", "persona": "julie", "take": 0}},
    {"id": "s2", "script": {"text": "Turn it up! This is Max with Dreams.", "persona": "max", "take": 0}},
])
EXIT_CODES = {int(s) for s in ExitStatus}


def aicp(args: list[str], input: bytes | str | None = None) -> tuple[int, str, str]:
    with CliRunner().isolation(input=input) as (out, err, _):
        code = run_cli(cli, "aicp", args)
        sys.stdout.flush()
        sys.stderr.flush()
    return code, out.getvalue().decode(), err.getvalue().decode()


def no_noise(stderr: str) -> None:
    assert "Traceback" not in stderr and "unexpected" not in stderr and "Exception ignored" not in stderr


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", ro: bool = False) -> Iterator[Path]:
    """A real, tiny tmpfs at ``path`` (root only); skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# == item 8: a full disk =======================================================================
def test_os_error_names_path_and_free_space(tmp_path: Path) -> None:
    err = os_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a.wav")
    assert isinstance(err, DiskFull) and err.exit_status == ExitStatus.ERROR
    assert str(tmp_path / "a.wav") in err.message and "no space left" in err.message and "free" in err.message
    assert os_error(PermissionError(errno.EACCES, "Permission denied"), "x").exit_status == ExitStatus.USAGE
    assert os_error(OSError(errno.EROFS, "Read-only file system"), "x").exit_status == ExitStatus.USAGE
    assert os_error(OSError(errno.EIO, "Input/output error"), "x").exit_status == ExitStatus.ERROR


def test_enospc_while_writing_audio_is_diskfull_and_leaves_no_part_file(monkeypatch, tmp_path: Path) -> None:
    from ai_content_pipeline import files

    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fh: Any) -> None:
            self._fh = fh

        def write(self, data: Any) -> int:
            self._fh.write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._fh, name)

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()

    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode, *a, **k: FullFile(real_fdopen(fd, mode, *a, **k)))
    samples = (0.3 * np.sin(np.arange(22050 * 2) / 10)).astype(np.float32)
    with pytest.raises(DiskFull) as info:
        audio.write_audio_atomic(tmp_path / "s1.wav", samples, 22050, format="wav", words=4)
    assert str(tmp_path / "s1.wav") in info.value.message and "free there" in info.value.message
    assert os.listdir(tmp_path) == []


def test_voice_on_a_full_tmpfs_exits_1_with_path_and_free_space(monkeypatch, tmp_path: Path) -> None:
    voice_cli_records = b"".join([SCRIPTS] * 1)
    with tmpfs(tmp_path / "full", size="48k") as out_dir:
        voice_cli.create_tts = voice_cli.create_tts  # keep a reference for monkeypatch's undo
        monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: SpeechTTS())
        res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(out_dir)], voice_cli_records)
        leftovers = [p for p in os.listdir(out_dir) if p.endswith(".part")]
    assert res.exit_code == ExitStatus.ERROR, res.stderr
    assert "no space left on the device" in res.stderr and str(out_dir) in res.stderr and "free there" in res.stderr
    assert res.stderr.count("aicp-voice: error:") == 1
    no_noise(res.stderr)
    assert leftovers == []
    for line in res.stdout.splitlines():  # what did reach stdout is whole records with real files
        assert "audio" in orjson.loads(line)


def test_chain_on_a_full_tmpfs_still_prints_pipeline_complete(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    with tmpfs(tmp_path / "full", size="24k") as out_dir:
        path = write_chain(tmp_path, output_dir=str(out_dir / "run"))
        code, out, err = aicp(["run-chain", "--config", str(path)])
    assert code == ExitStatus.ERROR, err
    result = orjson.loads(out)
    assert result["event"] == "pipeline_complete" and result["success"] is False
    assert "no space left" in result["error"]["message"]
    assert "aicp run-chain: error:" in err and "no space left" in err
    no_noise(err)


# == item 9: stdout closed or full ==============================================================
COMMANDS = {
    "templates list": ["aicp", "templates", "list"],
    "personas list": ["aicp", "personas", "list"],
    "templates show": ["aicp", "templates", "show", "song-intro"],
    "doctor": ["aicp", "doctor"],
    "help": ["aicp", "--help"],
    "script help": ["aicp-script", "--help"],
    "voice bad line": ["aicp-voice", "--backend", "piper", "--out-dir", "{tmp}/o"],
    "dry-run": ["aicp", "run-chain", "--config", "{chain}", "--dry-run"],
}


def _cmd(name: str, tmp_path: Path) -> list[str]:
    chain = write_chain(tmp_path)
    argv = [a.format(tmp=tmp_path, chain=chain) for a in COMMANDS[name]]
    return [os.path.join(BIN, argv[0]), *argv[1:]]


def _closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (`| true` that exited first)."""
    r, w = os.pipe()
    os.close(r)
    return w


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_reader_gone_exits_141_quietly(name: str, tmp_path: Path) -> None:
    w = _closed_pipe()
    try:
        proc = subprocess.run(_cmd(name, tmp_path), stdout=w, stderr=subprocess.PIPE, input=b"not json\n",
                              timeout=120, env={**os.environ, "OLLAMA_HOST": "http://127.0.0.1:9"})
    finally:
        os.close(w)
    assert proc.returncode == ExitStatus.BROKEN_PIPE, proc.stderr.decode()
    assert proc.stderr.decode().strip() == "" or "backend auto" in proc.stderr.decode()


def test_run_chain_piped_to_a_gone_reader_exits_141(tmp_path: Path) -> None:
    write_chain(tmp_path)
    cmd = [sys.executable, "-m", "tests.chain_doubles", "run-chain", "--config", "pipeline.yaml"]
    w = _closed_pipe()
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, stdout=w, stderr=subprocess.PIPE, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(w)
    assert proc.returncode == ExitStatus.BROKEN_PIPE, proc.stderr.decode()
    no_noise(proc.stderr.decode())


def test_run_chain_through_the_shell_pipe_to_true(tmp_path: Path) -> None:
    chain = write_chain(tmp_path)
    proc = subprocess.run(["bash", "-c", f"'{BIN}/aicp' run-chain --config '{chain}' --dry-run | true; "
                                         "echo \"${PIPESTATUS[0]}\""], capture_output=True, timeout=120)
    assert proc.stdout.decode().strip() in ("141", "0")  # 0 only when it finished before `true` left
    no_noise(proc.stderr.decode())


@pytest.mark.parametrize("name", ["templates list", "doctor", "script help", "dry-run", "voice bad line"])
def test_stdout_closed_before_start_is_a_clear_error(name: str, tmp_path: Path) -> None:
    cmd = " ".join(f"'{a}'" for a in _cmd(name, tmp_path))
    proc = subprocess.run(["bash", "-c", f"{cmd} >&- </dev/null"], capture_output=True, timeout=120)
    stderr = proc.stderr.decode()
    assert proc.returncode == ExitStatus.BROKEN_PIPE, stderr
    assert "stdout is closed" in stderr
    no_noise(stderr)


@pytest.mark.parametrize("name", ["templates list", "personas list", "doctor", "script help", "dry-run",
                                  "voice bad line"])
def test_stdout_on_dev_full_exits_1_with_one_message(name: str, tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(_cmd(name, tmp_path), stdout=full, stderr=subprocess.PIPE, input=b"not json\n",
                              timeout=120)
    stderr = proc.stderr.decode()
    assert proc.returncode == ExitStatus.ERROR, stderr
    assert "no space left" in stderr
    no_noise(stderr)


def test_stderr_closed_does_not_break_a_run(tmp_path: Path) -> None:
    cmd = " ".join(f"'{a}'" for a in _cmd("templates list", tmp_path))
    proc = subprocess.run(["bash", "-c", f"{cmd} 2>&-"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"song-intro" in proc.stdout


def test_script_records_to_dev_full_exit_1(tmp_path: Path) -> None:
    with OllamaServer(models=["llama3.2"]) as srv, open("/dev/full", "wb") as full:
        proc = subprocess.run([os.path.join(BIN, "aicp-script"), "--backend", "ollama", "--host", srv.url, SONGS],
                              stdout=full, stderr=subprocess.PIPE, timeout=120)
    stderr = proc.stderr.decode()
    assert proc.returncode == ExitStatus.ERROR and "no space left" in stderr and "stdout" in stderr
    no_noise(stderr)


# == item 10: Ctrl-C and a reader that leaves, with --jobs 4 against a hung server ============
def _script_proc(srv: OllamaServer, *extra: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    cmd = [os.path.join(BIN, "aicp-script"), "--backend", "ollama", "--host", srv.url, *extra, SONGS]
    return subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)


def _wait_in_flight(srv: OllamaServer, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while srv.in_flight < n:
        assert time.monotonic() < deadline, f"only {srv.in_flight} requests in flight"
        time.sleep(0.02)


HUNG = {"reply_for": lambda body: Reply(delay=60), "unload_delay": 40.0}


def _interrupt(proc: subprocess.Popen, ready: Any) -> tuple[int, float, str]:
    """Call ``ready()``, send SIGINT to ``proc``: (exit code, seconds to exit, stderr)."""
    try:
        ready()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.stderr is not None
    return code, took, proc.stderr.read().decode()


@pytest.mark.parametrize("jobs", ["4", "1"])
def test_ctrl_c_with_jobs_on_a_hung_server_exits_130_within_2s(jobs: str) -> None:
    with OllamaServer(models=["llama3.2"], **HUNG) as srv:
        proc = _script_proc(srv, "--jobs", jobs)
        code, took, stderr = _interrupt(proc, lambda: _wait_in_flight(srv, int(jobs)))
    assert code == ExitStatus.INTERRUPTED and took < 2.0, (took, stderr)
    assert "aicp-script: error: interrupted" in stderr
    no_noise(stderr)


def test_ctrl_c_in_stream_mode_keeps_stderr_pure_json_with_real_elapsed() -> None:
    with OllamaServer(models=["llama3.2"], **HUNG) as srv:
        proc = _script_proc(srv, "--jobs", "4", "--stream")
        code, _, raw = _interrupt(proc, lambda: (_wait_in_flight(srv, 4), time.sleep(1.0)))
    assert code == ExitStatus.INTERRUPTED
    lines = raw.split("\n")
    assert lines[-1] == "" and all(line.strip() for line in lines[:-1]), repr(raw)  # no blank line
    events = [orjson.loads(line) for line in lines[:-1]]
    last = events[-1]
    assert last["event"] == "error" and last["exit_code"] == 130
    assert last["elapsed_seconds"] >= 1.0  # counted from the start, not from the error
    assert last["elapsed_seconds"] >= max(e["elapsed_seconds"] for e in events[:-1])


def test_reader_leaving_with_jobs_4_on_a_hung_server_exits_141_within_2s() -> None:
    first = lambda body: Reply(delay=0.0) if "Bohemian" in str(body) else Reply(delay=60)  # noqa: E731
    with OllamaServer(models=["llama3.2"], reply_for=first, unload_delay=40.0) as srv:
        r, w = os.pipe()
        proc = _script_proc(srv, "--jobs", "4", stdout=w)
        os.close(w)
        try:
            _wait_in_flight(srv, 3)
            assert b"Bohemian" in os.read(r, 1 << 16)  # `head -1` got its line...
            t0 = time.monotonic()
            os.close(r)  # ...and left
            code = proc.wait(timeout=30)
            took = time.monotonic() - t0
        finally:
            proc.kill()
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
    assert code == ExitStatus.BROKEN_PIPE and took < 2.0, (took, stderr)
    assert stderr == ""


def _interrupt_on_resume(code: Any) -> Any:
    """A ``sys.settrace`` function that raises ``KeyboardInterrupt`` as the generator with
    ``code`` is next resumed: where a Ctrl-C or a reader-gone signal lands when the main
    thread is between two records, in the stage's own frame."""

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            sys.settrace(None)
            raise KeyboardInterrupt

    return tracer


def test_an_interrupt_in_the_script_stage_frame_aborts_before_it_unloads() -> None:
    """CI saw `| head -1` hang 30 s: the signal landed in ScriptStage.run's frame, outside
    ordered_map, and the run unloaded (keep_alive 0, then a wait on /api/ps) a server that
    was still busy with the three requests in flight, without cancelling them first."""
    from ai_content_pipeline.backends.ollama import OllamaBackend
    from ai_content_pipeline.jsonl import read_records
    from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage

    first = lambda body: Reply(delay=0.0) if "Bohemian" in str(body) else Reply(delay=60)  # noqa: E731
    with OllamaServer(models=["llama3.2"], reply_for=first, unload_delay=40.0) as srv:
        stage = ScriptStage(OllamaBackend("llama3.2", host=srv.url), ScriptOptions(jobs=4), None, None)
        records = stage.run(read_records([SONGS]))
        assert "Bohemian" in str(next(records))
        _wait_in_flight(srv, 3)
        sys.settrace(_interrupt_on_resume(ScriptStage.run.__code__))
        t0 = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                next(records)
        finally:
            sys.settrace(None)
        took = time.monotonic() - t0
        unloads = [r for r in srv.requests if isinstance(r.body, dict) and r.body.get("keep_alive") == 0]
    assert took < 2.0 and not unloads, (took, unloads)


def test_an_interrupt_in_the_voice_stage_frame_aborts_before_it_unloads(tmp_path: Path) -> None:
    from ai_content_pipeline.jsonl import read_records
    from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage

    class Abortable(SpeechTTS):
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    scripts = tmp_path / "scripts.jsonl"
    scripts.write_bytes(SCRIPTS)
    tts = Abortable()
    stage = VoiceStage(tts, VoiceOptions(out_dir=str(tmp_path / "audio")), None, None)
    records = stage.run(read_records([str(scripts)]))
    next(records)
    sys.settrace(_interrupt_on_resume(VoiceStage.run.__code__))
    try:
        with pytest.raises(KeyboardInterrupt):
            next(records)
    finally:
        sys.settrace(None)
    assert tts.aborted and not tts.loaded


def test_an_abort_while_ollama_describes_the_model_leaves_no_client_behind(monkeypatch) -> None:
    """load() in a worker thread and abort() in the main thread: the load that was under way
    fails instead of bringing the backend back to life (which the unload would then wait on)."""
    import ollama

    from ai_content_pipeline.backends.ollama import OllamaBackend

    started, release = threading.Event(), threading.Event()
    real_show = ollama.Client.show

    def slow_show(self: Any, *args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(10)
        return real_show(self, *args, **kwargs)

    monkeypatch.setattr(ollama.Client, "show", slow_show)
    with OllamaServer(models=["llama3.2"], unload_delay=40.0) as srv:
        backend = OllamaBackend("llama3.2", host=srv.url)
        failures: list[BaseException] = []

        def load() -> None:
            try:
                backend.load()
            except BaseException as exc:  # noqa: BLE001 - what the worker saw
                failures.append(exc)

        worker = threading.Thread(target=load)
        worker.start()
        assert started.wait(10)
        backend.abort()
        release.set()
        worker.join(10)
        assert not backend.loaded
        assert len(failures) == 1 and isinstance(failures[0], BackendUnavailable)
        t0 = time.monotonic()
        backend.unload()
        assert time.monotonic() - t0 < 1.0


def test_ordered_map_abort_does_not_wait_for_calls_in_flight() -> None:
    release = threading.Event()
    aborted: list[bool] = []

    def slow(item: int) -> int:
        if item > 0:
            release.wait(30)
        return item

    gen = ordered_map(slow, range(8), jobs=4, on_abort=lambda: aborted.append(True))
    assert next(gen) == 0
    t0 = time.monotonic()
    gen.close()
    assert time.monotonic() - t0 < 0.5 and aborted == [True]
    release.set()


def test_ordered_map_still_waits_after_an_ordinary_error() -> None:
    started: list[int] = []
    finished: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 0:
            time.sleep(0.1)  # let the others start (a loaded machine starts threads late)
            raise ValueError("boom")
        time.sleep(0.2)
        finished.append(item)
        return item

    with pytest.raises(ValueError):
        list(ordered_map(work, range(3), jobs=3))
    assert len(started) >= 2 and sorted(finished) == sorted(i for i in started if i)  # none left running


# == item 11: --timeout ========================================================================
def test_timeout_fails_a_hung_record_as_transient_and_retries_apply() -> None:
    with OllamaServer(models=["llama3.2"], reply_for=lambda body: Reply(delay=5)) as srv:
        t0 = time.monotonic()
        res = invoke(script_cli.script_command, "aicp-script",
                     ["--backend", "ollama", "--host", srv.url, "--timeout", "0.5", "--retries", "1"],
                     b'{"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody"}\n')
        took = time.monotonic() - t0
        chats = len(srv.requests_to("/api/chat"))
    assert res.exit_code == ExitStatus.PARTIAL, res.stderr
    error = orjson.loads(res.stdout)["error"]
    assert error["type"] == "TransientBackendError" and "0.5 s" in error["message"]
    assert chats == 2 and took < 4.5  # two attempts of 0.5 s (+1 s back-off), not 300 s


def test_timeout_is_a_chain_param_given_to_the_ollama_backend() -> None:
    step = ScriptStep(type="script", backend="ollama", host="http://127.0.0.1:9", params={"timeout": 2.5})
    backend = runner.create_backend(step, lambda text: None)
    assert backend.name == "ollama" and backend.timeout == 2.5


def test_timeout_is_documented_in_help_and_man_page() -> None:
    res = invoke(script_cli.script_command, "aicp-script", ["--help"])
    assert "--timeout SECONDS" in res.stdout
    assert "timeout" in (ROOT / "man" / "man1" / "aicp-script.1").read_text()


# == item 12: read-only output_dir, sandbox violations ============================================
def test_output_dir_under_a_regular_file_exits_2_with_pipeline_complete(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    (tmp_path / "plain").write_text("x")
    path = write_chain(tmp_path, output_dir=str(tmp_path / "plain" / "out"))
    for extra in ([], ["--stream"]):
        code, out, err = aicp(["run-chain", "--config", str(path), *extra])
        assert code == ExitStatus.USAGE, err
        result = orjson.loads(out.splitlines()[-1])
        assert result["event"] == "pipeline_complete" and result["success"] is False
        assert "output_dir" in result["error"]["message"] and str(tmp_path / "plain") in result["error"]["message"]
        no_noise(err)


def test_read_only_output_dir_exits_2_with_pipeline_complete(monkeypatch, tmp_path: Path) -> None:
    factory = FakeFactory()
    monkeypatch.setattr(runner, "create_backend", factory)
    with tmpfs(tmp_path / "ro", ro=True) as ro:
        path = write_chain(tmp_path, output_dir=str(ro / "out"))
        code, out, err = aicp(["run-chain", "--config", str(path)])
    assert code == ExitStatus.USAGE, err
    result = orjson.loads(out)
    assert result["success"] is False and "Read-only file system" in result["error"]["message"]
    assert "aicp run-chain: error: cannot write to output_dir" in err and factory.built == []  # no model ran
    no_noise(err)


EVIL = "name: evil\nsystem: \"You are {{ persona.name }}\"\nuser: \"{{ title.__class__.__mro__ }}\"\n"


def test_template_sandbox_violation_exits_2(tmp_path: Path, monkeypatch) -> None:
    template = tmp_path / "evil.yaml"
    template.write_text(EVIL)
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: FakeLLM())
    res = invoke(script_cli.script_command, "aicp-script", ["-t", str(template), SONGS])
    assert res.exit_code == ExitStatus.USAGE, res.stderr
    assert "evil" in res.stderr and "templates may not do" in res.stderr and "__class__" in res.stderr
    no_noise(res.stderr)


def test_template_sandbox_violation_in_a_chain_still_prints_pipeline_complete(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    template = tmp_path / "evil.yaml"
    template.write_text(EVIL)
    path = write_chain(tmp_path)
    code, out, err = aicp(["run-chain", "--config", str(path), "--set", f"steps.0.template={template}"])
    assert code == ExitStatus.USAGE, err
    result = orjson.loads(out)
    assert result["success"] is False and result["error"]["type"] == "TemplateSandboxError"
    no_noise(err)


def test_template_failing_on_one_records_values_fails_that_record(tmp_path: Path, monkeypatch) -> None:
    template = tmp_path / "year.yaml"
    template.write_text("name: year\nsystem: s\nuser: \"{{ year + 1 }}\"\nrequired: [year]\n")
    songs = write_songs(tmp_path / "s.jsonl", [{"id": "a", "year": 1975}, {"id": "b", "year": "1977"}])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: FakeLLM())
    res = invoke(script_cli.script_command, "aicp-script", ["-t", str(template), str(songs)])
    assert res.exit_code == ExitStatus.PARTIAL, res.stderr
    out = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert "script" in out[0] and out[1]["error"]["type"] == "InputError" and "TypeError" in out[1]["error"]["message"]


# == item 15: the error event's elapsed time; directories ======================================
def test_stream_error_event_elapsed_counts_from_the_start(monkeypatch) -> None:
    def slow_unavailable(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)
        raise BackendUnavailable("cannot reach Ollama", hint="is it running?")

    monkeypatch.setattr(script_cli, "create_llm", slow_unavailable)
    res = invoke(script_cli.script_command, "aicp-script", ["--stream", SONGS])
    assert res.exit_code == ExitStatus.BACKEND_UNAVAILABLE
    (event,) = [orjson.loads(line) for line in res.stderr.splitlines()]
    assert event["event"] == "error" and event["elapsed_seconds"] >= 0.4


def test_path_problem_says_directory_not_missing(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert path_problem(tmp_path) == "is a directory"
    assert path_problem(tmp_path / "nope") == "does not exist"
    assert path_problem(tmp_path / "f") is None
    assert path_problem(tmp_path / "f", want="directory") == "is not a directory"
    assert path_problem("/dev/null") == "is not a regular file"


def test_voice_out_dir_that_is_a_file_is_a_usage_error(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "plain" / "sub")], SCRIPTS)
    assert res.exit_code == ExitStatus.USAGE and "Not a directory" in res.stderr
    no_noise(res.stderr)


def test_usage_error_class_is_exit_2() -> None:
    assert UsageError("x").exit_status == 2 and ExitStatus.BROKEN_PIPE in EXIT_CODES


def test_flag_words_given_as_option_values_do_not_turn_the_flags_on(tmp_path: Path) -> None:
    chain = str(write_chain(tmp_path))
    code, out, err = aicp(["run-chain", "--config", chain, "--dry-run", "--set", "--traceback"])
    assert code == ExitStatus.USAGE and err.startswith("aicp run-chain: error: --set '--traceback'")
    assert "Traceback (most recent call last)" not in err
    code, out, err = aicp(["run-chain", "--config", chain, "--dry-run", "--set", "--stream"])
    assert code == ExitStatus.USAGE and err.startswith("aicp run-chain: error:")  # plain text, not an event
    code, out, err = aicp(["run-chain", "--config", chain, "--dry-run", "--stream", "--set", "x"])
    assert code == ExitStatus.USAGE and orjson.loads(err)["event"] == "error"


def test_ctrl_c_in_a_chain_on_a_hung_ollama_exits_130_within_2s(tmp_path: Path) -> None:
    with OllamaServer(models=["llama3.2"], **HUNG) as srv:
        data = chain_data(tmp_path)
        data["steps"][0].update(backend="ollama", host=srv.url, params={"jobs": 4, "timeout": 120})
        path = tmp_path / "chain.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = subprocess.Popen([os.path.join(BIN, "aicp"), "run-chain", "--config", str(path), "--stream"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        code, took, err = _interrupt(proc, lambda: _wait_in_flight(srv, 3))
        events = [orjson.loads(line) for line in err.splitlines()]
        assert proc.stdout is not None
        proc.stdout.read()
    assert code == ExitStatus.INTERRUPTED and took < 2.0, (took, events[-3:])
    assert [e["event"] for e in events][-2:] == ["step_error", "error"]


def test_backend_paths_that_are_directories_say_so(tmp_path: Path) -> None:
    from ai_content_pipeline.backends.chatterbox import ChatterboxBackend, check_checkpoint_dir
    from ai_content_pipeline.backends.llamacpp import LlamaCppBackend
    from ai_content_pipeline.backends.piper import voice_paths

    folder = tmp_path / "voice.onnx"
    folder.mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        voice_paths(str(folder))
    with pytest.raises(UsageError, match="is a directory"):
        ChatterboxBackend(voice=str(tmp_path))
    (tmp_path / "plain").write_text("x")
    with pytest.raises(BackendUnavailable, match="is not a directory"):
        check_checkpoint_dir(tmp_path / "plain")
    gguf = tmp_path / "m.gguf"
    gguf.mkdir()
    with pytest.raises(BackendUnavailable, match="is a directory"):
        LlamaCppBackend(str(gguf)).load()


def test_chain_prints_pipeline_complete_even_after_an_unexpected_error(monkeypatch, tmp_path: Path) -> None:
    class Broken(FakeLLM):
        def load(self) -> None:
            raise RuntimeError("engine exploded")

    monkeypatch.setattr(runner, "create_backend", FakeFactory(llm=Broken()))
    code, out, err = aicp(["run-chain", "--config", str(write_chain(tmp_path))])
    assert code == ExitStatus.ERROR
    result = orjson.loads(out)
    assert result["event"] == "pipeline_complete" and result["error"]["message"] == "engine exploded"
    assert "Traceback" not in err



def test_memory_running_out_while_a_backend_loads_is_no_missing_backend(monkeypatch):
    """A MemoryError met importing a backend propagates (the CLI says "out of memory" with the
    fix) instead of being taken for a broken plugin, which left a persona's voice block
    refused as "Extra inputs are not permitted"."""
    import pytest as _pytest

    from ai_content_pipeline.backends import registry

    class Starved:
        value = "starved:BACKEND"

        def load(self):
            raise MemoryError

    monkeypatch.setitem(registry._registered["tts"], "starved", Starved())
    with _pytest.raises(MemoryError):
        registry.get("tts", "starved")
