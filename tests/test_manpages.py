"""The man pages in man/ are generated from the click commands and must not drift from them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ai_content_pipeline.cli.manpages import PAGE_EVENTS, PAGES, esc, generate
from ai_content_pipeline.eventdocs import EVENTS, names, plain, readme_block
from ai_content_pipeline.events import Emitter
from ai_content_pipeline.status import EXIT_STATUS_MEANINGS, ExitStatus

ROOT = Path(__file__).resolve().parents[1]
MAN1 = ROOT / "man" / "man1"


def test_committed_pages_match_the_code(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert sorted(p.name for p in fresh) == sorted(f"{name}.1" for name in PAGES)
    stale = [p.name for p in fresh if (MAN1 / p.name).read_text() != p.read_text()]
    assert not stale, f"man pages out of date: {stale}; run `make man`"


RUN_PAGES = sorted(p for p in PAGES if PAGE_EVENTS[p])


@pytest.mark.parametrize("page", RUN_PAGES)
def test_pages_carry_exit_codes_events_and_examples(tmp_path: Path, page: str) -> None:
    text = (MAN1 / f"{page}.1").read_text()
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXIT STATUS", ".SH EXAMPLES"):
        assert section in text, section
    assert set(EXIT_STATUS_MEANINGS) == set(ExitStatus)  # every status has its line
    for code in ("0", "1", "2", "3", "4", "130", "141"):
        assert f"\\fB{code}\\fR" in text
    if page == "aicp-merge":  # runs no stage: no events
        assert ".SH EVENTS" not in text
        return
    assert ".SH EVENTS" in text
    assert "\\fBrecord_complete\\fR" in text
    assert ("\\fBmodel_unload\\fR" in text) == (page != "aicp-mix")  # mix loads no model


@pytest.mark.parametrize("page,codes", [("aicp-doctor", ("0", "4")), ("aicp-templates", ("0", "2", "3")),
                                        ("aicp-personas", ("0", "2", "3"))])
def test_doctor_templates_and_personas_have_pages(page: str, codes: tuple[str, ...]) -> None:
    text = (MAN1 / f"{page}.1").read_text()
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXIT STATUS", ".SH EXAMPLES"):
        assert section in text, section
    assert ".SH EVENTS" not in text
    assert [c for c in ("0", "1", "2", "3", "4", "130") if f"\\fB{c}\\fR" in text] == list(codes)
    if page != "aicp-doctor":
        assert ".SH COMMANDS" in text and "\\fBlist\\fR" in text and "\\fBshow\\fR" in text
    assert f"\\fB{esc(page)}\\fR(1)" in (MAN1 / "aicp.1").read_text()


def test_events_section_uses_the_real_field_names_of_the_one_table() -> None:
    text = (MAN1 / "aicp-run-chain.1").read_text()
    events = text.split(".SH EVENTS")[1].split(".SH ")[0]
    assert "step_index" not in events and "record_id" not in events  # parameter names, not fields
    for field in ("step (1\\-based)", "id (null for an input line", "total (null while reading a pipe)"):
        assert field in events, field
    for row_events, fields, _ in EVENTS:
        assert esc(plain(fields)) in events or not set(row_events) & set(PAGE_EVENTS["aicp-run-chain"])


def test_readme_holds_the_event_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_block() in readme, "README's event table drifted: paste eventdocs.readme_block()"


def test_every_emitted_event_is_in_the_table() -> None:
    import re

    source = "\n".join(p.read_text() for p in (ROOT / "ai_content_pipeline").rglob("*.py"))
    emitted = set(re.findall(r"""emit\(\s*["'](\w+)["']""", source))
    emitted |= {m for m in dir(Emitter) if not m.startswith("_") and m not in ("emit", "close", "elapsed", "envelope", "result_fields")}
    assert emitted and emitted <= names(), emitted - names()


def test_run_chain_page_lists_its_options_and_chain_events() -> None:
    text = (MAN1 / "aicp-run-chain.1").read_text()
    for option in ("--config", "--set", "--dry-run", "--resume", "--stream"):
        assert esc(option) in text
    for event in ("pipeline_start", "step_start", "step_complete", "step_error", "pipeline_complete"):
        assert f"\\fB{event}\\fR" in text
    assert esc("jq -r '.outputs.final.path'") in text


def test_aicp_page_documents_completion_and_subcommands() -> None:
    text = (MAN1 / "aicp.1").read_text()
    assert ".SH SHELL COMPLETION" in text and "_AICP_COMPLETE=bash_source" in text
    for sub in ("script", "voice", "run\\-chain", "doctor", "templates", "personas"):
        assert f"\\fB{sub}\\fR" in text


def test_escaping() -> None:
    assert esc(".hidden -x \\n") == "\\&.hidden \\-x \\en"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_pages_render_without_warnings() -> None:
    for page in PAGES:
        proc = subprocess.run(["man", "--warnings", "-l", str(MAN1 / f"{page}.1")],
                              capture_output=True, text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0 and "EXIT STATUS" in proc.stdout, proc.stderr
        assert proc.stderr.strip() == "", proc.stderr


def test_generator_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ai_content_pipeline.cli.manpages", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and (tmp_path / "man1" / "aicp-run-chain.1").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_tells_how_to_reach_the_man_pages(tmp_path: Path) -> None:
    dry = subprocess.run(["make", "-n", "install"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0 and f"MANPATH=\\\"{ROOT}/man:" in dry.stdout, dry.stdout
    proc = subprocess.run(["make", "-s", "install-man", f"PREFIX={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "share/man/man1").iterdir()) == sorted(f"{p}.1" for p in PAGES)


@pytest.mark.skipif(shutil.which("man") is None or shutil.which("make") is None, reason="man or make is not installed")
def test_the_manpath_line_of_make_install_lets_man_find_the_pages(tmp_path: Path) -> None:
    """`make install` prints an `export MANPATH=...` line; with it, `man aicp` finds aicp.1 (man
    looks for man1/ below each MANPATH folder)."""
    dry = subprocess.run(["make", "-s", "-n", "install"], cwd=ROOT, capture_output=True, text=True)
    line = next(cmd for cmd in dry.stdout.splitlines() if "MANPATH=" in cmd)
    shown = subprocess.run(["sh", "-c", line], capture_output=True, text=True).stdout  # what the user reads
    export = shown[shown.index("export MANPATH="):].split(" (then")[0]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for page in ("aicp", "aicp-run-chain"):
        found = subprocess.run(["sh", "-c", f"{export}; man -w {page}"], capture_output=True, text=True,
                               cwd=tmp_path, env=env)
        assert found.returncode == 0 and found.stdout.strip() == str(MAN1 / f"{page}.1"), (export, found.stderr)
