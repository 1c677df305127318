"""Generate the man pages from the click commands: ``python -m ai_content_pipeline.cli.manpages man``.

Each page is built from the command itself (its help, ``params`` and epilog
through click's own ``get_help_record``), the exit statuses
(:data:`~ai_content_pipeline.status.EXIT_STATUS_MEANINGS`, from the ``ExitStatus``
enum, or the command's own ``Exit status:`` epilog block) and the event table
(:data:`~ai_content_pipeline.eventdocs.EVENTS`, the table README.md shows too), so
a test can regenerate the pages and fail when they drift from the code.
Output is deterministic: no date, no terminal width. The pages go to ``man/man1/``, the
layout ``man`` expects below each folder of ``MANPATH``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import click

from ..eventdocs import plain, rows_for
from ..status import EXIT_STATUS_MEANINGS

#: page name → (``module:attribute`` of the click command, program name as typed)
PAGES: dict[str, tuple[str, str]] = {
    "aicp": ("ai_content_pipeline.cli.main:cli", "aicp"),
    "aicp-script": ("ai_content_pipeline.cli.script:script_command", "aicp-script"),
    "aicp-voice": ("ai_content_pipeline.cli.voice:voice_command", "aicp-voice"),
    "aicp-mix": ("ai_content_pipeline.cli.mix:mix_command", "aicp-mix"),
    "aicp-run-chain": ("ai_content_pipeline.cli.chain:run_chain_command", "aicp run-chain"),
    "aicp-merge": ("ai_content_pipeline.cli.merge:merge_command", "aicp merge"),
    "aicp-feed": ("ai_content_pipeline.cli.feed:feed_command", "aicp feed"),
    "aicp-serve": ("ai_content_pipeline.cli.serve:serve_command", "aicp serve"),
    "aicp-worker": ("ai_content_pipeline.cli.serve:worker_command", "aicp worker"),
    "aicp-doctor": ("ai_content_pipeline.cli.doctor:doctor_command", "aicp doctor"),
    "aicp-templates": ("ai_content_pipeline.cli.catalog:templates_group", "aicp templates"),
    "aicp-personas": ("ai_content_pipeline.cli.catalog:personas_group", "aicp personas"),
    "aicp-voices": ("ai_content_pipeline.cli.voices:voices_group", "aicp voices"),
    "aicp-logs": ("ai_content_pipeline.cli.logs:logs_command", "aicp logs"),
}
STAGE_EVENTS = ("record_start", "record_complete", "record_error", "record_skipped", "progress",
                "model_load", "model_unload", "chunk_start", "chunk_progress", "chunk_complete",
                "message", "run_complete")
CHAIN_EVENTS = ("pipeline_start", "step_start", "step_complete", "step_error", "pipeline_complete")
#: which events each page lists
PAGE_EVENTS: dict[str, tuple[str, ...]] = {
    "aicp": CHAIN_EVENTS + STAGE_EVENTS,
    "aicp-script": STAGE_EVENTS,
    "aicp-voice": STAGE_EVENTS,
    "aicp-mix": ("record_start", "record_complete", "record_error", "progress", "message", "run_complete"),
    "aicp-run-chain": CHAIN_EVENTS + STAGE_EVENTS,
    "aicp-merge": (),
    "aicp-feed": (),
    "aicp-serve": CHAIN_EVENTS + STAGE_EVENTS,  # a job's SSE stream carries these
    "aicp-worker": CHAIN_EVENTS + STAGE_EVENTS,
    "aicp-doctor": (),  # no --stream: no EVENTS section
    "aicp-templates": (),
    "aicp-personas": (),
    "aicp-voices": (),
    "aicp-logs": (),
}
COMPLETION = [
    'bash:  eval "$(_AICP_COMPLETE=bash_source aicp)"',
    'zsh:   eval "$(_AICP_COMPLETE=zsh_source aicp)"',
    "fish:  _AICP_COMPLETE=fish_source aicp | source",
]
ENVIRONMENT = [
    ("OLLAMA_HOST", "Ollama server URL for the ollama backend and auto "
                    "(default http://127.0.0.1:11434)."),
    ("OLLAMA_HOSTS", "Several Ollama server URLs, comma-separated, used together (like a repeated --host)."),
    ("AICP_SHARD_COUNT", "Shard count for --shard auto on a Kubernetes Indexed Job (with JOB_COMPLETION_INDEX)."),
    ("SLURM_ARRAY_TASK_ID", "With SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN: the shard of --shard auto "
                            "in a Slurm job array."),
    ("AICP_OLLAMA_MODEL", "Ollama model that auto looks for (default llama3.2)."),
    ("AICP_TRACEBACK", "Set to 1 to print the Python traceback of an error (like --traceback)."),
]


def esc(text: str) -> str:
    """Escape text for roff: backslashes, and a leading ``.`` or ``'``."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    command: click.Command = getattr(importlib.import_module(module), attr)
    return command


def _paragraphs(text: str) -> list[str]:
    """Roff for click help text: ``\\b`` blocks stay as written, other paragraphs are filled."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text or "").strip()):
        if not block.strip():
            continue
        if block.startswith("\b"):
            lines = block.split("\n")[1:]
            out += [".PP", ".nf", *(esc(line) for line in lines), ".fi"]
        else:
            out += [".PP", esc(" ".join(line.strip() for line in block.splitlines()))]
    return out


def _epilog_blocks(epilog: str) -> list[tuple[str, list[str]]]:
    """``(title, lines)`` of each ``\\b`` block of an epilog whose first line is ``Title:``."""
    blocks = []
    for block in re.split(r"\n\s*\n", epilog or ""):
        lines = [line for line in block.split("\n") if line.strip() and line != "\b"]
        if lines and lines[0].rstrip().endswith(":"):
            blocks.append((lines[0].strip().rstrip(":"), [line[2:] if line.startswith("  ") else line
                                                          for line in lines[1:]]))
    return blocks


def _exit_statuses(blocks: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """``(code, meaning)`` pairs: the command's own ``Exit status:`` block, else the shared list."""
    for title, body in blocks:
        if title.lower() == "exit status" and all(line.split(" ", 1)[0].isdigit() for line in body):
            return [tuple(line.strip().split(" ", 1)) for line in body]  # type: ignore[misc]
    return [(str(int(code)), meaning) for code, meaning in EXIT_STATUS_MEANINGS.items()]


def render(page: str, command: click.Command, prog: str) -> str:
    """The roff source of man page ``page`` for ``command`` invoked as ``prog``."""
    from importlib.metadata import version

    ctx = click.Context(command, info_name=prog, **command.context_settings)
    lines = [f'.TH "{page.upper()}" "1" "" "aicp {version("ai_content_pipeline")}" "aicp manual"',
             ".SH NAME", f"{esc(page)} \\- {esc(command.get_short_help_str(limit=200))}",
             ".SH SYNOPSIS", f".B {esc(prog)}", esc(" ".join(command.collect_usage_pieces(ctx))),
             ".SH DESCRIPTION", *_paragraphs(command.help or "")]

    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                lines += [".TP", f"\\fB{esc(name)}\\fR", esc(sub.get_short_help_str(limit=200))]
        lines += [".PP", f"Each command has its own help: \\fB{esc(prog)} COMMAND \\-\\-help\\fR."]

    options = [p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)]
    lines.append(".SH OPTIONS")
    for record in options:
        if record is not None:
            lines += [".TP", f"\\fB{esc(record[0])}\\fR", esc(record[1])]

    blocks = _epilog_blocks(command.epilog or "")
    for title, body in blocks:
        if title.lower().startswith(("exit status", "shell completion")):
            continue
        heading = "EXAMPLES" if title.lower() == "examples" else title.upper()
        lines += [f".SH {esc(heading)}", ".nf", *(esc(line) for line in body), ".fi"]

    lines.append(".SH EXIT STATUS")
    for code, meaning in _exit_statuses(blocks):
        lines += [".TP", f"\\fB{code}\\fR", esc(meaning)]

    rows = rows_for(PAGE_EVENTS.get(page, STAGE_EVENTS))
    if rows:
        lines += [".SH EVENTS", esc("With --stream, progress goes to stderr as JSON Lines, one event per "
                                    "line, flushed per event. Every event has schema_version (\"1\"), event, "
                                    "timestamp (Unix seconds) and elapsed_seconds (never decreasing); "
                                    "pipeline_complete alone goes to stdout. Fields:")]
        for events, fields, when in rows:
            names = ", ".join(f"\\fB{esc(e)}\\fR" for e in events)
            lines += [".TP", names, esc(f"{plain(when)[:1].upper()}{plain(when)[1:]}: {plain(fields)}.")]

    if page == "aicp":
        lines += [".SH SHELL COMPLETION", esc("click's shell completion, for aicp and likewise for "
                                              "aicp-script (_AICP_SCRIPT_COMPLETE) and aicp-voice "
                                              "(_AICP_VOICE_COMPLETE); put the line in the shell's rc file:"),
                  ".nf", *(esc(line) for line in COMPLETION), ".fi"]
        lines.append(".SH ENVIRONMENT")
        for var, text in ENVIRONMENT:
            lines += [".TP", f"\\fB{esc(var)}\\fR", esc(text)]
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{esc(p)}\\fR(1)" for p in PAGES if p != page)]
    return "\n".join(lines) + "\n"


def generate(out_dir: str | Path) -> list[Path]:
    """Write every page in :data:`PAGES` to ``out_dir/man1/NAME.1``; return the paths.

    ``out_dir`` is the root of a man tree (``man`` looks for ``man1/`` below each folder
    of ``MANPATH``): ``MANPATH=out_dir: man aicp`` finds the pages.
    """
    folder = Path(out_dir) / "man1"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for page, (target, prog) in PAGES.items():
        path = folder / f"{page}.1"
        path.write_text(render(page, _load(target), prog), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m ai_content_pipeline.cli.manpages [OUT_DIR]`` (default ``man``): the pages
    go to ``OUT_DIR/man1/``."""
    args = sys.argv[1:] if argv is None else argv
    for path in generate(args[0] if args else "man"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
