"""The script stage: records in, the same records with a generated ``script`` out.

Per input record and take: pick the persona (the record's ``persona``/``dj``
field, else the stage default), render the template's chat messages, compute
the request key, serve it from the checkpoint ledger on ``--resume`` or ask the
LLM backend, trim the model's chatter and add the ``script`` object::

    {"text": str, "words": int, "template": "name@version", "persona": str,
     "take": int, "backend": str, "model": str,
     "tokens": {"prompt": int, "completion": int}, "seconds": float, "key": str,
     "host"?: str (the Ollama server that wrote it),
     "checks": {"passed": bool, "failed": [str], "details"?: {...},
                "candidates"?: [...], "chosen"?: int}}

Every take is checked (:mod:`ai_content_pipeline.checks`, the template's
``checks:`` block). With ``best_of`` N > 1 the model writes N candidates per
take, each with its own seed derived from the take's seed, and the best one is
kept (:func:`~ai_content_pipeline.checks.choose`). Backends that decode in
batches (llama.cpp) write the candidates of a take together from one prompt
evaluation, and with ``batch`` B > 1 the takes of B records together.

Failures that concern one record become its ``error`` object; the run goes on.
A take that fails its checks is still written (``checks.passed: false``) unless
``require_checks`` makes it an error (:class:`ChecksFailed`).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import (
    BatchRequest,
    Completion,
    GenerationParams,
    LLMBackend,
    complete,
    max_in_flight,
)
from ..checks import choose, echo_phrases, evaluate, trim_to_sentence
from ..errors import AicpError, InputError, RecordError, UsageError
from ..events import Emitter
from ..files import FolderLock
from ..jsonl import InputLine
from ..ledger import Ledger, request_key
from ..limits import (
    BATCH,
    BEST_OF,
    Batch,
    BestOf,
    Jobs,
    MaxTokens,
    Retries,
    Seed,
    Temperature,
    Timeout,
    TopP,
    Variants,
    Words,
)
from ..records import content_hash, record_id, word_count
from ..templates import (
    DEFAULT_PERSONA,
    Persona,
    Template,
    TemplateSandboxError,
    file_ref,
    load_persona,
    load_template,
    persona_for_record,
)
from .common import Stage, StageStats, check_run_paths, ordered_map, with_retries

#: Upper bounds of ``--best-of`` and ``--batch``.
MAX_BEST_OF = int(BEST_OF.max or 16)
MAX_BATCH = int(BATCH.max or 64)

# -- trimming the model's chatter ---------------------------------------------------------
_PREAMBLE = re.compile(
    r"""^\s*(?:(?:sure|certainly|of\ course|absolutely|okay|ok|alright|great)[!,.]*\s+)?
        (?:here(?:'s|\ is|\ are|\ you\ go)|below\ is)\b[^\n:]{0,120}:[ \t]*\n*""",
    re.IGNORECASE | re.VERBOSE,
)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:intro|outro|script|dj|transcript)(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
                    re.IGNORECASE)
_SIGNOFF = re.compile(
    r"\n+\s*(?:let me know|i hope (?:this|you)|feel free|would you like|note:)[^\n]*\s*$", re.IGNORECASE
)
_QUOTES = {'"': '"', "“": "”", "'": "'", "«": "»"}


class ChecksFailed(RecordError):
    """``--require-checks``: the chosen take failed its checks (a record error, exit 3)."""


def candidate_seed(seed: int | None, candidate: int) -> int | None:
    """Seed of candidate ``candidate`` of a take whose seed is ``seed``.

    Candidate 0 keeps the take's seed; the others get seeds derived from it by a
    hash (so reruns are identical and they do not collide with other takes'
    ``seed + n``). ``None`` (engine's choice) stays ``None``.
    """
    if seed is None or candidate == 0:
        return seed
    return int(content_hash(["candidate", seed, candidate], 8), 16) % 2**31


def trim_chatter(text: str) -> str:
    """Remove an assistant's wrapping around a script, conservatively.

    Removes only: one leading "Sure! Here's …:" preamble line (it must end with a
    colon), one leading ``Intro:``-style label, one trailing "Let me know …" /
    "I hope this …" paragraph, and quotes that wrap the whole text when no quote
    of that kind occurs inside. Everything else is kept as written.
    """
    text = text.strip()
    stripped = _PREAMBLE.sub("", text, count=1)
    if stripped.strip():
        text = stripped.strip()
    text = _LABEL.sub("", text, count=1).strip() or text
    signed = _SIGNOFF.sub("", text).strip()
    if signed:
        text = signed
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] not in inner and _QUOTES[text[0]] not in inner:
            text = inner.strip()
    return text


@dataclass
class ScriptOptions:
    """Options of a script stage run.

    :ivar template: template name or path.
    :ivar persona: default persona (a record's ``persona``/``dj`` field wins).
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
    :ivar best_of: candidates per take (1-16); the best by the template's checks is kept.
    :ivar batch: records whose takes a batching backend (llama.cpp) decodes together (1-64).
    :ivar require_checks: a take that fails its checks becomes a record ``error``.
    :ivar timeout: Ollama only: seconds to wait for the connection and for each read of a
        reply (``None``: 300); read when the backend is built (``--timeout``, chain ``params``).

    Numeric fields carry the ranges of :mod:`ai_content_pipeline.limits` (the same as the
    flags'), which pydantic checks when options come from a chain file.
    """

    template: str = "song-intro"
    persona: str | None = None
    variants: Variants = 1
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    seed: Seed | None = None
    jobs: Jobs = 1
    retries: Retries = 0
    resume: bool = False
    strict: bool = False
    extra_context: dict[str, Any] = field(default_factory=dict)
    words: Words | None = None
    sections: list[dict[str, Any]] | None = None
    work_dir: str = "aicp-out/longform"
    timeout: Timeout | None = None
    best_of: BestOf = 1
    batch: Batch = 1
    require_checks: bool = False

    def validate(self) -> None:
        """Load the template and default persona now; check ``best_of`` and ``batch``.

        :raises UsageError: unknown template or persona, ``best_of``/``batch`` out of
            range, ``best_of`` > 1 with a long-form template. :raises ConfigError: invalid file.
        """
        template = load_template(self.template)
        if self.persona:
            load_persona(self.persona)
        if not 1 <= self.best_of <= MAX_BEST_OF:
            raise UsageError(f"best_of must be between 1 and {MAX_BEST_OF}, not {self.best_of}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise UsageError(f"batch must be between 1 and {MAX_BATCH}, not {self.batch}")
        if self.best_of > 1 and (template.sections or self.sections):
            raise UsageError(f"best_of applies to one-call templates; '{template.name}' is long-form",
                             hint="long-form scripts are checked as a whole; drop --best-of")

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


def record_persona(record: dict[str, Any], default: str | None) -> Persona:
    """The persona a record asks for (``persona``, then ``dj``), else ``default``, else julie.

    :raises InputError: the field is not a persona name (see
        :func:`~ai_content_pipeline.templates.persona_for_record`).
    """
    persona = persona_for_record(record, default or DEFAULT_PERSONA)
    assert persona is not None
    return persona


def reusable_script(value: dict[str, Any] | None) -> bool:
    """Whether a ledger value is a script that can be served again (see
    :class:`~ai_content_pipeline.stages.entries.ScriptEntry`)."""
    from .entries import ScriptEntry, fits

    return fits(ScriptEntry, value)


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

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


class ScriptStage(Stage):
    """Generate scripts for records with one LLM backend.

    :param backend: an :class:`~ai_content_pipeline.backends.base.LLMBackend` (loaded lazily).
    :param options: :class:`ScriptOptions`.
    :param emitter: where record/progress events go.
    :param ledger: checkpoint ledger; every finished take is appended to it.
    :raises UsageError: unknown template, bad ``best_of``/``batch`` (at construction).
    """

    stage = "script"

    def __init__(self, backend: LLMBackend, options: ScriptOptions | None = None,
                 emitter: Emitter | None = None, ledger: Ledger | None = None) -> None:
        options = options or ScriptOptions()
        self.options: ScriptOptions
        self.template = load_template(options.template)  # unknown template: usage error first
        options.validate()
        super().__init__(backend, options, emitter, ledger)
        self.longform: Any = None  # a LongformWriter for sectioned templates
        if self.template.sections or self.options.sections:
            from .longform import LongformWriter
            self.longform = LongformWriter(self)
        # concurrent backends: candidates of all takes share the --jobs request slots (per host)
        self._slots = threading.Semaphore(max(1, max_in_flight(backend, options.jobs)))
        self._stats_lock = threading.Lock()

    @property
    def batched(self) -> bool:
        """True when takes go through the backend's batch decoder (``supports_batch`` and
        ``best_of`` or ``batch`` above 1); otherwise each candidate is one ``chat`` call."""
        return bool(self.backend.supports_batch and (self.options.best_of > 1 or self.options.batch > 1))

    # -- one take ----------------------------------------------------------------
    def request(self, record: dict[str, Any], persona: Persona, take: int) -> tuple[list[dict[str, str]], GenerationParams, str]:
        """Messages, parameters and request key of one take (raises ``InputError``).

        The key covers messages, backend, model, parameters (seed included), take
        and template, plus ``best_of`` when above 1 and the batch decoder when used.
        """
        messages, _ = self.template.request(record, persona, take=take, **self.options.extra_context)
        params = self.options.params_for(self.template, take)
        return messages, params, self._key(messages, params, take)

    def _key(self, messages: list[dict[str, str]], params: GenerationParams, take: int) -> str:
        extra: dict[str, Any] = {}
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
            persona = record_persona(record, self.options.persona)
            messages, ctx = self.template.request(record, persona, take=take, **self.options.extra_context)
        except AicpError as exc:
            if isinstance(exc, TemplateSandboxError):  # the template's fault, not this record's
                raise
            err = InputError(exc.message, hint=exc.hint, stage="script") if not isinstance(exc, RecordError) else exc
            return self._fail(index, rid, record, err, take=take)
        params = self.options.params_for(self.template, take)
        key = self._key(messages, params, take)
        job = _Take(index, rid, record, take, persona, messages, ctx, params, key)

        if self.options.resume and self.ledger is not None and reusable_script(self.ledger.get(key)):
            script = dict(self.ledger.get(key) or {})
            if not isinstance(script.get("checks"), dict):  # a ledger from before checks
                script["checks"] = self._check(job, script["text"])
            script["skipped"] = True
            self._count_checks(script["checks"])
            self.tracker.skipped(index, rid, take=take, key=key)
            return self._require_checks(index, rid, record, take, script)
        self.tracker.start(index, rid, take=take, persona=persona.name)
        return job

    def _candidates(self, job: _Take) -> list[GenerationParams]:
        return [dataclasses.replace(job.params, seed=candidate_seed(job.params.seed, c))
                for c in range(self.options.best_of)]

    def _generate(self, jobs: list[_Take]) -> list[list[Completion] | Exception]:
        """Every candidate of every take in ``jobs``; a failed take gets its ``RecordError``."""
        self.session.ensure()
        retries = self.options.retries

        def on_retry(job: _Take) -> Any:
            return lambda n, e: self.emitter.message(f"record {job.rid}: retry {n} after: {e.message}", "warning")

        if self.batched:
            requests = [BatchRequest(job.messages, self._candidates(job)) for job in jobs]
            try:
                return with_retries(lambda: self.backend.generate_batch(requests), retries,
                                    on_retry=on_retry(jobs[0]))
            except RecordError as exc:
                return [exc for _ in jobs]

        def one(job: _Take, params: GenerationParams) -> Completion:
            def call() -> Completion:
                with self._slots:
                    return complete(self.backend, job.messages, params)
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

    def _check(self, job: _Take, text: str) -> dict[str, Any]:
        return evaluate(text, self.template.checks, context=job.context, prompt=job.prompt,
                        target_words=int(job.context.get("target_words") or self.template.target_words),
                        phrases=self._phrases(job))

    def _phrases(self, job: _Take) -> set[str]:
        if job.phrases is None:
            job.phrases = echo_phrases(job.prompt, job.context)
        return job.phrases

    def _count_checks(self, checks: dict[str, Any]) -> None:
        with self._stats_lock:
            if checks.get("passed"):
                self.stats.checks_passed += 1
            else:
                self.stats.checks_failed += 1

    def _finish(self, job: _Take, results: list[Completion] | Exception, seconds: float) -> dict[str, Any]:
        """Trim, check and choose among the candidates; write the ledger; the output record."""
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
            verdict = self._check(job, text) if text else {"passed": False, "failed": ["empty"]}
            cands.append({"text": text, "truncated": truncated, "verdict": verdict, "result": result,
                          "seed": candidate_seed(job.params.seed, c)})
        usable = [c for c in cands if c["text"]]
        if not usable:
            return self._fail(job.index, job.rid, job.record,
                              RecordError("the model returned an empty script", stage="script"), take=job.take)
        best = usable[choose([{"words": word_count(c["text"]), "failed": c["verdict"]["failed"]} for c in usable],
                             target)]
        text = best["text"]
        prompt_tokens = sum(c["result"].prompt_tokens for c in cands)
        completion_tokens = sum(c["result"].completion_tokens for c in cands)
        checks = dict(best["verdict"])
        if len(cands) > 1:
            checks["candidates"] = [{"seed": c["seed"], "words": word_count(c["text"]),
                                     "tokens": c["result"].completion_tokens, "passed": c["verdict"]["passed"],
                                     "failed": c["verdict"]["failed"], **({"truncated": True} if c["truncated"] else {})}
                                    for c in cands]
            checks["chosen"] = cands.index(best)
        script = {
            "text": text,
            "words": word_count(text),
            "template": self.template.ref,
            "persona": job.persona.name,
            "take": job.take,
            "backend": self.backend.name,
            "model": self.backend.model,
            "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
            "seconds": round(seconds, 3),
            "key": job.key,
        }
        if best["result"].host:
            script["host"] = best["result"].host
        if best["truncated"]:
            script["truncated"] = True
        script["checks"] = checks
        if self.ledger is not None:
            self.ledger.append(job.key, script)
        with self._stats_lock:
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
        self._count_checks(checks)
        out = self._require_checks(job.index, job.rid, job.record, job.take, script)
        if "error" in out:
            return out
        with self._stats_lock:
            self.stats.words += script["words"]
        self.tracker.complete(job.index, job.rid, take=job.take, words=script["words"], seconds=script["seconds"],
                              tokens=script["tokens"], checks={"passed": checks["passed"], "failed": checks["failed"]},
                              **({"host": script["host"]} if "host" in script else {}))
        return out

    def _require_checks(self, index: int, rid: str, record: dict[str, Any], take: int,
                        script: dict[str, Any]) -> dict[str, Any]:
        """``record`` with ``script``, or with an ``error`` when ``require_checks`` rejects it."""
        checks = script.get("checks") or {}
        if not self.options.require_checks or checks.get("passed", True):
            return {**record, "script": script}
        failed = checks.get("failed", [])
        if script.get("skipped"):  # counted as skipped already: undo, it is a failure now
            self.stats.skipped -= 1
        err = ChecksFailed(f"the script failed its checks: {', '.join(failed)}", stage="script",
                           hint="run without --require-checks to keep it, or try --best-of N",
                           checks=checks, text=script.get("text"))
        return self._fail(index, rid, record, err, take=take)

    def _take(self, index: int, record: dict[str, Any], take: int) -> dict[str, Any]:
        if self.longform is not None:
            return self.longform.take(index, record, take)
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
        """``(index, line, take)`` in input order; long-form work folders are claimed here,
        in this order, so they do not depend on which worker thread runs first."""
        for index, line in enumerate(lines):
            if line.record is None:
                yield index, line, 0
                continue
            for take in range(max(1, self.options.variants)):
                if self.longform is not None and "error" not in line.record:
                    self.longform.claim_folder(index, line.record, take)
                yield index, line, take

    def _process(self, item: tuple[int, InputLine, int]) -> dict[str, Any]:
        index, line, take = item
        self.check_cancel()
        passed = self._passthrough(index, line)
        if passed is not None or line.record is None:
            return passed or {}
        return self._take(index, line.record, take)

    def _batches(self, items: Iterable[tuple[int, InputLine, int]]) -> Iterator[dict[str, Any]]:
        """``--batch B`` on a batching backend: the takes of B records decode together, in order."""
        group: list[tuple[int, InputLine, int]] = []
        records: set[int] = set()

        def flush() -> Iterator[dict[str, Any]]:
            self.check_cancel()  # between batches: a cancelled job stops at the next group
            outs: list[dict[str, Any] | _Take] = []
            for index, line, take in group:
                passed = self._passthrough(index, line)
                if passed is not None or line.record is None:
                    outs.append(passed or {})
                else:
                    outs.append(self._prepare(index, line.record, take))
            jobs = [o for o in outs if isinstance(o, _Take)]
            if jobs:
                t0 = time.perf_counter()
                results = self._generate(jobs)
                seconds = time.perf_counter() - t0
                finished = {id(job): self._finish(job, res, seconds) for job, res in zip(jobs, results, strict=True)}
                outs = [finished[id(o)] if isinstance(o, _Take) else o for o in outs]
            for o in outs:
                assert isinstance(o, dict)
                yield o

        for item in items:
            if item[0] not in records and len(records) >= self.options.batch:
                yield from flush()
                group, records = [], set()
            group.append(item)
            records.add(item[0])
        if group:
            yield from flush()

    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield one output record per input line and take, in input order.

        :param total: number of input records if known (progress ``total`` is
            ``total * variants``).
        """
        if total is not None:
            self.stats.total = total * max(1, self.options.variants)
        jobs = max_in_flight(self.backend, self.options.jobs) if self.backend.supports_concurrency else 1
        lock = FolderLock(self.options.work_dir, "long-form work folder").acquire() if self.longform else None
        try:
            if self.longform is None and self.batched:
                yield from self._batches(self._items(lines))
            else:
                yield from ordered_map(self._process, self._items(lines), jobs, on_abort=self._abort)
        finally:
            if lock is not None:
                lock.release()
            self.session.close()
            self.stats.finish()


def run_script(
    sources: Iterable[str],
    options: ScriptOptions,
    *,
    backend: LLMBackend,
    emitter: Emitter,
    write: Any,
    checkpoint: str | None = None,
    stdin: Any = None,
    stdout: Any = None,
    shard: Any = None,
) -> StageStats:
    """Run the script stage over JSON Lines ``sources`` and ``write`` each output record.

    Counts the input when it is a regular file (for progress ``total``), opens
    the checkpoint ledger and streams records through :class:`ScriptStage`, which
    loads the backend on the first request that the ledger cannot serve
    (``model_load``) and always unloads it at the end (``model_unload``), also on
    errors and Ctrl-C.

    :param write: callable taking one output record (e.g. ``RecordWriter.write``).
    :param stdout: the stream ``write`` ends in, if any: checked not to be an input or the ledger.
    :param shard: a :class:`~ai_content_pipeline.shards.ShardRun` (``--shard K/N``): only its lines
        are processed and each record is tagged with ``_aicp``.
    :returns: the run's :class:`StageStats`.
    :raises UsageError: ``resume`` without ``checkpoint``, unreadable input, an output that is
        also an input, a checkpoint or work folder that cannot be written (before any model call).
    :raises BackendUnavailable: the backend cannot be loaded.
    """
    from ..errors import UsageError
    from ..files import check_output_dir
    from ..jsonl import count_records, read_records
    if options.resume and not checkpoint:
        raise UsageError("--resume needs --checkpoint PATH (the ledger of finished records)")
    sources = list(sources) or ["-"]
    check_run_paths(sources, checkpoint, stdout,
                    {"--persona": file_ref(options.persona), "--template": file_ref(options.template)})
    if options.words is not None or options.sections is not None or load_template(options.template).sections:
        check_output_dir(options.work_dir, "--work-dir")
    total = count_records(sources, stdin=stdin) if shard is None else shard.count(sources, stdin=stdin)
    ledger = Ledger(checkpoint) if checkpoint else None
    stage = ScriptStage(backend, options, emitter, ledger)
    lines = read_records(sources, stdin=stdin) if shard is None else shard.lines(sources, stdin=stdin)
    records = stage.run(lines, total=total)
    write = write if shard is None else shard.wrap(write)
    try:
        try:
            for record in records:
                write(record)
            if shard is not None:
                shard.finish()
        finally:
            getattr(records, "close", lambda: None)()  # at once when write() fails (| head -1)
    finally:
        if shard is not None:
            shard.close()
        if ledger is not None:
            ledger.close()
    emitter.emit("run_complete", stage="script", **stage.stats.as_dict())
    return stage.stats
