"""LLM and TTS backends behind one protocol per kind; see :mod:`.base` and :mod:`.registry`
(a backend describes itself in a :class:`BackendInfo`; :func:`register_backend` adds one)."""

from .base import ChatChunk, Completion, GenerationParams, LLMBackend, TTSBackend, Voice, complete
from .info import BackendInfo
from .registry import create_llm, create_tts, register_backend

__all__ = ["BackendInfo", "ChatChunk", "Completion", "GenerationParams", "LLMBackend", "TTSBackend", "Voice",
           "complete", "create_llm", "create_tts", "register_backend"]
