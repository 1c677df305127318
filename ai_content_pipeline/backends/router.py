"""``--backend auto`` (aicp-voice) with personas of their own voices: one TTS backend object that gives
each persona the first backend (in ``priority`` order) whose persona block names a voice
(``voice.piper.model``, ``voice.kokoro.voice``, ``voice.chatterbox.audio_prompt``), and every
other persona the run's default backend. Each backend is built on first need and loaded on
its first synthesis; all are unloaded together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import TTSBackend, Voice

if TYPE_CHECKING:
    import numpy as np


def persona_backend(persona: Any | None, candidates: list[str], default: str,
                    speaks: Callable[[str, Any], bool] | None = None) -> str:
    """The backend that speaks ``persona``: the first of ``candidates`` (backend names, in
    ``auto``'s order) whose persona block names a voice that ``speaks(name, persona)`` says is
    here (unset: every named voice is), else ``default``."""
    if persona is None:
        return default
    from . import registry

    for name in candidates:
        hook = registry.get("tts", name).load("persona_voice_name")
        try:
            block = persona.voice.block(name)
        except KeyError:
            continue
        if hook is not None and hook(block) and (speaks is None or speaks(name, persona)):
            return name
    return default


class PersonaVoices(TTSBackend):
    """Several TTS backends behind one, chosen per persona (see the module docstring).

    :param candidates: the backends a persona may claim, in ``auto``'s order.
    :param default: the backend of personas that claim none.
    :param options: the keyword options of the run (each backend takes those it declares).
    """

    name = "auto"

    def __init__(self, candidates: list[str], default: str, options: dict[str, Any]) -> None:
        self.candidates = list(candidates)
        self.default = default
        self.options = dict(options)
        self.model = "per persona"
        self._children: dict[str, TTSBackend] = {}
        self._has: dict[tuple[str, str, int], bool] = {}
        self._lock = threading.RLock()
        self.sample_rate = self._child(default).sample_rate
        self.max_chunk_chars = self._child(default).max_chunk_chars  # type: ignore[misc]

    def _child(self, name: str) -> TTSBackend:
        """Backend ``name``, built (not loaded) on first need."""
        with self._lock:
            if name not in self._children:
                from .registry import backend_options, get

                info = get("tts", name)
                self._children[name] = info.load("adapter")(**backend_options(info, self.options))
            return self._children[name]

    def _speaks(self, name: str, persona: Any) -> bool:
        """Whether backend ``name`` has the voice ``persona`` names (asked once per persona)."""
        key = (name, persona.name, id(persona))
        if key not in self._has:
            child = self._child(name)
            self._has[key] = child.voice_installed(child.default_voice(persona))
        return self._has[key]

    def backend_for(self, persona: Any | None) -> TTSBackend:
        """The backend object that speaks ``persona``."""
        return self._child(persona_backend(persona, self.candidates, self.default, self._speaks))

    def load(self) -> None:
        """Nothing to load until a persona's backend speaks (each loads on its first synthesis)."""
        self.loaded = True

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        """The voice ``persona`` gets from its backend, with ``backend`` and ``model`` set."""
        child = self.backend_for(persona)
        voice = child.default_voice(persona, seed)
        voice.backend, voice.model = child.name, child.model
        return voice

    def _speaker(self, voice: Voice) -> TTSBackend:
        child = self._child(voice.backend or self.default)
        if not child.loaded:
            with self._lock:
                if not child.loaded:
                    child.load()
        return child

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text`` with the backend ``voice.backend`` (loaded now if it is not)."""
        return self._speaker(voice).synthesize(text, voice)

    def rate_for(self, voice: Voice) -> int:
        """The sample rate of ``voice``'s backend (as loaded)."""
        return self._speaker(voice).rate_for(voice)

    def chunk_chars(self, voice: Voice) -> int:
        """The chunk length of ``voice``'s backend (loaded now: the voice stage asks before it
        times the synthesis, so a backend's load is not counted in a record's ``rtf``)."""
        return self._speaker(voice).chunk_chars(voice)

    def unload(self) -> None:
        """Unload every backend that loaded."""
        with self._lock:
            for child in self._children.values():
                if child.loaded:
                    child.unload()
        self.loaded = False

    def describe(self) -> dict[str, Any]:
        """The backends in use, for events and records."""
        used = [name for name, child in self._children.items() if child.loaded] or [self.default]
        return {"backend": "auto", "model": ", ".join(f"{n}:{self._children[n].model}" for n in used
                                                      if n in self._children),
                "device": self._child(self.default).device}





def voice_report(persona: Any, usable: list[str] | None = None) -> dict[str, Any]:
    """Which voice each TTS backend would speak ``persona`` with, on this machine.

    :param usable: the TTS backends that can run here (``aicp doctor``'s ``usable.tts``; ``None``:
        run their checks now).
    :returns: ``{"auto": {"backend", "voice"}, "backends": {name: {"installed": bool, "names":
        voice or None, "speaks": voice or None, "fallback": bool}}}``: ``names`` is the voice the
        persona's block names, ``speaks`` what the backend would use (``None`` when it is not
        installed), ``fallback`` true when that is not the named voice (none named, or the named
        one is not here) so it speaks its default; ``auto`` is what ``--backend auto`` (aicp-voice) gives
        the persona.
    """
    from . import registry

    if usable is None:
        from ..doctor import run_doctor

        usable = run_doctor()["usable"]["tts"]
    out: dict[str, Any] = {}
    for info in registry.by_priority("tts"):
        if info.persona_voice is None:
            continue
        hook = info.load("persona_voice_name")
        try:
            named = hook(persona.voice.block(info.name)) if hook is not None else None
        except KeyError:
            named = None
        entry: dict[str, Any] = {"installed": info.name in usable, "names": named, "speaks": None,
                                 "fallback": True}
        if entry["installed"]:
            try:
                backend = info.load("adapter")()
                voice = backend.default_voice(persona)
                if named is not None and not backend.voice_installed(voice):
                    voice = backend.default_voice(None)
                else:
                    entry["fallback"] = named is None
                entry["speaks"] = voice.name
            except Exception as exc:  # noqa: BLE001 - a report, never a crash
                entry.update(installed=False, problem=str(exc))
        out[info.name] = entry
    default = registry.resolve_tts_name("auto")
    candidates = [c for c in registry.persona_candidates() if out.get(c, {}).get("installed")
                  and not out[c]["fallback"]]
    chosen = candidates[0] if candidates else default
    return {"auto": {"backend": chosen, "voice": out.get(chosen, {}).get("speaks")}, "backends": out}
__all__ = ["PersonaVoices", "persona_backend", "voice_report"]
