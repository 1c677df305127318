"""aicp serve's and aicp worker's timing options take finite numbers only: NaN passed every
range check (each comparison with it is false) and then made a worker wait for no time or
for ever, and a stale claim never stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke


@pytest.mark.parametrize("value", ["nan", "inf", "-nan", "Infinity"])
@pytest.mark.parametrize(("command", "option"), [
    ("worker", "--poll"), ("worker", "--heartbeat"), ("worker", "--stale-after"), ("worker", "--lock-wait"),
    ("serve", "--stale-after"),
])
def test_a_timing_option_refuses_what_is_not_a_finite_number(tmp_path: Path, command: str, option: str,
                                                            value: str) -> None:
    extra = ["--once"] if command == "worker" else ["--port", "1"]
    result = invoke(cli, "aicp", [command, "--data-dir", str(tmp_path / "data"), option, value, *extra])
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert f"Invalid value for '{option}'" in result.stderr and "not a finite number" in result.stderr
    assert not (tmp_path / "data").exists()
