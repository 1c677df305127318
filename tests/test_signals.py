"""SIGTERM and SIGHUP stop aicp-script, aicp-voice and aicp run-chain as Ctrl-C does: an
``error`` event on ``--stream`` (a line without it), exit 128 + the signal, ledgers whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.chain_doubles import SONGS, write_chain, write_songs
from tests.conftest import ROOT

TEXTS = b"".join(orjson.dumps({"id": f"r{i}", "text": "hello there, my friends"}) + b"\n" for i in range(8))

CASES = {
    "script": (["script", "--checkpoint", "run.ledger"], None),
    "voice": (["voice", "--out-dir", "audio", "--checkpoint", "run.ledger"], TEXTS),
    "run-chain": (["run-chain", "--config", "pipeline.yaml"], None),
}


def _start(tmp_path: Path, case: str, stream: bool) -> subprocess.Popen[bytes]:
    args, data = CASES[case]
    write_chain(tmp_path)
    if data is None:
        data = write_songs(tmp_path / "many.jsonl", [dict(s, id=f"{s['id']}-{i}") for i in range(3)
                                                     for s in SONGS]).read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9",
               AICP_FAKE_DELAY="0.4", AICP_FAKE_LLM_DELAY="0.4")
    cmd = [sys.executable, "-m", "tests.chain_doubles", *args, *(["--stream"] if stream else [])]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.close()
    return proc


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_the_stream_with_an_error_event(tmp_path: Path, case: str, signum: int) -> None:
    proc = _start(tmp_path, case, stream=True)
    assert proc.stderr is not None
    seen = []
    try:
        for raw in proc.stderr:
            seen.append(orjson.loads(raw))
            if seen[-1]["event"] == "record_complete":
                break
        proc.send_signal(signum)
        rest = proc.stderr.read()
    finally:
        code = proc.wait(timeout=60)
    events = [orjson.loads(line) for line in rest.splitlines()]
    name = signal.Signals(signum).name
    assert code == 128 + signum, rest
    assert events and events[-1]["event"] == "error", events
    assert events[-1]["exit_code"] == 128 + signum and events[-1]["message"] == f"terminated by {name}"
    assert not [e for e in events if e["event"] == "error"][:-1]  # one error event
    if case == "run-chain":
        assert [e["error"] for e in events if e["event"] == "step_error"] == [f"terminated by {name}"]
    if case != "run-chain":  # each ledger line is a whole JSON object
        ledger = (tmp_path / "run.ledger").read_bytes()
        assert ledger.endswith(b"\n") and all(orjson.loads(line) for line in ledger.splitlines())


def test_sigterm_without_stream_says_so_in_one_line(tmp_path: Path) -> None:
    proc = _start(tmp_path, "script", stream=False)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 143 and orjson.loads(first)["script"]
    assert err.decode().splitlines()[-1] == "aicp script: error: terminated by SIGTERM"
    assert b"Traceback" not in err


def test_serve_and_worker_keep_their_own_stop_handling() -> None:
    """aicp serve (uvicorn) and aicp worker stop gracefully their own way: the handlers that
    turn SIGTERM/SIGHUP into an interruption are given back while they run."""
    from ai_content_pipeline.cli.errors import _STOP

    before = {sig: signal.getsignal(sig) for sig in _STOP.SIGNALS}
    previous = _STOP.install()
    try:
        _STOP.command_starts("aicp-script")
        assert all(signal.getsignal(sig) == _STOP._handle for sig in _STOP.SIGNALS)
        for path in ("aicp serve", "aicp worker"):
            _STOP.command_starts(path)
            assert {sig: signal.getsignal(sig) for sig in _STOP.SIGNALS} == before
    finally:
        _STOP.restore(previous)
    assert {sig: signal.getsignal(sig) for sig in _STOP.SIGNALS} == before
