"""Personas of a run: the lookup a record's ``persona``/``dj`` field goes through, and the voice
settings a script record carries.

A script record carries its persona's voice settings (``script.persona_voice``,
:func:`persona_voice`), so the voice stage speaks with the same persona on any
machine, without reading any file the record names.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..backends.voices import VoiceSettings, file_settings
from ..errors import InputError, UsageError
from ..records import get_path
from .models import Persona, PersonaVoice
from .store import _is_path, _names, is_name, load_persona

DEFAULT_PERSONA = "julie"


def persona_voice(persona: Persona) -> dict[str, Any]:
    """What a script record carries about ``persona`` (``script.persona_voice``):
    ``{"seed": int, "piper": {...}, "chatterbox": {...}, "lexicon": {...}}``, unset settings (and an
    empty lexicon) left out.

    File-valued settings (each TTS backend's ``voice_file``: ``voice.piper.model``, an ``.onnx``
    voice or a voice name; ``voice.kokoro.voices``; ``voice.chatterbox.audio_prompt``, a reference clip) are written as they are in the persona file,
    so the voice stage can say which file it would need; it never opens them.
    """
    lexicon = {word: entry.model_dump(exclude_none=True) for word, entry in persona.lexicon.items()}
    return {"seed": persona.seed, **persona.voice.model_dump(exclude_none=True),
            **({"lexicon": lexicon} if lexicon else {})}


def persona_from_voice(name: str, data: Any, field: str) -> Persona:
    """A persona rebuilt from a record's ``script.persona_voice`` (see :func:`persona_voice`):
    ``name``, the seed and voice settings; file-valued settings (other than voice names such as
    ``en_US-joe-medium``) are left out and listed in
    ``_record_files`` (``voice.chatterbox.audio_prompt``...), for :func:`record_voice_file`.

    :raises InputError: ``data`` is not a valid persona voice object (names the key path).
    """
    if not isinstance(data, dict):
        raise InputError(f"field '{field}' must be an object of voice settings", field=field)
    try:
        carried = PersonaVoice.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in (field, *first["loc"]))
        raise InputError(f"field '{where}': {first['msg']}", field=field) from exc
    files = []
    for backend, key in file_settings().items():
        settings = carried.block(backend)
        value = getattr(settings, key, None)
        if value is not None and not _voice_name(value):
            files.append(f"voice.{backend}.{key}")
            setattr(settings, key, None)
    persona = Persona(name=name, display_name=name, style="", seed=carried.seed, lexicon=carried.lexicon,
                      voice=VoiceSettings.model_validate(dict(carried.__pydantic_extra__ or {})))
    persona._record_files = files
    return persona


def _voice_name(value: Any) -> bool:
    """Whether a file-valued voice setting holds a voice *name* (``en_US-joe-medium``: no folder,
    no suffix), which a record may carry, rather than a file."""
    from pathlib import PurePath

    return isinstance(value, str) and "/" not in value and "\\" not in value and PurePath(value).suffix == "" \
        and value not in ("", ".", "..")


def record_voice_file(persona: Persona | None, backend: str) -> str | None:
    """The file-valued voice setting (``voice.BACKEND.KEY``) that ``backend`` would need from a
    persona rebuilt from a record, or ``None``. The voice stage refuses such a record (a
    record never makes aicp open a file) unless the backend has an explicit ``--voice``."""
    if persona is None:
        return None
    prefix = f"voice.{backend}."
    return next((f for f in persona._record_files if f.startswith(prefix)), None)


class Personas:
    """The persona rule of one run (:meth:`for_record`), each persona file loaded once.

    The run's default is loaded here, once; a persona a record names is loaded the first time a
    record names it and reused for every later record, so one run uses one version of each file
    (an edit during the run reaches the next run, never half of this one's records).

    :param default: the run's default persona: a name or a path from the command line, a
        :class:`Persona` already loaded, or ``None``.
    :param required: ``julie`` when neither a record nor ``default`` names one (else ``None``).
    :raises UsageError: ``default`` names no persona. :raises ConfigError: its file is invalid.
    """

    def __init__(self, default: str | Persona | None, *, required: bool = True) -> None:
        self.default: Persona | None = load_persona(default) if isinstance(default, str) and default else default or None
        self.required = required
        self._named: dict[str, Persona] = {}

    def named(self, name: str) -> Persona:
        """The persona called ``name`` (user folder, then built-in), loaded on the first ask.

        :raises UsageError: no persona has that name.
        """
        persona = self._named.get(name)
        if persona is None:
            persona = self._named[name] = load_persona(name)
        return persona

    def for_record(self, record: dict[str, Any], fields: tuple[str, ...] = ("persona", "dj"), *,
                   carried: tuple[str, str] | None = None) -> Persona | None:
        """The persona ``record`` asks for: the first of ``fields`` (dotted paths) that is set,
        else the run's default (a name or a path from the command line), else ``julie`` when
        ``required`` (``None`` otherwise).

        A record may only *name* a persona: one of the user folder or a built-in one, or the
        persona that the default loaded from a file (``-p ./rosa.yaml`` lets records say
        ``"rosa"``). A path, or any value that is not a plain name, is refused without touching
        the file system: record data is never used as a file path.

        ``carried`` (``("script.persona", "script.persona_voice")`` in the voice stage): when the
        record's name equals the value at the first path and the second holds voice settings,
        the persona is rebuilt from them (:func:`persona_from_voice`): what the script stage used
        travels with the record. Precedence for a name: the default file's persona of that
        name, then the carried settings, then the user folder, then the built-ins.

        :raises InputError: the field is not a string, is not a plain name, names no persona, or
            the carried settings are invalid (stage ``None``: the caller sets it).
        """
        chosen = self.default
        for field in fields:
            value = get_path(record, field)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if not isinstance(value, str):
                kind = "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) \
                    else "true/false" if isinstance(value, bool) else "a number"
                raise InputError(f"field '{field}' must be a persona name (a string), not {kind}", field=field)
            name = value.strip()
            if chosen is not None and name == chosen.name:
                return chosen
            if not is_name(name):
                if _is_path(name) or ".." in name:
                    raise InputError(
                        f"field '{field}' is not a persona name: a record may name a persona, not a file",
                        hint="give a persona file on the command line (--persona FILE); records then use its name",
                        field=field)
                raise InputError(f"field '{field}' is not a persona name", field=field,
                                 hint="a name is 1-64 ASCII letters, digits, '.', '_' or '-', starting with a "
                                      "letter or digit")
            if carried is not None:
                voice = get_path(record, carried[1])
                if voice is not None and get_path(record, carried[0]) == name:
                    return persona_from_voice(name, voice, carried[1])
            try:
                return self.named(name)
            except UsageError as exc:  # records name personas only: no "or give a .yaml path" here
                from_file = carried is not None and field == carried[0]  # a script made with -p FILE
                known = _names("persona")  # and the default's name (a persona file's)
                known += [chosen.name] if chosen is not None and chosen.name not in known else []
                raise InputError(exc.message, field=field,
                                 hint=f"choose one of: {', '.join(known)}"
                                      + (f"; a script from a persona file: give the file, --persona "
                                         f"./{name}.yaml" if from_file else
                                         " (your own: aicp personas new NAME)")) from exc
        if chosen is not None:
            return chosen
        return self.named(DEFAULT_PERSONA) if self.required else None
