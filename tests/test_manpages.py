"""The man pages in man/ are generated from the click commands and must not drift from them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ai_content_pipeline.cli.manpages import PAGES, esc, generate

ROOT = Path(__file__).resolve().parents[1]


def test_committed_pages_match_the_code(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert sorted(p.name for p in fresh) == sorted(f"{name}.1" for name in PAGES)
    stale = [p.name for p in fresh if (ROOT / "man" / p.name).read_text() != p.read_text()]
    assert not stale, f"man pages out of date: {stale}; run `make man`"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_pages_carry_exit_codes_events_and_examples(tmp_path: Path, page: str) -> None:
    text = (ROOT / "man" / f"{page}.1").read_text()
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXIT STATUS", ".SH EXAMPLES"):
        assert section in text, section
    for code in ("0", "1", "2", "3", "4", "130"):
        assert f"\\fB{code}\\fR" in text
    if page == "aicp-merge":  # runs no stage: no events
        assert ".SH EVENTS" not in text
        return
    assert ".SH EVENTS" in text
    assert "\\fBrecord_complete\\fR" in text and "\\fBmodel_unload\\fR" in text


def test_run_chain_page_lists_its_options_and_chain_events() -> None:
    text = (ROOT / "man" / "aicp-run-chain.1").read_text()
    for option in ("--config", "--set", "--dry-run", "--resume", "--stream"):
        assert esc(option) in text
    for event in ("pipeline_start", "step_start", "step_complete", "step_error", "pipeline_complete"):
        assert f"\\fB{event}\\fR" in text
    assert esc("jq -r '.outputs.final.path'") in text


def test_aicp_page_documents_completion_and_subcommands() -> None:
    text = (ROOT / "man" / "aicp.1").read_text()
    assert ".SH SHELL COMPLETION" in text and "_AICP_COMPLETE=bash_source" in text
    for sub in ("script", "voice", "run\\-chain", "doctor", "templates", "personas"):
        assert f"\\fB{sub}\\fR" in text


def test_escaping() -> None:
    assert esc(".hidden -x \\n") == "\\&.hidden \\-x \\en"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_pages_render_without_warnings() -> None:
    for page in PAGES:
        proc = subprocess.run(["man", "--warnings", "-l", str(ROOT / "man" / f"{page}.1")],
                              capture_output=True, text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0 and "EXIT STATUS" in proc.stdout, proc.stderr
        assert proc.stderr.strip() == "", proc.stderr


def test_generator_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ai_content_pipeline.cli.manpages", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and (tmp_path / "aicp-run-chain.1").is_file()
