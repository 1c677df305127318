"""The script stage: records in, the same records with a generated ``script`` out.

Per input record and take: pick the persona (the record's ``persona``/``dj``
field, else the stage default), render the template's chat messages, compute
the request key, serve it from the checkpoint ledger on ``--resume`` or ask the
LLM backend, trim the model's chatter and add the ``script`` object::

    {"text": str, "words": int, "template": "name@version", "persona": str,
     "take": int, "backend": str, "model": str,
     "tokens": {"prompt": int, "completion": int}, "seconds": float, "key": str}

Failures that concern one record become its ``error`` object; the run goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import GenerationParams, LLMBackend, complete
from ..errors import AicpError, InputError, RecordError
from ..events import Emitter
from ..files import FolderLock
from ..jsonl import InputLine
from ..ledger import Ledger, request_key
from ..records import record_id, word_count
from ..templates import (
    DEFAULT_PERSONA,
    Persona,
    Template,
    load_persona,
    load_template,
    persona_for_record,
)
from .common import Stage, StageStats, check_run_paths, ordered_map, with_retries

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
    """

    template: str = "song-intro"
    persona: str | None = None
    variants: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    jobs: int = 1
    retries: int = 0
    resume: bool = False
    strict: bool = False
    extra_context: dict[str, Any] = field(default_factory=dict)
    words: int | None = None
    sections: list[dict[str, Any]] | None = None
    work_dir: str = "aicp-out/longform"

    def validate(self) -> None:
        """Load the template and default persona now.

        :raises UsageError: unknown template or persona. :raises ConfigError: invalid file.
        """
        load_template(self.template)
        if self.persona:
            load_persona(self.persona)

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
    """Whether a ledger value is a script that can be served again (text and word count)."""
    return (isinstance(value, dict) and isinstance(value.get("text"), str) and bool(value["text"].strip())
            and isinstance(value.get("words"), int))


class ScriptStage(Stage):
    """Generate scripts for records with one LLM backend.

    :param backend: an :class:`~ai_content_pipeline.backends.base.LLMBackend` (loaded lazily).
    :param options: :class:`ScriptOptions`.
    :param emitter: where record/progress events go.
    :param ledger: checkpoint ledger; every finished take is appended to it.
    :raises UsageError: unknown template (at construction).
    """

    stage = "script"

    def __init__(self, backend: LLMBackend, options: ScriptOptions | None = None,
                 emitter: Emitter | None = None, ledger: Ledger | None = None) -> None:
        options = options or ScriptOptions()
        self.options: ScriptOptions
        self.template = load_template(options.template)  # unknown template: usage error first
        super().__init__(backend, options, emitter, ledger)
        self.longform: Any = None  # a LongformWriter for sectioned templates
        if self.template.sections or self.options.sections:
            from .longform import LongformWriter
            self.longform = LongformWriter(self)

    # -- one take ----------------------------------------------------------------
    def request(self, record: dict[str, Any], persona: Persona, take: int) -> tuple[list[dict[str, str]], GenerationParams, str]:
        """Messages, parameters and request key of one take (raises ``InputError``)."""
        messages = self.template.messages(record, persona, take=take, **self.options.extra_context)
        params = self.options.params_for(self.template, take)
        key = request_key(stage="script", messages=messages, backend=self.backend.name,
                          model=self.backend.model, params=params.as_dict(), take=take,
                          template=self.template.ref)
        return messages, params, key

    def _take(self, index: int, record: dict[str, Any], take: int) -> dict[str, Any]:
        if self.longform is not None:
            return self.longform.take(index, record, take)
        rid = record_id(record)
        try:
            persona = record_persona(record, self.options.persona)
            messages, params, key = self.request(record, persona, take)
        except AicpError as exc:
            err = InputError(exc.message, hint=exc.hint, stage="script") if not isinstance(exc, RecordError) else exc
            return self._fail(index, rid, record, err, take=take)

        if self.options.resume and self.ledger is not None and reusable_script(self.ledger.get(key)):
            script = dict(self.ledger.get(key) or {})
            script["skipped"] = True
            self.tracker.skipped(index, rid, take=take, key=key)
            return {**record, "script": script}

        self.tracker.start(index, rid, take=take, persona=persona.name)
        self.session.ensure()
        try:
            result = with_retries(
                lambda: complete(self.backend, messages, params), self.options.retries,
                on_retry=lambda n, e: self.emitter.message(f"record {rid}: retry {n} after: {e.message}", "warning"),
            )
        except RecordError as exc:
            return self._fail(index, rid, record, exc, take=take)
        text = trim_chatter(result.text)
        if not text:
            return self._fail(index, rid, record, RecordError("the model returned an empty script", stage="script"),
                              take=take)
        script = {
            "text": text,
            "words": word_count(text),
            "template": self.template.ref,
            "persona": persona.name,
            "take": take,
            "backend": self.backend.name,
            "model": self.backend.model,
            "tokens": {"prompt": result.prompt_tokens, "completion": result.completion_tokens},
            "seconds": round(result.seconds, 3),
            "key": key,
        }
        if result.done_reason == "length":
            script["truncated"] = True
        if self.ledger is not None:
            self.ledger.append(key, script)
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        self.stats.words += script["words"]
        self.tracker.complete(index, rid, take=take, words=script["words"], seconds=script["seconds"],
                              tokens=script["tokens"])
        return {**record, "script": script}

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

    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield one output record per input line and take, in input order.

        :param total: number of input records if known (progress ``total`` is
            ``total * variants``).
        """
        if total is not None:
            self.stats.total = total * max(1, self.options.variants)
        jobs = self.options.jobs if self.backend.supports_concurrency else 1
        lock = FolderLock(self.options.work_dir, "long-form work folder").acquire() if self.longform else None
        try:
            yield from ordered_map(self._process, self._items(lines), jobs)
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
) -> StageStats:
    """Run the script stage over JSON Lines ``sources`` and ``write`` each output record.

    Counts the input when it is a regular file (for progress ``total``), opens
    the checkpoint ledger and streams records through :class:`ScriptStage`, which
    loads the backend on the first request that the ledger cannot serve
    (``model_load``) and always unloads it at the end (``model_unload``), also on
    errors and Ctrl-C.

    :param write: callable taking one output record (e.g. ``RecordWriter.write``).
    :param stdout: the stream ``write`` ends in, if any: checked not to be an input or the ledger.
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
    check_run_paths(sources, checkpoint, stdout)
    if options.words is not None or options.sections is not None or load_template(options.template).sections:
        check_output_dir(options.work_dir, "--work-dir")
    total = count_records(sources, stdin=stdin)
    ledger = Ledger(checkpoint) if checkpoint else None
    stage = ScriptStage(backend, options, emitter, ledger)
    try:
        for record in stage.run(read_records(sources, stdin=stdin), total=total):
            write(record)
    finally:
        if ledger is not None:
            ledger.close()
    emitter.emit("run_complete", stage="script", **stage.stats.as_dict())
    return stage.stats
