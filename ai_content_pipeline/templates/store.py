"""Finding template and persona files: built-in and user folders, loading and listing.

Both are looked up by name or by file path (anything ending in ``.yaml``/``.yml``
or containing a path separator). A name is found first in the user folder
(:func:`user_dir`: ``$AICP_HOME``, else ``$XDG_CONFIG_HOME/aicp``, else
``~/.config/aicp``; ``templates/NAME.yaml``, ``personas/NAME.yaml``), then among
the built-ins: a user file overrides the built-in of its name. Only the command
line (or a chain file) may give a path: a *record* may only name a persona
(:meth:`~ai_content_pipeline.templates.personas.Personas.for_record`), since record
fields are data, never file names.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import AicpError, ConfigError, UsageError
from ..faults import path_problem
from ..yamlfile import SURROGATE, YAMLProblem, decode_utf8, load_yaml, read_limited
from .models import Persona, Template, _json_path

DATA_DIR = Path(__file__).parent
TEMPLATE_DIR = DATA_DIR / "templates"
PERSONA_DIR = DATA_DIR / "personas"


def _is_path(ref: str) -> bool:
    """Whether ``ref`` names a file rather than a built-in (``.yaml``/``.yml``, or a separator)."""
    return ref.endswith((".yaml", ".yml")) or os.sep in ref or "/" in ref


def _load_yaml(path: Path, kind: str) -> dict[str, Any]:
    """A template or persona file as a mapping, read with :mod:`ai_content_pipeline.yamlfile`
    (at most 1 MiB of UTF-8; no anchors, aliases, duplicate keys or lone surrogates)."""
    shown = _json_path(path)
    try:
        data, _ = load_yaml(decode_utf8(read_limited(path)))
    except OSError as exc:
        raise UsageError(f"cannot read {kind} file {shown}: {exc.strerror}") from exc
    except YAMLProblem as exc:  # a lone surrogate too: "FILE:LINE: KEY.PATH: a lone surrogate ..."
        raise ConfigError(f"{kind} file {exc.where(shown)}: {exc.problem}", hint=exc.hint) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} file {shown} must hold a mapping")
    return data


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {path}: {first['msg']}") from exc


#: Folder names under :func:`user_dir` and the built-in folder, per kind.
_FOLDERS = {"template": ("templates", TEMPLATE_DIR), "persona": ("personas", PERSONA_DIR)}


def user_dir() -> Path:
    """The user folder of own templates and personas: ``$AICP_HOME`` when set, else
    ``$XDG_CONFIG_HOME/aicp`` (an absolute ``XDG_CONFIG_HOME`` only, as the XDG spec says),
    else ``~/.config/aicp`` (always absolute). It holds ``templates/NAME.yaml`` and
    ``personas/NAME.yaml``."""
    home = os.environ.get("AICP_HOME")
    if home:  # a relative one is taken from the current folder, and said as an absolute path
        return Path(home).expanduser().absolute()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "aicp"


def user_folder(kind: str) -> Path:
    """``user_dir()/templates`` or ``user_dir()/personas`` (``kind``: template, persona)."""
    return user_dir() / _FOLDERS[kind][0]


def is_name(ref: str) -> bool:
    """Whether ``ref`` is a safe template/persona name: 1-64 of letters, digits, ``.``, ``_``,
    ``-``, starting with a letter or digit, no ``..``, not ending in ``.yaml``/``.yml``."""
    return bool(_NAME.fullmatch(ref)) and ".." not in ref and not _is_path(ref)


def _user_files(kind: str) -> tuple[list[str], list[Path]]:
    """The names of the user folder's ``NAME.yaml`` files, sorted, and the files there that no
    name finds (``café.yaml``, ``my intro.yaml``, ``intro.yml``); hidden files are neither."""
    try:
        found = [p for p in user_folder(kind).iterdir()
                 if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()]
    except OSError:
        return [], []
    named = {p for p in found if p.suffix == ".yaml" and is_name(p.stem)}
    return sorted(p.stem for p in named), sorted(set(found) - named)


def _user_names(kind: str) -> list[str]:
    return _user_files(kind)[0]


def _builtin_names(kind: str) -> list[str]:
    return sorted(p.stem for p in _FOLDERS[kind][1].glob("*.yaml"))


def _names(kind: str) -> list[str]:
    """Every name of ``kind`` (user folder and built-in), sorted."""
    return sorted(set(_user_names(kind)) | set(_builtin_names(kind)))


def _resolve(ref: str, kind: str) -> tuple[Path, str]:
    """The file of ``ref`` and where it comes from: ``file`` (a path), ``user`` or ``builtin``."""
    if _is_path(ref):
        path = Path(ref)
        problem = path_problem(path)
        if problem is not None:
            from ..faults import missing_hint

            raise UsageError(f"{kind} file {ref} {problem}",
                             hint=missing_hint(ref, f"or name a {kind} (aicp {kind}s list)")
                             if problem == "does not exist" else None)
        return path, "file"
    if is_name(ref):
        user = user_folder(kind) / f"{ref}.yaml"
        if user.is_file():
            return user, "user"
        builtin = _FOLDERS[kind][1] / f"{ref}.yaml"
        if builtin.is_file():
            return builtin, "builtin"
    raise UsageError(f"unknown {kind} '{ref}'",
                     hint=f"choose one of: {', '.join(_names(kind))}, or give a .yaml path")


def _stat_key(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _load(model: type[BaseModel], kind: str, path: Path, origin: str) -> Any:
    data = _load_yaml(path, kind)
    shown = _json_path(path)
    data.setdefault("name", path.stem)
    if isinstance(data["name"], str) and SURROGATE.search(data["name"]):  # a file name of other bytes
        raise ConfigError(f"{kind} file {shown}: name: the file's name is not UTF-8 text, so it cannot name "
                          f"the {kind}", hint="set name: in the file, or rename it")
    if origin == "user" and data["name"] != path.stem:
        raise ConfigError(f"{kind} file {shown}: name: '{data['name']}' is not the file's name "
                          f"'{path.stem}'", hint=f"a {kind} in the user folder is named by its file: "
                                                 f"set name: {path.stem}, or rename the file")
    item = _validate(model, data, f"{kind} {shown}")
    item.source = str(path)
    return item


@lru_cache(maxsize=128)
def _load_template_file(path: str, origin: str, stamp: tuple[int, int]) -> Template:
    template: Template = _load(Template, "template", Path(path), origin)
    template._compiled  # noqa: B018 - compile now so syntax errors are usage errors
    return template


def _persona_stamp(path: Path) -> tuple[Any, ...]:
    """What a loaded persona depends on: its file (modification time, size) and the TTS
    backends registered now (each one's ``voice.NAME`` block is validated and defaulted)."""
    from ..backends.registry import state

    return (*_stat_key(path), state("tts"))


@lru_cache(maxsize=128)
def _load_persona_file(path: str, origin: str, stamp: tuple[Any, ...]) -> Persona:
    persona: Persona = _load(Persona, "persona", Path(path), origin)
    return persona


def load_template(ref: str) -> Template:
    """Load a template by name (user folder, then built-in) or a template file by path.

    Files are cached by path, modification time and size.
    :raises UsageError: unknown name or missing file (exit 2).
    :raises ConfigError: invalid YAML or fields (names the key path).
    """
    path, origin = _resolve(ref, "template")
    return _load_template_file(str(path), origin, _stat_key(path))


def load_persona(ref: str) -> Persona:
    """Load a persona by name (user folder, then built-in) or a persona file by path.

    :raises UsageError: unknown name or missing file (exit 2).
    :raises ConfigError: invalid YAML or fields.
    """
    path, origin = _resolve(ref, "persona")
    return _load_persona_file(str(path), origin, _persona_stamp(path))


def origin_of(ref: str, kind: str) -> str:
    """Where ``ref`` is found: ``user``, ``builtin`` or ``file``. :raises UsageError: unknown."""
    return _resolve(ref, kind)[1]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def file_ref(ref: str | None) -> str | None:
    """``ref`` when it is a template or persona *file* (what a run reads), else ``None``."""
    return ref if ref and _is_path(ref) else None


def _ignored(kind: str, path: Path) -> AicpError:
    """Why a user-folder file that no name finds is ignored (for the list's warnings)."""
    if path.suffix != ".yaml":
        return ConfigError(f"{kind} file {path}: the user folder's files end in .yaml, so no name finds it",
                           hint=f"rename it {path.stem}.yaml, or give the file as a path")
    return ConfigError(f"{kind} file {path}: '{path.stem}' is not a {kind} name, so no name finds it",
                       hint="rename it: a name is 1-64 ASCII letters, digits, '.', '_' or '-', starting "
                            "with a letter or digit; or give the file as a path")


def _found(kind: str, problems: list[AicpError] | None) -> list[tuple[Any, dict[str, Any]]]:
    """Each ``kind`` found by name, sorted by name, loaded, with where it comes from (``source``,
    ``path``, ``overrides``); each folder read once, each name resolved once.

    A file that cannot be loaded is left out, its error added to ``problems`` (one broken
    file in the user folder does not hide the others); so is each user-folder file that no
    name finds, and a user folder that is no folder.
    """
    _note_folder(kind, problems)
    user, ignored = _user_files(kind)
    builtin = set(_builtin_names(kind))
    load = _load_template_file if kind == "template" else _load_persona_file
    out: list[tuple[Any, dict[str, Any]]] = []
    for name in sorted(set(user) | builtin):
        try:
            path, origin = _resolve(name, kind)
            item = load(str(path), origin, _stat_key(path) if kind == "template" else _persona_stamp(path))
        except AicpError as exc:
            if problems is not None:
                problems.append(exc)
            continue
        where: dict[str, Any] = {"source": origin, "path": _json_path(path)}
        if origin == "user" and name in builtin:
            where["overrides"] = "builtin"
        out.append((item, where))
    if problems is not None:
        problems.extend(_ignored(kind, path) for path in ignored)
    return out


def folder_problem(kind: str) -> AicpError | None:
    """Why the user folder of ``kind`` cannot hold files (``AICP_HOME`` names a file...), or ``None``."""
    folder = user_folder(kind)
    for path in (folder.parent, folder):
        if path.exists() and not path.is_dir():
            return ConfigError(f"user folder {path}: not a folder, so no own {kind}s are found",
                               hint="set AICP_HOME (or XDG_CONFIG_HOME) to a folder")
    return None


def _note_folder(kind: str, problems: list[AicpError] | None) -> None:
    problem = folder_problem(kind)
    if problem is not None and problems is not None:
        problems.append(problem)


def list_templates(problems: list[AicpError] | None = None) -> list[dict[str, Any]]:
    """Summaries of the templates found by name (user folder and built-in), sorted by name:
    name, version, description, target_words, required, sections (count), checks (the names
    of the checks it runs), source (``user`` or ``builtin``), path, and ``overrides:
    "builtin"`` for a user template that hides the built-in of its name.

    A user file that cannot be loaded (invalid YAML or fields, a ``name:`` other than its
    file's) is left out, and so is a user folder that is no folder: their errors are added
    to ``problems`` when it is given (the CLI warns; a service catalog still answers), as is
    one for each user file that no name finds (``café.yaml``: names are ASCII; ``x.yml``).
    A ``path`` whose bytes are not UTF-8 has them as ``\\xNN`` escapes."""
    return [{"name": t.name, "version": t.version, "description": t.description,
             "target_words": t.target_words, "required": t.required,
             "sections": len(t.sections), "checks": t.checks.names(), **where}
            for t, where in _found("template", problems)]


def list_personas(problems: list[AicpError] | None = None) -> list[dict[str, Any]]:
    """Summaries of the personas found by name (user folder and built-in), sorted by name:
    name, display_name, station, style, source, path (and ``overrides``, as templates).
    Files that cannot be loaded or that no name finds are left out, their errors added to
    ``problems`` (as templates)."""
    return [{"name": p.name, "display_name": p.display_name, "station": p.station,
             "style": p.style, **where}
            for p, where in _found("persona", problems)]


def names(kind: str) -> list[str]:
    """Names of ``kind`` (``template`` or ``persona``) found by name: user folder and built-in."""
    return _names(kind)


STARTERS: dict[str, str] = {
    "template": """\
# A prompt template for aicp-script: aicp-script -t {name} < records.jsonl
# Fields of the record are Jinja2 variables ({{{{ title }}}}); so are persona.display_name,
# persona.station, persona.style, catchphrase and target_words.
# See `aicp templates show song-intro` for a complete one.
name: {name}
version: 1
description: What this template writes.
required: [title]              # record fields it needs (a record without them fails)
optional: [notes]              # record fields it may use (None when missing)
target_words: 60
params: {{temperature: 0.7, max_tokens: 120, top_p: 0.9, repeat_penalty: 1.1}}
checks:                        # every take is checked; see the README, "Checks"
  mentions: [title]
  no_echo: true
  length: {{min: 0.5, max: 1.5}}
  complete: true
system: >-
  You are {{{{ persona.display_name }}}}, the DJ of {{{{ persona.station }}}}, live on air.
  {{{{ persona.style }}}}
  Reply with only the words you say to your listeners.
user: >-
  Talk about "{{{{ title }}}}"
  {{%- if notes %}}. Mention this: {{{{ notes }}}}{{% endif %}}.
  {{%- if catchphrase %}} Then say "{{{{ catchphrase }}}}".{{% endif %}}
  Stay under {{{{ target_words }}}} words.
""",
    "persona": """\
# A DJ / host persona: aicp-script -p {name} ... | aicp-voice
# Scripts carry its seed and voice settings (script.persona_voice) to aicp-voice.
name: {name}
display_name: {display}
station: aicp radio
style: >-
  You are friendly and curious, and you keep it short.
catchphrases: ["Stay tuned."]
seed: 1234                     # fixes the voice's randomness: each take sounds the same
voice:
  # aicp-voice --backend auto speaks with the first of chatterbox (GPU), piper, kokoro whose
  # block names a voice that is installed (piper model: en_US-joe-medium or a .onnx path;
  # kokoro voice: a preset or a blend such as jf_alpha:0.6,jm_kumo:0.4)
  piper: {{length_scale: 1.0, noise_scale: 0.667, noise_w_scale: 0.8}}
  kokoro: {{voice: jf_alpha, speed: 1.0}}
  # a reference clip for chatterbox is a file: records never carry files, so voice such
  # a persona with `aicp-voice -p {path}`
  chatterbox: {{audio_prompt: null, exaggeration: 0.5, cfg_weight: 0.5, temperature: 0.8}}
""",
}


def new_file(kind: str, name: str) -> Path:
    """Write a commented starter ``kind`` file (``template`` or ``persona``) named ``name``
    into the user folder, atomically (a temporary file, then a hard link that fails when the
    name exists), and return its path. The starter loads as a valid ``kind``.

    :raises UsageError: ``name`` is not a safe name, or the file exists (never overwritten).
    """
    if not is_name(name):
        raise UsageError(f"'{name}' is not a {kind} name",
                         hint="use letters, digits, '-', '_' and '.', starting with a letter or digit "
                              "(at most 64), no path and no .yaml suffix")
    folder = user_folder(kind)
    target = folder / f"{name}.yaml"
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} exists; it was not overwritten",
                         hint="edit it, remove it first, or choose another name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the user folder {folder}: {exc.strerror}",
                         hint="set AICP_HOME to a folder you can write") from exc
    from ..report import printable

    # the path goes into a comment line: a newline in it (AICP_HOME is the user's) must not end it
    shown = printable(str(target))
    text = STARTERS[kind].format(name=name, display=name.replace("-", " ").replace("_", " ").title(),
                                 path=shown)
    from ..files import write_atomic

    try:
        write_atomic(target, lambda handle: handle.write(text.encode("utf-8")), exclusive=True)
    except FileExistsError as exc:
        raise UsageError(f"{target} exists; it was not overwritten",
                         hint="edit it, remove it first, or choose another name") from exc
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from exc
    return target
