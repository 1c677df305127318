"""The two backend protocols: :class:`LLMBackend` and :class:`TTSBackend`.

A backend is a small adapter around one engine (llama.cpp, Ollama, Piper,
Chatterbox). Like a model in simonw/llm it exposes one generator method
(:meth:`LLMBackend.chat`) or one synthesis method (:meth:`TTSBackend.synthesize`)
plus capability attributes, and ``load``/``unload`` so a chain can free GPU
memory between stages. Engine imports happen in ``load`` only.

Failures are mapped to :mod:`ai_content_pipeline.errors`: ``BackendUnavailable``
(abort, exit 4), ``TransientBackendError`` (retryable, per record),
``RecordError`` (per record) and ``BackendOutOfMemory``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # numpy is only needed by TTS backends at run time
    import numpy as np


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters of one LLM request.

    :ivar temperature: sampling temperature (0 = greedy).
    :ivar top_p: nucleus sampling mass (0-1].
    :ivar max_tokens: upper bound on completion tokens.
    :ivar seed: sampler seed; ``None`` lets the engine pick one.
    :ivar repeat_penalty: penalty on repeated tokens (1.0 = off; llama.cpp and Ollama
        both name it ``repeat_penalty``). Small models loop without it.
    """

    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    repeat_penalty: float = 1.1

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for request keys and records)."""
        return asdict(self)


@dataclass
class ChatChunk:
    """One streamed piece of a chat reply.

    ``text`` is the new text; the last chunk has ``done=True`` and, when the
    engine reports them, token counts and ``done_reason`` (``stop``/``length``);
    a server backend names the ``host`` that served the reply there.
    """

    text: str = ""
    done: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    done_reason: str | None = None
    host: str | None = None


@dataclass
class Completion:
    """A whole reply gathered from a stream (see :func:`complete`); ``host``: the server that
    served it (Ollama), else ``None``."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done_reason: str | None = None
    seconds: float = 0.0
    first_token_seconds: float | None = None
    host: str | None = None


class Backend(ABC):
    """What every backend has: a model resident between :meth:`load` and :meth:`unload`.

    ``loaded`` is true exactly while the model holds memory; stages and the
    radio API read it, never a copy of it.
    """

    name: ClassVar[str] = "backend"

    model: str = ""
    device: str | None = None
    loaded: bool = False

    @abstractmethod
    def load(self) -> None:
        """Make the model ready. Raises ``BackendUnavailable`` when it cannot be."""

    @abstractmethod
    def unload(self) -> None:
        """Free the model (and GPU memory) when this returns."""

    def describe(self) -> dict[str, Any]:
        """What this backend is, for events and records."""
        return {"backend": self.name, "model": self.model, "device": self.device}


@dataclass
class BatchRequest:
    """One prompt and its candidates for :meth:`LLMBackend.generate_batch`.

    :ivar messages: chat messages (``[{"role", "content"}]``), shared by every candidate.
    :ivar params: one :class:`GenerationParams` per candidate (they differ in ``seed``).
    """

    messages: list[dict[str, str]]
    params: list[GenerationParams]


class LLMBackend(Backend):
    """Protocol of a text generation backend.

    Capability attributes: ``supports_concurrency`` (may serve several requests
    at once, so ``--jobs`` applies), ``supports_json_schema`` (``chat`` honours
    ``json_schema``), ``supports_batch`` (:meth:`generate_batch` decodes many
    sequences together instead of one after the other).
    """

    name: ClassVar[str] = "llm"
    supports_concurrency: ClassVar[bool] = False
    supports_json_schema: ClassVar[bool] = False
    supports_batch: ClassVar[bool] = False

    def generate_batch(self, requests: list[BatchRequest], *,
                       parallel: int = 1) -> list[list[Completion] | Exception]:
        """Generate every candidate of every request; results in request and candidate order.

        This default runs them one after the other through :meth:`chat`; backends
        with ``supports_batch`` decode them together, and also decode together the
        requests of calls made from several threads at once. A request whose generation
        failed gets its :class:`~ai_content_pipeline.errors.RecordError` in place
        of its list; other errors propagate.

        :param parallel: how many such calls the caller keeps in flight at once (a batching
            backend sizes its batch for them; this default ignores it).
        """
        from ..errors import RecordError

        out: list[list[Completion] | Exception] = []
        for request in requests:
            try:
                out.append([collect_reply(self, request.messages, p) for p in request.params])
            except RecordError as exc:
                out.append(exc)
        return out

    @abstractmethod
    def chat(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        *,
        json_schema: dict[str, Any] | None = None,
    ) -> Iterator[ChatChunk]:
        """Stream a reply to chat ``messages`` (``[{"role", "content"}]``), ending with ``done``."""


def collect_reply(
    backend: LLMBackend,
    messages: list[dict[str, str]],
    params: GenerationParams,
    *,
    json_schema: dict[str, Any] | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Completion:
    """Run :meth:`LLMBackend.chat` to the end and gather its streamed reply into a :class:`Completion`.

    A backend with a ``complete_reply`` method of the same signature (several Ollama hosts:
    it may send the request to another host) makes the whole reply itself.

    :param messages: chat messages, ``[{"role": "system"|"user"|"assistant", "content": str}]``.
    :param json_schema: a JSON Schema the reply must follow (backends with ``supports_json_schema``).
    :param on_text: ``on_text(delta)`` with each streamed piece of text, as it arrives.
    :returns: the text, token counts, ``done_reason`` and the seconds it took (total, to the first token).
    :raises TransientBackendError: the stream ended without its final (``done``) chunk.
    :raises RecordError: what the backend's ``chat`` raises for this request (other
        :class:`~ai_content_pipeline.errors.AicpError` subclasses for the whole backend).
    """
    from ..errors import TransientBackendError

    whole = getattr(backend, "complete_reply", None)
    if whole is not None:
        return whole(messages, params, json_schema=json_schema, on_text=on_text)  # type: ignore[no-any-return]

    t0 = time.perf_counter()
    parts: list[str] = []
    first: float | None = None
    last: ChatChunk | None = None
    for chunk in backend.chat(messages, params, json_schema=json_schema):
        if chunk.text:
            if first is None:
                first = time.perf_counter() - t0
            parts.append(chunk.text)
            if on_text is not None:
                on_text(chunk.text)
        if chunk.done:
            last = chunk
            break
    if last is None:
        raise TransientBackendError(f"{backend.name} reply stream ended before it was done")
    return Completion(
        text="".join(parts),
        prompt_tokens=last.prompt_tokens or 0,
        completion_tokens=last.completion_tokens or 0,
        done_reason=last.done_reason,
        seconds=time.perf_counter() - t0,
        first_token_seconds=first,
        host=last.host,
    )


#: :func:`collect_reply` under the name the :mod:`ai_content_pipeline.backends` package exports
#: (in its ``__all__``, for backends registered from outside aicp); the Ollama host pool calls it too.
complete = collect_reply


_OUT_OF_MEMORY = ("out of memory", "bad_alloc", "failed to allocate", "cannot allocate",
                  "unable to allocate", "insufficient memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an engine's exception is a failed allocation: a :class:`MemoryError`, or its text
    says so (onnxruntime's ``Failed to allocate memory``, C++'s ``std::bad_alloc``, CUDA's and
    Ollama's ``out of memory``)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(words in text for words in _OUT_OF_MEMORY)


def max_in_flight(backend: Any, jobs: int) -> int:
    """Requests a stage may keep in flight with ``backend`` at ``--jobs jobs``: ``jobs``, or
    what the backend says (several Ollama hosts: ``jobs`` per host)."""
    ask = getattr(backend, "max_in_flight", None)
    return int(ask(jobs)) if ask is not None else jobs


@dataclass
class Voice:
    """Voice settings for one synthesis call (backend-specific keys in ``settings``).

    :ivar name: a human name for the voice (file stem, reference clip, persona).
    :ivar settings: e.g. piper ``length_scale``, chatterbox ``exaggeration``.
    :ivar seed: seed for stochastic engines; ``None`` for the engine default.
    :ivar backend: the backend that speaks it when one backend object holds several (``auto``
        giving each persona its own backend); ``None``: the backend itself.
    :ivar model: that backend's model (``None``: the backend's :attr:`~Backend.model`).
    """

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    backend: str | None = None
    model: str | None = None


class TTSBackend(Backend):
    """Protocol of a speech synthesis backend.

    Capability attributes: ``sample_rate`` (Hz of the samples ``synthesize``
    returns), ``max_chunk_chars`` (longest text one call handles well; the
    voice stage splits longer text into sentence chunks) and ``takes_phonemes``
    (:meth:`synthesize_parts` speaks IPA phonemes for parts of a text: a pronunciation
    lexicon's entries, :mod:`ai_content_pipeline.lexicon`; else they get the respelling).
    """

    name: ClassVar[str] = "tts"
    max_chunk_chars: ClassVar[int] = 1000
    takes_phonemes: ClassVar[bool] = False

    sample_rate: int = 22050
    #: True when the command line gave the voice (``--voice``): it wins over a persona's
    #: file-valued voice setting, so such a persona carried by a record is usable.
    explicit_voice: bool = False

    @abstractmethod
    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text``: float32 samples, shape ``[n_samples]``, mono, at ``sample_rate`` Hz."""

    def synthesize_parts(self, parts: list[Any], voice: Voice) -> np.ndarray:
        """Speak a text given in parts (:class:`~ai_content_pipeline.lexicon.Part`: ``text``, and
        ``phonemes``, IPA as espeak-ng writes it, to say instead, or ``None``), like
        :meth:`synthesize`. Backends with ``takes_phonemes`` implement it; this default says
        each part's respelling (``say``), else its text."""
        return self.synthesize("".join(p.text if p.phonemes is None else p.say or p.text for p in parts), voice)

    def phonemes_for(self, voice: Voice) -> bool:
        """Whether ``voice`` is spoken by an engine that takes phonemes (default:
        ``takes_phonemes``; a backend choosing an engine per voice asks that engine)."""
        return self.takes_phonemes

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        """The :class:`Voice` this backend uses for ``persona`` (or its default)."""
        return Voice(name=self.model, seed=seed)

    def voice_installed(self, voice: Voice) -> bool:
        """Whether this machine has what ``voice`` needs (its model file, preset, clip), without
        loading the engine (default: true)."""
        return True

    def rate_for(self, voice: Voice) -> int:
        """Hz of the samples :meth:`synthesize` returns for ``voice`` (default :attr:`sample_rate`)."""
        return int(self.sample_rate)

    def chunk_chars(self, voice: Voice) -> int:
        """Longest text one :meth:`synthesize` call for ``voice`` handles well (default
        :attr:`max_chunk_chars`)."""
        return int(self.max_chunk_chars)
