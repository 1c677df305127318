"""``aicp doctor``: what this machine can run, as one JSON-able report.

Every backend in the registry (:mod:`~ai_content_pipeline.backends.registry`: built-in,
installed or registered) brings its own check (``BackendInfo.doctor``); this module runs them
and sums them up. Each check is ``{"ok": bool, ...details, "hint": str}`` (``hint`` only when
not ok). The built-in checks find packages with :func:`importlib.util.find_spec` and read
versions from package metadata, so no engine is imported; the CUDA check imports ``torch``
only when it is installed. The one network call is Ollama's ``GET /api/tags`` at each Ollama
host (one second timeout, hosts at once).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .backends import registry
from .errors import UsageError


def _run_check(info: registry.BackendInfo, host: str | Iterable[str] | None) -> dict[str, Any]:
    """One backend's doctor hook; a hook that fails is a failed check, never a crash.

    :raises UsageError: the hook refused what the user gave (``--host``).
    """
    try:
        hook = info.load("doctor")
        if hook is None:
            found: dict[str, Any] = {"checks": {info.name: {"ok": True, "note": "no check of its own"}},
                                     "usable": True}
        else:
            found = hook(host=host)
    except UsageError:  # what the user gave is wrong (a --host that is no URL): exit 2
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin is a finding, not a crash
        found = {"checks": {info.name: {"ok": False, "hint": f"its doctor check failed: {exc}"}},
                 "usable": False}
    found.setdefault("auto", found.get("usable", False))
    return found


def run_doctor(host: str | Iterable[str] | None = None) -> dict[str, Any]:
    """Run the check of every backend and summarise what can run.

    ``host``: the Ollama hosts (one URL, a comma list or several; unset: ``$OLLAMA_HOSTS``,
    else ``$OLLAMA_HOST``), given to every check as ``host=``.

    Shape: ``{"ok": bool, "checks": {name: check}, "usable": {"llm": [names], "tts": [names]},
    "auto": {"llm": name|null, "tts": name|null}, "voices": {persona: report}}`` (``voices``: see
    :func:`persona_voices`). Built-in checks: ``ollama``, ``llamacpp``,
    ``bundled_model``, ``chatterbox``, ``cuda``, ``piper``, ``kokoro``, each backend's checks in ``auto``'s
    order. ``usable`` lists the backends in ``auto``'s order; ``auto`` is the first of them
    ``--backend auto`` would pick. ``ok`` is true when at least one LLM and one TTS backend
    are usable.
    """
    checks: dict[str, Any] = {}
    usable: dict[str, list[str]] = {}
    auto: dict[str, str | None] = {}
    for kind in registry.KINDS:
        usable[kind], auto[kind] = [], None
        for info in registry.by_priority(kind):
            found = _run_check(info, host)
            checks.update(found.get("checks") or {})
            if found.get("usable"):
                usable[kind].append(info.name)
                if auto[kind] is None and found.get("auto"):
                    auto[kind] = info.name
    return {"ok": bool(usable["llm"] and usable["tts"]), "checks": checks, "usable": usable, "auto": auto,
            "voices": persona_voices(usable["tts"])}


def persona_voices(usable: list[str]) -> dict[str, Any]:
    """``persona name → voice report`` (:func:`voice_report`)
    of every persona found by name (user folder and built-in), given the usable TTS backends:
    which voice ``--backend auto`` (aicp-voice) gives it, and which voice each backend would fall back to.
    A persona that cannot be read gets ``{"problem": message}``."""
    from .templates import list_personas, load_persona

    out: dict[str, Any] = {}
    for summary in list_personas([]):
        name = summary["name"]
        try:
            out[name] = voice_report(load_persona(name), usable)
        except Exception as exc:  # noqa: BLE001 - a report, never a crash
            out[name] = {"problem": str(exc)}
    return out


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
    if usable is None:
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
