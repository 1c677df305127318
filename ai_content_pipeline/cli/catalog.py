"""``aicp templates`` and ``aicp personas``: list, show and start your own (user folder)."""

from __future__ import annotations

from typing import Any

import click

from ..jsonl import RecordWriter
from ..templates import (
    as_data,
    list_personas,
    list_templates,
    load_persona,
    load_template,
    new_file,
    user_folder,
)
from .options import AicpGroup, complete_name, version_option


def _print_json(obj: dict[str, Any]) -> None:
    RecordWriter().write(obj)  # a closed stdout: OutputClosed (141); a full one: an error (1)


def _print_text(text: str) -> None:
    RecordWriter().write_raw(text.encode("utf-8"))


TEMPLATES_EPILOG = """\b
Examples:
  aicp templates list | jq -r '[.name, .source] | @tsv'
  aicp templates show song-intro > my-intro.yaml     # copy, edit, then: aicp-script -t ./my-intro.yaml
  aicp templates show song-intro --json | jq .checks
  aicp templates new my-intro                        # a starter in the user folder
  aicp-script -t my-intro < examples/songs.jsonl     # found by name, like the built-ins

\b
User folder: $AICP_HOME/templates, else $XDG_CONFIG_HOME/aicp/templates, else
~/.config/aicp/templates; a file there overrides the built-in of its name.

\b
Exit status:
  0 printed (or written)
  2 unknown template, a template file that is missing or invalid, or new's file exists
"""

PERSONAS_EPILOG = """\b
Examples:
  aicp personas list | jq -r '[.name, .source] | @tsv'
  aicp personas show julie > rosa.yaml               # copy, edit name:, then: aicp-script -p ./rosa.yaml
  aicp personas new rosa                             # a starter in the user folder
  aicp-script -p rosa < examples/songs.jsonl | aicp-voice --out-dir out

\b
User folder: $AICP_HOME/personas, else $XDG_CONFIG_HOME/aicp/personas, else
~/.config/aicp/personas; a file there overrides the built-in of its name.

\b
Exit status:
  0 printed (or written)
  2 unknown persona, a persona file that is missing or invalid, or new's file exists
"""


@click.group("templates", cls=AicpGroup, epilog=TEMPLATES_EPILOG)
@version_option
def templates_group() -> None:
    """List, show and start prompt templates (built-in and your own)."""


@templates_group.command("list", epilog=TEMPLATES_EPILOG)
@version_option
def templates_list() -> None:
    """Print one JSON object per template found by name (name, version, description, checks,
    source: user or builtin, path, overrides)."""
    for item in list_templates():
        _print_json(item)


@templates_group.command("show", epilog=TEMPLATES_EPILOG)
@version_option
@click.argument("name", metavar="NAME|PATH", shell_complete=complete_name("template"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of YAML.")
def templates_show(name: str, as_json: bool) -> None:
    """Print a template (prompts, parameters, sections, checks) as YAML you can copy into
    a file of your own (`--json`: one JSON object)."""
    _show(as_data(load_template(name)), as_json)


@templates_group.command("new", epilog=TEMPLATES_EPILOG)
@version_option
@click.argument("name")
def templates_new(name: str) -> None:
    """Write a commented starter template NAME.yaml into the user folder and print its path.

    An existing file is never overwritten (exit 2).
    """
    _print_text(f"{new_file('template', name)}\n")


@click.group("personas", cls=AicpGroup, epilog=PERSONAS_EPILOG)
@version_option
def personas_group() -> None:
    """List, show and start DJ/host personas (built-in and your own)."""


@personas_group.command("list", epilog=PERSONAS_EPILOG)
@version_option
def personas_list() -> None:
    """Print one JSON object per persona found by name (name, display_name, station, style,
    source: user or builtin, path, overrides)."""
    for item in list_personas():
        _print_json(item)


@personas_group.command("show", epilog=PERSONAS_EPILOG)
@version_option
@click.argument("name", metavar="NAME|PATH", shell_complete=complete_name("persona"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of YAML.")
def personas_show(name: str, as_json: bool) -> None:
    """Print a persona (style, catchphrases, seed, voice settings) as YAML you can copy
    (`--json`: one JSON object)."""
    _show(as_data(load_persona(name)), as_json)


@personas_group.command("new", epilog=PERSONAS_EPILOG)
@version_option
@click.argument("name")
def personas_new(name: str) -> None:
    """Write a commented starter persona NAME.yaml into the user folder and print its path.

    An existing file is never overwritten (exit 2).
    """
    _print_text(f"{new_file('persona', name)}\n")


def _show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(data)
    else:
        from ..yamlfile import dump_yaml
        _print_text(dump_yaml(data))


__all__ = ["complete_name", "personas_group", "templates_group", "user_folder"]
