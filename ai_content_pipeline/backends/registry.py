"""Backend registry: every LLM and TTS backend as one :class:`BackendInfo`, found by name.

A backend module describes itself in one object (its name, kind, adapter, options model,
persona voice model, ``aicp doctor`` check and ``auto`` hooks); everything else (the CLI's
``--backend`` choices, chain step checks, persona voice blocks, ``aicp doctor``, ``auto``)
is derived from here. Backends come from three places, first one wins per name:

1. :func:`register_backend` (code and tests);
2. the built-ins (:data:`BUILTINS`), which a source checkout finds without reinstalling;
3. installed packages, through the entry point groups :data:`ENTRY_POINT_GROUPS`
   (``ai_content_pipeline.backends.llm`` / ``.tts``; the built-ins register there too), each
   entry point naming a :class:`BackendInfo` (``NAME = "package.module:BACKEND"``)::

       [project.entry-points."ai_content_pipeline.backends.tts"]
       sine = "aicp_sine:BACKEND"

Only names are read at start-up (entry point *names*, from package metadata, on first
need); a backend's module is imported when its description is needed (building it,
validating a persona, ``aicp doctor``). The commands' backend flags come from each backend's
settings (:func:`settings`): a built-in's are read from its light ``NAME_settings`` module
(:data:`BUILTIN_SETTINGS`), so ``--help`` never touches an engine or pydantic; a third-party
backend's module is imported to read its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from ..errors import BackendUnavailable, UsageError
from .base import LLMBackend, TTSBackend
from .info import BackendInfo, Kind, load_ref

KINDS: tuple[Kind, ...] = ("llm", "tts")

#: Entry point group of each kind; an entry point's name is the backend's name.
ENTRY_POINT_GROUPS: dict[str, str] = {"llm": "ai_content_pipeline.backends.llm",
                                      "tts": "ai_content_pipeline.backends.tts"}

#: The built-in backends, ``kind → name → "module:attribute"`` of their :class:`BackendInfo`,
#: in the order the choices list them (the same as pyproject.toml's entry points).
BUILTINS: dict[str, dict[str, str]] = {
    "llm": {"llamacpp": "ai_content_pipeline.backends.llamacpp:BACKEND",
            "ollama": "ai_content_pipeline.backends.ollama:BACKEND"},
    "tts": {"piper": "ai_content_pipeline.backends.piper:BACKEND",
            "kokoro": "ai_content_pipeline.backends.kokoro:BACKEND",
            "chatterbox": "ai_content_pipeline.backends.chatterbox:BACKEND"},
}


#: Where the built-ins' settings are described as plain data, importable without pydantic or
#: an engine (``--help`` builds the commands' flags from them): ``name → "module:SETTINGS"``.
BUILTIN_SETTINGS: dict[str, str] = {name: ref.replace(":BACKEND", "_settings:SETTINGS")
                                    for table in BUILTINS.values() for name, ref in table.items()}


# -- the table ----------------------------------------------------------------------------
_registered: dict[str, dict[str, Any]] = {"llm": {}, "tts": {}}  # name → BackendInfo or ref
_loaded: dict[tuple[str, str], BackendInfo] = {}
_entry_points: dict[str, dict[str, Any]] | None = None
_changes = 0  # register_backend / unregister_backend calls: see :func:`state`


def _installed_entry_points() -> dict[str, dict[str, Any]]:
    """``kind → name → EntryPoint`` of the installed packages (metadata read once a process)."""
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points

        every = entry_points()  # one scan of the installed distributions for both groups
        found: dict[str, dict[str, Any]] = {}
        for kind, group in ENTRY_POINT_GROUPS.items():
            found[kind] = {}
            for ep in every.select(group=group):
                found[kind].setdefault(ep.name, ep)
        _entry_points = found
    return _entry_points


def _table(kind: str) -> dict[str, Any]:
    """``name → BackendInfo, ref or EntryPoint`` of ``kind``, in choice order."""
    table: dict[str, Any] = dict(BUILTINS[kind])
    for name, ep in _installed_entry_points()[kind].items():
        if name not in table:
            table[name] = ep
    table.update(_registered[kind])
    return table


def names(kind: str) -> list[str]:
    """The backend names of ``kind`` (``llm``/``tts``): built-ins first, then installed and
    registered ones. Reads no backend module."""
    return list(_table(kind))


def get(kind: str, name: str) -> BackendInfo:
    """The description of backend ``name`` of ``kind`` (its module imported now).

    :raises UsageError: no such backend (exit 2; the hint lists the choices).
    :raises BackendUnavailable: its module or entry point cannot be loaded (exit 4).
    """
    _check_name(kind, name)
    table = _table(kind)
    key = (kind, name)
    entry = table[name]
    if isinstance(entry, BackendInfo):
        return entry
    if key not in _loaded:
        try:
            info = entry.load() if hasattr(entry, "load") and not isinstance(entry, str) else load_ref(entry)
        except MemoryError:
            raise  # out of memory is no broken plugin: it is said as memory, never as a missing backend
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a finding, not a crash
            where = getattr(entry, "value", entry)
            raise BackendUnavailable(f"the {kind.upper()} backend '{name}' cannot be loaded from {where}: {exc}",
                                     hint="reinstall the package that provides it, or choose another --backend") \
                from exc
        if callable(info) and not isinstance(info, BackendInfo):
            info = info()
        if not isinstance(info, BackendInfo) or info.kind != kind or info.name != name:
            raise BackendUnavailable(f"the {kind.upper()} backend '{name}' is not described by a "
                                     f"BackendInfo of kind {kind} named {name}",
                                     hint="fix its entry point, or choose another --backend")
        _loaded[key] = info
    return _loaded[key]


def backends(kind: str) -> list[BackendInfo]:
    """Every backend of ``kind`` that loads, in choice order (one that does not is left out)."""
    out = []
    for name in names(kind):
        try:
            out.append(get(kind, name))
        except BackendUnavailable:
            continue
    return out


def by_priority(kind: str) -> list[BackendInfo]:
    """:func:`backends` in ``auto``'s order: highest ``priority`` first, then choice order."""
    return sorted(backends(kind), key=lambda info: -info.priority)


def register_backend(info: BackendInfo | None = None, /, **fields: Any) -> BackendInfo:
    """Register a backend for this process: a :class:`BackendInfo`, or its fields as keywords
    (``register_backend(name="sine", kind="tts", adapter=SineBackend, ...)``). It replaces a
    backend of the same name and kind; it is choosable at once (``--backend NAME``, chain
    steps, persona ``voice.NAME`` blocks, ``aicp doctor``).

    :returns: the description. :raises ValueError: an unknown kind or an empty name.
    """
    if info is None:
        info = BackendInfo(**fields)
    if info.kind not in KINDS or not info.name or info.name == "auto":
        raise ValueError(f"a backend needs a name (not 'auto') and a kind in {KINDS}")
    global _changes
    _registered[info.kind][info.name] = info
    _loaded.pop((info.kind, info.name), None)
    _changes += 1
    return info


def unregister_backend(kind: str, name: str) -> None:
    """Drop a backend :func:`register_backend` added (built-ins and installed ones stay)."""
    global _changes
    _registered[kind].pop(name, None)
    _loaded.pop((kind, name), None)
    _changes += 1


def state(kind: str) -> tuple[Any, ...]:
    """A value that changes when the backends of ``kind`` do (one registered, unregistered, an
    entry point table replaced): what a cache of their settings is keyed by."""
    return (_changes, id(_entry_points), tuple(names(kind)))


class BackendChoices(Sequence[str]):
    """``auto`` plus the backend names of one kind, read from the registry each time it is
    used (a backend registered later is in it). Compares equal to a tuple of the same names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _names(self) -> tuple[str, ...]:
        return ("auto", *names(self.kind))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BackendChoices | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("BackendChoices", self.kind))

    def __repr__(self) -> str:
        return repr(self._names())


LLM_CHOICES = BackendChoices("llm")
TTS_CHOICES = BackendChoices("tts")


def _check_name(kind: str, name: str) -> None:
    """:raises UsageError: ``name`` is no backend of ``kind`` (reads no backend module)."""
    table = names(kind)
    if name not in table:
        raise UsageError(f"unknown {kind.upper()} backend '{name}'",
                         hint=f"choose one of: {', '.join(['auto', *table])}")


def _claimant(kind: str, value: str | None) -> str | None:
    """The backend whose ``claims`` hook takes ``value`` (a model or voice), if any."""
    if not value:
        return None
    for info in by_priority(kind):
        claims = info.load("claims")
        if claims is not None and claims(str(value)):
            return info.name
    return None


def settings(kind: str, name: str) -> tuple[Any, ...]:
    """The :class:`~.settings.Setting` list of backend ``name`` of ``kind``: a built-in's from its
    light ``*_settings`` module (no engine, no pydantic imported), another's from its
    :class:`BackendInfo` (its module imported now).

    :raises UsageError: no such backend. :raises BackendUnavailable: it cannot be loaded.
    """
    if name in BUILTIN_SETTINGS and name in BUILTINS.get(kind, {}) and name not in _registered[kind]:
        return tuple(load_ref(BUILTIN_SETTINGS[name]))
    return get(kind, name).setting_list()


def all_settings(kind: str) -> list[tuple[str, tuple[Any, ...]]]:
    """``(backend name, its settings)`` of every backend of ``kind`` that loads, in choice order."""
    out = []
    for name in names(kind):
        try:
            out.append((name, settings(kind, name)))
        except (BackendUnavailable, UsageError):
            continue
    return out


def step_settings(kind: str, backend: str, given: dict[str, Any]) -> dict[str, Any]:
    """A chain step's backend settings (``{step key: value}``) checked against the settings of
    ``backend`` (``auto``: each key against the backends of ``kind`` that declare it), as
    ``{adapter keyword: value}`` (a ``unset`` value such as ``device: auto`` becomes ``None``).

    :raises UsageError: a key the backend does not declare (names the backend and the key,
        lists its keys), or a value its options model refuses; ``exc.loc`` is the key.
    """
    from pydantic import ValidationError

    from .settings import options_model

    chosen = all_settings(kind) if backend == "auto" else [(backend, settings(kind, backend))]
    out: dict[str, Any] = {}
    for key, value in given.items():
        declaring = [(name, s) for name, table in chosen for s in table if s.step_key == key]
        if not declaring:
            known = sorted({s.step_key for _, table in chosen for s in table})
            which = (f"no {kind.upper()} backend has a setting '{key}'" if backend == "auto"
                     else f"the {kind.upper()} backend '{backend}' has no setting '{key}'")
            error = UsageError(f"Extra inputs are not permitted: {which}",
                               hint=("its settings: " if backend != "auto" else "the backends' settings: ")
                               + (", ".join(known) or "none"))
            error.loc = (key,)  # type: ignore[attr-defined]
            raise error
        for name, setting in declaring:
            try:
                options_model(name, (setting,), by="key").model_validate({key: value})
            except ValidationError as exc:
                error = UsageError(f"{name}: {exc.errors()[0]['msg']}")
                error.loc = (key,)  # type: ignore[attr-defined]
                raise error from None
            if setting.value(value) is not None:
                out[setting.name] = setting.value(value)
    return out


def backend_options(info: BackendInfo, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``info``'s adapter takes: those its options model declares (checked against
    it, passed as given), or all of them when it has no model.

    :raises UsageError: a value its options model refuses (names the backend and the option).
    """
    model = info.options_model()
    if model is None:
        return options
    declared = {k: v for k, v in options.items() if k in model.model_fields}
    from pydantic import ValidationError

    try:
        model.model_validate(declared)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{info.name}: option {where}: {first['msg']}") from None
    return declared  # as given: the adapter converts them


def resolve_llm_name(
    name: str, model: str | None, host: str | list[str] | None, notice: Callable[..., None] | None = None
) -> tuple[str, str | None]:
    """Turn ``auto`` into a concrete LLM backend name and model.

    Rules: a model a backend claims (a ``.gguf`` → ``llamacpp``) → that backend; else Ollama
    when it answers at the host (any of a comma list of hosts) within a second and has the
    model; an explicit model nothing claims with no Ollama → :class:`BackendUnavailable`;
    otherwise ``llamacpp`` with the bundled model, said once through ``notice``. Each host is
    probed in turn, about a second at most each (``GET /api/tags``).

    :returns: ``(backend name, model or None for the backend's default)``.
    :raises UsageError: unknown backend name.
    :raises BackendUnavailable: an explicit model nothing claims and no Ollama answering.
    """
    if name != "auto":
        _check_name("llm", name)
        return name, model
    claimed = _claimant("llm", model)
    if claimed is not None:
        return claimed, model
    from .ollama import default_model, parse_hosts, probe

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
    """Build (not load) the LLM backend ``name`` (``auto``, ``llamacpp``, ``ollama`` or a
    registered one).

    ``host``: one URL, a comma list or a list (``--host`` repeated); unset: ``OLLAMA_HOSTS``,
    then ``OLLAMA_HOST``. Several hosts make Ollama an
    :class:`~ai_content_pipeline.backends.ollama_pool.OllamaPool`.
    ``options``: the adapter's keyword options (``keep_alive``, ``timeout``, ``n_threads``...);
    those the backend's options model does not declare are left out.

    :raises UsageError: unknown name, an option value refused.
    :raises BackendUnavailable: see :func:`resolve_llm_name`.
    """
    from .ollama import parse_hosts

    hosts = parse_hosts(host) if host or name == "auto" else []
    name, model = resolve_llm_name(name, model, ",".join(hosts) or None, notice)
    info = get("llm", name)
    factory = info.load("adapter")
    given = hosts or (host if isinstance(host, str) else None)
    options = {k: v for k, v in backend_options(info, options).items() if k != "host"}
    return factory(model, host=given or None, notice=notice, **options)  # type: ignore[no-any-return]


def resolve_tts_name(name: str, notice: Callable[[str], None] | None = None,
                     device: str | None = None, voice: str | None = None) -> str:
    """Turn ``auto`` into a TTS backend: the one whose ``claims`` hook takes ``voice`` (a
    Piper ``.onnx`` → ``piper``), else the first in ``priority`` order whose ``auto`` hook
    agrees (``chatterbox``: installed and a GPU present), else ``piper``.

    :raises UsageError: ``name`` is no TTS backend.
    """
    if name != "auto":
        _check_name("tts", name)
        return name
    choice = _claimant("tts", voice)
    if choice is None:
        for info in by_priority("tts"):
            hook = info.load("auto")
            if hook is None or hook(device=device):
                choice = info.name
                break
    choice = choice or "piper"
    if notice is not None:
        notice(f"backend auto: using {choice} for speech")
    return choice


def create_tts(name: str = "auto", *, notice: Callable[[str], None] | None = None,
               **options: Any) -> TTSBackend:
    """Build (not load) the TTS backend ``name`` (``auto``, ``piper``, ``kokoro``, ``chatterbox`` or
    a registered one).

    ``auto`` without a ``voice`` option gives each persona the first backend whose persona block
    names a voice (:func:`persona_candidates`; a
    :class:`~ai_content_pipeline.backends.router.PersonaVoices`) when more than the default one
    could speak; the default backend speaks the personas that name none.

    :param notice: called with one line for people when ``auto`` picks an engine.
    :param options: the backend's keyword options (``voice``: a Piper ``.onnx`` path or a
        Chatterbox reference clip; ``device``: ``cpu``, ``cuda``...; ``checkpoint_dir``); those
        its options model does not declare are left out.
    :returns: the :class:`~ai_content_pipeline.backends.base.TTSBackend`, not loaded yet.
    :raises UsageError: unknown name, an option value refused.
    """
    asked = name
    name = resolve_tts_name(name, notice, options.get("device"), options.get("voice"))
    if asked == "auto" and not options.get("voice"):
        candidates = persona_candidates(options.get("device"))
        if any(c != name for c in candidates):
            from .router import PersonaVoices

            if notice is not None:
                others = [c for c in candidates if c != name]
                notice(f"backend auto: personas that name a {' or '.join(others)} voice speak with it")
            def build(backend: str) -> TTSBackend:
                info = get("tts", backend)
                return info.load("adapter")(**backend_options(info, options))  # type: ignore[no-any-return]

            hooks = {c: get("tts", c).load("persona_voice_name") for c in candidates}
            return PersonaVoices(hooks, name, build)
    info = get("tts", name)
    return info.load("adapter")(**backend_options(info, options))  # type: ignore[no-any-return]


def persona_candidates(device: str | None = None) -> list[str]:
    """The TTS backends ``auto`` may give a persona that names one of their voices, in
    ``priority`` order: those with a ``persona_voice_name`` hook whose ``auto`` hook agrees."""
    out = []
    for info in by_priority("tts"):
        if info.persona_voice_name is None:
            continue
        hook = info.load("auto")
        if hook is None or hook(device=device):
            out.append(info.name)
    return out


__all__ = ["BUILTINS", "BUILTIN_SETTINGS", "ENTRY_POINT_GROUPS", "LLM_CHOICES", "TTS_CHOICES", "BackendChoices", "BackendInfo",
           "all_settings", "backend_options", "backends", "by_priority", "create_llm", "create_tts", "get", "load_ref", "names", "persona_candidates",
           "register_backend", "resolve_llm_name", "resolve_tts_name", "settings", "step_settings",
           "unregister_backend"]
