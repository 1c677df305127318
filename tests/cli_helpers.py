"""Run a click command through aicp's real top-level handler with captured, separate streams."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import click
from click.testing import CliRunner

from ai_content_pipeline.cli.errors import run_cli

BIN = os.path.dirname(sys.executable)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def invoke(command: click.Command, prog: str, args: list[str], input: bytes | str = b"") -> Result:
    """Run ``command`` with ``args`` under :func:`run_cli`; stdout and stderr kept apart."""
    runner = CliRunner()
    with runner.isolation(input=input) as streams:
        code = run_cli(command, prog, args)
        sys.stdout.flush()
        sys.stderr.flush()
    return Result(code, streams[0].getvalue().decode(), streams[1].getvalue().decode())


def run_bin(name: str, *args: str, input: bytes | None = None, timeout: float = 600,
            env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run an installed console script (``aicp-script``...) from this venv as a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([os.path.join(BIN, name), *args], input=input, capture_output=True,
                          timeout=timeout, env=full_env, **kw)
