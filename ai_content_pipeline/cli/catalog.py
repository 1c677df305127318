"""``aicp templates`` and ``aicp personas``: list and show the built-in data files as JSON."""

from __future__ import annotations

from typing import Any

import click

from ..jsonl import RecordWriter
from ..templates import list_personas, list_templates, load_persona, load_template
from .options import AicpGroup, version_option


def _print_json(obj: dict[str, Any]) -> None:
    RecordWriter().write(obj)  # a closed stdout: OutputClosed (141); a full one: an error (1)


TEMPLATES_EPILOG = """\b
Examples:
  aicp templates list
  aicp templates show song-intro
  aicp templates show song-intro | jq '.checks'

\b
Exit status:
  0 printed
  2 unknown template, or a template file that is missing or invalid
"""
PERSONAS_EPILOG = """\b
Examples:
  aicp personas list
  aicp personas show julie
  aicp personas list | jq -r '.name'

\b
Exit status:
  0 printed
  2 unknown persona, or a persona file that is missing or invalid
"""


@click.group("templates", cls=AicpGroup, epilog=TEMPLATES_EPILOG)
@version_option
def templates_group() -> None:
    """List and show prompt templates (JSON on stdout)."""


@templates_group.command("list")
@version_option
def templates_list() -> None:
    """Print one JSON object per built-in template (name, version, description, checks...)."""
    for item in list_templates():
        _print_json(item)


@templates_group.command("show")
@version_option
@click.argument("name", metavar="NAME|PATH")
def templates_show(name: str) -> None:
    """Print a template (prompts, parameters, sections, checks) as one JSON object."""
    _print_json(load_template(name).model_dump())


@click.group("personas", cls=AicpGroup, epilog=PERSONAS_EPILOG)
@version_option
def personas_group() -> None:
    """List and show DJ/host personas (JSON on stdout)."""


@personas_group.command("list")
@version_option
def personas_list() -> None:
    """Print one JSON object per built-in persona (name, display_name, station, style)."""
    for item in list_personas():
        _print_json(item)


@personas_group.command("show")
@version_option
@click.argument("name", metavar="NAME|PATH")
def personas_show(name: str) -> None:
    """Print a persona (style, catchphrases, seed, voice settings) as one JSON object."""
    _print_json(load_persona(name).model_dump())
