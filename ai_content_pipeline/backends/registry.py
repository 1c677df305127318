"""Backend registry: a name → adapter class table per kind, and ``auto`` resolution.

Adapters are named by import path and imported on first use, so ``--help``
and the CLI's start-up never touch an engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import BackendUnavailable, UsageError
from .base import LLMBackend, TTSBackend

LLM_BACKENDS: dict[str, str] = {
    "llamacpp": "ai_content_pipeline.backends.llamacpp:LlamaCppBackend",
    "ollama": "ai_content_pipeline.backends.ollama:OllamaBackend",
}
TTS_BACKENDS: dict[str, str] = {
    "piper": "ai_content_pipeline.backends.piper:PiperBackend",
    "chatterbox": "ai_content_pipeline.backends.chatterbox:ChatterboxBackend",
}
LLM_CHOICES = ("auto", *LLM_BACKENDS)
TTS_CHOICES = ("auto", *TTS_BACKENDS)


def _load_class(table: dict[str, str], name: str, kind: str) -> type[Any]:
    try:
        target = table[name]
    except KeyError:
        raise UsageError(
            f"unknown {kind} backend '{name}'", hint=f"choose one of: auto, {', '.join(table)}"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def resolve_llm_name(
    name: str, model: str | None, host: str | list[str] | None, notice: Callable[..., None] | None = None
) -> tuple[str, str | None]:
    """Turn ``auto`` into a concrete LLM backend name and model.

    Rules: a ``.gguf`` model → ``llamacpp``; else Ollama when it answers at the
    host (any of a comma list of hosts) within a second and has the model; an explicit non-GGUF model with no
    Ollama → :class:`BackendUnavailable`; otherwise ``llamacpp`` with the
    bundled model, said once through ``notice``. The probe waits at most about
    a second (``GET /api/tags``).

    :returns: ``(backend name, model or None for the backend's default)``.
    :raises UsageError: unknown backend name.
    :raises BackendUnavailable: an explicit non-GGUF model and no Ollama answering.
    """
    if name != "auto":
        if name not in LLM_BACKENDS:
            raise UsageError(f"unknown LLM backend '{name}'", hint=f"choose one of: {', '.join(LLM_CHOICES)}")
        return name, model
    if model and model.lower().endswith(".gguf"):
        return "llamacpp", model
    from .ollama import default_model, probe
    from .ollama_pool import parse_hosts

    hosts = parse_hosts(host)
    host = ", ".join(hosts)
    found = [probe(h) for h in hosts]  # about a second each at most
    answering = [f for f in found if f is not None]
    available = set().union(*answering) if answering else None
    wanted = model or default_model()
    if available is not None and (model or wanted in available):
        return "ollama", wanted
    if model:
        raise BackendUnavailable(
            f"cannot reach Ollama at {host} for model '{model}'",
            hint=f"is `ollama serve` running at {host}? Or pass a .gguf path or --backend llamacpp",
        )
    reason = (f"Ollama at {host} has no '{wanted}'" if available is not None
              else f"no Ollama at {host}")
    if notice is not None:
        notice(f"backend auto: {reason}; using embedded llama.cpp with the bundled SmolLM2-135M")
    return "llamacpp", None


def create_llm(name: str = "auto", *, model: str | None = None, host: str | list[str] | None = None,
               notice: Callable[..., None] | None = None, **options: Any) -> LLMBackend:
    """Build (not load) the LLM backend ``name`` (``auto``, ``llamacpp``, ``ollama``).

    ``host``: one URL, a comma list or a list (``--host`` repeated); unset: ``OLLAMA_HOSTS``,
    then ``OLLAMA_HOST``. Several hosts make Ollama an
    :class:`~ai_content_pipeline.backends.ollama_pool.OllamaPool`.

    :raises UsageError: unknown name. :raises BackendUnavailable: see :func:`resolve_llm_name`.
    """
    from .ollama_pool import parse_hosts

    hosts = parse_hosts(host) if host or name in ("auto", "ollama") else []
    name, model = resolve_llm_name(name, model, ",".join(hosts) or None, notice)
    if name == "ollama" and len(hosts) > 1:
        from .ollama_pool import OllamaPool

        return OllamaPool(model, hosts=hosts, notice=notice, **options)
    cls = _load_class(LLM_BACKENDS, name, "LLM")
    single = hosts[0] if name == "ollama" and hosts else (host if isinstance(host, str) else None)
    return cls(model, host=single, **options)  # type: ignore[no-any-return]


def resolve_tts_name(name: str, notice: Callable[[str], None] | None = None,
                     device: str | None = None, voice: str | None = None) -> str:
    """Turn ``auto`` into ``chatterbox`` (installed and a GPU present) or ``piper``.

    A Piper voice file (``.onnx``) always means ``piper``.
    """
    if name != "auto":
        return name
    from .chatterbox import chatterbox_available, detect_device

    if voice and str(voice).lower().endswith(".onnx"):
        choice = "piper"
    elif chatterbox_available() and (device or detect_device()) in ("cuda", "mps"):
        choice = "chatterbox"
    else:
        choice = "piper"
    if notice is not None:
        notice(f"backend auto: using {choice} for speech")
    return choice


def create_tts(name: str = "auto", *, notice: Callable[[str], None] | None = None,
               **options: Any) -> TTSBackend:
    """Build (not load) the TTS backend ``name`` (``auto``, ``piper``, ``chatterbox``).

    :param notice: called with one line for people when ``auto`` picks an engine.
    :param options: the backend class's keyword arguments (``voice``: a Piper ``.onnx`` path or
        a Chatterbox reference clip; ``device``: ``cpu``, ``cuda``...; ``checkpoint_dir``).
    :returns: the :class:`~ai_content_pipeline.backends.base.TTSBackend`, not loaded yet.
    :raises UsageError: unknown name.
    :raises TypeError: an option the backend class does not take.
    """
    name = resolve_tts_name(name, notice, options.get("device"), options.get("voice"))
    cls = _load_class(TTS_BACKENDS, name, "TTS")
    return cls(**options)  # type: ignore[no-any-return]
