"""The stage registry: step type (``script``, ``voice``, ...) -> its :class:`StageKind`.

Every stage kind is registered the same way: an entry point in the
``ai_content_pipeline.stages`` group names a :class:`~ai_content_pipeline.stages.kind.StageKind`
(``script = "ai_content_pipeline.stages.script:SCRIPT"``), or code calls
:func:`register_stage` with one. The built-in kinds are read from :data:`BUILTIN` (the same
``module:attribute`` strings as their entry points, so a source checkout that was never
installed finds them too). Kinds load on the first lookup, not before, so ``--help`` stays fast.

A kind with ``applies`` refines the kind of the same name: long-form (``stages/longform.py``)
refines ``script`` for runs whose template has sections or whose options carry a plan, and
:func:`kind_for` picks it. The chain (``chain/spec.py``, ``chain/runner.py``), the service's
request check, the events and the CLI's stage commands read kinds from here; the radio API and
the built-in commands name the step types they run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import UsageError

if TYPE_CHECKING:
    from .kind import StageKind

#: The entry-point group that names stage kinds.
GROUP = "ai_content_pipeline.stages"


class Builtin(NamedTuple):
    """A built-in kind as strings, read without importing its module (``aicp --help`` lists
    :attr:`command` from here and imports it only when the command runs).

    :ivar target: ``module:attribute`` of its :class:`StageKind` (as its entry point names it).
    :ivar name: the step type (``script``); ``None`` for a refinement with no command of its own.
    :ivar command: ``module:attribute`` of its click command (the ``aicp NAME`` subcommand),
        or ``None``; the kind's :attr:`StageKind.command` says the same once loaded.
    """

    target: str
    name: str | None = None
    command: str | None = None


#: The built-in kinds, as their entry points name them (the order ``--help`` lists them).
BUILTINS: tuple[Builtin, ...] = (
    Builtin("ai_content_pipeline.stages.script:SCRIPT", "script", "ai_content_pipeline.cli.script:script_command"),
    Builtin("ai_content_pipeline.stages.voice:VOICE", "voice", "ai_content_pipeline.cli.voice:voice_command"),
    Builtin("ai_content_pipeline.stages.longform:LONGFORM"),
    Builtin("ai_content_pipeline.stages.mix:MIX", "mix", "ai_content_pipeline.cli.mix:mix_command"),
)
#: The built-in kinds' ``module:attribute`` strings.
BUILTIN: tuple[str, ...] = tuple(b.target for b in BUILTINS)


def builtin_commands() -> dict[str, str]:
    """``{step type: "module:attribute" of its click command}`` of the built-in kinds that have
    one, read without importing any stage module (the ``aicp`` group's stage commands)."""
    return {b.name: b.command for b in BUILTINS if b.name is not None and b.command is not None}

_KINDS: dict[str, StageKind] = {}
_REFINEMENTS: dict[str, list[StageKind]] = {}
_LISTENERS: list[Callable[[], None]] = []
_loaded = False


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _add(kind: StageKind) -> None:
    from .kind import StageKind

    if not isinstance(kind, StageKind):
        raise TypeError(f"a stage kind must be a StageKind, not {type(kind).__name__}")
    if kind.applies is not None:
        found = _REFINEMENTS.setdefault(kind.name, [])
        if kind not in found:
            found.append(kind)
        return
    known = _KINDS.get(kind.name)
    if known is not None and known is not kind:
        raise UsageError(f"stage kind {kind.name!r} is registered twice",
                         hint=f"{known.stage.__module__} and {kind.stage.__module__} both name it")
    _KINDS[kind.name] = kind


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    targets = list(BUILTIN)
    for point in entry_points(group=GROUP):
        if point.value not in targets:
            targets.append(point.value)
    for target in targets:
        _add(_resolve(target))


def register_stage(kind: StageKind) -> StageKind:
    """Add ``kind`` to the registry (a chain step of type ``kind.name`` runs it); returns it.

    Registering the same object again does nothing. A kind with ``applies`` refines the
    kind of its name (see :func:`kind_for`).

    :raises UsageError: another kind already has that name.
    """
    _load()
    _add(kind)
    for listener in list(_LISTENERS):
        listener()
    return kind


def unregister_stage(name: str) -> None:
    """Remove the kind ``name`` and its refinements (tests; a built-in comes back only by
    :func:`register_stage`)."""
    _load()
    _KINDS.pop(name, None)
    _REFINEMENTS.pop(name, None)
    for listener in list(_LISTENERS):
        listener()


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` after each :func:`register_stage` and :func:`unregister_stage`
    (``records`` forgets its stage fields)."""
    _LISTENERS.append(listener)


def kinds() -> list[StageKind]:
    """Every registered kind (not the refinements), built-ins first."""
    _load()
    return list(_KINDS.values())


def stage_types() -> tuple[str, ...]:
    """The step types a chain may name, in registry order."""
    return tuple(k.name for k in kinds())


def find(name: Any) -> StageKind | None:
    """The kind named ``name``, or ``None``."""
    _load()
    return _KINDS.get(name) if isinstance(name, str) else None


def get(name: str) -> StageKind:
    """The kind named ``name``.

    :raises UsageError: no kind has that name.
    """
    kind = find(name)
    if kind is None:
        raise UsageError(f"unknown stage {name!r}", hint=f"choose one of: {', '.join(stage_types())}")
    return kind


def refinements(name: str) -> list[StageKind]:
    """The kinds that refine ``name`` (long-form refines ``script``), in registration order."""
    _load()
    return list(_REFINEMENTS.get(name, []))


def _pick(name: str, options: Any) -> tuple[StageKind, dict[str, Any]]:
    kind = get(name)
    context = kind.context(options) if kind.context is not None else {}
    for refinement in _REFINEMENTS.get(name, []):
        assert refinement.applies is not None
        if refinement.applies(options, **context):
            return refinement, context
    return kind, context


def kind_for(name: str, options: Any) -> StageKind:
    """The kind that runs a step of type ``name`` with ``options``: the first refinement
    whose ``applies(options, **context)`` is true, else the kind itself.

    :raises UsageError: unknown step type; what ``context`` raises (an unknown template).
    """
    return _pick(name, options)[0]


def build_stage(name: str, backend: Any, options: Any, emitter: Any = None, ledger: Any = None) -> Any:
    """The stage of a step of type ``name``: the kind :func:`kind_for` picks, built with these
    arguments and the kind's ``context`` (loaded once: the script kind's template).

    :raises UsageError: unknown step type, template, persona or format (the stage's checks).
    """
    kind, context = _pick(name, options)
    return kind.build(backend, options, emitter, ledger, **context)


def stage_class(name: str) -> type[Any]:
    """The stage class of step type ``name`` (its refinements are not considered).

    :raises UsageError: unknown step type.
    """
    return get(name).stage


def options_class(name: str) -> type[Any]:
    """The options dataclass of step type ``name`` (``ScriptOptions``, ``VoiceOptions``).

    :raises UsageError: unknown step type.
    """
    return get(name).options


def __getattr__(name: str) -> Any:
    if name == "STAGE_TYPES":  # the step types, read when asked (kinds register at run time)
        return stage_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BUILTIN", "BUILTINS", "GROUP", "Builtin", "builtin_commands", "build_stage", "find", "get", "kind_for", "kinds", "on_change",
           "options_class", "refinements", "register_stage", "stage_class", "stage_types", "unregister_stage"]
