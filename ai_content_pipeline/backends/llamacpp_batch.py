"""llama.cpp's continuous batch decoder: many sequences through one context, one
``llama_decode`` per step (:class:`BatchDecoder`), used by
:meth:`~ai_content_pipeline.backends.llamacpp.LlamaCppBackend.generate_batch`.

Each prompt is evaluated once, its KV cache copied to the sequences of its other
candidates (``llama_memory_seq_cp``), a prefix another stream holds already (the
persona's system prompt) is copied rather than evaluated again, and every sequence
samples with its own sampler chain (the chain ``create_chat_completion`` builds:
repeat penalty, top-k 40, typical 1.0, top-p, min-p 0.05, temperature, seed).
``llama_cpp`` is imported when a decoder is made.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendOutOfMemory, BackendUnavailable, RecordError
from .base import BatchRequest, Completion, GenerationParams
from .llamacpp_native import OOM_HINT, import_llama_cpp

#: Most sequences decoding at once (one KV cache stream each); more wait for a free one.
MAX_SEQUENCES = 32
#: Tokens per ``llama_decode`` call while evaluating prompts.
PROMPT_BATCH = 512
#: Sampler settings ``create_chat_completion`` uses by default (kept equal on purpose).
TOP_K, MIN_P, TYPICAL_P, PENALTY_LAST_N = 40, 0.05, 1.0, 64
#: Shortest system prefix worth taking from another sequence's KV cache instead of
#: evaluating it again, in tokens (a copy moves the whole stream; below this it is not
#: cheaper than the evaluation).
MIN_SHARED_PREFIX = 16
#: KV cells per sequence are allocated in steps of this many tokens, with a quarter more
#: than the longest waiting request needs, so that similar requests fit without a new context.
CELL_STEP = 256


@dataclass
class _Job:
    """One request handed to the decoder: its prompt, its sequences and, when done, its result."""

    request: BatchRequest
    tokens: list[int] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    need: int = 0  # KV cells one of its sequences needs: prompt + longest completion + 1
    split: int = 0  # prompt tokens before the last message's own (the system prefix)
    seqs: list[_Sequence] = field(default_factory=list)
    result: list[Completion] | Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    t0: float = 0.0

    def finish(self, result: list[Completion] | Exception) -> None:
        self.result = result
        self.done.set()


@dataclass
class _Sequence:
    """One candidate being decoded: its KV stream (``seq``), sampler chain and tokens so far."""

    job: _Job
    candidate: int
    seq: int
    params: GenerationParams
    sampler: Any
    pos: int
    tokens: list[int] = field(default_factory=list)
    done_reason: str | None = None
    first_token_seconds: float | None = None
    seconds: float = 0.0


class BatchDecoder:
    """Many sequences through one llama.cpp context, one ``llama_decode`` per step, refilled
    as they finish (continuous batching).

    Works on the model of a loaded :class:`llama_cpp.Llama` (its weights are shared, not
    copied) with a context of its own, made with ``n_seq_max`` sequences and one KV cache
    stream per sequence. :meth:`run` may be called from many threads at once: a decode
    thread takes their requests first come, first served, as KV streams come free, so
    with ``--batch 8`` eight records decode together all the time, not eight at a time
    until the longest of them ends. Each prompt is evaluated once for all its candidates
    (its KV cache copied to their streams with ``llama_memory_seq_cp``); a prompt that
    starts like one already in a stream (the system prompt of the same persona) takes
    that prefix from it and evaluates only the rest. Prompts are formatted and tokenized
    as ``create_chat_completion`` does (the model's chat template).

    A sequence's text depends only on its prompt, parameters and seed, not on what else
    decodes beside it (the KV cells of a stream are laid out the same way either way).

    :param llm: a loaded ``llama_cpp.Llama``.
    :param n_threads: CPU threads.
    :param n_ctx: longest prompt + completion one sequence may hold, in tokens.
    """

    def __init__(self, llm: Any, n_threads: int, n_ctx: int) -> None:
        llama_cpp = import_llama_cpp()

        self.L = llama_cpp
        self.llm = llm
        self.model = llm._model.model
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.n_threads = n_threads
        self.n_ctx_seq = n_ctx
        self.formatter = _chat_formatter(llm)
        self.ctx: Any = None
        self.ctx_shape = (0, 0)  # (n_seq_max, cells per sequence)
        self.batch: Any = None
        self._cond = threading.Condition()
        self._incoming: list[tuple[_Job, int]] = []  # (job, sequences its caller keeps in flight)
        self._closed = False
        self._thread: threading.Thread | None = None
        # owned by the decode thread:
        self._waiting: list[_Job] = []
        self._active: list[_Sequence] = []
        self._starting: list[_Job] = []  # admitted, prompt not evaluated yet
        self._free: list[int] = []
        self._cached: dict[int, list[int]] = {}  # stream → the prompt tokens its KV cells hold
        self._want = 1  # sequences the callers keep in flight (sizes the next context)
        #: most sequences decoded in one step so far
        self.peak = 0
        #: prompt tokens taken from another stream's cells instead of evaluated
        self.shared = 0

    # -- the callers' side -----------------------------------------------------------
    def run(self, requests: list[BatchRequest], *, parallel: int = 1) -> list[list[Completion] | Exception]:
        """Completions of every request's candidates (see :meth:`LlamaCppBackend.generate_batch`);
        blocks until all of them are decoded.

        :raises RecordError: the decoder was closed (the backend unloaded) meanwhile.
        """
        jobs = [_Job(request) for request in requests]
        sequences = max(1, parallel) * max(1, sum(len(r.params) for r in requests))
        with self._cond:
            if self._closed:
                raise RecordError("the batch decoder is closed", stage="script")
            self._incoming += [(job, sequences) for job in jobs]
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="aicp-batch-decoder", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        for job in jobs:
            job.done.wait()
        for job in jobs:  # a failure of the whole backend (memory) is the caller's, not a record's
            if isinstance(job.result, BackendOutOfMemory):
                raise job.result
        return [job.result if job.result is not None else RecordError("not decoded", stage="script")
                for job in jobs]

    def close(self) -> None:
        """Stop the decode thread (requests not finished get a ``RecordError``), then free the
        context and batch (the model stays with its ``Llama``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # never free the context under a llama_decode in flight
        self._free_context()

    def _free_context(self) -> None:
        if self.batch is not None:
            self.L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            self.L.llama_free(self.ctx)
            self.ctx = None
            self.ctx_shape = (0, 0)
        self._free, self._cached = [], {}

    # -- the decode thread -----------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._closed or self._incoming or self._waiting or self._active):
                        self._cond.wait()
                    if self._closed:
                        return
                    incoming, self._incoming = self._incoming, []
                for job, sequences in incoming:
                    self._want = max(self._want, min(sequences, MAX_SEQUENCES))
                    self._prepare(job)
                try:
                    self._start(self._admit())
                    if self._active:
                        self._step()
                except RecordError as exc:  # llama.cpp failed a decode: what was in it fails
                    self._fail_active(exc)
                except BackendOutOfMemory as exc:  # no context: every request waiting fails with it
                    self._fail_active(exc)
                    for job in self._waiting:
                        job.finish(exc)
                    self._waiting = []
        except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting
            self._fail_active(RecordError(f"the batch decoder stopped: {exc}", stage="script"))
            raise
        finally:
            closed = RecordError("the batch decoder was closed before this request ran", stage="script")
            self._fail_active(closed)
            with self._cond:
                self._closed = True
                left, self._incoming = self._incoming, []
            for job in self._waiting + [job for job, _ in left]:
                job.finish(closed)
            self._waiting = []

    def _prepare(self, job: _Job) -> None:
        """Tokenize ``job``'s prompt; a prompt that cannot fit fails its job here."""
        if not job.request.params:
            job.finish([])
            return
        messages = job.request.messages
        try:
            job.tokens, job.stop = self.tokenize(messages)
            head = self.tokenize(messages[:-1])[0] if len(messages) > 1 else []
        except ValueError as exc:
            job.finish(RecordError(f"llama.cpp rejected the request: {exc}", stage="script"))
            return
        job.split = next((i for i, (a, b) in enumerate(zip(job.tokens, head, strict=False)) if a != b),
                         min(len(head), len(job.tokens)))
        job.split = min(job.split, len(job.tokens) - 1)  # the last token is evaluated for its logits
        longest = max(p.max_tokens for p in job.request.params)
        job.need = len(job.tokens) + longest + 1
        if job.need - 1 > self.n_ctx_seq:
            job.finish(RecordError(f"llama.cpp rejected the request: {len(job.tokens)} prompt tokens plus "
                                   f"{longest} to generate exceed the context window of {self.n_ctx_seq}",
                                   stage="script"))
            return
        if len(job.request.params) > MAX_SEQUENCES:
            job.finish(RecordError(f"llama.cpp rejected the request: {len(job.request.params)} candidates, "
                                   f"more than the {MAX_SEQUENCES} sequences the batch decoder holds",
                                   stage="script"))
            return
        self._waiting.append(job)

    def _admit(self) -> list[_Job]:
        """Waiting jobs that get KV streams now, first come, first served. A job that needs a
        larger context waits until every sequence in flight has ended; then the context is
        made again."""
        admitted: list[_Job] = []
        while self._waiting:
            job = self._waiting[0]
            n = len(job.request.params)
            idle = not self._active and not admitted
            if idle and self.ctx is not None and self._want > self.ctx_shape[0]:
                self._context(job)  # the callers now keep more sequences in flight
            if n > len(self._free) or job.need > self.ctx_shape[1]:
                if not idle:
                    break  # streams come free as sequences end
                self._context(job)
            self._waiting.pop(0)
            streams = [self._free.pop(0) for _ in range(n)]
            job.seqs = [_Sequence(job, c, seq, p, self._sampler(p), len(job.tokens))
                        for c, (seq, p) in enumerate(zip(streams, job.request.params, strict=True))]
            admitted.append(job)
        return admitted

    def _context(self, job: _Job) -> None:
        """A context for the sequences the callers keep in flight, each with room for the
        longest waiting request (made when nothing is decoding)."""
        L = self.L
        n_seqs = max(self._want, len(job.request.params))
        need = max(j.need for j in self._waiting)
        per_seq = min(self.n_ctx_seq + 1, CELL_STEP * math.ceil(need * 1.25 / CELL_STEP))
        per_seq = max(per_seq, need)
        self._free_context()
        params = L.llama_context_default_params()
        params.n_seq_max = n_seqs
        params.n_ctx = n_seqs * per_seq
        params.n_batch = params.n_ubatch = PROMPT_BATCH
        params.n_threads = params.n_threads_batch = self.n_threads
        params.kv_unified = False  # one stream per sequence: attention only over its own cells
        # As the Llama of create_chat_completion: flash attention off. On (llama.cpp's AUTO
        # default) its logits depend on how a prompt is cut into decode calls (measured: up to
        # 0.6 apart for one prompt whole or in two parts) and drift from the one-at-a-time path;
        # off, both give the same logits to the bit, and best-of 4 passes more checks.
        params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = L.llama_init_from_model(self.model, params)
        if not ctx:  # its KV cache and compute buffers did not fit
            raise BackendOutOfMemory(f"not enough memory for llama.cpp's batch context of {n_seqs} "
                                     f"sequences of {per_seq} tokens", hint=OOM_HINT)
        self.ctx, self.ctx_shape = ctx, (n_seqs, per_seq)
        self.batch = L.llama_batch_init(max(PROMPT_BATCH, MAX_SEQUENCES), 0, 1)
        self._free = list(range(n_seqs))

    def _start(self, jobs: list[_Job]) -> None:
        """Evaluate the prompts of newly admitted ``jobs`` and sample every candidate's first token.

        Each prompt is evaluated in two parts of its own: the system prefix (``job.split``
        tokens), then the rest. A stream that holds the same prefix, evaluated the same
        way, lends it (the whole stream is copied, then cut back to the prefix), so the
        KV cells, and hence the text, are the same whether the prefix was copied or not.
        """
        if not jobs:
            return
        self._starting = jobs
        L = self.L
        mem = L.llama_get_memory(self.ctx)
        for job in jobs:
            job.t0 = time.perf_counter()
            first = job.seqs[0].seq
            prefix = job.tokens[:job.split]
            source = None
            if job.split >= MIN_SHARED_PREFIX:
                source = next((seq for seq, cached in self._cached.items() if cached == prefix), None)
            for s in job.seqs:
                self._cached.pop(s.seq, None)  # being overwritten
            if source is None:
                L.llama_memory_seq_rm(mem, first, -1, -1)
                self._evaluate(job.tokens, 0, job.split, first)
            else:
                if source != first:
                    L.llama_memory_seq_cp(mem, source, first, -1, -1)  # a whole stream (done at the next decode)
                L.llama_memory_seq_rm(mem, first, job.split, -1)
                self.shared += job.split
            last = self._evaluate(job.tokens, job.split, len(job.tokens), first, logits=True)
            for s in job.seqs[1:]:  # the other candidates take the whole prompt's cells
                L.llama_memory_seq_cp(mem, first, s.seq, -1, -1)
            for s in job.seqs:  # every candidate samples its first token from the shared logits
                self._cached[s.seq] = prefix
                self._accept(s, L.llama_sampler_sample(s.sampler, self.ctx, last))
            self._active += job.seqs
        self._starting = []
        self._settle()

    def _evaluate(self, tokens: list[int], start: int, end: int, seq: int, *, logits: bool = False) -> int:
        """Decode ``tokens[start:end]`` into stream ``seq``, :data:`PROMPT_BATCH` at a time; the
        batch index of the last token (whose logits are kept when ``logits``)."""
        last = 0
        for at in range(start, end, PROMPT_BATCH):
            chunk = tokens[at:min(at + PROMPT_BATCH, end)]
            final = at + len(chunk) == end
            self._fill([(t, at + i, seq, logits and final and i == len(chunk) - 1) for i, t in enumerate(chunk)])
            self._decode()
            last = len(chunk) - 1
        return last

    def _step(self) -> None:
        """One token for every active sequence, in one ``llama_decode``."""
        L = self.L
        self._active.sort(key=lambda s: s.seq)
        active = self._active
        self.peak = max(self.peak, len(active))
        self._fill([(s.tokens[-1], s.pos, s.seq, True) for s in active])
        self._decode()
        for i, s in enumerate(active):
            s.pos += 1
            self._accept(s, L.llama_sampler_sample(s.sampler, self.ctx, i))
        self._settle()

    def _settle(self) -> None:
        """Ended sequences leave the step and free their streams; a job whose sequences have all
        ended gets its completions; the rest are moved down into consecutive streams."""
        ended = [s for s in self._active if s.done_reason is not None]
        if not ended:
            return
        self._active = [s for s in self._active if s.done_reason is None]
        for s in ended:
            self._free_stream(s)
        for job in {id(s.job): s.job for s in ended}.values():
            if all(s.done_reason is not None for s in job.seqs):
                self._release(job)
                job.finish([self._completion(s, len(job.tokens) if s.candidate == 0 else 0, job.stop)
                            for s in job.seqs])
        self._compact()

    def _compact(self) -> None:
        """Move the highest active sequences into the lowest free streams until the streams of
        a step are consecutive.

        With one KV stream per sequence, llama.cpp decodes one ubatch per run of consecutive
        stream ids, so a gap left by an ended sequence costs a whole extra pass over the
        weights (measured: 4 sequences in streams 0, 2, 4, 6 take as long as 8 in 0-7). A
        move copies the whole stream (``llama_memory_seq_cp``, done at the next decode),
        cells in place, so the sequence's text does not change.
        """
        mem = self.L.llama_get_memory(self.ctx)
        while self._free and self._active:
            top = max(self._active, key=lambda s: s.seq)
            low = self._free[0]
            if low > top.seq:
                return
            self.L.llama_memory_seq_cp(mem, top.seq, low, -1, -1)
            if top.seq in self._cached:  # both streams now hold that prompt
                self._cached[low] = self._cached[top.seq]
            else:  # never lend what ``low`` held before the copy
                self._cached.pop(low, None)
            self._free.pop(0)
            self._free.append(top.seq)
            self._free.sort()
            top.seq = low

    def _free_stream(self, s: _Sequence) -> None:
        if s.seq >= 0 and s.seq not in self._free:
            self._free.append(s.seq)
            self._free.sort()
        s.seq = -1

    def _release(self, job: _Job) -> None:
        """Free the sampler chains of ``job`` and whatever streams its sequences still hold."""
        for s in job.seqs:
            if s.sampler is not None:
                self.L.llama_sampler_free(s.sampler)
                s.sampler = None
            self._free_stream(s)

    def _fail_active(self, exc: Exception) -> None:
        """Every job in flight fails with ``exc``; the KV cache starts empty again."""
        jobs = {id(s.job): s.job for s in self._active}
        jobs.update({id(job): job for job in self._starting})
        self._active, self._starting = [], []
        for job in jobs.values():
            self._release(job)
            job.finish(exc)
        if self.ctx is not None:
            self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)
        self._cached = {}

    # -- pieces ----------------------------------------------------------------------
    def tokenize(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        """Prompt tokens and stop strings of ``messages``, as ``create_chat_completion`` makes them."""
        result = self.formatter(messages=messages)
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, stop

    def _sampler(self, params: GenerationParams) -> Any:
        L = self.L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(
            self.n_vocab, PENALTY_LAST_N, params.repeat_penalty, 0.0, 0.0))
        if params.temperature == 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(TOP_K))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_typical(TYPICAL_P, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(params.top_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(MIN_P, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(params.temperature))
            seed = L.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
        return chain

    def _fill(self, items: list[tuple[int, int, int, bool]]) -> None:
        """Put ``(token, pos, seq, wants_logits)`` items into the batch."""
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(items):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if logits else 0
        b.n_tokens = len(items)

    def _decode(self) -> None:
        rc = self.L.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RecordError(f"llama.cpp could not decode a batch (llama_decode returned {rc})", stage="script")

    def _accept(self, s: _Sequence, token: int) -> None:
        if self.L.llama_vocab_is_eog(self.vocab, token):
            s.done_reason = "stop"
        else:
            if s.first_token_seconds is None:
                s.first_token_seconds = time.perf_counter() - s.job.t0
            s.tokens.append(token)
            if len(s.tokens) >= s.params.max_tokens:
                s.done_reason = "length"
        if s.done_reason is not None:
            s.seconds = time.perf_counter() - s.job.t0

    def _completion(self, s: _Sequence, prompt_tokens: int, stop: list[str]) -> Completion:
        text = self.llm.detokenize(s.tokens).decode("utf-8", errors="ignore")
        reason = s.done_reason
        for marker in stop:
            cut = text.find(marker)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(s.tokens),
                          done_reason=reason, seconds=s.seconds, first_token_seconds=s.first_token_seconds)


def _chat_formatter(llm: Any) -> Any:
    """The chat formatter ``create_chat_completion`` uses for ``llm`` (messages → prompt text).

    :raises BackendUnavailable: the model has no chat template this code can apply.
    """
    from llama_cpp import llama_chat_format

    name = llm.chat_format
    template = llm.metadata.get("tokenizer.chat_template" if name == "chat_template.default"
                                else f"tokenizer.chat_template.{name}")
    if llm.chat_handler is None and template:
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        return llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
    formatter = getattr(llama_chat_format, f"format_{str(name).replace('-', '_')}", None)
    if llm.chat_handler is None and formatter is not None:
        return formatter
    raise BackendUnavailable(f"batched generation cannot apply the chat format '{name}' of this model",
                             hint="use --batch 1 --best-of 1")
