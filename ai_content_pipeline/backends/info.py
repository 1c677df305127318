"""The description of one backend (:class:`BackendInfo`) that its module exports and the
registry (:mod:`.registry`) collects. Imports nothing heavy."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["llm", "tts"]


def load_ref(ref: Any) -> Any:
    """``ref`` itself, or the object a ``"package.module:attribute"`` string names (imported now)."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class BackendInfo:
    """What the package knows about one backend. Fields that name code take the object or a
    ``"module:attribute"`` string (imported on first use).

    :ivar name: the ``--backend`` name (letters, digits, ``-``, ``_``).
    :ivar kind: ``llm`` or ``tts``.
    :ivar adapter: the class (or factory) building the backend, called as
        ``adapter(model, host=..., notice=..., **options)`` (LLM) or ``adapter(**options)`` (TTS);
        it returns an :class:`~.base.LLMBackend` / :class:`~.base.TTSBackend`, not loaded.
    :ivar settings: the adapter's keyword options as plain data (a tuple of
        :class:`~.settings.Setting`): the one source of its options model, its command flags
        (``--threads``, ``--sine-frequency``), its chain step keys and what a service request
        may set. Options it does not declare are left out (``aicp-voice`` passes
        ``exaggeration`` to every TTS backend).
    :ivar options: a pydantic model of the adapter's keyword options, for a backend without
        :attr:`settings`; ``None`` with no settings either: every option is passed.
    :ivar persona_voice: a pydantic model of a persona's ``voice.NAME`` block (TTS); ``None``:
        a persona may not have one.
    :ivar voice_file: the key of that block that names a file (a record never carries it).
    :ivar persona_voice_name: ``persona_voice_name(block) -> str | None``: the voice a persona's
        block of this backend names (a Piper model, a Kokoro preset, a Chatterbox clip), or
        ``None`` when it names none (the backend would speak its default voice). With
        ``--backend auto`` (aicp-voice) a persona is spoken by the first backend (``priority`` order)
        whose block names a voice; unset: the backend never claims a persona.
    :ivar doctor: ``doctor(host=...) -> {"checks": {name: check}, "usable": bool, "auto": bool}``
        for ``aicp doctor``; each check is ``{"ok": bool, ...details, "hint": str}``
        (``auto``: ``--backend auto`` would pick it when it comes first; default: ``usable``).
    :ivar claims: ``claims(value) -> bool``: ``auto`` picks this backend for such a model
        (LLM: ``.gguf``) or voice (TTS: ``.onnx``) at once.
    :ivar auto: TTS: ``auto(device=...) -> bool``, whether ``auto`` may pick it now (unset:
        always); backends are asked in ``priority`` order.
    :ivar preflight: ``preflight(**options)``: what the backend needs that exists before any
        model loads (an engine installed, a voice file, a weights folder), checked for a chain
        before its first step; raises an :class:`~ai_content_pipeline.errors.AicpError`.
    :ivar default_model: what ``describe()`` names as the model when none is given (the bundled
        one), for ``aicp run-chain``'s plan; ``None`` when it depends on the environment.
    :ivar bundled: ``bundled() -> {name: path}``: the model (LLM) or voice (TTS) files the
        backend ships, by the name clients use (``aicp serve``'s default lists; ``{}`` when
        not installed); unset: none.
    :ivar list_voices: TTS: ``list_voices(folders=()) -> [{"name", "voice", "source",
        "description", ...}]``: the voices the backend offers now (``voice``: what ``--voice``
        takes, or ``None``; ``folders``: more folders to look for voice files in), ``[]`` when
        its engine is not installed; read by ``aicp voices list``. Unset: none listed.
    :ivar priority: ``auto``'s order (highest first); third-party backends default to 0,
        below every built-in, so ``auto`` picks them only when they claim the input.
    :ivar summary: one line for people.
    """

    name: str
    kind: Kind
    adapter: Any
    settings: Any = ()
    options: Any = None
    persona_voice: Any = None
    voice_file: str | None = None
    persona_voice_name: Any = None
    doctor: Any = None
    claims: Any = None
    auto: Any = None
    preflight: Any = None
    default_model: str | None = None
    bundled: Any = None
    list_voices: Any = None
    priority: int = 0
    summary: str = ""

    def load(self, what: str) -> Any:
        """The object field ``what`` names (``adapter``, ``options``...), imported now."""
        return load_ref(getattr(self, what))

    def setting_list(self) -> tuple[Any, ...]:
        """:attr:`settings`, loaded (a ``"module:attribute"`` string is imported now)."""
        return tuple(load_ref(self.settings) or ())

    def options_model(self) -> Any:
        """The pydantic model of the adapter's options: :attr:`options`, else the one built from
        :attr:`settings` (fields named by keyword), else ``None`` (every option passes)."""
        model = self.load("options")
        if model is not None:
            return model
        settings = self.setting_list()
        if not settings:
            return None
        from .settings import options_model

        return options_model(self.name, settings)


__all__ = ["BackendInfo", "Kind", "load_ref"]
