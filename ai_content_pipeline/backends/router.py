"""``--backend auto`` (aicp-voice) with personas of their own voices: one TTS backend object that gives
each persona the first backend (in ``priority`` order) whose persona block names a voice
(``voice.piper.model``, ``voice.kokoro.voice``, ``voice.chatterbox.audio_prompt``), and every
other persona the run's default backend. Each backend is built on first need and loaded on
its first synthesis; all are unloaded together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import TTSBackend, Voice

if TYPE_CHECKING:
    import numpy as np


def persona_backend(persona: Any | None, hooks: dict[str, Callable[[Any], Any]], default: str,
                    speaks: Callable[[str, Any], bool] | None = None) -> str:
    """The backend that speaks ``persona``: the first of ``hooks`` (backend name → its
    ``persona_voice_name`` hook, in ``auto``'s order) whose hook finds a voice in the persona's
    block that ``speaks(name, persona)`` says is here (unset: every named voice is), else
    ``default``."""
    if persona is None:
        return default
    for name, hook in hooks.items():
        try:
            block = persona.voice.block(name)
        except KeyError:
            continue
        if hook(block) and (speaks is None or speaks(name, persona)):
            return name
    return default


class PersonaVoices(TTSBackend):
    """Several TTS backends behind one, chosen per persona (see the module docstring).

    :param hooks: backend name → its ``persona_voice_name`` hook, for the backends a persona
        may claim, in ``auto``'s order.
    :param default: the backend of personas that claim none.
    :param build: ``build(name)``: backend ``name`` built (not loaded) with the run's options.
    """

    name = "auto"
    #: loads nothing itself: each backend it routes to loads on its first synthesis and is
    #: reported through :attr:`on_child_event` (the stage's ``model_load``/``model_unload``)
    routes = True

    def __init__(self, hooks: dict[str, Callable[[Any], Any]], default: str,
                 build: Callable[[str], TTSBackend]) -> None:
        self.hooks = dict(hooks)
        self.candidates = list(hooks)
        self.default = default
        self.build = build
        self.model = "per persona"
        self._children: dict[str, TTSBackend] = {}
        self._has: dict[tuple[str, str, int], bool] = {}
        self._lock = threading.RLock()
        #: ``on_child_event("load"|"unload", describe(), seconds)`` for each backend routed to
        #: (set by :class:`~ai_content_pipeline.stages.common.BackendSession`)
        self.on_child_event: Callable[[str, dict[str, Any], float], None] | None = None
        self.sample_rate = self._child(default).sample_rate
        self.max_chunk_chars = self._child(default).max_chunk_chars  # type: ignore[misc]

    def _child(self, name: str) -> TTSBackend:
        """Backend ``name``, built (not loaded) on first need."""
        with self._lock:
            if name not in self._children:
                self._children[name] = self.build(name)
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
        return self._child(persona_backend(persona, self.hooks, self.default, self._speaks))

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
                    t0 = time.perf_counter()
                    child.load()
                    if self.on_child_event is not None:
                        self.on_child_event("load", child.describe(), time.perf_counter() - t0)
        return child

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text`` with the backend ``voice.backend`` (loaded now if it is not)."""
        return self._speaker(voice).synthesize(text, voice)

    def synthesize_parts(self, parts: list[Any], voice: Voice) -> np.ndarray:
        """Speak ``parts`` (a lexicon's phonemes among them) with the backend ``voice.backend``."""
        return self._speaker(voice).synthesize_parts(parts, voice)

    def phonemes_for(self, voice: Voice) -> bool:
        """Whether ``voice.backend`` takes phonemes (built, not loaded, to ask)."""
        return self._child(voice.backend or self.default).phonemes_for(voice)

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
                    t0 = time.perf_counter()
                    child.unload()
                    if self.on_child_event is not None:
                        self.on_child_event("unload", child.describe(), time.perf_counter() - t0)
        self.loaded = False

    def describe(self) -> dict[str, Any]:
        """The backends in use, for events and records."""
        used = [name for name, child in self._children.items() if child.loaded] or [self.default]
        return {"backend": "auto", "model": ", ".join(f"{n}:{self._children[n].model}" for n in used
                                                      if n in self._children),
                "device": self._child(self.default).device}


__all__ = ["PersonaVoices", "persona_backend"]
