"""`aicp serve` speaks like the other commands on stderr (issue 13: every message from one
command carries the same prefix) and keeps stdout free of log lines."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

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
