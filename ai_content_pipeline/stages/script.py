"""The script stage: records in, the same records with a generated ``script`` out.

Per input record and take: pick the persona (the record's ``persona``/``dj``
field, else the stage default), render the template's chat messages, compute
the request key, serve it from the checkpoint ledger on ``--resume`` or ask the
LLM backend, trim the model's chatter and add the ``script`` object::

    {"text": str, "words": int, "template": "name@version", "persona": str,
     "persona_voice": {"seed": int, "piper": {...}, "chatterbox": {...}}, "take": int, "backend": str, "model": str,
     "tokens": {"prompt": int, "completion": int}, "seconds": float, "key": str,
     "host"?: str (the Ollama server that wrote it),
     "max_seconds"?: float (the take's time limit: --max-seconds, the record's intro_seconds),
     "turns"?, "hosts"?, "hosts_voice"? (dialogue templates: see below),
     "checks": {"passed": bool, "failed": [str], "details"?: {...},
                "candidates"?: [...], "chosen"?: int}}

Every take is checked (:mod:`ai_content_pipeline.checks`, the template's
``checks:`` block). With ``best_of`` N > 1 the model writes N candidates per
take, each with its own seed derived from the take's seed, and the best one is
kept (:func:`~ai_content_pipeline.checks.choose`). Backends that decode in
batches (llama.cpp) write the candidates of a take together from one prompt
evaluation, and with ``batch`` B > 1 the takes of B records in flight together
(B worker threads; the backend's decoder batches their calls continuously).

A dialogue template (``dialogue: true``) is written by its hosts (:meth:`ScriptStage.record_hosts`:
a record's ``hosts`` names, else the run's ``personas``, filled from the template's default
hosts; a record's ``persona``/``dj`` opens); the reply is parsed into ``turns``
(``[{"speaker", "text"}]``, :mod:`ai_content_pipeline.dialogue`), ``text`` becomes one
``Label: text`` line per turn, ``words`` counts what the hosts say, ``persona`` is the opener,
``hosts`` lists them and ``hosts_voice`` carries each one's voice settings. A dialogue template
with ``turns`` or ``sections`` is written turn by turn, one call per host's line
(:mod:`~ai_content_pipeline.stages.dialogue_turns`); its assembled turns are that reply.

Failures that concern one record become its ``error`` object; the run goes on.
A take that fails its checks is still written (``checks.passed: false``) unless
``require_checks`` makes it an error (:class:`ChecksFailed`).

A take with a time limit (``max_seconds``, the record's ``intro_seconds``) has its word
target capped at the words the persona's voice says in that time (:mod:`~ai_content_pipeline.airtime`),
and fails ``length`` when longer. A record naming an audio file (``song_field``, default
``file``) gets its missing ``artist``, ``title``, ``album``, ``year`` and ``genre`` from the
file's tags (:mod:`~ai_content_pipeline.songtags`) before its prompt is rendered.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from ..airtime import fitting_words, time_limit, words_per_second
from ..backends.base import (
    BatchRequest,
    Completion,
    GenerationParams,
    LLMBackend,
    collect_reply,
    max_in_flight,
)
from ..checks import choose, echo_phrases, evaluate, trim_to_sentence, with_close
from ..dialogue import Dialogue, parse
from ..errors import AicpError, ChecksFailed, InputError, RecordError, UsageError
from ..events import Emitter
from ..jsonl import InputLine
from ..ledger import Ledger, request_key
from ..limits import (
    BATCH,
    BEST_OF,
    AirSeconds,
    Batch,
    BestOf,
    Jobs,
    MaxTokens,
    Retries,
    Seed,
    Temperature,
    Threads,
    Timeout,
    TopP,
    Variants,
    Words,
)
from ..records import content_hash, get_path, record_id, stage_fields, word_count
from ..songtags import SongTags
from ..templates import (
    ExtraContext,
    Persona,
    Template,
    TemplateSandboxError,
    check_extra_context,
    load_persona,
    load_template,
    persona_voice,
)
from ..text import trim_chatter
from .common import Stage, ordered_map, with_retries
from .dialogue_turns import HISTORY_TURNS, LAST_TURN_TRIES, TURN_TRIES, TurnWriter, turn_plan
from .entries import ScriptEntry, fits
from .kind import BackendStepConfig, StageKind

#: Upper bounds of ``--best-of`` and ``--batch``.
MAX_BEST_OF = int(BEST_OF.max or 16)
MAX_BATCH = int(BATCH.max or 64)

def candidate_seed(seed: int | None, candidate: int) -> int | None:
    """Seed of candidate ``candidate`` of a take whose seed is ``seed``.

    Candidate 0 keeps the take's seed; the others get seeds derived from it by a
    hash (so reruns are identical and they do not collide with other takes'
    ``seed + n``). ``None`` (engine's choice) stays ``None``.
    """
    if seed is None or candidate == 0:
        return seed
    return int(content_hash(["candidate", seed, candidate], 8), 16) % 2**31


def redo_seed(seed: int | None, attempt: int, key: str) -> int:
    """Seed of attempt ``attempt`` (1, 2...) of a take made again because its checks failed
    (``redo_failed``).

    Derived by a hash from the take's seed (its request ``key`` when the seed is the engine's
    choice, ``None``) and ``attempt``: two reruns make the same attempt with the same seed,
    and each attempt differs from the take's first seed and from the other attempts.
    """
    return int(content_hash(["redo", key if seed is None else seed, attempt], 8), 16) % 2**31


@dataclass
class ScriptOptions:
    """Options of a script stage run.

    :ivar template: template name or path.
    :ivar persona: default persona (a record's ``persona``/``dj`` field wins).
    :ivar personas: a dialogue template's hosts (names or paths; the first opens; a record's
        ``hosts`` field wins); places left open are filled from the template's default hosts.
        With ``persona`` too, ``persona`` must be the first. More than one needs a dialogue template.
    :ivar variants: takes per record (each its own output record).
    :ivar temperature/top_p/max_tokens: override the template's defaults when set.
    :ivar seed: base seed; take ``n`` uses ``seed + n``. ``None``: engine's choice.
    :ivar jobs: concurrent requests (only for backends with ``supports_concurrency``).
    :ivar retries: extra attempts for transient backend errors (0 = fail fast).
    :ivar resume: serve requests found in the ledger instead of calling the model.
    :ivar strict: stop at the first failed record.
    :ivar words: long-form only: scale the section word targets to this total.
    :ivar sections: long-form only: a plan (``[{name, brief, words}]``) replacing the template's.
    :ivar work_dir: long-form only: chunk files and checkpoints go to ``work_dir/{id}/``.
    :ivar best_of: candidates per take (1-16; long-form: per section); the best by the
        template's checks is kept.
    :ivar batch: records whose takes a batching backend (llama.cpp) decodes together (1-64).
    :ivar require_checks: a take that fails its checks becomes a record ``error``.
    :ivar redo_failed: with ``resume``: a take the ledger holds whose checks failed is made
        again (attempt ``n`` + 1, seed :func:`redo_seed`) instead of served; the others are
        served. A take edited by hand (``script.edited``) is served. A command without
        ``resume`` refuses it (exit 2).
    :ivar recheck: make no take: run the template's checks again on the ``script.text`` each
        record carries (edited by hand), update ``words`` and ``checks``, set
        ``script.edited`` and a new ``script.key``. A record without ``script.text`` fails. The
        ledger, if any, is only read: a take whose text it holds unchanged is passed through.
    :ivar timeout: Ollama only: seconds to wait for the connection and for each read of a
        reply (``None``: 300); read when the backend is built (``--timeout``, chain ``params``).
    :ivar overwrite: long-form only: replace the work files an earlier run left in
        ``work_dir/{id}/``; without it (and without ``resume``) they stop the run (exit 2).
    :ivar threads: llama.cpp only: CPU threads (``None``: every CPU this process may run on);
        read when the backend is built (``--threads``, chain ``params``).
    :ivar max_seconds: one-call templates: seconds a take may last when voiced; the word
        target is capped at the words that fit (a record's ``intro_seconds`` too: the smaller
        limit counts), and a longer take fails ``length``. ``None``: no limit but ``intro_seconds``.
    :ivar voice_backend: the TTS backend whose speaking rate turns a time limit into words
        (:func:`~ai_content_pipeline.airtime.words_per_second`).
    :ivar song_field: the record field naming a song's audio file whose tags fill the record's
        missing ``artist``/``title``/``album``/``year``/``genre`` (``None``: tags are not read).

    Numeric fields carry the ranges of :mod:`ai_content_pipeline.limits` (the same as the
    flags'), which pydantic checks when options come from a chain file.
    """

    template: str = "song-intro"
    persona: str | None = None
    personas: list[str] | None = None
    variants: Variants = 1
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    seed: Seed | None = None
    jobs: Jobs = 1
    retries: Retries = 0
    resume: bool = False
    strict: bool = False
    extra_context: ExtraContext = field(default_factory=dict)
    words: Words | None = None
    sections: list[dict[str, Any]] | None = None
    work_dir: str = "aicp-out/longform"
    timeout: Timeout | None = None
    threads: Threads | None = None
    best_of: BestOf = 1
    batch: Batch = 1
    require_checks: bool = False
    overwrite: bool = False
    redo_failed: bool = False
    recheck: bool = False
    max_seconds: AirSeconds | None = None
    voice_backend: str = "piper"
    song_field: str | None = "file"

    def validate(self, template: Template | None = None) -> None:
        """Load the template (unless the caller has it: ``template``) and default persona now;
        check ``best_of`` and ``batch``.

        :raises UsageError: unknown template or persona, ``best_of``/``batch`` out of
            range. :raises ConfigError: invalid file.
        """
        template = template or load_template(self.template)
        if self.persona:
            load_persona(self.persona)
        for ref in self.personas or []:
            load_persona(ref)
        self.check(template)

    def check(self, template: Template) -> None:
        """Check ``best_of`` and ``batch`` against ``template`` (loaded by the caller).

        :raises UsageError: ``best_of``/``batch`` out of range.
        """
        check_extra_context(self.extra_context)  # a key the prompt context sets itself: usage error
        check_personas(template, self.persona, self.personas)
        if template.dialogue and self.sections and not template.sections:
            raise UsageError(f"template '{template.name}' is a dialogue without sections: it takes no sections",
                             hint="use a long-form dialogue template (podcast-longform-dialogue)")
        if not 1 <= self.best_of <= MAX_BEST_OF:
            raise UsageError(f"best_of must be between 1 and {MAX_BEST_OF}, not {self.best_of}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise UsageError(f"batch must be between 1 and {MAX_BATCH}, not {self.batch}")
        for name, on in (("redo_failed", self.redo_failed), ("recheck", self.recheck)):
            if on and (template.sections or self.sections):
                raise UsageError(f"{name} applies to one-call templates; '{template.name}' is long-form")
        if self.recheck and (self.redo_failed or self.variants > 1):
            raise UsageError("recheck makes no takes: it checks the one take each record carries",
                             hint="drop --redo-failed and --variants with --recheck")
        if self.max_seconds is not None and (template.sections or self.sections):
            raise UsageError(f"max_seconds applies to one-call templates; '{template.name}' is long-form",
                             hint="give a long-form script its length in words: --words N")

    def params_for(self, template: Template, take: int) -> GenerationParams:
        """Generation parameters for ``take``: template defaults, then these overrides."""
        d = template.params
        return GenerationParams(
            temperature=d.temperature if self.temperature is None else self.temperature,
            top_p=d.top_p if self.top_p is None else self.top_p,
            max_tokens=d.max_tokens if self.max_tokens is None else self.max_tokens,
            seed=None if self.seed is None else self.seed + take,
            repeat_penalty=d.repeat_penalty,
        )


def check_personas(template: Template, persona: str | None, personas: list[str] | None) -> None:
    """The run's hosts against ``template``: several only for a dialogue template, at most its
    ``hosts.max``, none twice, and ``persona`` (if given) the first.

    :raises UsageError: naming the problem.
    """
    if not personas:
        return
    if len(personas) > 1 and not template.dialogue:
        raise UsageError(f"template '{template.name}' has one speaker; {len(personas)} personas were given",
                         hint="give --persona once, or use a dialogue template (podcast-dialogue, radio-banter)")
    if len(set(personas)) < len(personas):
        twice = next(p for p in personas if personas.count(p) > 1)
        raise UsageError(f"persona '{twice}' is given twice; each host is a different persona")
    if template.hosts is not None and len(personas) > template.hosts.max:
        raise UsageError(f"template '{template.name}' has at most {template.hosts.max} hosts; "
                         f"{len(personas)} personas were given")
    if persona and persona != personas[0]:
        raise UsageError(f"persona '{persona}' is not the first of personas {personas}: the first opens",
                         hint="leave persona out, or put it first in personas")


def reusable_script(value: dict[str, Any] | None) -> bool:
    """Whether a ledger value is a script that can be served again (see
    :class:`~ai_content_pipeline.stages.entries.ScriptEntry`)."""
    return fits(ScriptEntry, value)


def is_longform(options: ScriptOptions, template: Template | None = None) -> bool:
    """Whether a run with ``options`` writes long-form scripts: its template has sections,
    or the options carry a plan (``sections``). A long-form dialogue is written turn by turn
    by the script stage itself (:mod:`~ai_content_pipeline.stages.dialogue_turns`): not this.

    :param template: the run's template when already loaded (else it is loaded by name).
    :raises UsageError: unknown template.
    """
    template = template or load_template(options.template)
    return not template.dialogue and bool(options.sections or template.sections)


@dataclass
class _Take:
    """One take being made: what it asks the model and how it will be checked."""

    index: int
    rid: str
    record: dict[str, Any]
    take: int
    persona: Persona
    messages: list[dict[str, str]]
    context: dict[str, Any]
    params: GenerationParams
    key: str
    phrases: set[str] | None = None
    #: ``redo_failed``: the attempt this take makes (1, 2...); 0 for a take's first making
    attempt: int = 0
    max_seconds: float | None = None
    max_words: int | None = None
    #: a dialogue template's hosts, first the opener (``None``: one speaker, ``persona``)
    hosts: list[Persona] | None = None
    #: the template's closing line rendered for this take (``""``: none), appended to the text
    close: str = ""
    #: a dialogue written turn by turn: what writes its turns (``messages`` are turn 1's)
    turns: Any = None

    @property
    def prompt(self) -> str:
        """What the take was asked, for the checks (a turn-by-turn dialogue: every turn's
        instructions, the hosts' own lines left out)."""
        if self.turns is not None:
            return str(self.turns.instructions())
        return "\n".join(m["content"] for m in self.messages)


class ScriptStage(Stage):
    """Generate scripts for records with one LLM backend.

    :param backend: an :class:`~ai_content_pipeline.backends.base.LLMBackend` (loaded lazily).
    :param options: :class:`ScriptOptions`.
    :param emitter: where record/progress events go.
    :param ledger: checkpoint ledger; every finished take is appended to it.
    :param template: the template of ``options.template`` when the caller loaded it already.
    :raises UsageError: unknown template, a long-form one (built as a ``LongformStage``: see
        :func:`~ai_content_pipeline.stages.registry.build_stage`), bad ``best_of``/``batch``.
    """

    stage = "script"

    def __init__(self, backend: LLMBackend, options: ScriptOptions | None = None,
                 emitter: Emitter | None = None, ledger: Ledger | None = None, *,
                 template: Template | None = None) -> None:
        options = options or ScriptOptions()
        self.options: ScriptOptions
        #: the run's one load of its template (``template``: loaded by the caller, the registry)
        self.template: Template = template or load_template(options.template)
        if type(self) is ScriptStage and is_longform(options, self.template):
            raise UsageError(f"template '{self.template.name}' is long-form: it runs as a LongformStage",
                             hint="build the stage with stages.registry.build_stage('script', ...)")
        super().__init__(backend, options, emitter, ledger)  # loads the default persona, once
        options.check(self.template)
        #: a dialogue template's hosts for records that name none (first opens); else ``[]``
        self.run_hosts: list[Persona] = self._run_hosts() if self.template.dialogue else []
        #: a dialogue written turn by turn: ``[(section or None, turns)]`` (:func:`turn_plan`); else ``None``
        self.turn_plan = turn_plan(self.template, options.sections, options.words)
        # concurrent backends: candidates of all takes share the --jobs request slots (per host)
        self._slots = threading.Semaphore(max(1, max_in_flight(backend, options.jobs)))
        self._stats_lock = self.tracker.lock  # --jobs: worker threads add to the same counts
        #: where each finished take is logged (``--log``; :mod:`ai_content_pipeline.takelog`)
        self.takelog: Any = None
        #: fills records' missing song fields from their audio files' tags (``song_field``)
        self.songtags = SongTags(options.song_field) if options.song_field else None
        self._tag_warned: set[int] = set()

    @property
    def batched(self) -> bool:
        """True when takes go through the backend's batch decoder (``supports_batch`` and
        ``best_of`` or ``batch`` above 1); otherwise each candidate is one ``chat`` call."""
        return bool(self.backend.supports_batch and (self.options.best_of > 1 or self.options.batch > 1))

    @property
    def _in_flight(self) -> int:
        """Takes in flight at once on the batch decoder: every take of ``batch`` records."""
        return self.options.batch * max(1, self.options.variants)

    def record_persona(self, record: dict[str, Any]) -> Persona:
        """The persona ``record`` asks for (``persona``, then ``dj``), else the run's default,
        else julie (:meth:`~ai_content_pipeline.templates.Personas.for_record`: each persona file
        loaded once per run; a record names a persona, never a file).

        :raises InputError: the field is not a persona name.
        """
        persona = self.personas.for_record(record)
        assert persona is not None
        return persona

    def _run_hosts(self) -> list[Persona]:
        """The run's hosts: ``personas`` (or ``persona``), then the template's default hosts up
        to ``hosts.min``. :raises UsageError: fewer than ``hosts.min`` in all."""
        rule = self.template.hosts
        assert rule is not None
        refs = self.options.personas or ([self.options.persona] if self.options.persona else [])
        hosts = [self.personas.default if self.personas.default is not None and ref == self.options.persona
                 else load_persona(ref) for ref in refs]
        for name in rule.default:
            if len(hosts) >= rule.min:
                break
            if name not in {h.name for h in hosts}:
                hosts.append(self.personas.named(name))
        if len(hosts) < rule.min:
            raise UsageError(f"template '{self.template.name}' needs {rule.min} hosts; {len(hosts)} given",
                             hint=f"give --persona {rule.min} times (the first opens)")
        return hosts

    def record_hosts(self, record: dict[str, Any], field: str = "hosts") -> list[Persona]:
        """The hosts of ``record`` for a dialogue template, first the opener: the persona names
        of its ``field`` (a list), else the run's hosts with the record's ``persona``/``dj`` (if
        any) first. A name is one of the run's personas (files included), of the user folder or
        built in; never a path.

        :raises InputError: ``field`` is not a list of persona names, names one twice, names
            more or fewer than the template's ``hosts`` allow, or names no persona.
        """
        rule = self.template.hosts
        assert rule is not None
        value = get_path(record, field)
        if value is None:
            hosts = list(self.run_hosts)
            if any(not (v is None or (isinstance(v, str) and not v.strip()))
                   for v in (record.get("persona"), record.get("dj"))):
                opener = self.record_persona(record)
                hosts = [opener, *[h for h in hosts if h.name != opener.name]][:rule.max]
            return hosts
        if not isinstance(value, list) or not value:
            raise InputError(f"field '{field}' must be a list of persona names", field=field)
        if not rule.min <= len(value) <= rule.max:
            span = str(rule.min) if rule.min == rule.max else f"{rule.min} to {rule.max}"
            raise InputError(f"field '{field}' names {len(value)} hosts; template '{self.template.name}' "
                             f"has {span}", field=field)
        own = {h.name: h for h in self.run_hosts}
        hosts = []
        for i, name in enumerate(value):
            where = f"{field}[{i}]"
            if isinstance(name, str) and name.strip() in own:
                hosts.append(own[name.strip()])
                continue
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"field '{where}' must be a persona name (a non-empty string)", field=field)
            persona = self.personas.for_record({where: name}, (where,))
            assert persona is not None
            hosts.append(persona)
        names = [h.name for h in hosts]
        if len(set(names)) < len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise InputError(f"field '{field}' names '{twice}' twice; each host is a different persona", field=field)
        return hosts

    def _dialogue(self, job: _Take, text: str) -> Dialogue | None:
        """``text`` parsed into turns by ``job``'s hosts (``None``: a one-speaker template)."""
        return parse(text, job.hosts) if job.hosts else None

    # -- one take ----------------------------------------------------------------
    def request(self, record: dict[str, Any], persona: Persona, take: int) -> tuple[list[dict[str, str]], GenerationParams, str]:
        """Messages, parameters and request key of one take (raises ``InputError``).

        The key covers messages, backend, model, parameters (seed included), take
        and template, plus ``best_of`` when above 1, the batch decoder when used and the
        words that fit the take's time limit when it has one.
        """
        _, max_words = self._time_limit(record, persona)
        hosts = self.record_hosts(record) if self.turn_plan is not None else None
        messages, ctx, _ = self._request(record, persona, take, max_words, hosts)
        params = self.options.params_for(self.template, take)
        return messages, params, self._key(messages, params, take, max_words, self.template.closing(ctx))

    def _request(self, record: dict[str, Any], persona: Persona, take: int, max_words: int | None,
                 hosts: list[Persona] | None) -> tuple[list[dict[str, str]], dict[str, Any], TurnWriter | None]:
        """Messages and prompt context of one take, and its :class:`TurnWriter` when the template
        writes turn by turn (the messages are then turn 1's). :raises InputError: as
        :meth:`~ai_content_pipeline.templates.Template.request`."""
        if self.turn_plan is None or not hosts:
            messages, ctx = self.template.request(record, persona, take=take, max_words=max_words, hosts=hosts,
                                                  **self.options.extra_context)
            return messages, ctx, None
        check_extra_context(self.options.extra_context)
        self.template.check_fields(record)
        ctx = self.template.context(record, persona, max_words=max_words, catchphrase=persona.catchphrase_for(record, take),
                                    hosts=[h.model_dump() for h in hosts], **self.options.extra_context)
        sections = [s for s, _ in self.turn_plan if s is not None]
        if sections:  # a long-form dialogue: its length is its sections'
            ctx["target_words"] = sum(s["words"] for s in sections)
            ctx["sections"], ctx["chunks"] = sections, len(sections)
        writer = TurnWriter(self.template, hosts, ctx, self._generate_turns, plan=self.turn_plan)
        return writer.messages(1, []), ctx, writer

    def _time_limit(self, record: dict[str, Any], persona: Persona) -> tuple[float | None, int | None]:
        """The take's time limit in seconds (``max_seconds``, the record's ``intro_seconds``) and
        the words that fit it at ``persona``'s pace; ``(None, None)`` without one.

        :raises InputError: a bad ``intro_seconds``."""
        limit = time_limit(record, self.options.max_seconds)
        if limit is None:
            return None, None
        return limit, fitting_words(limit, words_per_second(persona, self.options.voice_backend))

    def _key(self, messages: list[dict[str, str]], params: GenerationParams, take: int,
             max_words: int | None = None, close: str = "") -> str:
        extra: dict[str, Any] = {}
        if close:  # the template's closing line is part of the text
            extra["close"] = close
        if self.turn_plan is not None:  # turn by turn: the messages are turn 1's
            extra["turns"] = {"plan": self.turn_plan, "tries": [TURN_TRIES, LAST_TURN_TRIES], "history": HISTORY_TURNS}
        if max_words is not None:  # the length check's bound, whether or not the prompt shows it
            extra["max_words"] = max_words
        if self.options.best_of > 1:
            extra["best_of"] = self.options.best_of
        if self.batched:
            extra["decoder"] = "batched"
        return request_key(stage="script", messages=messages, backend=self.backend.name,
                           model=self.backend.model, params=params.as_dict(), take=take,
                           template=self.template.ref, **extra)

    def _prepare(self, index: int, record: dict[str, Any], take: int) -> _Take | dict[str, Any]:
        """The take to generate, or the finished output record (a failure, or served from the ledger)."""
        rid = record_id(record)
        try:
            hosts = self.record_hosts(record) if self.template.dialogue else None
            persona = hosts[0] if hosts else self.record_persona(record)
            limit, max_words = self._time_limit(record, persona)
            messages, ctx, writer = self._request(record, persona, take, max_words, hosts)
            close = self.template.closing(ctx)
        except AicpError as exc:
            if isinstance(exc, TemplateSandboxError):  # the template's fault, not this record's
                raise
            err = InputError(exc.message, hint=exc.hint, stage="script") if not isinstance(exc, RecordError) else exc
            return self._fail(index, rid, record, err, take=take)
        params = self.options.params_for(self.template, take)
        key = self._key(messages, params, take, max_words, close)
        job = _Take(index, rid, record, take, persona, messages, ctx, params, key,
                    max_seconds=limit, max_words=max_words, hosts=hosts, close=close, turns=writer)

        served = self._served(key)
        if served is not None:
            served.pop("max_seconds", None)
            if limit is not None:
                served["max_seconds"] = limit
            if not isinstance(served.get("checks"), dict):  # a ledger from before checks
                served["checks"] = self._check(job, served["text"])
            job.attempt = self._redo_attempt(served)
            if not job.attempt:
                return self._skip(index, rid, record, take, key, served, served["checks"])
            job.params = dataclasses.replace(params, seed=redo_seed(params.seed, job.attempt, key))
        self.tracker.start(index, rid, take=take, persona=persona.name,
                           **({"attempt": job.attempt} if job.attempt else {}))
        return job

    def _redo_attempt(self, served: dict[str, Any]) -> int:
        """The attempt to make of a take the ledger holds (``served``): its last attempt + 1 when
        ``redo_failed`` and its checks failed (never a take edited by hand), else 0 (serve it)."""
        if not self.options.redo_failed or served["checks"].get("passed", True) or served.get("edited"):
            return 0
        last = served.get("attempt")
        return (last if isinstance(last, int) and not isinstance(last, bool) and last > 0 else 0) + 1

    # -- the take skeleton both one-call and long-form scripts share ---------------------
    def _served(self, key: str) -> dict[str, Any] | None:
        """A copy of the script the ledger holds for ``key`` when ``resume`` may serve it, else ``None``."""
        if not (self.options.resume and self.ledger is not None):
            return None
        value = self.ledger.get(key)
        return dict(value) if value is not None and reusable_script(value) else None

    def _skip(self, index: int, rid: str, record: dict[str, Any], take: int, key: str,
              script: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
        """The output record of a take served from the ledger (``record_skipped``; ``checks``
        counted)."""
        script["skipped"] = True
        self._count_checks(checks, truncated=bool(script.get("truncated")))
        self.tracker.skipped(index, rid, take=take, key=key)
        return self._require_checks(index, rid, record, take, script)

    def _accept(self, index: int, rid: str, record: dict[str, Any], take: int,
                script: dict[str, Any], **complete_fields: Any) -> dict[str, Any]:
        """A take's new ``script`` (with ``key``, ``tokens``, ``words``, ``checks``): to the ledger,
        into the counts, through ``require_checks``; ``record_complete`` (with
        ``complete_fields``) unless the checks made it an error. The output record."""
        if self.ledger is not None:
            self.ledger.append(script["key"], script)
        checks = script["checks"]
        with self._stats_lock:
            self.stats.prompt_tokens += script["tokens"]["prompt"]
            self.stats.completion_tokens += script["tokens"]["completion"]
        self._count_checks(checks, truncated=bool(script.get("truncated")))
        out = self._require_checks(index, rid, record, take, script)
        if "error" in out:
            return out
        with self._stats_lock:
            self.stats.words += script["words"]
        self.tracker.complete(index, rid, take=take, words=script["words"], seconds=script["seconds"],
                              tokens=script["tokens"], **complete_fields,
                              checks={"passed": checks["passed"], "failed": checks["failed"]})
        return out

    def _candidates(self, job: _Take) -> list[GenerationParams]:
        return [dataclasses.replace(job.params, seed=candidate_seed(job.params.seed, c))
                for c in range(self.options.best_of)]

    def _generate_turns(self, requests: list[BatchRequest]) -> list[list[Completion] | Exception]:
        """``generate_batch`` for the turns of a turn-by-turn dialogue, with the run's retries."""
        return with_retries(lambda: self.backend.generate_batch(requests, parallel=self._in_flight),
                            self.options.retries, on_retry=lambda n, e: self.emitter.message(
                                f"dialogue turn: retry {n} after: {e.message}", "warning"))

    def _generate(self, jobs: list[_Take]) -> list[list[Completion] | Exception]:
        """Every candidate of every take in ``jobs``; a failed take gets its ``RecordError``
        (a turn-by-turn dialogue's candidates are written by its :class:`TurnWriter`)."""
        self.session.ensure()
        retries = self.options.retries
        if any(job.turns is not None for job in jobs):
            out_turns: list[list[Completion] | Exception] = []
            for job in jobs:
                try:
                    out_turns.append(job.turns.write(self._candidates(job)))
                except RecordError as exc:
                    out_turns.append(exc)
            return out_turns

        def on_retry(job: _Take) -> Any:
            return lambda n, e: self.emitter.message(f"record {job.rid}: retry {n} after: {e.message}", "warning")

        if self.batched:
            requests = [BatchRequest(job.messages, self._candidates(job)) for job in jobs]
            try:
                return with_retries(lambda: self.backend.generate_batch(requests, parallel=self._in_flight),
                                    retries, on_retry=on_retry(jobs[0]))
            except RecordError as exc:
                return [exc for _ in jobs]

        def one(job: _Take, params: GenerationParams) -> Completion:
            def call() -> Completion:
                with self._slots:
                    return collect_reply(self.backend, job.messages, params)
            return with_retries(call, retries, on_retry=on_retry(job))

        out: list[list[Completion] | Exception] = []
        for job in jobs:
            candidates = self._candidates(job)
            if len(candidates) == 1:  # today's path: one chat call per take
                try:
                    out.append([one(job, candidates[0])])
                except RecordError as exc:
                    out.append(exc)
                continue
            workers = min(len(candidates), self.options.jobs) if self.backend.supports_concurrency else 1
            results: list[Completion | RecordError] = []
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aicp-cand") as pool:
                for fut in [pool.submit(one, job, p) for p in candidates]:
                    try:
                        results.append(fut.result())
                    except RecordError as exc:
                        results.append(exc)
            done = [r for r in results if isinstance(r, Completion)]
            first_error = next((r for r in results if isinstance(r, RecordError)), None)
            out.append(done if done else (first_error or RecordError("no candidate finished", stage="script")))
        return out

    def _check(self, job: _Take, text: str, dialogue: Dialogue | None = None) -> dict[str, Any]:
        return evaluate(text, self.template.checks, context=job.context, prompt=job.prompt,
                        target_words=int(job.context.get("target_words") or self.template.target_words),
                        phrases=self._phrases(job), max_words=job.max_words,
                        dialogue=dialogue or self._dialogue(job, text), close=job.close)

    def _phrases(self, job: _Take) -> set[str]:
        if job.phrases is None:
            job.phrases = echo_phrases(job.prompt, job.context)
        return job.phrases

    def _count_checks(self, checks: dict[str, Any], truncated: bool = False) -> None:
        with self._stats_lock:
            if truncated:
                self.stats.truncated += 1
            if checks.get("passed"):
                self.stats.checks_passed += 1
            else:
                self.stats.checks_failed += 1

    def _finish(self, job: _Take, results: list[Completion] | Exception, seconds: float) -> dict[str, Any]:
        """Trim, check and choose among the candidates; write the ledger and the take log; the
        output record."""
        out = self._finish_take(job, results, seconds)
        if self.takelog is not None:
            self.takelog.add_script(job.rid, job.take, out.get("script"), messages=job.messages,
                                    params={**job.params.as_dict(), "best_of": self.options.best_of},
                                    error=out.get("error"), template=self.template.ref,
                                    persona=job.persona.name, backend=self.backend.name,
                                    model=self.backend.model)
        return out

    def _finish_take(self, job: _Take, results: list[Completion] | Exception, seconds: float) -> dict[str, Any]:
        if isinstance(results, Exception):
            err = results if isinstance(results, RecordError) else RecordError(str(results), stage="script")
            return self._fail(job.index, job.rid, job.record, err, take=job.take)
        target = int(job.context.get("target_words") or self.template.target_words)
        cands: list[dict[str, Any]] = []
        for c, result in enumerate(results):
            text = trim_chatter(result.text)
            truncated = result.done_reason == "length"
            if truncated and self.template.checks.complete:
                text = trim_to_sentence(text)
            dialogue = self._dialogue(job, text)
            if dialogue is not None:  # one "Label: text" line per turn
                text = dialogue.text
            if text and job.close:  # the template's closing line, said once, at the end
                text = with_close(text, job.close)
            verdict = self._check(job, text, dialogue) if text else {"passed": False, "failed": ["empty"]}
            cands.append({"text": text, "truncated": truncated, "verdict": verdict, "result": result,
                          "seed": candidate_seed(job.params.seed, c), "dialogue": dialogue,
                          "words": dialogue.words if dialogue is not None else word_count(text)})
        usable = [c for c in cands if c["text"]]
        if not usable:
            return self._fail(job.index, job.rid, job.record,
                              RecordError("the model returned an empty script", stage="script"), take=job.take)
        best = usable[choose([{"words": c["words"], "failed": c["verdict"]["failed"]} for c in usable], target)]
        text = best["text"]
        prompt_tokens = sum(c["result"].prompt_tokens for c in cands)
        completion_tokens = sum(c["result"].completion_tokens for c in cands)
        checks = dict(best["verdict"])
        if len(cands) > 1:
            checks["candidates"] = [{"seed": c["seed"], "words": c["words"],
                                     "tokens": c["result"].completion_tokens, "passed": c["verdict"]["passed"],
                                     "failed": c["verdict"]["failed"], **({"truncated": True} if c["truncated"] else {})}
                                    for c in cands]
            checks["chosen"] = cands.index(best)
        script = {
            "text": text,
            "words": best["words"],
            "template": self.template.ref,
            "persona": job.persona.name,
            "persona_voice": persona_voice(job.persona),
            "take": job.take,
            "backend": self.backend.name,
            "model": self.backend.model,
            "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
            "seconds": round(seconds, 3),
            "key": job.key,
        }
        if best["result"].host:
            script["host"] = best["result"].host
        if job.max_seconds is not None:
            script["max_seconds"] = job.max_seconds
        if best["truncated"]:
            script["truncated"] = True
        extra = {"host": script["host"]} if "host" in script else {}
        if best["dialogue"] is not None:
            script.update(dialogue_fields(best["dialogue"], job.hosts or []))
            extra["turns"] = len(script["turns"])
        if job.attempt:  # redo_failed: the ledger keeps this attempt under the take's key
            script["attempt"] = extra["attempt"] = job.attempt
            with self._stats_lock:
                self.stats.redone += 1
        script["checks"] = checks
        return self._accept(job.index, job.rid, job.record, job.take, script, **extra)

    def _require_checks(self, index: int, rid: str, record: dict[str, Any], take: int,
                        script: dict[str, Any]) -> dict[str, Any]:
        """``record`` with ``script``, or with an ``error`` when ``require_checks`` rejects it."""
        checks = script.get("checks") or {}
        if not self.options.require_checks or checks.get("passed", True):
            return {**record, "script": script}
        failed = checks.get("failed", [])
        if script.get("skipped"):  # counted as skipped already: undo, it is a failure now
            self.tracker.uncount_skipped()
        err = ChecksFailed(f"the script failed its checks: {', '.join(failed)}", stage="script",
                           hint="run without --require-checks to keep it, or try --best-of N",
                           checks=checks, text=script.get("text"))
        return self._fail(index, rid, record, err, take=take)

    def _recheck(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        """``recheck``: the output record of a take whose ``script.text`` a person edited. No
        model call: the template's checks run again on the text, asked as the take was asked
        (the record without the fields stages add, the persona in ``script.persona``);
        ``words``, ``checks``, ``edited: true`` and a new ``key`` (from the record id, take,
        template and text: rechecking the same text again gives the same key) replace the old
        ones; the take log gets an ``edit`` row. With a ledger (``--checkpoint``), a take whose
        text is still the one the ledger holds under its ``key`` is not edited: it passes
        through as it is (``record_skipped``).

        A record without a ``script`` object holding a non-blank ``script.text``, or whose take
        names another template than the run's, fails (``InputError``).
        """
        rid = record_id(record)
        script = record.get("script")
        text = script.get("text") if isinstance(script, dict) else None
        take = script.get("take") if isinstance(script, dict) else None
        take = take if isinstance(take, int) and not isinstance(take, bool) and take >= 0 else 0
        if not isinstance(script, dict) or not isinstance(text, str) or not text.strip():
            what = ("no script object" if not isinstance(script, dict) else "no script.text" if text is None
                    else "a blank script.text" if isinstance(text, str) else "a script.text that is not text")
            return self._fail(index, rid, record, InputError(
                f"nothing to recheck: the record has {what}", stage="script",
                hint="--recheck checks the script.text of the records aicp-script wrote, edited by hand; "
                     "run without --recheck to make new takes"), take=take)
        made_with = script.get("template")
        if isinstance(made_with, str) and made_with.split("@")[0] != self.template.name:
            name = made_with.split("@")[0]
            return self._fail(index, rid, record, InputError(
                f"its take was made with template '{name}', not '{self.template.name}' whose checks this run "
                "runs", stage="script", hint=f"recheck it with --template {name}"), take=take)
        previous = script.get("key") if isinstance(script.get("key"), str) else None
        made = self.ledger.get(previous) if self.ledger is not None and previous is not None else None
        if made is not None and made.get("text") == text:  # the ledger's take as it was made: not edited
            checks = script.get("checks")
            self._count_checks(checks if isinstance(checks, dict) else {"passed": True})
            self.tracker.skipped(index, rid, take=take, key=previous)
            return record
        given = {k: v for k, v in record.items() if k not in stage_fields()}  # what the take was asked with
        try:
            persona = self.personas.for_record(record, ("script.persona", "persona", "dj"))
            assert persona is not None
            hosts = None
            if self.template.dialogue:  # the hosts the take was written by
                hosts = self.record_hosts(record, "script.hosts") if isinstance(
                    get_path(record, "script.hosts"), list) else self.record_hosts(given)
                persona = hosts[0]
            messages, ctx, writer = self._request(given, persona, take, None, hosts)
            close = self.template.closing(ctx)
        except AicpError as exc:
            if isinstance(exc, TemplateSandboxError):
                raise
            err = InputError(exc.message, hint=exc.hint, stage="script") if not isinstance(exc, RecordError) else exc
            return self._fail(index, rid, record, err, take=take)
        self.tracker.start(index, rid, take=take, persona=persona.name, edited=True)
        job = _Take(index, rid, given, take, persona, messages, ctx, self.options.params_for(self.template, take), "",
                    hosts=hosts, close=close, turns=writer)
        dialogue = self._dialogue(job, text)
        checks = self._check(job, text, dialogue)
        edited = {k: v for k, v in script.items() if k not in ("skipped", "truncated", "checks")}
        if dialogue is not None:  # the turns of the edited text (kept as the person wrote it)
            edited.update(dialogue_fields(dialogue, hosts or []))
        edited.update(text=text, words=dialogue.words if dialogue is not None else word_count(text), edited=True,
                      key=request_key(stage="script-edit", record=rid, take=take, template=self.template.ref, text=text),
                      checks=checks)
        with self._stats_lock:
            self.stats.edited += 1
        self._count_checks(checks)
        out = self._require_checks(index, rid, record, take, edited)
        if "error" not in out:
            with self._stats_lock:
                self.stats.words += edited["words"]
            self.tracker.complete(index, rid, take=take, words=edited["words"], edited=True,
                                  **({"turns": len(edited["turns"])} if dialogue is not None else {}),
                                  checks={"passed": checks["passed"], "failed": checks["failed"]})
        if self.takelog is not None:
            self.takelog.add_script(rid, take, edited, messages=messages, params={"edited_from": previous},
                                    error=out.get("error"), template=self.template.ref, persona=persona.name,
                                    stage="edit")
        return out

    def _take(self, index: int, record: dict[str, Any], take: int) -> dict[str, Any]:
        """The output record of one take: the generation hook
        (:class:`~ai_content_pipeline.stages.longform.LongformStage` overrides it)."""
        if self.options.recheck:
            return self._recheck(index, record)
        job = self._prepare(index, record, take)
        if not isinstance(job, _Take):
            return job
        t0 = time.perf_counter()
        results = self._generate([job])[0]
        seconds = (results[0].seconds if isinstance(results, list) and len(results) == 1
                   else time.perf_counter() - t0)
        return self._finish(job, results, seconds)

    # -- a whole run -----------------------------------------------------------------
    def _items(self, lines: Iterable[InputLine]) -> Iterator[tuple[int, InputLine, int]]:
        """``(index, line, take)`` in input order, in the thread that reads the input."""
        for index, line in enumerate(lines):
            if line.record is None:
                yield index, line, 0
                continue
            for take in range(max(1, self.options.variants)):
                yield index, line, take

    def _process(self, item: tuple[int, InputLine, int]) -> dict[str, Any]:
        index, line, take = item
        return self._each(index, line, lambda record: self._take(index, self._tagged(index, record), take))

    def _tagged(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its missing song fields from its audio file's tags (``song_field``);
        a file whose tags cannot be read: a warning (once per record, not per take), the
        record unchanged."""
        if self.songtags is None:
            return record
        tagged, problem = self.songtags.fill(record)
        with self._stats_lock:
            first = problem is not None and index not in self._tag_warned
            if first:
                self._tag_warned.add(index)
        if first and problem is not None:
            self.emitter.message(f"record {record_id(record)}: {problem.message}; its tags were not read",
                                 "warning")
        return tagged

    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield one output record per input line and take, in input order.

        :param total: number of input records if known (progress ``total`` is
            ``total * variants``).
        """
        if total is not None:
            self.stats.total = total * max(1, self.options.variants)
        if self.batched:  # the batch decoder decodes the takes of `batch` records in flight together
            jobs = self._in_flight
        elif self.backend.supports_concurrency:
            jobs = max_in_flight(self.backend, self.options.jobs)
        else:
            jobs = 1
        with self._backend_run():
            yield from ordered_map(self._process, self._items(lines), jobs, on_abort=self._abort)


def dialogue_fields(dialogue: Dialogue, hosts: list[Persona]) -> dict[str, Any]:
    """The fields a dialogue take adds to its ``script``: ``turns`` (``[{"speaker", "text"}]``),
    ``hosts`` (persona names, first the opener) and ``hosts_voice`` (``{name: persona_voice}``,
    what the voice stage needs to speak each host as the script stage knew them)."""
    return {"turns": dialogue.turn_list(), "hosts": [h.name for h in hosts],
            "hosts_voice": {h.name: persona_voice(h) for h in hosts}}


class NoModel(LLMBackend):
    """The backend of a ``recheck`` run, which makes no take: no model is built or loaded.

    :raises UsageError: from :meth:`load` and :meth:`chat` (a recheck calls neither).
    """

    name = "none"

    def load(self) -> None:
        raise UsageError("a recheck run uses no model")

    def unload(self) -> None:
        """Nothing to free."""

    def chat(self, messages: list[dict[str, str]], params: GenerationParams, *,
             json_schema: dict[str, Any] | None = None) -> Iterator[Any]:
        raise UsageError("a recheck run uses no model")


class ScriptStepConfig(BackendStepConfig):
    """A ``script`` step of a chain file: an LLM writes a script per record (see ``aicp script``).

    :ivar template/persona: the step's template and default persona (names or files).
    :ivar backend: ``auto`` or an LLM backend; its settings are keys of the step (``host``,
        ``keep_alive``, ``timeout``, ``threads``...: :class:`BackendStepConfig`).
    :ivar model: as ``aicp script --model``.
    """

    type: Literal["script"]
    template: str = "song-intro"
    persona: str | None = None
    model: str | None = None


def _check_personas(step: ScriptStepConfig) -> None:
    """A chain step's ``params.personas`` (a dialogue's hosts), checked when the chain file is read.

    :raises UsageError: unknown persona, or personas the template does not take (:func:`check_personas`);
        its ``loc`` is ``("params", "personas")``.
    """
    personas = step.params.get("personas")
    if not personas:
        return
    try:
        for ref in personas:
            load_persona(ref)
        check_personas(load_template(step.template), step.persona, personas)
    except AicpError as exc:
        exc.loc = ("params", "personas")  # type: ignore[attr-defined]
        raise


#: The ``script`` stage kind (long-form refines it: :data:`~ai_content_pipeline.stages.longform.LONGFORM`).
def _context(options: ScriptOptions) -> dict[str, Any]:
    return {"template": load_template(options.template)}  # unknown: a usage error before anything else


SCRIPT = StageKind(
    name="script", stage=ScriptStage, options=ScriptOptions, step_model=ScriptStepConfig, backend="llm",
    context=_context, check_step=_check_personas,
    entry=ScriptEntry, record_field="script", dirs={"work_dir": ("longform", True)},
    events="`words`, `seconds`, `tokens`, `checks` (`{passed, failed}`), `host` (Ollama: the server that wrote it), "
           "`attempt` (`--redo-failed`), `edited` (`--recheck`), `turns` (dialogue templates: the turn count)",
    command="ai_content_pipeline.cli.script:script_command",
)
