"""``aicp templates`` and ``aicp personas``: list and show the built-in data files as JSON."""

from __future__ import annotations

from typing import Any

import click

from ..jsonl import RecordWriter
from ..templates import list_personas, list_templates, load_persona, load_template
from .options import AicpGroup, version_option


def _print_json(obj: dict[str, Any]) -> None:
    RecordWriter().write(obj)  # a closed stdout: OutputClosed (141); a full one: an error (1)


@click.group("templates", cls=AicpGroup)
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


@click.group("personas", cls=AicpGroup)
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
