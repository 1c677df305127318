"""What a stage kind tells the rest of the package: one :class:`StageKind` per step type.

Each stage module declares one (``stages/script.py``: ``SCRIPT``, ``stages/voice.py``:
``VOICE``, ``stages/longform.py``: ``LONGFORM``, which refines ``script``) and
:mod:`~ai_content_pipeline.stages.registry` collects them. The chain file, the chain runner,
the service's request check and the events read a kind from the registry instead of naming
``script`` or ``voice``. A stage module imports this module, never the registry, so the
registry can import the stage modules without a circle.

A chain step of a kind is a pydantic model (:attr:`StageKind.step_model`) built on
:class:`StepConfig`: ``type``, ``name``, ``enabled``, ``params``, plus ``backend`` when the
kind uses one and the kind's own keys (``template``, ``voice``...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

#: The backend kinds a stage may use (``None``: a stage without a model needs no backend).
BackendKind = Literal["llm", "tts"]


class StepConfig(BaseModel):
    """A chain step as the chain file gives it: the keys every kind shares.

    :ivar type: the step type (a registered :class:`StageKind` name).
    :ivar name: a label for the step (copied into ``outputs.steps``).
    :ivar enabled: ``false`` skips the step (its input goes to the next step).
    :ivar params: fields of the kind's options dataclass, passed through as they are.
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = None
    enabled: bool = True
    params: dict[str, Any] = {}


class BackendStepConfig(StepConfig):
    """A chain step of a kind that uses a backend: ``backend`` (``auto`` or a registered
    name), and the chosen backend's settings as keys of their own (``threads: 4``,
    ``voice: a.onnx``), checked against that backend's settings when the chain is loaded
    (:func:`~ai_content_pipeline.backends.registry.step_settings`); :meth:`settings` reads them."""

    model_config = ConfigDict(extra="allow")

    backend: str = "auto"

    def settings(self) -> dict[str, Any]:
        """The backend settings the step gives, by step key (``{"threads": 4}``)."""
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class StageKind:
    """One step type: what the rest of the package needs to know about it.

    :ivar name: the step type (``script``, ``voice``): ``type:`` in a chain file, the
        ``stage`` of its events, the ``NN-name.jsonl`` file stem.
    :ivar stage: the stage class, built as ``stage(backend, options, emitter, ledger)``
        (``backend`` is ``None`` when :attr:`backend` is ``None``).
    :ivar options: the options dataclass (``params`` are its fields).
    :ivar step_model: the chain step model (a :class:`StepConfig` subclass whose ``type`` is
        ``Literal[name]``).
    :ivar backend: the backend kind it uses: ``"llm"``, ``"tts"`` or ``None``.
    :ivar entry: the ledger entry model of a finished record (pydantic), or ``None``.
    :ivar record_field: the field it adds to each record (``script``, ``audio``), or ``None``.
    :ivar dirs: the folders it writes, ``{option: (folder under output_dir, params may
        set it)}``; the chain sets each option (``out_dir`` → ``output_dir/audio``).
    :ivar context: ``context(options) -> dict``: what building the stage needs loaded once
        (the script kind's template), passed to ``applies`` and to the stage's constructor as
        keyword arguments (``None``: nothing).
    :ivar applies: for a refinement of another kind (long-form refines ``script``):
        ``applies(options, **context) -> bool`` says when the registry builds this one instead.
    :ivar check_step: ``check_step(step_config)``: what a chain file can get wrong beyond the
        types (a long-form plan); raises an ``AicpError`` whose ``loc`` attribute, if set, is
        the key path under the step (``("params", "sections")``).
    :ivar events: the kind's own ``record_complete`` / ``step_complete`` fields, for the
        events table (a short phrase).
    :ivar command: ``module:attribute`` of its click command when it has one, else ``None``.
    """

    name: str
    stage: type[Any]
    options: type[Any]
    step_model: type[StepConfig]
    backend: BackendKind | None = None
    entry: type[Any] | None = None
    record_field: str | None = None
    dirs: dict[str, tuple[str, bool]] = field(default_factory=dict)
    context: Callable[[Any], dict[str, Any]] | None = None
    applies: Callable[..., bool] | None = None
    check_step: Callable[[Any], None] | None = None
    events: str = ""
    command: str | None = None

    def build(self, backend: Any, options: Any, emitter: Any, ledger: Any, **context: Any) -> Any:
        """The stage: ``stage(backend, options, emitter, ledger, **context)``."""
        return self.stage(backend, options, emitter, ledger, **context)


__all__ = ["BackendKind", "BackendStepConfig", "StageKind", "StepConfig"]
