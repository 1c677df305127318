"""README and --help examples as data: fenced shell blocks, their commands and the files they name."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = "<!-- runnable -->"


@dataclass
class Block:
    """A fenced ``bash`` block of README.md: its text, first line number, and the runnable mark."""

    text: str
    line: int
    runnable: bool


def readme_blocks(path: Path = ROOT / "README.md") -> list[Block]:
    """Every ```` ```bash ```` block of ``path``, marked runnable when the line before the
    fence is ``<!-- runnable -->``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start = i + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            blocks.append(Block("\n".join(lines[start:end]) + "\n", start + 1,
                                i > 0 and lines[i - 1].strip() == RUNNABLE))
            i = end
        i += 1
    return blocks


def help_examples() -> dict[str, str]:
    """``command path → its epilog's Examples: lines`` for every aicp command."""
    from tests.test_messages import COMMANDS

    out = {}
    for path, command in COMMANDS:
        epilog = command.epilog or ""
        for block in re.split(r"\n\s*\n", epilog):
            lines = [x for x in block.split("\n") if x.strip() and x != "\b"]
            if lines and lines[0].strip() == "Examples:":
                out[path] = "\n".join(x.strip() for x in lines[1:]).replace("\\\\", "\\") + "\n"
    return out


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell snippet as token lists (comments, line joins, ``|``,
    ``&&`` and ``;`` split; redirections kept as tokens)."""
    text = text.replace("\\\n", " ")
    out: list[list[str]] = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:
            continue
        current: list[str] = []
        for tok in tokens:
            if tok in ("|", "&&", ";", "||"):
                if current:
                    out.append(current)
                current = []
            else:
                current.append(tok)
        if current:
            out.append(current)
    return out


def example_paths(text: str) -> list[str]:
    """Every ``examples/...`` path a text names."""
    return re.findall(r"(?<![\w/])examples/[\w./-]*\w", text)


def aicp_subcommands() -> set[str]:
    from ai_content_pipeline.cli.main import cli

    return set(cli.list_commands(click.Context(cli)))
