"""The ``--backend`` option's type: ``auto`` plus the backends the registry holds, read when
the option is used (a value to check, ``--help``, shell completion), never at import."""

from __future__ import annotations

from typing import Any

import click


class BackendChoice(click.Choice):  # type: ignore[type-arg]
    """A :class:`click.Choice` of ``auto`` and the ``kind`` (``llm``/``tts``) backend names of
    :mod:`~ai_content_pipeline.backends.registry`, built-in, installed or registered; the
    names are read on first use, so importing a command module reads no package metadata."""

    def __init__(self, kind: str) -> None:  # no super().__init__: it would read the names now
        self.kind = kind
        self.case_sensitive = True

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from ..backends.registry import BackendChoices

        return tuple(BackendChoices(self.kind))

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice's own __init__ sets it; the registry decides
        pass
