"""Templates and personas: YAML data files, validated with pydantic, rendered with Jinja2.

A *template* (``templates/*.yaml``) holds a system prompt, a user prompt,
default generation parameters, a target length in words, a version and the
record fields it needs. A *persona* (``personas/*.yaml``) is a DJ or host:
name, station, on-air style, catchphrases, a seed and per-backend voice
settings that the voice stage uses.

Both are looked up by name or by file path (anything ending in ``.yaml``/``.yml``
or containing a path separator). A name is found first in the user folder
(:func:`user_dir`: ``$AICP_HOME``, else ``$XDG_CONFIG_HOME/aicp``, else
``~/.config/aicp``; ``templates/NAME.yaml``, ``personas/NAME.yaml``), then among
the built-ins: a user file overrides the built-in of its name. Only the command
line (or a chain file) may give a path: a *record* may only name a persona
(:meth:`Personas.for_record`), since record fields are data, never file names.

A script record carries its persona's voice settings (``script.persona_voice``,
:func:`persona_voice`), so the voice stage speaks with the same persona on any
machine, without reading any file the record names.
"""

from __future__ import annotations

import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..backends.voices import VoiceSettings, file_settings
from ..checks import Checks
from ..errors import AicpError, ConfigError, InputError, UsageError
from ..faults import path_problem
from ..limits import MaxTokens, Seed, Temperature, TopP
from ..records import content_hash, get_path
from ..yamlfile import YAMLProblem, decode_utf8, load_yaml, read_limited

DATA_DIR = Path(__file__).parent
TEMPLATE_DIR = DATA_DIR / "templates"
PERSONA_DIR = DATA_DIR / "personas"
DEFAULT_PERSONA = "julie"
#: Longest rendered prompt part (characters): far past any model's context, short of a
#: template that multiplies strings into gigabytes.
MAX_PROMPT_CHARS = 4 * 1024 * 1024
#: Most Jinja2 tags (``{{``, ``{%``) in one prompt part, and most nodes of its parsed tree:
#: far past any prompt, short of a file whose compilation takes many seconds.
MAX_TAGS = 10_000
MAX_NODES = 50_000



def _environment() -> Any:
    """The bounded Jinja2 sandbox that renders prompts (:mod:`.sandbox`; imported on first
    use: the voice stage, which only reads personas, never pays for Jinja2)."""
    from .sandbox import environment

    return environment()


#: Names the prompt context itself sets (:meth:`Template.context`, the long-form stage's
#: chunk context): an ``extra_context`` key may not take one of them.
RESERVED_CONTEXT = ("record", "persona", "catchphrase", "target_words", "take", "sections", "chunks",
                    "chunk", "section", "summary", "pack", "remaining_words")
#: Most words a record's own ``target_words`` field may ask for (as ``--words``).
MAX_TARGET_WORDS = 100_000


def extra_context_problem(extra: Any) -> str | None:
    """Why ``extra`` cannot be a run's ``extra_context`` (a key the prompt context sets itself:
    :data:`RESERVED_CONTEXT`; a key that is not a string), or ``None``."""
    if not isinstance(extra, dict):
        return "extra_context must be a mapping of names to values"
    for key in extra:
        if not isinstance(key, str):
            return f"extra_context key {key!r} is not a name (a string)"
        if key in RESERVED_CONTEXT:
            return (f"extra_context key '{key}' is set by aicp itself (the prompt context's own '{key}'); "
                    "choose another name")
    return None


def check_extra_context(extra: Any) -> None:
    """:raises UsageError: ``extra`` cannot be an ``extra_context`` (see :func:`extra_context_problem`)."""
    problem = extra_context_problem(extra)
    if problem is not None:
        raise UsageError(problem, hint="reserved: " + ", ".join(RESERVED_CONTEXT))


def _extra_context(value: Any) -> Any:
    problem = extra_context_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: The type of ``ScriptOptions.extra_context``: pydantic (a chain's ``params``) refuses a reserved key.
ExtraContext = Annotated[dict[str, Any], AfterValidator(_extra_context)]


class TemplateSandboxError(ConfigError):
    """A template tried what the Jinja2 sandbox forbids (``''.__class__``...): exit 2, not per record."""


class TemplateLimitError(TemplateSandboxError):
    """A render passed a limit of the sandbox (:mod:`.sandbox`: value sizes, steps, call depth,
    seconds): exit 2, as a template the sandbox refuses."""


class _TooLong(Exception):
    """A rendered prompt part grew past :data:`MAX_PROMPT_CHARS` (raised while it streams)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no .inf/.nan from files


class GenerationDefaults(_Strict):
    """Default generation parameters of a template (overridden by options)."""

    temperature: Temperature = 0.8
    max_tokens: MaxTokens = 256
    top_p: TopP = 0.95
    repeat_penalty: float = Field(1.1, ge=0.5, le=2)


class Section(_Strict):
    """One section of a long-form plan: ``name``, ``brief`` and a ``words`` target."""

    name: str
    brief: str
    words: int = Field(gt=0)


class Template(_Strict):
    """A prompt template (see the module docstring for the file format)."""

    name: str
    version: int | str = 1
    description: str = ""
    system: str
    user: str
    required: list[str] = []
    optional: list[str] = []
    target_words: int = Field(60, gt=0)
    params: GenerationDefaults = GenerationDefaults()
    sections: list[Section] = []
    prompts: dict[str, str] = {}
    checks: Checks = Checks()
    source: str | None = None

    @property
    def ref(self) -> str:
        """``name@version``, as written in the ``script.template`` field."""
        return f"{self.name}@{self.version}"

    @property
    def _where(self) -> str:
        """Where the template comes from, for messages (which JSON carries: a file name's bytes
        that are not UTF-8 as ``\\xNN``): its file, or ``built in``."""
        return _json_path(Path(self.source)) if self.source else "built in"

    @cached_property
    def _compiled(self) -> dict[str, Any]:
        import jinja2
        from jinja2 import nodes

        parts = {"system": self.system, "user": self.user, **self.prompts}
        env = _environment()
        # a loaded file is named by its path (a user folder may hold a broken copy of a built-in)
        where = f"template file {_json_path(Path(self.source))}" if self.source else f"template {self.name}"
        compiled: dict[str, Any] = {}
        for key, text in parts.items():
            tags = text.count("{{") + text.count("{%")
            if tags > MAX_TAGS:  # parsing and compiling take seconds per 10,000 tags
                raise ConfigError(f"{where}: prompt '{key}' has {tags} Jinja2 tags; the limit is {MAX_TAGS}",
                                  hint="a prompt template renders text: loop over a list instead")
            try:
                tree = env.parse_bounded(text)
                size = sum(1 for _ in tree.find_all(nodes.Node))
                if size > MAX_NODES:
                    raise ConfigError(f"{where}: prompt '{key}' has {size} Jinja2 expressions and statements; "
                                      f"the limit is {MAX_NODES}",
                                      hint="a prompt template renders text: loop over a list instead")
                compiled[key] = env.from_string(tree)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"{where}: prompt '{key}': Jinja2 syntax error on line {exc.lineno} "
                                  f"of the prompt: {exc.message}") from exc
            except (RecursionError, SyntaxError, MemoryError) as exc:  # Python's own nesting limits
                raise ConfigError(f"{where}: prompt '{key}' is nested too deeply to compile",
                                  hint="nest fewer blocks, brackets and operators") from exc
            except (ValueError, OverflowError) as exc:  # a number literal past int()'s 4300 digits
                raise ConfigError(f"{where}: prompt '{key}' cannot be compiled: {exc}") from exc
            # a prompt is one self-contained text: no other files
            if next(tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)),
                    None) is not None:
                raise TemplateSandboxError(
                    f"{where}: prompt '{key}' includes, imports or extends another template; a "
                    "template file holds its whole prompt", hint="write the text out in this template")
        return compiled

    def check_fields(self, record: dict[str, Any]) -> None:
        """Raise :class:`InputError` naming the first required field the record lacks."""
        for field in self.required:
            value = record.get(field)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError(
                    f"record is missing field '{field}' needed by template '{self.name}'",
                    stage="script",
                    field=field,
                )

    def context(self, record: dict[str, Any], persona: Persona, /, **extra: Any) -> dict[str, Any]:
        """The Jinja2 context: optional fields default to ``None``, then the record's fields,
        ``record``, ``persona`` (as a mapping), ``target_words`` (the record's own when it
        gives a whole number from 1 to :data:`MAX_TARGET_WORDS`, else the template's), then
        ``extra`` (the caller's: ``catchphrase``, a run's ``extra_context``...).

        :raises InputError: the record's ``target_words`` is not such a number."""
        ctx: dict[str, Any] = {name: None for name in self.optional}
        ctx.update(record)
        ctx["record"] = record
        ctx["persona"] = persona.model_dump()
        words = record.get("target_words")
        if isinstance(words, float) and words.is_integer() and 0 < words <= MAX_TARGET_WORDS:
            words = ctx["target_words"] = int(words)
        if words is None:
            ctx["target_words"] = self.target_words
        elif not (type(words) is int and 0 < words <= MAX_TARGET_WORDS):  # a record's own length target
            raise InputError(f"field 'target_words' must be a whole number of words from 1 to "
                             f"{MAX_TARGET_WORDS}", field="target_words", stage="script")
        ctx.update(extra)
        return ctx

    def render(self, part: str, context: dict[str, Any]) -> str:
        """Render prompt ``part`` (``system``, ``user`` or a name in ``prompts``).

        :raises InputError: when the template uses a field the record lacks, or fails on
            this record's values (``{{ year + 1 }}`` with a string ``year``).
        :raises TemplateSandboxError: the template broke the Jinja2 sandbox (exit 2).
        """
        import jinja2
        from jinja2.sandbox import SecurityError

        from .sandbox import RenderLimit, rendering

        chunks: list[str] = []
        size = 0
        try:
            with rendering():
                for chunk in self._compiled[part].generate(context):
                    size += len(chunk)
                    if size > MAX_PROMPT_CHARS:  # stopped here: never held whole
                        raise _TooLong
                    chunks.append(chunk)
        except _TooLong:
            raise InputError(f"template '{self.name}' made a {part} prompt of more than {MAX_PROMPT_CHARS} "
                             "characters for this record", stage="script",
                             hint="shorten the record's long fields (notes, sources)") from None
        except RenderLimit as exc:  # the template's own doing (a loop, a width), for every record
            raise TemplateLimitError(
                f"template '{self.name}' ({self._where}) stopped at a render limit in "
                f"prompt '{part}': {exc}",
                hint="a prompt template renders text: no long loops, huge widths, repeats or numbers",
            ) from None
        except MemoryError as exc:
            raise InputError(f"template '{self.name}' made a prompt too large to hold in memory "
                             "for this record", stage="script") from exc
        except jinja2.UndefinedError as exc:
            raise InputError(
                f"template '{self.name}' needs a field the record lacks: {exc.message}",
                stage="script",
            ) from exc
        except SecurityError as exc:  # the template itself is at fault, for every record
            raise TemplateSandboxError(
                f"template '{self.name}' ({self._where}) did something templates may "
                f"not do: {exc}",
                hint="templates may only read record fields and persona values; "
                     "no attributes starting with _, no methods that change data",
            ) from exc
        except RecursionError as exc:
            raise TemplateLimitError(f"template '{self.name}' ({self._where}) recursed too "
                                     f"deeply in prompt '{part}'") from exc
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError,
                AttributeError) as exc:  # e.g. {{ year + 1 }} with a string year
            raise InputError(f"template '{self.name}' failed on this record: "
                             f"{type(exc).__name__}: {exc}", stage="script") from exc
        text = "".join(chunks).strip()
        bad = _SURROGATE.search(text)
        if bad is not None:  # a "\ud800" escape in the template's own Jinja2 strings, or in extra context
            raise TemplateSandboxError(
                f"template '{self.name}' ({self._where}) made a {part} prompt holding a lone "
                f"surrogate (\\u{ord(bad.group()):04x}), which is not text",
                hint="write the character itself, or a pair of surrogates as one \\U00XXXXXX escape")
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"template '{self.name}' made a {len(text)}-character {part} prompt for this "
                             f"record; the limit is {MAX_PROMPT_CHARS}", stage="script",
                             hint="shorten the record's long fields (notes, sources)")
        return text

    def messages(
        self, record: dict[str, Any], persona: Persona, /, *, take: int = 0, **extra: Any
    ) -> list[dict[str, str]]:
        """Render the chat messages ``[{"role": "system", ...}, {"role": "user", ...}]``.

        :raises InputError: for a missing required field (named in the message).
        """
        return self.request(record, persona, take=take, **extra)[0]

    def request(
        self, record: dict[str, Any], persona: Persona, /, *, take: int = 0, **extra: Any
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The chat messages (as :meth:`messages`) and the Jinja2 context they were rendered with.

        The context is what the ``checks`` see (``mentions`` paths, ``no_echo`` values).
        ``extra`` is a run's ``extra_context``.
        :raises InputError: for a missing required field (named in the message).
        :raises UsageError: an ``extra`` key the context sets itself (:data:`RESERVED_CONTEXT`).
        """
        check_extra_context(extra)
        self.check_fields(record)
        ctx = self.context(record, persona, catchphrase=persona.catchphrase_for(record, take), **extra)
        messages = [
            {"role": "system", "content": self.render("system", ctx)},
            {"role": "user", "content": self.render("user", ctx)},
        ]
        return messages, ctx


class PersonaVoice(VoiceSettings):
    """What a script record carries about its persona for the voice stage
    (``script.persona_voice``): the seed and the per-backend voice settings (each TTS
    backend's own block, see :class:`~ai_content_pipeline.backends.voices.VoiceSettings`)."""

    seed: Seed = 0


class Persona(_Strict):
    """A DJ / host persona (see the module docstring)."""

    #: Voice settings that name files, as ``voice.BACKEND.KEY`` paths, that this persona
    #: had when it was rebuilt from a record's ``script.persona_voice`` (they were left out:
    #: a record never makes aicp open a file). Empty for personas read from files.
    _record_files: list[str] = PrivateAttr(default_factory=list)

    name: str
    display_name: str
    station: str = "aicp radio"
    style: str
    catchphrases: list[str] = []
    seed: Seed = 0
    voice: VoiceSettings = Field(default_factory=VoiceSettings)  # a block per TTS backend
    source: str | None = None

    def catchphrase_for(self, record: dict[str, Any], take: int = 0) -> str | None:
        """A catchphrase picked deterministically from the record and take (or ``None``)."""
        if not self.catchphrases:
            return None
        index = int(content_hash([record, take], 8), 16) % len(self.catchphrases)
        return self.catchphrases[index]


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


_SURROGATE = re.compile("[\ud800-\udfff]")


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
    if isinstance(data["name"], str) and _SURROGATE.search(data["name"]):  # a file name of other bytes
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


@lru_cache(maxsize=128)
def _load_persona_file(path: str, origin: str, stamp: tuple[int, int]) -> Persona:
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
    return _load_persona_file(str(path), origin, _stat_key(path))


def origin_of(ref: str, kind: str) -> str:
    """Where ``ref`` is found: ``user``, ``builtin`` or ``file``. :raises UsageError: unknown."""
    return _resolve(ref, kind)[1]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def file_ref(ref: str | None) -> str | None:
    """``ref`` when it is a template or persona *file* (what a run reads), else ``None``."""
    return ref if ref and _is_path(ref) else None


def persona_voice(persona: Persona) -> dict[str, Any]:
    """What a script record carries about ``persona`` (``script.persona_voice``):
    ``{"seed": int, "piper": {...}, "chatterbox": {...}}``, unset settings left out.

    File-valued settings (each TTS backend's ``voice_file``: ``voice.piper.voice``, an ``.onnx``
    voice; ``voice.chatterbox.audio_prompt``, a reference clip) are written as they are in the persona file,
    so the voice stage can say which file it would need; it never opens them.
    """
    return {"seed": persona.seed, **persona.voice.model_dump(exclude_none=True)}


def persona_from_voice(name: str, data: Any, field: str) -> Persona:
    """A persona rebuilt from a record's ``script.persona_voice`` (see :func:`persona_voice`):
    ``name``, the seed and voice settings; file-valued settings are left out and listed in
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
        if getattr(settings, key, None) is not None:
            files.append(f"voice.{backend}.{key}")
            setattr(settings, key, None)
    persona = Persona(name=name, display_name=name, style="", seed=carried.seed,
                      voice=VoiceSettings.model_validate(dict(carried.__pydantic_extra__ or {})))
    persona._record_files = files
    return persona


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
            item = load(str(path), origin, _stat_key(path))
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


def _json_path(path: Path) -> str:
    """``path`` as JSON can carry it: bytes of the name that are not UTF-8 (a user folder such
    as ``$AICP_HOME`` made of other bytes) as ``\\xNN`` escapes; a UTF-8 path as it is."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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


def as_data(item: Template | Persona) -> dict[str, Any]:
    """A template or persona as the mapping its YAML file holds (``source`` left out): what
    ``aicp templates show`` prints; loading it back gives an equal object."""
    return item.model_dump(mode="json", exclude={"source"})


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
  piper: {{length_scale: 1.0, noise_scale: 0.667, noise_w_scale: 0.8}}
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


__all__ = [
    "DEFAULT_PERSONA", "ExtraContext", "MAX_TARGET_WORDS", "RESERVED_CONTEXT", "Persona",
    "PersonaVoice", "Section", "Template", "TemplateLimitError", "TemplateSandboxError", "VoiceSettings",
    "as_data", "check_extra_context", "extra_context_problem", "file_ref", "is_name", "list_personas",
    "list_templates", "load_persona", "load_template", "names", "new_file", "origin_of",
    "Personas", "persona_from_voice", "persona_voice", "record_voice_file", "user_dir",
    "user_folder",
]
