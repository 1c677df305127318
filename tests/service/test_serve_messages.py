"""`aicp serve` speaks like the other commands on stderr (every message from one command
carries the same prefix) and keeps stdout free of log lines."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ai_content_pipeline.cli.serve import PrefixFormatter
from tests.cli_helpers import BIN
from tests.service.serve_process import free_port


def test_serve_lines_carry_the_prefix_and_stay_off_stdout(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([os.path.join(BIN, "aicp"), "serve", "--port", str(port), "--data-dir",
                             str(tmp_path / "data"), "--no-worker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "aicp serve did not start"
            time.sleep(0.1)
        httpx.get(f"http://127.0.0.1:{port}/api/v1/nope", timeout=5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert out == b""  # uvicorn wrote its access lines to stdout
    assert any("Uvicorn running on" in line for line in lines) and any('"GET /api/v1/nope' in line for line in lines)
    assert all(line.startswith("aicp serve: ") for line in lines), lines


def test_every_line_of_a_traceback_or_long_message_carries_the_prefix() -> None:
    """Every line of a message of several lines carries the prefix, and so does every line of a
    traceback after it."""
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n"
                               "while serving \x1b[2J%s", ("/api",), exc_info)
    lines = PrefixFormatter("aicp serve").format(record).split("\n")
    assert lines[:2] == ["aicp serve: error: Exception in ASGI application",
                         "aicp serve: error: while serving \\x1b[2J/api"]
    assert lines[2] == "aicp serve: error: Traceback (most recent call last):"
    assert lines[-2:] == ["aicp serve: error: ValueError: boom", "aicp serve: error: second line"]
    assert all(line.startswith("aicp serve: error: ") for line in lines) and len(lines) > 5
    info = logging.LogRecord("uvicorn", logging.INFO, __file__, 1, "one\ttwo", None, None)
    assert PrefixFormatter("aicp serve").format(info) == "aicp serve: one\\ttwo"
