"""Templates and personas: YAML data files, validated with pydantic, rendered with Jinja2.

A *template* (``templates/*.yaml``) holds a system prompt, a user prompt,
default generation parameters, a target length in words, a version and the
record fields it needs. A *persona* (``personas/*.yaml``) is a DJ or host:
name, station, on-air style, catchphrases, a seed and per-backend voice
settings that the voice stage uses.

Both are looked up by built-in name or by file path (anything ending in
``.yaml``/``.yml`` or containing a path separator). Only the command line (or a
chain file) may give a path: a *record* may only name a persona
(:func:`persona_for_record`), since record fields are data, never file names.
"""

from __future__ import annotations

import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..checks import Checks
from ..errors import ConfigError, InputError, UsageError
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



@lru_cache(maxsize=1)
def _environment() -> Any:
    """The Jinja2 sandbox that renders prompts (imported on first use: the voice stage,
    which only reads personas, never pays for Jinja2)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Bounded(ImmutableSandboxedEnvironment):  # type: ignore[misc]
        """The sandbox with ``*`` and ``**`` bounded (Jinja2's ``intercepted_binops`` hook):
        ``{{ "x" * 10**9 }}`` is refused before it is built, not after it fills memory."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
                raise jinja2.sandbox.SecurityError("exponent too large")
            if operator == "*":
                sizes = [len(x) for x in (left, right) if isinstance(x, (str, list, tuple))]
                counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
                if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_PROMPT_CHARS:
                    raise jinja2.sandbox.SecurityError("repetition too large for a prompt")
            return super().call_binop(context, operator, left, right)

    return Bounded(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


class TemplateSandboxError(ConfigError):
    """A template tried what the Jinja2 sandbox forbids (``''.__class__``...): exit 2, not per record."""


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

    @cached_property
    def _compiled(self) -> dict[str, Any]:
        import jinja2
        from jinja2 import nodes

        parts = {"system": self.system, "user": self.user, **self.prompts}
        env = _environment()
        try:
            for key, text in parts.items():  # a prompt is one self-contained text: no other files
                if next(env.parse(text).find_all((nodes.Include, nodes.Import, nodes.FromImport,
                                                  nodes.Extends)), None) is not None:
                    raise TemplateSandboxError(
                        f"template {self.name}: prompt '{key}' includes, imports or extends another "
                        "template; a template file holds its whole prompt",
                        hint="write the text out in this template")
            return {key: env.from_string(text) for key, text in parts.items()}
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"template {self.name}: Jinja2 syntax error on line {exc.lineno}: {exc.message}"
            ) from exc

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

    def context(self, record: dict[str, Any], persona: Persona, **extra: Any) -> dict[str, Any]:
        """The Jinja2 context: optional fields default to ``None``, then the record, persona, extras."""
        ctx: dict[str, Any] = {name: None for name in self.optional}
        ctx.update(record)
        ctx["record"] = record
        ctx["persona"] = persona.model_dump()
        ctx.setdefault("target_words", self.target_words)
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

        try:
            text = self._compiled[part].render(context).strip()
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
                f"template '{self.name}' ({self.source or 'built in'}) did something templates may "
                f"not do: {exc}",
                hint="templates may only read record fields and persona values; "
                     "no attributes starting with _, no methods that change data",
            ) from exc
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError,
                AttributeError, RecursionError) as exc:  # e.g. {{ year + 1 }} with a string year
            raise InputError(f"template '{self.name}' failed on this record: "
                             f"{type(exc).__name__}: {exc}", stage="script") from exc
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"template '{self.name}' made a {len(text)}-character {part} prompt for this "
                             f"record; the limit is {MAX_PROMPT_CHARS}", stage="script",
                             hint="shorten the record's long fields (notes, sources)")
        return text

    def messages(
        self, record: dict[str, Any], persona: Persona, *, take: int = 0, **extra: Any
    ) -> list[dict[str, str]]:
        """Render the chat messages ``[{"role": "system", ...}, {"role": "user", ...}]``.

        :raises InputError: for a missing required field (named in the message).
        """
        return self.request(record, persona, take=take, **extra)[0]

    def request(
        self, record: dict[str, Any], persona: Persona, *, take: int = 0, **extra: Any
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The chat messages (as :meth:`messages`) and the Jinja2 context they were rendered with.

        The context is what the ``checks`` see (``mentions`` paths, ``no_echo`` values).
        :raises InputError: for a missing required field (named in the message).
        """
        self.check_fields(record)
        ctx = self.context(record, persona, catchphrase=persona.catchphrase_for(record, take), **extra)
        messages = [
            {"role": "system", "content": self.render("system", ctx)},
            {"role": "user", "content": self.render("user", ctx)},
        ]
        return messages, ctx


class PiperVoiceSettings(_Strict):
    """Piper settings of a persona; see piper's ``SynthesisConfig``."""

    voice: str | None = None
    speaker_id: int | None = Field(None, ge=0, le=2**31 - 1)
    length_scale: float | None = Field(None, gt=0)
    noise_scale: float | None = Field(None, ge=0)
    noise_w_scale: float | None = Field(None, ge=0)


class ChatterboxVoiceSettings(_Strict):
    """Chatterbox settings of a persona; see ``ChatterboxTTS.generate``."""

    audio_prompt: str | None = None
    exaggeration: float = Field(0.5, ge=0, le=2)
    cfg_weight: float = Field(0.5, ge=0, le=2)
    temperature: float = Field(0.8, gt=0, le=2)


class VoiceSettings(_Strict):
    """Per-backend voice settings keyed by backend name."""

    piper: PiperVoiceSettings = PiperVoiceSettings()
    chatterbox: ChatterboxVoiceSettings = ChatterboxVoiceSettings()


class Persona(_Strict):
    """A DJ / host persona (see the module docstring)."""

    name: str
    display_name: str
    station: str = "aicp radio"
    style: str
    catchphrases: list[str] = []
    seed: Seed = 0
    voice: VoiceSettings = VoiceSettings()
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
    (at most 1 MiB of UTF-8; no anchors, aliases or duplicate keys)."""
    try:
        data, _ = load_yaml(decode_utf8(read_limited(path)))
    except OSError as exc:
        raise UsageError(f"cannot read {kind} file {path}: {exc.strerror}") from exc
    except YAMLProblem as exc:
        raise ConfigError(f"{kind} file {exc.where(str(path))}: {exc.problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} file {path} must hold a mapping")
    return data


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {path}: {first['msg']}") from exc


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _resolve(ref: str, folder: Path, kind: str) -> Path:
    if _is_path(ref):
        path = Path(ref)
        problem = path_problem(path)
        if problem is not None:
            from ..faults import missing_hint

            raise UsageError(f"{kind} file {ref} {problem}",
                             hint=missing_hint(ref, f"or name a built-in {kind} (aicp {kind}s list)")
                             if problem == "does not exist" else None)
        return path
    path = folder / f"{ref}.yaml"
    if not path.is_file():
        raise UsageError(
            f"unknown {kind} '{ref}'", hint=f"choose one of: {', '.join(_names(folder))}, or give a .yaml path"
        )
    return path


@lru_cache(maxsize=64)
def load_template(ref: str) -> Template:
    """Load a built-in template by name, or a template file by path.

    :raises UsageError: unknown name or missing file (exit 2).
    :raises ConfigError: invalid YAML or fields (names the key path).
    """
    path = _resolve(ref, TEMPLATE_DIR, "template")
    data = _load_yaml(path, "template")
    data.setdefault("name", path.stem)
    template: Template = _validate(Template, data, f"template {path}")
    template.source = str(path)
    template._compiled  # noqa: B018 - compile now so syntax errors are usage errors
    return template


@lru_cache(maxsize=64)
def load_persona(ref: str) -> Persona:
    """Load a built-in persona by name, or a persona file by path.

    :raises UsageError: unknown name or missing file (exit 2).
    :raises ConfigError: invalid YAML or fields.
    """
    path = _resolve(ref, PERSONA_DIR, "persona")
    data = _load_yaml(path, "persona")
    data.setdefault("name", path.stem)
    persona: Persona = _validate(Persona, data, f"persona {path}")
    persona.source = str(path)
    return persona


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def file_ref(ref: str | None) -> str | None:
    """``ref`` when it is a template or persona *file* (what a run reads), else ``None``."""
    return ref if ref and _is_path(ref) else None


def persona_for_record(record: dict[str, Any], default: str | None,
                       fields: tuple[str, ...] = ("persona", "dj"), *, required: bool = True) -> Persona | None:
    """The persona a record asks for: the first of ``fields`` (dotted paths) that is set,
    else ``default`` (a name or a path from the command line), else ``julie`` when
    ``required`` (``None`` otherwise).

    A record may only *name* a persona: a built-in one, or the persona that ``default``
    loaded from a file (``-p ./rosa.yaml`` lets records say ``"rosa"``). A path, or any
    value that is not a plain name, is refused without touching the file system.

    :raises InputError: the field is not a string, is not a plain name, or names no persona
        (stage ``None``: the caller sets it).
    """
    chosen = load_persona(default) if default else None
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
        if not _NAME.fullmatch(name) or ".." in name or _is_path(name):
            raise InputError(
                f"field '{field}' is not a persona name: a record may name a persona, not a file",
                hint="give a persona file on the command line (--persona FILE); records then use its name",
                field=field)
        try:
            return load_persona(name)
        except UsageError as exc:  # records name personas only: no "or give a .yaml path" here
            raise InputError(exc.message, field=field,
                             hint=f"choose one of: {', '.join(_names(PERSONA_DIR))}"
                                  + (f", {chosen.name}" if chosen is not None else "")) from exc
    if chosen is not None:
        return chosen
    return load_persona(DEFAULT_PERSONA) if required else None


def list_templates() -> list[dict[str, Any]]:
    """Summaries of the built-in templates: name, version, description, target_words, required,
    sections (count), checks (the names of the checks it runs)."""
    out = []
    for name in _names(TEMPLATE_DIR):
        t = load_template(name)
        out.append({"name": t.name, "version": t.version, "description": t.description,
                    "target_words": t.target_words, "required": t.required,
                    "sections": len(t.sections), "checks": t.checks.names()})
    return out


def list_personas() -> list[dict[str, Any]]:
    """Summaries of the built-in personas: name, display_name, station, style."""
    out = []
    for name in _names(PERSONA_DIR):
        p = load_persona(name)
        out.append({"name": p.name, "display_name": p.display_name, "station": p.station,
                    "style": p.style})
    return out


__all__ = [
    "DEFAULT_PERSONA", "Persona", "Section", "Template", "TemplateSandboxError", "VoiceSettings",
    "file_ref", "list_personas", "list_templates", "load_persona", "load_template", "persona_for_record",
]
