"""The stage registry: step type (``script``, ``voice``) -> the stage class and its options class.

The chain (``chain/spec.py``, ``chain/runner.py``) and :mod:`~ai_content_pipeline.stages.step`
look stages up here instead of naming modules in strings. A stage module is imported on the
first lookup of its type, not before, so ``--help`` and ``aicp doctor`` stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UsageError


def _script() -> tuple[type[Any], type[Any]]:
    from .script import ScriptOptions, ScriptStage

    return ScriptStage, ScriptOptions


def _voice() -> tuple[type[Any], type[Any]]:
    from .voice import VoiceOptions, VoiceStage

    return VoiceStage, VoiceOptions


_LOADERS: dict[str, Callable[[], tuple[type[Any], type[Any]]]] = {"script": _script, "voice": _voice}
#: The step types a chain may name, in the order ``--help`` lists them.
STAGE_TYPES: tuple[str, ...] = tuple(_LOADERS)


def _entry(kind: str) -> tuple[type[Any], type[Any]]:
    try:
        loader = _LOADERS[kind]
    except KeyError:
        raise UsageError(f"unknown stage {kind!r}", hint=f"choose one of: {', '.join(STAGE_TYPES)}") from None
    return loader()


def stage_class(kind: str) -> type[Any]:
    """The :class:`~ai_content_pipeline.stages.common.Stage` subclass of step type ``kind``.

    :raises UsageError: ``kind`` is not one of :data:`STAGE_TYPES`.
    """
    return _entry(kind)[0]


def options_class(kind: str) -> type[Any]:
    """The options dataclass of step type ``kind`` (``ScriptOptions``, ``VoiceOptions``).

    :raises UsageError: ``kind`` is not one of :data:`STAGE_TYPES`.
    """
    return _entry(kind)[1]


__all__ = ["STAGE_TYPES", "options_class", "stage_class"]
