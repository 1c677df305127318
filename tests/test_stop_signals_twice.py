"""A second Ctrl-C (or a stop signal after it) while a run cleans up ends it at once and
quietly: no KeyboardInterrupt raised into the clean-up, whose traceback a native object's
``__del__`` printed on stderr."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = '''
import sys, time, click
from ai_content_pipeline.cli.errors import run_cli

class Native:
    def __del__(self):  # a native object released slowly (llama.cpp's sampler, a model)
        time.sleep(2)

@click.command()
def slow():
    held = Native()
    try:
        print("ready", flush=True)
        time.sleep(30)
    finally:
        del held

sys.exit(run_cli(slow, "aicp-test"))
'''


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_second_signal_during_clean_up_ends_the_run_without_a_traceback(tmp_path: Path, second: int) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # inside the slow __del__
    proc.send_signal(second)
    started = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 1.5  # at once, not after the clean-up's 2 s
    assert proc.returncode in (-second, 128 + second)
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err


def test_a_single_ctrl_c_still_reports_interrupted_with_130(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.decode().strip() == "aicp-test: error: interrupted"
