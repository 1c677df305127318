"""``aicp``: the command group. Subcommands are imported only when invoked or listed."""

from __future__ import annotations

import importlib
from typing import Any

import click

from ..stages.registry import builtin_commands
from .errors import AicpGroup, entry
from .options import EPILOG_STATUS, version_option

#: subcommand name → "module:attribute" of its click command (one module per command): the
#: stage commands as the stage registry's built-in list names them (read without importing a
#: stage module, so ``--help`` stays fast), then the others.
COMMANDS: dict[str, str] = {
    **builtin_commands(),
    "run-chain": "ai_content_pipeline.cli.chain:run_chain_command",
    "merge": "ai_content_pipeline.cli.merge:merge_command",
    "feed": "ai_content_pipeline.cli.feed:feed_command",
    "templates": "ai_content_pipeline.cli.catalog:templates_group",
    "personas": "ai_content_pipeline.cli.catalog:personas_group",
    "voices": "ai_content_pipeline.cli.voices:voices_group",
    "doctor": "ai_content_pipeline.cli.doctor:doctor_command",
    "logs": "ai_content_pipeline.cli.logs:logs_command",
    "serve": "ai_content_pipeline.cli.serve:serve_command",
    "worker": "ai_content_pipeline.cli.serve:worker_command",
}


class LazyGroup(AicpGroup):
    """A click group whose subcommands live in their own modules (click docs, "Lazy Loading")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attr)
        return command  # type: ignore[no-any-return]


EPILOG = f"""\b
Examples:
  aicp script --template song-intro < examples/songs.jsonl > scripts.jsonl
  aicp voice --out-dir aicp-out/audio < scripts.jsonl
  aicp run-chain --config examples/radio-intros.yaml --stream 2>progress.jsonl
  aicp doctor
  aicp logs --log takes.db -n 3
  aicp serve --port 8000

\b
Shell completion (bash; zsh and fish likewise):
  eval "$(_AICP_COMPLETE=bash_source aicp)"

{EPILOG_STATUS}
"""


@click.group("aicp", cls=LazyGroup, epilog=EPILOG)
@version_option
def cli() -> None:
    """Turn JSON Lines records into spoken content: a local LLM writes the
    scripts, a local TTS model voices them.

    Every command reads and writes JSON Lines, keeps stdout for data and
    stderr for progress (`--stream` for JSON events), and exits with the
    status codes below.
    """


def main() -> None:
    """Console script ``aicp``."""
    entry(cli, "aicp")
