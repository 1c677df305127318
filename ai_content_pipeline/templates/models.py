"""Template and persona models: the pydantic models of the YAML data files, rendered with Jinja2.

A *template* (``templates/*.yaml``) holds a system prompt, a user prompt,
default generation parameters, a target length in words, a version and the
record fields it needs. A *persona* (``personas/*.yaml``) is a DJ or host:
name, station, on-air style, catchphrases, a seed and per-backend voice
settings that the voice stage uses.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ..backends.voices import VoiceSettings
from ..checks import Checks
from ..errors import ConfigError, InputError, UsageError
from ..lexicon import LexiconTable, table_problem
from ..limits import MaxTokens, Seed, Temperature, TopP
from ..records import content_hash
from ..yamlfile import SURROGATE, SURROGATE_HINT

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
RESERVED_CONTEXT = ("record", "persona", "catchphrase", "target_words", "max_words", "close_words", "take",
                    "sections", "chunks", "chunk", "section", "summary", "pack", "remaining_words", "hosts",
                    "speaker", "listener", "turn", "turns", "previous", "section_turn", "section_turns")
#: Most hosts a dialogue template may have.
MAX_HOSTS = 8
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


class HostRule(_Strict):
    """A dialogue template's ``hosts``: how many (``min``-``max``, the opener counted) and the
    personas that fill the places a run leaves open (``default``, names, first opens)."""

    min: int = Field(2, ge=1, le=MAX_HOSTS)
    max: int = Field(2, ge=1, le=MAX_HOSTS)
    default: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> HostRule:
        import re

        def is_name(ref: str) -> bool:  # a persona name as the store's, never a file
            return (bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", ref)) and ".." not in ref
                    and not ref.endswith((".yaml", ".yml")))

        if self.max < self.min:
            raise ValueError("hosts.max must not be below hosts.min")
        if len(self.default) > self.max:
            raise ValueError(f"hosts.default names {len(self.default)} personas; hosts.max is {self.max}")
        for name in self.default:
            if not is_name(name):
                raise ValueError(f"hosts.default: {name!r} is not a persona name")
        if len(set(self.default)) < len(self.default):
            raise ValueError("hosts.default names a persona twice")
        return self


class Template(_Strict):
    """A prompt template (see the module docstring for the file format).

    A dialogue template (``dialogue: true``) is written by several hosts taking turns
    (:mod:`ai_content_pipeline.dialogue`): ``hosts`` (default ``{min: 2, max: 2}``) says how
    many, and its prompts get ``hosts`` (the hosts' personas, first the opener) as well as
    ``persona`` (the opener). Only it may turn on the dialogue checks; it has no ``sections``.

    A dialogue template with ``turns`` (N, 2 to 40) or ``sections`` is written turn by turn,
    one model call a turn (:mod:`ai_content_pipeline.stages.dialogue_turns`): its ``system``
    and ``user`` prompts ask for one host's line and also get ``speaker`` (the host who speaks
    now), ``listener`` (the host spoken to), ``turn`` (1 to N), ``turns`` (N) and ``previous``
    (the last turns, ``[{"speaker", "name", "text"}]``, oldest first); with ``sections`` (a
    long-form dialogue) each section is a run of turns, its number from its ``words``, and the
    prompts also get ``section``, ``chunk`` (the section's number), ``chunks``,
    ``section_turn`` and ``section_turns``.
    """

    name: str
    version: int | str = 1
    description: str = ""
    system: str
    user: str
    #: A closing line rendered from the record as ``user`` is (Jinja2), which the script stage
    #: appends to the model's text as sentences of their own: a radio intro's fixed ending
    #: ("Here is TITLE by ARTIST."), said from the record's fields, not written by the model.
    close: str | None = None
    required: list[str] = []
    optional: list[str] = []
    target_words: int = Field(60, gt=0)
    params: GenerationDefaults = GenerationDefaults()
    sections: list[Section] = []
    prompts: dict[str, str] = {}
    checks: Checks = Checks()
    dialogue: bool = False
    hosts: HostRule | None = None
    #: a dialogue written turn by turn: this many turns, one model call each
    turns: int | None = Field(None, ge=2, le=40)
    source: str | None = None

    @model_validator(mode="after")
    def _dialogue_fields(self) -> Template:
        if self.close is not None and (self.dialogue or self.sections):
            raise ValueError("close: only a one-voice template without sections has a closing line "
                             "(a dialogue's hosts and a long-form plan's sections write their own ends)")
        if not self.dialogue:
            if self.turns is not None:
                raise ValueError("turns: only a dialogue template (dialogue: true) is written turn by turn")
            if self.hosts is not None:
                raise ValueError("hosts: only a dialogue template (dialogue: true) has hosts")
            if self.checks.dialogue_only():
                raise ValueError(f"checks.{self.checks.dialogue_only()[0]}: a dialogue check; this template "
                                 "is not a dialogue (dialogue: true)")
            return self
        if self.sections and self.turns is not None:
            raise ValueError("a dialogue template with sections has no turns: each section's words give its turns")
        if self.hosts is None:
            self.hosts = HostRule()
        self.checks._dialogue = True
        return self

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
        if self.close is not None:
            parts["close"] = self.close
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

    def context(self, record: dict[str, Any], persona: Persona, /, *, max_words: int | None = None,
                **extra: Any) -> dict[str, Any]:
        """The Jinja2 context: optional fields default to ``None``, then the record's fields,
        ``record``, ``persona`` (as a mapping), ``target_words`` (the record's own when it
        gives a whole number from 1 to :data:`MAX_TARGET_WORDS`, else the template's; at most
        ``max_words``), ``max_words`` (the words that fit the take's time limit, ``None``
        without one), then ``extra`` (the caller's:
        ``catchphrase``, a run's ``extra_context``...).

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
        ctx["max_words"] = max_words
        if max_words is not None:
            ctx["target_words"] = min(ctx["target_words"], max_words)
        ctx.update(extra)
        return ctx

    def closing(self, context: dict[str, Any]) -> str:
        """The template's ``close`` rendered with ``context`` (:meth:`request`'s), whitespace
        runs made one space; ``""`` for a template without one.

        :raises InputError: as :meth:`render`.
        :raises TemplateSandboxError: as :meth:`render`.
        """
        if self.close is None:
            return ""
        return " ".join(self.render("close", context).split())

    def render(self, part: str, context: dict[str, Any]) -> str:
        """Render prompt ``part`` (``system``, ``user``, ``close`` or a name in ``prompts``).

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
        bad = SURROGATE.search(text)
        if bad is not None:  # a "\ud800" escape in the template's own Jinja2 strings, or in extra context
            raise TemplateSandboxError(
                f"template '{self.name}' ({self._where}) made a {part} prompt holding a lone "
                f"surrogate (\\u{ord(bad.group()):04x}), which is not text",
                hint=SURROGATE_HINT)
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
        self, record: dict[str, Any], persona: Persona, /, *, take: int = 0, max_words: int | None = None,
        hosts: list[Persona] | None = None, **extra: Any
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The chat messages (as :meth:`messages`) and the Jinja2 context they were rendered with.

        The context is what the ``checks`` see (``mentions`` paths, ``no_echo`` values), with
        ``close_words``: the words of the template's rendered ``close`` (0 without one), which
        the take's ``target_words`` include.
        ``max_words`` caps ``target_words`` (:meth:`context`). ``hosts``: a dialogue's hosts,
        first the opener (the context's ``hosts``, each as ``persona`` is). ``extra`` is a run's
        ``extra_context``.
        :raises InputError: for a missing required field (named in the message).
        :raises UsageError: an ``extra`` key the context sets itself (:data:`RESERVED_CONTEXT`).
        """
        check_extra_context(extra)
        self.check_fields(record)
        if hosts:
            extra = {**extra, "hosts": [h.model_dump() for h in hosts]}
        ctx = self.context(record, persona, max_words=max_words, catchphrase=persona.catchphrase_for(record, take),
                           **extra)
        ctx["close_words"] = 0  # the closing line's words: what target_words leaves the model is the rest
        ctx["close_words"] = len(self.closing(ctx).split())
        messages = [
            {"role": "system", "content": self.render("system", ctx)},
            {"role": "user", "content": self.render("user", ctx)},
        ]
        return messages, ctx


def _lexicon_words(table: LexiconTable) -> LexiconTable:
    """A persona's ``lexicon:`` block whose words are fine (see :func:`~ai_content_pipeline.lexicon.table_problem`)."""
    problem = table_problem(table)
    if problem is not None:
        raise ValueError(problem[1])
    return table


class PersonaVoice(VoiceSettings):
    """What a script record carries about its persona for the voice stage
    (``script.persona_voice``): the seed and the per-backend voice settings (each TTS
    backend's own block, see :class:`~ai_content_pipeline.backends.voices.VoiceSettings`)."""

    seed: Seed = 0
    lexicon: Annotated[LexiconTable, AfterValidator(_lexicon_words)] = {}


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
    #: how to say words and names (:mod:`ai_content_pipeline.lexicon`), over the user folder's
    lexicon: Annotated[LexiconTable, AfterValidator(_lexicon_words)] = {}
    source: str | None = None

    def catchphrase_for(self, record: dict[str, Any], take: int = 0) -> str | None:
        """A catchphrase picked deterministically from the record and take (or ``None``)."""
        if not self.catchphrases:
            return None
        index = int(content_hash([record, take], 8), 16) % len(self.catchphrases)
        return self.catchphrases[index]


def _json_path(path: Path) -> str:
    """``path`` as JSON can carry it: bytes of the name that are not UTF-8 (a user folder such
    as ``$AICP_HOME`` made of other bytes) as ``\\xNN`` escapes; a UTF-8 path as it is."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def as_data(item: Template | Persona) -> dict[str, Any]:
    """A template or persona as the mapping its YAML file holds (``source`` left out): what
    ``aicp templates show`` prints; loading it back gives an equal object. The dialogue fields
    (``dialogue``, ``hosts``, the dialogue checks and ``topic``) are left out where unset."""
    data = item.model_dump(mode="json", exclude={"source"})
    if isinstance(item, Template):
        if item.close is None:
            data.pop("close", None)
        if not item.dialogue:
            data.pop("dialogue", None)
            data.pop("hosts", None)
        if item.turns is None:
            data.pop("turns", None)
        unset: dict[str, Any] = {"topic": [], "speakers": None, "turn_words": None, "clean_turns": False, "alternate": False}
        data["checks"] = {k: v for k, v in data["checks"].items() if k not in unset or v != unset[k]}
    return data
