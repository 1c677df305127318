"""LLM and TTS backends behind one protocol per kind; see :mod:`.base` and :mod:`.registry`."""

from .base import ChatChunk, Completion, GenerationParams, LLMBackend, TTSBackend, Voice, complete
from .registry import create_llm, create_tts

__all__ = ["ChatChunk", "Completion", "GenerationParams", "LLMBackend", "TTSBackend", "Voice",
           "complete", "create_llm", "create_tts"]
