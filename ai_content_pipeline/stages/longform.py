"""Long-form scripts: a sectioned plan written chunk by chunk, checkpointed on disk.

A template with ``sections`` (or a run whose options carry ``sections``) is
written one section (*chunk*) at a time instead of in one long LLM call:

1. A *canonical pack* is asked for first: a JSON object (:class:`CanonicalPack`:
   title, key facts, names, numbers, outline) built from the record's ``topic``,
   ``notes`` and ``sources``, schema-constrained where the backend supports it.
2. Every chunk is asked with the pack, its section's brief and its word target (the token
   budget), after the previous section's request and last sentences as the host's own turn
   (:meth:`_RecordRun._messages`); templates also get a *rolling summary* of what earlier
   chunks said (the last sentence, two for the previous chunk, cut by pysbd, at most 40
   words per chunk; no model call).
3. A chunk streams into ``DIR/{id}/chunks/NN.part`` (written unbuffered, so
   every token is on disk as it arrives); when done, the file holds the cleaned
   text and is renamed to ``NN.txt`` and the chunk's entry goes to the ledger
   ``DIR/{id}/checkpoint.jsonl``.
4. A chunk shorter than its target by more than ``SHORTFALL_MARGIN`` is
   continued (at most ``MAX_CONTINUATIONS`` more requests); what is still
   missing is reported as the chunk's ``shortfall``.
5. Every reply is cleaned (:func:`clean_section`: instruction lines out, opened and closed on
   whole sentences) and every chunk checked (:class:`SectionCheck`); ``best_of`` candidates
   are written per chunk and :func:`~ai_content_pipeline.checks.choose` keeps one, whose
   sentences that still hold instruction text are dropped (:func:`drop_instructions`). So
   no plan line reaches the text and no join cuts a sentence.

Files per record (``DIR`` is ``ScriptOptions.work_dir``, ``{id}`` the record id,
``-takeN`` appended for takes after the first): ``pack.json``,
``pack.raw.txt`` (only when the pack reply did not validate), ``chunks/NN.txt``,
``checkpoint.jsonl`` and the stitched ``script.txt``.

On ``resume`` a chunk whose ledger entry and ``NN.txt`` (same SHA-256) are
present is reused, never regenerated; a leftover ``NN.part`` is discarded and
that chunk starts again. Without ``resume`` the record's earlier files are
removed and it starts over. A failed chunk stops its record (fail fast); the
record's ``error`` names the chunk, completed chunks stay on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..backends.base import Completion, GenerationParams, LLMBackend, collect_reply
from ..checks import (
    CHECK_NAMES,
    Checks,
    check_instructions,
    check_no_echo,
    choose,
    cut_joins,
    echo_phrases,
    ends_on_sentence,
    evaluate,
    fold,
    starts_on_sentence,
    trim_to_sentence,
)
from ..errors import AicpError, InputError, RecordError
from ..events import Emitter
from ..files import FolderLock, NameClaims, write_atomic
from ..jsonl import InputLine
from ..ledger import Ledger, request_key
from ..records import record_id, stage_fields, word_count
from ..templates import Persona, Section, Template, load_template, persona_voice
from ..text import clean_chunk, last_sentences, sentence_spans, split_sentences
from .common import refuse_overwrite, with_retries
from .entries import ChunkEntry, PackEntry, fits
from .plan import MIN_SECTION_WORDS, plan_for, scale_plan  # noqa: F401 (the long-form plan, importable here)
from .script import (
    SCRIPT,
    ScriptOptions,
    ScriptStage,
    ScriptStepConfig,
    candidate_seed,
    is_longform,
)

#: A chunk shorter than ``target * (1 - SHORTFALL_MARGIN)`` words is continued.
SHORTFALL_MARGIN = 0.2
#: At most this many continuation requests per chunk.
MAX_CONTINUATIONS = 2
#: Completion tokens allowed per target word (English prose is about 1.3-1.5).
TOKENS_PER_WORD = 1.6
#: The built-in template whose ``pack``/``continue`` prompts serve templates without them.
FALLBACK_PROMPTS = "podcast-longform"
#: Generation parameters of the canonical pack request.
PACK_TEMPERATURE = 0.2
PACK_MAX_TOKENS = 600
#: Seconds between ``chunk_progress`` events (at most one a second).
PROGRESS_INTERVAL = 1.0
#: Seeds: request ``n`` of a take (chunk ``n``, its continuations at ``n + 100·k``) gets the
#: take's seed + ``SEED_STRIDE · n``, far from the ``seed + take`` of the other takes.
SEED_STRIDE = 1000
#: Continuation ``k`` of chunk ``n`` asks with offset ``n + CONTINUATION_OFFSET · k``: above any
#: chunk number (a plan has at most a few dozen sections), so no two requests share a seed.
CONTINUATION_OFFSET = 100
#: Completion tokens added to every chunk request's budget, for the model's opening and closing
#: tokens (and so a tiny section still gets room for a sentence).
TOKEN_HEADROOM = 16
#: The fewest completion tokens any chunk request is allowed, whatever ``--max-tokens`` says.
MIN_CHUNK_TOKENS = 16
#: Words of the chunk so far that a continuation request repeats (as the assistant's turn): enough
#: for the model to pick up the thread, short enough to keep the prompt small.
CONTINUATION_TAIL_WORDS = 150
#: A continuation shorter than this many words is taken as "nothing more to say": stop asking.
MIN_CONTINUATION_WORDS = 5
#: Sentences of the previous section given to the next one as the host's own last turn.
PREVIOUS_SENTENCES = 2
#: Candidates added to a section when none of its ``best_of`` holds a whole sentence, or
#: ``MIN_KEPT_SHARE`` of the section's target words in whole sentences.
MAX_REGENERATIONS = 2
MIN_KEPT_SHARE = 0.25
#: Context keys that are instructions, not things to say: left out of the values a section
#: may repeat from its prompt (``no_echo``), so a brief read out counts as an echo.
_INSTRUCTION_KEYS = ("section", "sections", "summary", "chunk", "chunks", "target_words", "remaining_words")

_clock = time.monotonic

class CanonicalPack(BaseModel):
    """The facts every chunk shares, so sections agree on names and numbers.

    Lists are bounded (``maxItems``) so a schema-constrained reply stays short;
    strings are not: ``maxLength`` turns into a grammar that slows llama.cpp's
    sampling down badly, and ``PACK_MAX_TOKENS`` bounds the reply anyway.
    """

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    key_facts: list[str] = Field(min_length=1, max_length=5)
    names: list[str] = Field(max_length=5)
    numbers: list[str] = Field(max_length=4)
    outline: list[str] = Field(max_length=12)


def pack_schema() -> dict[str, Any]:
    """JSON Schema of :class:`CanonicalPack` (passed to ``backend.chat(json_schema=...)``)."""
    return CanonicalPack.model_json_schema()


def parse_pack(text: str) -> CanonicalPack:
    """Validate a pack reply: the JSON object in ``text`` (code fences or chatter around it allowed).

    :raises ValueError: no JSON object, bad JSON, or fields that break the schema.
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the reply holds no JSON object")
    try:
        return CanonicalPack.model_validate(orjson.loads(text[start:end + 1]))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "pack"
        raise ValueError(f"{where}: {first['msg']}") from exc


def rolling_summary(done: list[tuple[str, str]]) -> list[str]:
    """``["Section: last sentences", ...]`` for the earlier chunks ``[(section, text)]``.

    Cheap by design: no model call; one sentence per chunk, two for the previous one.
    """
    return [f"{name}: {last_sentences(text, 2 if i == len(done) - 1 else 1)}"
            for i, (name, text) in enumerate(done)]


def work_files(folder: Path) -> Iterator[tuple[str, str]]:
    """``("long-form work file", path)`` of the files a take writes in ``folder``: those there
    now (chunks are numbered) and the fixed ones."""
    for name in ("checkpoint.jsonl", "pack.json", "pack.raw.txt", "script.txt"):
        yield "long-form work file", str(folder / name)
    chunks = folder / "chunks"
    if chunks.is_dir():
        for path in sorted(chunks.glob("[0-9][0-9]*.txt")):
            yield "long-form work file", str(path)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

# -- a section's text: cleaned, checked, its instruction sentences dropped --------------------
_BULLET = re.compile(r"^[ \t]*(?:[-*•+][ \t]+|\d+[.)][ \t]+|>[ \t]*)")
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|`+)(?=\S)(.+?)(?<=\S)\1")
_RULE = re.compile(r"^[-=*_~#\s]*$")
#: A line of one sentence at most and this many words or fewer that holds instruction text is a
#: heading or label: dropped whole.
HEADING_WORDS = 12
_LEADING_KINDS = ("heading", "label", "numbering", "plan")
#: Clauses of the requests (split here) of at least ``MIN_CLAUSE_WORDS`` words are instructions
#: a sentence must not open with.
_CLAUSE = re.compile(r"[.!?;:\n]+")
MIN_CLAUSE_WORDS = 3
_INNER_END = re.compile(r"[.!?…][\"'”’)]*\s+\S")


def _instruction_line(line: str, plan_names: list[str]) -> bool:
    """Whether a whole line (list bullets and emphasis taken off) is instruction text: a short
    line (or one that opens with a heading or label) where :func:`~ai_content_pipeline.checks.check_instructions`
    finds some."""
    found = check_instructions(line, plan_names)
    if not found:
        return False
    if len(line.split()) <= HEADING_WORDS and not _INNER_END.search(line):
        return True  # short, and one sentence at most: a heading or a label
    return any(f.startswith(_LEADING_KINDS) and line.lstrip("#*_> \t").startswith(f.split(": ", 1)[1].lstrip("#*_ "))
               for f in found)


def _open_on_sentence(text: str) -> tuple[str, list[str]]:
    """``text`` from its first whole sentence: leading ellipses and commas dropped, then any
    sentence that opens in lower case (it carries on a sentence cut before it); ``(text, removed)``."""
    removed: list[str] = []
    for _ in range(3):
        text = text.lstrip(" \t\n.…,;:-–—")
        if not text or starts_on_sentence(text):
            break
        spans = sentence_spans(text)
        removed.append(spans[0].strip() if spans else text)
        text = text[len(spans[0]):] if spans else ""
    return (text.strip() if starts_on_sentence(text) else ""), removed


def clean_section(text: str, section: str, plan_names: list[str]) -> tuple[str, list[str]]:
    """A model's reply for a section made speakable: :func:`~ai_content_pipeline.text.clean_chunk`,
    then instruction lines (headings, labels, numbering, plan names, rules: :func:`_instruction_line`)
    dropped, list bullets and emphasis marks taken off (a list item said as a sentence), the text opened on its first whole
    sentence and cut back to its last (so a join never cuts one).

    :returns: ``(text, removed)``: ``text`` is left unfinished only when no sentence ends in
        it (it then fails ``complete``); ``removed`` the dropped lines and fragments (at most 80
        characters each).
    """
    removed: list[str] = []
    lines = []
    for line in clean_chunk(text, section).split("\n"):
        item = _BULLET.sub("", line)
        bare = _EMPHASIS.sub(r"\2", item).replace("**", "").strip()
        if line.strip() and (_RULE.match(line) or _instruction_line(bare, plan_names)):
            removed.append(line.strip()[:80])
            continue
        if item != line and bare and not ends_on_sentence(bare):
            bare += "."  # a list item is said as a sentence of its own
        lines.append(bare)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text, head = _open_on_sentence(text)
    removed += [h[:80] for h in head]
    whole = trim_to_sentence(text)
    if len(whole) < len(text.rstrip()):
        removed.append(text.rstrip()[len(whole):].strip()[:80])
    return whole, removed


class SectionCheck:
    """The checks of one long-form section: the template's checks less ``length`` and
    ``mentions`` (the stitched script has those), ``no_echo`` against what the section's
    requests say (``prompt``: its messages, the continuation prompt, every section name and
    brief) plus :func:`~ai_content_pipeline.checks.check_instructions` with the plan's names.

    :param context: the prompt context less its instruction keys (the section, the summary).
    :param requests: the section's requests (user messages, continuation prompt, every brief):
        a sentence that opens with one of their clauses reads an instruction out.
    :param earlier: the host's earlier turns in the request (the previous section's last
        sentences): a sentence of the section that only repeats one of them is dropped.
    """

    def __init__(self, checks: Checks, prompt: str, context: dict[str, Any], plan_names: list[str],
                 target_words: int, *, earlier: Iterable[str] = (), requests: Iterable[str] = ()) -> None:
        self.checks = checks
        self.prompt = prompt
        self.context = context
        self.plan_names = plan_names
        self.target_words = target_words
        requests = list(requests)
        # the requests are instructions through and through: none of their runs of words is
        # spared for holding a context value (a pack naming "people" must not hide a brief)
        self.phrases = echo_phrases(prompt, context) | echo_phrases("\n".join(requests), {})
        self.earlier = {fold(s) for text in earlier for s in split_sentences(text)} - {""}
        self.clauses = {c for text in requests for c in (fold(x) for x in _CLAUSE.split(text))
                        if len(c.split()) >= MIN_CLAUSE_WORDS}

    def requested(self, text: str) -> list[str]:
        """The requests' clauses (``MIN_CLAUSE_WORDS`` words or more) a sentence of ``text``
        opens with ("Say something new and funny." opens with "Say something new."), as
        ``"request: clause"``; ``[]`` when none."""
        found = []
        for sentence in split_sentences(text):
            folded = f"{fold(sentence)} "
            found += [f"request: {c}" for c in self.clauses if folded.startswith(f"{c} ")]
        return sorted(set(found))

    def leaks(self, text: str) -> list[str]:
        """Instruction text in ``text`` (``no_echo``'s findings and the plan's), or a sentence
        the host's earlier turn in the request said already; ``[]`` when none."""
        repeat = ["repeat: " + text.strip()[:40]] if fold(text) in self.earlier else []
        return [*check_no_echo(text, self.prompt, self.context, phrases=self.phrases),
                *check_instructions(text, self.plan_names), *self.requested(text), *repeat]

    def verdict(self, text: str) -> dict[str, Any]:
        """:func:`~ai_content_pipeline.checks.evaluate`'s result for ``text``, with the plan's
        instruction text counted as ``no_echo`` (when that check is on)."""
        result = evaluate(text, self.checks, context=self.context, prompt=self.prompt,
                          target_words=self.target_words, phrases=self.phrases)
        found = [*check_instructions(text, self.plan_names), *self.requested(text)] if self.checks.no_echo else []
        if found:
            details = result.setdefault("details", {})
            details["no_echo"] = [*details.get("no_echo", []), *found]
            failed = set(result["failed"]) | {"no_echo"}
            result["failed"] = [n for n in CHECK_NAMES if n in failed] + [n for n in result["failed"]
                                                                           if n not in CHECK_NAMES]
            result["passed"] = False
            result["details"] = {n: details[n] for n in result["failed"] if n in details}
        return result


def drop_instructions(text: str, check: SectionCheck) -> tuple[str, list[str]]:
    """``text`` less every sentence holding instruction text (:meth:`SectionCheck.leaks`);
    paragraphs kept. ``(text, removed)``; whole sentences go, so the text still ends on one."""
    removed: list[str] = []
    paragraphs = []
    for para in text.split("\n\n"):
        kept = []
        for sentence in sentence_spans(para):
            if sentence.strip() and check.leaks(sentence):
                removed.append(sentence.strip()[:80])
            else:
                kept.append(sentence)
        joined = re.sub(r"[ \t]{2,}", " ", "".join(kept)).strip()
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs), removed


class LongformStage(ScriptStage):
    """The script stage for sectioned templates: each take is written chunk by chunk.

    It overrides one hook of :class:`~ai_content_pipeline.stages.script.ScriptStage`, the
    generation of a take (:meth:`_take`), and keeps the rest of the take skeleton: the
    persona rule, resume from the ledger (finished records), the counts, ``require_checks``
    and the record events. The registry builds one for a ``script`` step whose template has
    sections or whose ``options`` carry ``sections`` (:data:`LONGFORM`). Work folders are claimed in input order
    (:meth:`_items`), and the ``work_dir`` is locked while the stage runs.

    :raises ConfigError: a bad plan, or prompts that do not compile.
    :raises UsageError: unknown template or persona.
    """

    def __init__(self, backend: LLMBackend, options: ScriptOptions | None = None,
                 emitter: Emitter | None = None, ledger: Ledger | None = None, *,
                 template: Template | None = None) -> None:
        super().__init__(backend, options, emitter, ledger, template=template)
        self.plan = plan_for(self.template, self.options.sections, self.options.words)
        self.work_dir = Path(self.options.work_dir)
        self.names = NameClaims()
        self._folders: dict[tuple[int, int], str] = {}
        prompts = self.template
        if not {"pack", "pack_system", "continue"} <= set(self.template.prompts):
            prompts = load_template(FALLBACK_PROMPTS)
        self.prompts = prompts
        #: What every section is checked for: the template's checks less those of the whole script.
        self.section_checks = self.template.checks.model_copy(update={"length": None, "mentions": []})

    @property
    def batched(self) -> bool:
        """Never: chunks stream one request at a time."""
        return False

    # -- a whole run ---------------------------------------------------------------
    def _items(self, lines: Iterable[InputLine]) -> Iterator[tuple[int, InputLine, int]]:
        """As the script stage's, claiming each take's work folder here, in input order, so
        the names do not depend on which worker thread runs first."""
        for index, line, take in super()._items(lines):
            if line.record is not None and "error" not in line.record:
                self.claim_folder(index, line.record, take)
            yield index, line, take

    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Iterator[dict[str, Any]]:
        """As :meth:`ScriptStage.run`, holding the lock of ``work_dir`` while it runs.

        :raises UsageError: another run holds the work folder.
        """
        lock = FolderLock(self.options.work_dir, "long-form work folder").acquire()
        try:
            yield from super().run(lines, total)
        finally:
            lock.release()

    def output_folders(self) -> list[str]:
        """``work_dir``: where :meth:`planned_files` are."""
        return [self.options.work_dir]

    def planned_files(self, lines: Iterable[InputLine]) -> Iterator[tuple[str, str]]:
        """The work files an earlier run may have left in each take's folder (named as
        :meth:`_items` names them): pack, raw pack, ledger, stitched script, chunks."""
        names = NameClaims()
        for _, line, take in super()._items(lines):
            if line.record is None or "error" in line.record:
                continue
            rid = record_id(line.record)
            yield from work_files(self.work_dir / names.claim(rid if take == 0 else f"{rid}-take{take}"))

    # -- a record ------------------------------------------------------------------
    def claim_folder(self, index: int, record: dict[str, Any], take: int) -> str:
        """Claim the work folder name of record ``index``, take ``take``: ``{id}`` (take 0) or
        ``{id}-take{n}``, with ``-2``, ``-3``… when an earlier record of the run holds it.
        Called in input order (:meth:`_items`), so resumed runs get the same names."""
        rid = record_id(record)
        name = self.names.claim(rid if take == 0 else f"{rid}-take{take}")
        self._folders[(index, take)] = name
        return name

    def _take(self, index: int, record: dict[str, Any], take: int) -> dict[str, Any]:
        """The generation hook: :meth:`_write_take`, then the take log (``--log``) gets the take."""
        out = self._write_take(index, record, take)
        if self.takelog is not None and not (out.get("script") or {}).get("skipped"):
            self.takelog.add_script(record_id(record), take, out.get("script"), error=out.get("error"),
                                    template=self.template.ref, backend=self.backend.name,
                                    model=self.backend.model)
        return out

    def _write_take(self, index: int, record: dict[str, Any], take: int) -> dict[str, Any]:
        """Write the long-form script of one record and take; return the output record.

        Shape of ``script``: the usual fields (template, persona, take, backend,
        model, tokens, seconds, key) plus ``text``, ``words``, ``path`` (the
        stitched text file), ``dir``, ``pack`` (path, tokens, seconds) and
        ``chunks`` (index, section, words, target, tokens, seconds,
        first_token_seconds, continuations, shortfall, resumed, checks: the section's
        checks, with ``removed``, ``candidates`` and ``chosen``) and ``checks`` (with
        ``sections`` and ``cut_joins``: :meth:`_RecordRun.checks`).
        """
        rid = record_id(record)
        try:
            persona = self.record_persona(record)
            self.template.check_fields(record)
        except AicpError as exc:
            err = exc if isinstance(exc, RecordError) else InputError(exc.message, hint=exc.hint, stage="script")
            return self._fail(index, rid, record, err, take=take)
        base = self.options.params_for(self.template, take)
        name = self._folders.pop((index, take), None) or self.claim_folder(index, record, take)
        run_key = request_key(  # the folder too: two identical records must not share one entry
            stage="script-longform", record={k: v for k, v in record.items() if k not in stage_fields()},
            template=self.template.ref, plan=[s.model_dump() for s in self.plan], persona=persona.name,
            backend=self.backend.name, model=self.backend.model, params=base.as_dict(), take=take,
            margin=SHORTFALL_MARGIN, continuations=MAX_CONTINUATIONS, folder=name,
            **({"best_of": self.options.best_of} if self.options.best_of > 1 else {}))
        served = self._served(run_key)
        if served is not None:
            return self._skip(index, rid, record, take, run_key, served, served.get("checks") or {"passed": True})

        self.tracker.start(index, rid, take=take, persona=persona.name, chunks=len(self.plan))
        self.session.ensure()
        folder = self.work_dir / name
        t0 = _clock()
        try:
            script = _RecordRun(self, rid, record, persona, take, base, run_key, folder).run()
        except RecordError as exc:
            return self._fail(index, rid, record, exc, take=take)
        script["seconds"] = round(_clock() - t0, 3)
        return self._accept(index, rid, record, take, script, chunks=len(script["chunks"]))


class _RecordRun:
    """One record's long-form run: pack, chunks, stitching (see the module docstring)."""

    def __init__(self, stage: LongformStage, rid: str, record: dict[str, Any], persona: Persona,
                 take: int, base: GenerationParams, run_key: str, folder: Path) -> None:
        self.stage = stage
        self.backend = stage.backend
        self.emitter = stage.emitter
        self.options = stage.options
        self.rid = rid
        self.take = take
        self.base = base
        self.run_key = run_key
        self.folder = folder
        self.chunks_dir = folder / "chunks"
        self.ctx = stage.template.context(record, persona, catchphrase=persona.catchphrase_for(record, take),
                                          sections=[s.model_dump() for s in stage.plan], chunks=len(stage.plan),
                                           **self.options.extra_context)
        self.tokens = {"prompt": 0, "completion": 0}
        self.persona_voice = persona_voice(persona)

    # -- files ---------------------------------------------------------------------
    def _prepare(self) -> None:
        if not self.stage.may_replace(self.folder):
            for _, earlier in work_files(self.folder):
                if os.path.lexists(earlier):
                    raise refuse_overwrite(earlier, "long-form work file")
        if not self.options.resume:
            for name in ("checkpoint.jsonl", "pack.json", "pack.raw.txt", "script.txt"):
                (self.folder / name).unlink(missing_ok=True)
            if self.chunks_dir.is_dir():
                for path in self.chunks_dir.glob("[0-9][0-9]*.*"):
                    path.unlink()
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        for part in sorted(self.chunks_dir.glob("*.part")):
            part.unlink()
            self.emitter.message(f"record {self.rid}: discarded unfinished chunk {part.name}", "warning")

    def _params(self, max_tokens: int, offset: int, candidate: int = 0) -> GenerationParams:
        """Parameters of request ``offset`` of this take (chunk number, plus
        ``CONTINUATION_OFFSET`` per continuation) for section candidate ``candidate``:
        ``max_tokens`` capped by ``--max-tokens`` but never below ``MIN_CHUNK_TOKENS``; the seed
        ``SEED_STRIDE · offset`` from the take's, then derived per candidate as the script
        stage derives a take's (:func:`~ai_content_pipeline.stages.script.candidate_seed`;
        candidate 0 keeps it)."""
        if self.options.max_tokens is not None:
            max_tokens = min(max_tokens, self.options.max_tokens)
        seed = None if self.base.seed is None else candidate_seed(self.base.seed + SEED_STRIDE * offset, candidate)
        return GenerationParams(self.base.temperature, self.base.top_p, max(MIN_CHUNK_TOKENS, max_tokens), seed)

    def _collect(self, messages: list[dict[str, str]], params: GenerationParams, *,
                 json_schema: dict[str, Any] | None = None,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        result = collect_reply(self.backend, messages, params, json_schema=json_schema, on_text=on_text)
        self.tokens["prompt"] += result.prompt_tokens
        self.tokens["completion"] += result.completion_tokens
        return result

    def _retrying(self, fn: Any, what: str) -> Any:
        return with_retries(fn, self.options.retries, on_retry=lambda n, e: self.emitter.message(
            f"record {self.rid}: {what}: retry {n} after: {e.message}", "warning"))

    # -- the run -------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._prepare()
        ledger = Ledger(self.folder / "checkpoint.jsonl")
        try:
            pack_info = self._pack(ledger)
            done: list[tuple[str, str]] = []
            entries = []
            for i, section in enumerate(self.stage.plan, start=1):
                self.stage.check_cancel()  # between chunks: finished ones stay checkpointed
                text, entry = self._chunk(ledger, i, section, done)
                done.append((section.name, text))
                entries.append(entry)
        finally:
            ledger.close()
        text = "\n\n".join(t for _, t in done if t)
        path = self.folder / "script.txt"
        write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
        return {
            **self._script(text, path, entries, pack_info),
            "checks": self.checks(text, entries, [t for _, t in done if t]),
        }

    def checks(self, text: str, entries: list[dict[str, Any]] | None = None,
               pieces: list[str] | None = None) -> dict[str, Any]:
        """The checks of the stitched ``text``: the template's (``no_echo`` against the system
        prompt, every section brief and a chunk prompt; ``length`` against the plan's total),
        then what its sections' checks found and its joins.

        :param entries: the chunk entries (their ``checks``): a check a section failed is failed
            here too, its details added to the list of that check's (``complete``: the first).
        :param pieces: the section texts in order: a join that cuts a sentence fails ``complete``.
        :returns: :func:`~ai_content_pipeline.checks.evaluate`'s shape plus ``sections``
            (``[{"index", "section", "failed"}]``, one per section) and ``cut_joins`` (the joins,
            1-based, between sections ``n`` and ``n + 1`` that cut a sentence; ``[]``).
        """
        plan = self.stage.plan
        i = min(2, len(plan))
        user = self.stage.template.render("user", {**self.ctx, "chunk": i, "section": plan[i - 1].model_dump(),
                                              "target_words": plan[i - 1].words, "summary": []})
        prompt = "\n".join([self.stage.template.render("system", self.ctx), user, *(s.brief for s in plan)])
        result = evaluate(text, self.stage.template.checks, context=self.ctx, prompt=prompt,
                          target_words=sum(s.words for s in plan))
        failed = set(result["failed"])
        details = dict(result.get("details") or {})
        sections = []
        for entry in entries or []:
            verdict = entry.get("checks") or {"failed": []}
            sections.append({"index": entry["index"], "section": entry["section"], "failed": list(verdict["failed"])})
            for name in verdict["failed"]:
                failed.add(name)
                detail = (verdict.get("details") or {}).get(name)
                prior = details.get(name)
                if isinstance(detail, list) and (prior is None or isinstance(prior, list)):
                    details[name] = [*(prior or []), *(d for d in detail if d not in (prior or []))]
                elif detail is not None and prior is None:
                    details[name] = detail
        joins = cut_joins(pieces) if pieces else []
        if joins:
            failed.add("complete")
            details.setdefault("complete", {"cut_joins": joins})
        order = [n for n in CHECK_NAMES if n in failed] + sorted(failed - set(CHECK_NAMES))
        out: dict[str, Any] = {"passed": not order, "failed": order}
        if details:
            out["details"] = {n: details[n] for n in order if n in details}
        if entries is not None:
            out["sections"] = sections
            out["cut_joins"] = joins
        return out

    def _script(self, text: str, path: Path, entries: list[dict[str, Any]],
                pack_info: dict[str, Any]) -> dict[str, Any]:
        return {
            "text": text,
            "words": word_count(text),
            "path": str(path),
            "dir": str(self.folder),
            "chunks": entries,
            "pack": pack_info,
            "template": self.stage.template.ref,
            "persona": self.ctx["persona"]["name"],
            "persona_voice": self.persona_voice,
            "take": self.take,
            "backend": self.backend.name,
            "model": self.backend.model,
            "tokens": dict(self.tokens),
            "key": self.run_key,
        }

    def _pack(self, ledger: Ledger) -> dict[str, Any]:
        key = request_key(run=self.run_key, part="pack")
        path = self.folder / "pack.json"
        entry = ledger.get(key)
        if self.options.resume and fits(PackEntry, entry) and path.is_file():
            assert entry is not None
            try:
                self.ctx["pack"] = parse_pack(path.read_text(encoding="utf-8")).model_dump()
                return {**entry, "resumed": True}
            except (OSError, ValueError):
                pass  # damaged on disk: ask again
        prompts = self.stage.prompts
        messages = [{"role": "system", "content": prompts.render("pack_system", self.ctx)},
                    {"role": "user", "content": prompts.render("pack", self.ctx)}]
        schema = pack_schema() if self.backend.supports_json_schema else None
        params = GenerationParams(PACK_TEMPERATURE, self.base.top_p, PACK_MAX_TOKENS, self.base.seed)
        result = self._retrying(lambda: self._collect(messages, params, json_schema=schema), "canonical pack")
        try:
            pack = parse_pack(result.text)
        except ValueError as exc:
            raw = self.folder / "pack.raw.txt"
            write_atomic(raw, lambda fh: fh.write(result.text.encode("utf-8")))
            first = self.stage.plan[0].name
            raise RecordError(f"chunk 1 ({first}): the canonical pack reply is not valid: {exc}",
                              stage="script", hint=f"the raw reply is kept in {raw}", chunk=1,
                              section=first, part="pack", raw=str(raw)) from exc
        write_atomic(path, lambda fh: fh.write(orjson.dumps(pack.model_dump(), option=orjson.OPT_INDENT_2)))
        self.ctx["pack"] = pack.model_dump()
        info = {"path": str(path), "tokens": {"prompt": result.prompt_tokens, "completion": result.completion_tokens},
                "seconds": round(result.seconds, 3), "key": key}
        ledger.append(key, info)
        return info

    def _chunk(self, ledger: Ledger, i: int, section: Section,
               done: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
        key = request_key(run=self.run_key, chunk=i)
        txt = self.chunks_dir / f"{i:02d}.txt"
        entry = ledger.get(key)
        ctx = {**self.ctx, "chunk": i, "section": section.model_dump(), "target_words": section.words,
               "summary": rolling_summary(done)}
        if self.options.resume and fits(ChunkEntry, entry) and entry is not None and entry["index"] == i \
                and txt.is_file():
            text = txt.read_text(encoding="utf-8")
            if _sha256(text) == entry.get("sha256"):
                entry = {**entry, "resumed": True}
                if entry.get("checks") is None:
                    entry["checks"] = self._section_check(ctx, done).verdict(text)
                self._complete_event(i, entry)
                return text, entry
            self.emitter.message(f"record {self.rid}: chunk {i} changed on disk; writing it again", "warning")
        self.emitter.chunk_start(self.rid, i, section.name, section.words)
        try:
            try:
                text, entry = self._retrying(lambda: self._write_chunk(i, section, ctx, done), f"chunk {i}")
            except OSError as exc:  # a full disk: name the chunk file and the free space
                from ..faults import os_error

                raise os_error(exc, self.chunks_dir / f"{i:02d}.part") from exc
        except RecordError as exc:
            raise RecordError(f"chunk {i} ({section.name}) failed: {exc.message}", stage="script",
                              hint=exc.hint or "run again with --resume to keep the completed chunks",
                              chunk=i, section=section.name, dir=str(self.folder)) from exc
        entry["key"] = key
        ledger.append(key, entry)
        self._complete_event(i, entry)
        return text, entry

    def _complete_event(self, i: int, entry: dict[str, Any]) -> None:
        self.emitter.chunk_complete(self.rid, i, **{k: v for k, v in entry.items()
                                                    if k not in ("index", "sha256", "checks")})

    def _messages(self, i: int, ctx: dict[str, Any], done: list[tuple[str, str]]) -> list[dict[str, str]]:
        """The chat of section ``i``: the system prompt; for a later section the previous one's
        request and its last ``PREVIOUS_SENTENCES`` sentences as the host's own turn (the model
        carries on its own words instead of reading a quoted summary out); this section's request."""
        template = self.stage.template
        messages = [{"role": "system", "content": template.render("system", ctx)}]
        if done and i > 1 and done[-1][1]:
            before = self.stage.plan[i - 2]
            earlier = {**ctx, "chunk": i - 1, "section": before.model_dump(), "target_words": before.words,
                       "summary": rolling_summary(done[:-1])}
            messages += [{"role": "user", "content": template.render("user", earlier)},
                         {"role": "assistant", "content": last_sentences(done[-1][1], PREVIOUS_SENTENCES)}]
        messages.append({"role": "user", "content": template.render("user", ctx)})
        return messages

    def _section_check(self, ctx: dict[str, Any], done: list[tuple[str, str]]) -> SectionCheck:
        """The checks of one section, against what its requests say (:class:`SectionCheck`)."""
        messages = self._messages(ctx["chunk"], ctx, done)
        follow = self.stage.prompts.render("continue", {**ctx, "remaining_words": ctx["target_words"]})
        prompt = "\n".join([*(m["content"] for m in messages if m["role"] != "assistant"), follow,
                            *(f"{s.name}. {s.brief}" for s in self.stage.plan)])
        context = {k: v for k, v in ctx.items() if k not in _INSTRUCTION_KEYS}
        if isinstance(context.get("pack"), dict):  # the outline restates the plan: not a thing to say
            context["pack"] = {k: v for k, v in context["pack"].items() if k != "outline"}
        earlier = [m["content"] for m in messages if m["role"] == "assistant"]
        requests = [*(m["content"] for m in messages if m["role"] == "user"), follow,
                    *(s.brief for s in self.stage.plan)]
        return SectionCheck(self.stage.section_checks, prompt, context, [s.name for s in self.stage.plan],
                            ctx["target_words"], earlier=earlier, requests=requests)

    def _write_chunk(self, i: int, section: Section, ctx: dict[str, Any],
                     done: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
        """Write one section: ``best_of`` candidates (more, up to ``MAX_REGENERATIONS``, while
        none holds ``MIN_KEPT_SHARE`` of the target in whole sentences), each streamed into ``NN.part``, continued while short,
        cleaned (:func:`clean_section`) and checked (:class:`SectionCheck`); the one
        :func:`~ai_content_pipeline.checks.choose` keeps loses what instruction text is left
        (:func:`drop_instructions`) and is renamed to ``NN.txt``."""
        messages = self._messages(i, ctx, done)
        check = self._section_check(ctx, done)
        part = self.chunks_dir / f"{i:02d}.part"
        t0 = _clock()
        pieces: list[str] = []
        last_progress = t0
        tokens = {"prompt": 0, "completion": 0}
        cands: list[dict[str, Any]] = []

        with open(part, "wb", buffering=0) as fh:
            def on_text(delta: str) -> None:
                nonlocal last_progress
                fh.write(delta.encode("utf-8"))
                pieces.append(delta)
                now = _clock()
                if now - last_progress >= PROGRESS_INTERVAL:
                    last_progress = now
                    so_far = "".join(pieces)
                    self.emitter.chunk_progress(self.rid, i, len(so_far), word_count(so_far))

            def ask(msgs: list[dict[str, str]], words: int, offset: int, candidate: int) -> Completion:
                params = self._params(math.ceil(words * TOKENS_PER_WORD) + TOKEN_HEADROOM, offset, candidate)
                result = self._collect(msgs, params, on_text=on_text)
                tokens["prompt"] += result.prompt_tokens
                tokens["completion"] += result.completion_tokens
                return result

            wanted = self.options.best_of
            while len(cands) < wanted:
                if cands:  # the file holds the candidate now streaming
                    fh.seek(0)
                    fh.truncate()
                    pieces.clear()
                cand = self._candidate(i, section, ctx, messages, len(cands), ask, on_text, check)
                cands.append(cand)
                if (len(cands) == wanted and wanted < self.options.best_of + MAX_REGENERATIONS
                        and not any(word_count(c["final"]) >= section.words * MIN_KEPT_SHARE for c in cands)):
                    wanted += 1
            usable = [c for c in cands if c["final"]]
            if usable:
                best = usable[choose([{"words": word_count(c["final"]), "failed": c["verdict"]["failed"]}
                                      for c in usable], section.words)]
            else:  # every candidate was instruction text or cut: the section is left out, not read out
                best = cands[0]
                self.emitter.message(f"record {self.rid}: chunk {i} ({section.name}): no candidate kept a "
                                     "whole sentence that is not instruction text; the section is left out",
                                     "warning")
            text = best["final"]
            fh.seek(0)
            fh.truncate()
            fh.write(text.encode("utf-8"))
            os.fsync(fh.fileno())
        os.replace(part, part.with_suffix(".txt"))
        verdict = check.verdict(text) if text else {"passed": False, "failed": ["empty"]}
        if best["removed"]:
            verdict["removed"] = best["removed"]
        if len(cands) > 1:
            verdict["candidates"] = [{"seed": c["seed"], "words": word_count(c["text"]), "tokens": c["tokens"],
                                      "passed": c["verdict"]["passed"], "failed": c["verdict"]["failed"]}
                                     for c in cands]
            verdict["chosen"] = cands.index(best)
        words = word_count(text)
        shortfall = max(0, section.words - words)
        if words < section.words * (1 - SHORTFALL_MARGIN):
            self.emitter.message(f"record {self.rid}: chunk {i} ({section.name}) is {shortfall} words "
                                 f"short of its {section.words}-word target", "warning")
        return text, {
            "index": i, "section": section.name, "words": words, "target": section.words,
            "tokens": tokens, "seconds": round(_clock() - t0, 3),
            "first_token_seconds": None if best["first_token"] is None else round(best["first_token"], 3),
            "continuations": best["continuations"], "shortfall": shortfall, "sha256": _sha256(text),
            "checks": verdict,
        }

    def _candidate(self, i: int, section: Section, ctx: dict[str, Any], messages: list[dict[str, str]],
                   candidate: int, ask: Callable[..., Completion], on_text: Callable[[str], None],
                   check: SectionCheck) -> dict[str, Any]:
        """One candidate of section ``i``: its first reply, continued while short (each reply
        cleaned by :func:`clean_section`, so a continuation follows whole sentences), checked.

        :returns: ``{"text", "final", "removed", "verdict", "seed", "tokens", "first_token",
            "continuations"}``: ``text`` as checked, ``final`` with instruction sentences
            dropped (``""`` when nothing whole is left), ``removed`` what cleaning took out.
        """
        names = [s.name for s in self.stage.plan]
        completion = 0
        first = ask(messages, section.words, i, candidate)
        completion += first.completion_tokens
        text, removed = clean_section(first.text, section.name, names)
        continuations = 0
        while (ends_on_sentence(text) and word_count(text) < section.words * (1 - SHORTFALL_MARGIN)
               and continuations < MAX_CONTINUATIONS):
            continuations += 1
            remaining = section.words - word_count(text)
            tail = " ".join(text.split()[-CONTINUATION_TAIL_WORDS:])
            follow = {"role": "user",
                      "content": self.stage.prompts.render("continue", {**ctx, "remaining_words": remaining})}
            on_text("\n\n")
            reply = ask([*messages, {"role": "assistant", "content": tail}, follow], remaining,
                        i + CONTINUATION_OFFSET * continuations, candidate)
            completion += reply.completion_tokens
            more, gone = clean_section(reply.text, section.name, names)
            removed += gone
            if word_count(more) < MIN_CONTINUATION_WORDS:
                break
            text = f"{text}\n\n{more}"
        verdict = check.verdict(text) if text else {"passed": False, "failed": ["empty"]}
        final, gone = drop_instructions(text, check) if text else ("", [])
        paragraphs = final.split("\n\n")
        if not (ends_on_sentence(final) and starts_on_sentence(final)) or cut_joins(paragraphs):
            final = ""  # never written: it would cut a sentence
        seed = self._params(1, i, candidate).seed
        return {"text": text, "final": final, "removed": removed + gone, "verdict": verdict, "seed": seed,
                "tokens": completion, "first_token": first.first_token_seconds, "continuations": continuations}


def _check_plan(step: ScriptStepConfig) -> None:
    """A chain step's long-form plan (``params.sections``), checked when the chain file is read.

    :raises ConfigError: a bad section or word count; its ``loc`` is ``("params", "sections")``.
    """
    if not step.params.get("sections"):
        return
    try:
        plan_for(load_template(step.template), step.params["sections"], step.params.get("words"))
    except AicpError as exc:
        exc.loc = ("params", "sections")  # type: ignore[attr-defined]
        raise


#: Long-form refines the ``script`` kind: the registry builds a :class:`LongformStage` for a
#: run whose template has sections or whose options carry a plan (:func:`is_longform`).
LONGFORM = dataclasses.replace(SCRIPT, stage=LongformStage, applies=is_longform, check_step=_check_plan)
