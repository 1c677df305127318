"""Option decorators and helpers shared by the aicp commands."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import click

from ..events import ConsoleEmitter, Emitter, ProgressBarEmitter, StreamEmitter
from ..limits import RETRIES, Limit
from ..report import summary_text
from ..status import EXIT_STATUS_HELP
from .errors import AicpCommand, AicpGroup, message_prefix, note_flag

F = Callable[..., Any]

EPILOG_STATUS = "\b\n" + EXIT_STATUS_HELP.replace("; ", "\n  ").replace("Exit status: ", "Exit status:\n  ")


def click_range(limit: Limit) -> click.ParamType:
    """The click ``IntRange``/``FloatRange`` of a :class:`~ai_content_pipeline.limits.Limit`."""
    if limit.kind is int:
        return click.IntRange(None if limit.min is None else int(limit.min),
                              None if limit.max is None else int(limit.max),
                              min_open=limit.min_open, max_open=limit.max_open)
    return FiniteFloatRange(limit.min, limit.max, min_open=limit.min_open, max_open=limit.max_open)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (FloatRange lets NaN through:
    every comparison with it is false), as the chain schema does."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _refuse_blank(kind: click.ParamType, value: Any, param: click.Parameter | None,
                  ctx: click.Context | None, what: str) -> None:
    """Fail (a usage error, exit 2, naming the option) when ``value`` is empty or only white space."""
    if not isinstance(value, str) or value.strip():
        return
    source = ""
    if ctx is not None and param is not None and param.name is not None:
        from click.core import ParameterSource

        envvar = getattr(param, "envvar", None)
        if ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT and isinstance(envvar, str):
            source = f" (from ${envvar})"
    kind.fail(f"{value!r}{source} is {'empty' if not value else 'blank'}: give {what}", param, ctx)


class PathValue(click.Path):
    """``click.Path`` of every option and argument that names a file or folder.

    An empty or blank value (``--out-dir ""``, an unset ``$VAR`` in a script) is a usage error
    (exit 2) naming the option, never read as the current folder: it refuses what the
    operating system would resolve to somewhere the user did not name.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        what = ("a folder ('.' is this one)" if not self.file_okay
                else "a file name" if not self.dir_okay else "a path")
        _refuse_blank(self, value, param, ctx, what)
        return super().convert(value, param, ctx)


class NameOrPath(click.ParamType):
    """A ``NAME|PATH`` value (a template, persona or model: a name, or a file): text that
    refuses an empty or blank value (exit 2, naming the option), as :class:`PathValue` does.

    :param what: what to give instead, in the message (``a name`` where no path is taken).
    """

    name = "text"

    def __init__(self, what: str = "a name or a path") -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        _refuse_blank(self, value, param, ctx, self.what)
        return value


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    click.echo(f"{ctx.find_root().info_name} {version('ai_content_pipeline')}")
    ctx.exit()


def version_option(fn: F) -> F:
    """``--version``: print ``PROG VERSION`` (the program as typed) and exit; every command has it."""
    return click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
                        help="Show the version and exit.")(fn)


__all__ = ["AicpCommand", "AicpGroup", "NameOrPath", "PathValue", "version_option"]

def complete_name(kind: str) -> Callable[..., list[Any]]:
    """A click ``shell_complete`` callback for a ``-t``/``-p`` value: the ``kind``
    (``template``/``persona``) names found by name (user folder and built-in) that start with
    what was typed; a path (``./``, ``/``, ``~``, anything with ``/``) completes as a file."""
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        if incomplete.startswith((".", "/", "~")) or "/" in incomplete:
            return [CompletionItem(incomplete, type="file")]
        try:
            from ..templates import names
            found = names(kind)
        except Exception:  # noqa: BLE001 - completion must never print a traceback into a shell
            return []
        return [CompletionItem(n) for n in found if n.startswith(incomplete)]
    return complete


def _stack(*decorators: F) -> Callable[[F], F]:
    def apply(fn: F) -> F:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn
    return apply


input_files = click.argument("files", nargs=-1, type=PathValue(dir_okay=False, allow_dash=True))

run_options = _stack(
    click.option("--resume", is_flag=True,
                 help="Serve records already in the --checkpoint ledger without calling the model."),
    click.option("--checkpoint", type=PathValue(dir_okay=False), metavar="PATH",
                 help="Ledger of finished records (JSON Lines, append-only); written as records finish."),
    click.option("--retries", type=click_range(RETRIES), default=0, show_default=True,
                 help="Extra attempts for transient backend errors (timeouts, HTTP 5xx, cut streams)."),
    click.option("--strict", is_flag=True, help="Stop at the first failed record instead of going on."),
    click.option("--stream", is_flag=True, callback=note_flag,
                 help="Progress as JSON Lines events on stderr (schema_version 1)."),
    click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but warnings and errors."),
    click.option("--traceback", is_flag=True, callback=note_flag, help="Show the Python traceback of an error."),
)


log_option = click.option(
    "--log", metavar="PATH.db", envvar="AICP_LOG_DB", type=PathValue(dir_okay=False),
    help="Record every take in this SQLite take log (`aicp logs` reads it back) "
         "[default: $AICP_LOG_DB, else no log].")
shard_options = _stack(
    click.option("--shard", metavar="K/N|auto",
                 help="Do only the input lines whose 0-based position is K mod N (blank and bad lines "
                      "count); records get an `_aicp` tag for `aicp merge`, --checkpoint becomes "
                      "NAME.shard-K-of-N.EXT. auto: from SLURM_ARRAY_TASK_ID/COUNT/MIN or "
                      "JOB_COMPLETION_INDEX."),
    click.option("--shard-count", type=click.IntRange(1), metavar="N",
                 help="Shard count for --shard auto on a Kubernetes Indexed Job [default: $AICP_SHARD_COUNT]."),
)


def resolve_shard(shard: str | None, shard_count: int | None, checkpoint: str | None) -> tuple[Any, str | None]:
    """``(Shard or None, the checkpoint path of that shard)`` from ``--shard``/``--shard-count``.

    :raises UsageError: a malformed ``--shard``, or ``auto`` without a usable scheduler variable.
    """
    from ..shards import parse

    spec = parse(shard, count=shard_count)
    return spec, (spec.ledger_path(checkpoint) if spec is not None else checkpoint)


def make_emitter(stream: bool, quiet: bool, prog: str) -> Emitter:
    """``--stream`` → :class:`StreamEmitter`; a terminal → progress bar; else plain notices.

    Lines start with the running command's path (``aicp run-chain``), else ``prog``.
    """
    if stream:
        return StreamEmitter(enabled=True)
    prog = message_prefix(prog)
    if not quiet and sys.stderr.isatty():
        return ProgressBarEmitter(prog)
    return ConsoleEmitter(prog, quiet=quiet)


def finish(emitter: Emitter, stats: Any) -> int:
    """Print the one-line summary (not with --stream; :func:`~ai_content_pipeline.report.summary_text`)
    and return the exit status.

    The caller has closed the emitter (a progress bar) already, in a ``finally``.
    """
    if not isinstance(emitter, StreamEmitter):
        emitter.message(summary_text(stats))
    return int(stats.exit_status)


# -- backend settings as flags ---------------------------------------------------------------
def _setting_type(setting: Any) -> click.ParamType | None:
    """The click type of a :class:`~ai_content_pipeline.backends.settings.Setting`."""
    if setting.choices:
        return click.Choice(list(setting.choices))
    if setting.type in ("int", "float"):
        if setting.limit is not None:
            return click_range(setting.limit)
        return click.INT if setting.type == "int" else FiniteFloatRange()
    if setting.type == "path":
        return PathValue(dir_okay=False)
    if setting.type == "folder":
        return PathValue(file_okay=False)
    return None


def backend_setting_options(kind: str) -> list[click.Option]:
    """The flags of the settings of every ``kind`` (``llm``/``tts``) backend the registry holds
    (:mod:`~ai_content_pipeline.backends.settings`), one per flag: backends that declare the
    same flag share it and its help lists each (``piper: ...; chatterbox: ...``). The option's
    parameter name is the flag without dashes (``--checkpoint-dir`` → ``checkpoint_dir``).
    Reads the built-ins' plain-data settings (no engine, no pydantic)."""
    from ..backends.registry import all_settings

    owners: dict[str, list[tuple[str, Any]]] = {}
    for backend, table in all_settings(kind):
        for setting in table:
            flag = setting.flag_of(backend)
            if flag:
                owners.setdefault(flag, []).append((backend, setting))
    options = []
    for flag, declared in owners.items():
        first = declared[0][1]
        helps = [f"{backend}: {s.help.rstrip('.')}" for backend, s in declared if s.help]
        attrs: dict[str, Any] = {"help": "; ".join(helps) + "." if helps else None,
                                 "metavar": first.metavar}
        if first.type == "bool" and not first.choices:
            attrs.update(is_flag=True, default=None)
        else:
            attrs.update(type=_setting_type(first), multiple=first.type == "hosts",
                         default=first.default, show_default=first.show_default)
        options.append(click.Option([flag, flag.lstrip("-").replace("-", "_")], **attrs))
    return options


def backend_settings(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """The backend options of the flags :func:`backend_setting_options` made, given their
    values by parameter name: ``{adapter keyword: value}`` for every backend that declares the
    flag (unset flags left out; a repeated flag's values as a list; ``device auto`` → ``None``)."""
    from ..backends.registry import all_settings

    out: dict[str, Any] = {}
    for backend, table in all_settings(kind):
        for setting in table:
            flag = setting.flag_of(backend)
            name = flag.lstrip("-").replace("-", "_")
            value = values.get(name) if flag else None
            if isinstance(value, tuple):
                value = list(value) or None
            if value is not None:
                out[setting.name] = setting.value(value)
    return out


class BackendCommand(AicpCommand):
    """A command whose backend's settings are flags: those of every registered backend of
    ``backend_kind`` (:func:`backend_setting_options`), placed after ``--backend`` (and
    ``--model``) in
    :attr:`params`, read when the parameters are used (parsing, ``--help``, completion), never
    at import, and rebuilt when the registered backends change (a backend registered later has
    its flags). The callback
    gets them as keyword arguments (:func:`backend_settings` reads them)."""

    def __init__(self, *args: Any, backend_kind: str, **kwargs: Any) -> None:
        self.backend_kind = backend_kind
        self._own: list[click.Parameter] = []
        self._built: tuple[Any, list[click.Parameter]] | None = None
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def params(self) -> list[click.Parameter]:
        from ..backends.registry import state

        key = (state(self.backend_kind), len(self._own))
        if self._built is None or self._built[0] != key:  # one list while the backends stay the same
            own = self._own
            names = {p.name for p in own}
            extra = [o for o in backend_setting_options(self.backend_kind) if o.name not in names]
            at = max((i + 1 for i, p in enumerate(own) if p.name in ("backend", "model")), default=len(own))
            self._built = (key, [*own[:at], *extra, *own[at:]])
        return self._built[1]

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._own = list(value)
        self._built = None
