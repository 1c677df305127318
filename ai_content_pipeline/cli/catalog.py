"""``aicp templates`` and ``aicp personas``: list, show and start your own (user folder)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from ..errors import AicpError
from ..jsonl import RecordWriter
from ..status import ExitStatus
from .options import AicpGroup, NameOrPath, complete_name, version_option

# The templates library (pydantic, PyYAML, Jinja2) is imported only when a command runs, so that
# `aicp --help`, which loads this module for the one-line help of `templates` and `personas`,
# stays instant.


def _print_json(obj: dict[str, Any]) -> None:
    RecordWriter().write(obj)  # a closed stdout: OutputClosed (141); a full one: an error (1)


def _warn(problem: AicpError) -> None:
    """``warning: skipped …`` and its hint, one whole line each (like errors: the path stays whole)."""
    from ..report import message_lines
    from .errors import message_prefix

    click.echo(message_lines(message_prefix(), "warning", f"skipped {problem.message}", problem.hint),
               err=True, nl=False)


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
  3 list: some user-folder files could not be read (each named on stderr)
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
  3 list: some user-folder files could not be read (each named on stderr)
"""


def _catalog(kind: str, about: str, fields: str, shows: str, epilog: str,
             ) -> tuple[click.Group, click.Command, click.Command]:
    """The ``aicp {kind}s`` group with its ``list``, ``show`` and ``new`` commands (the same three
    for templates and personas); returns ``(group, list, show)``.

    :param kind: ``"template"`` or ``"persona"``: the library's ``list_{kind}s`` and
        ``load_{kind}`` serve it (imported when a command runs).
    """

    @click.group(f"{kind}s", cls=AicpGroup, epilog=epilog, help=about)
    @version_option
    def group() -> None:
        pass

    @group.command("list", epilog=epilog, help=f"Print one JSON object per {kind} found by name ({fields}, "
                                               "source: user or builtin, path, overrides).")
    @version_option
    def list_command() -> int:
        from .. import templates

        lister: Callable[[list[AicpError]], Iterable[dict[str, Any]]] = getattr(templates, f"list_{kind}s")
        problems: list[AicpError] = []
        for item in lister(problems):
            _print_json(item)
        for problem in problems:  # the others are listed; exit 3 says some file needs fixing
            _warn(problem)
        return ExitStatus.PARTIAL if problems else ExitStatus.SUCCESS

    @group.command("show", epilog=epilog, help=f"Print a {kind} ({shows}) as YAML you can copy into a file of "
                                               "your own (`--json`: one JSON object).")
    @version_option
    @click.argument("name", metavar="NAME|PATH", type=NameOrPath(), shell_complete=complete_name(kind))
    @click.option("--json", "as_json", is_flag=True, help="One JSON object instead of YAML.")
    def show_command(name: str, as_json: bool) -> None:
        from .. import templates

        loader: Callable[[str], Any] = getattr(templates, f"load_{kind}")
        item = loader(name)
        _show(templates.as_data(item), as_json)
        if kind == "persona" and not as_json:
            _print_text(_voice_comments(item))

    @group.command("new", epilog=epilog, help=f"Write a commented starter {kind} NAME.yaml into the user folder "
                                              "and print its path.\n\nAn existing file is never overwritten (exit 2).")
    @version_option
    @click.argument("name", type=NameOrPath("a name"))
    def new_command(name: str) -> None:
        from ..templates import new_file

        _print_text(f"{new_file(kind, name)}\n")

    return group, list_command, show_command


templates_group, templates_list, templates_show = _catalog(
    "template", "List, show and start prompt templates (built-in and your own).",
    "name, version, description, checks", "prompts, parameters, sections, checks", TEMPLATES_EPILOG)
personas_group, personas_list, personas_show = _catalog(
    "persona", "List, show and start DJ/host personas (built-in and your own).",
    "name, display_name, station, style", "style, catchphrases, seed, voice settings", PERSONAS_EPILOG)


def _voice_comments(persona: Any) -> str:
    """YAML comments after a persona: the voice each TTS backend here would speak it with."""
    from ..doctor import voice_report
    from ..report import persona_voice_line

    report = voice_report(persona)
    lines = ["# voices on this machine (--backend auto, then each backend; aicp doctor --json: .voices):"]
    lines += [f"#   {part.strip()}" for part in persona_voice_line(persona.name, report).split(";")]
    return "\n".join(lines) + "\n"


def _show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(data)
    else:
        from ..yamlfile import dump_yaml
        _print_text(dump_yaml(data))


__all__ = ["complete_name", "personas_group", "templates_group"]
