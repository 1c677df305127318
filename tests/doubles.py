"""Test doubles shaped like the real backends and emitters (they live in tests/, never in the product)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from ai_content_pipeline.backends.base import (
    ChatChunk,
    GenerationParams,
    LLMBackend,
    TTSBackend,
    Voice,
)
from ai_content_pipeline.errors import BackendUnavailable, RecordError
from ai_content_pipeline.events import Emitter
from ai_content_pipeline.jsonl import InputLine, parse_line


class FakeLLM(LLMBackend):
    """An LLM double that records every request.

    :param replies: texts returned in turn (cycled); default echoes the last user message.
    :param fail_on: substrings of the user message that make the call raise ``fail_with``.
    """

    name = "fake"
    supports_concurrency = True
    supports_json_schema = True

    def __init__(self, replies: list[str] | None = None, *, fail_on: tuple[str, ...] = (),
                 fail_with: type[Exception] = RecordError, fail_times: int | None = None,
                 unavailable: bool = False, delay: float = 0.0, done_reason: str = "stop") -> None:
        self.model = "fake-model"
        self.done_reason = done_reason
        self.active = 0
        self.max_active = 0
        self.device = "cpu"
        self.replies = replies
        self.fail_on = fail_on
        self.fail_with = fail_with
        self.fail_times = fail_times
        self.unavailable = unavailable
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.loads = 0
        self.unloads = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        if self.unavailable:
            raise BackendUnavailable("fake backend down", hint="start it")
        if not self.loaded:
            self.loads += 1
            self.events.append("load")
        self.loaded = True

    def chat(self, messages: list[dict[str, str]], params: GenerationParams, *,
             json_schema: dict[str, Any] | None = None) -> Iterator[ChatChunk]:
        import time

        self.load()
        user = messages[-1]["content"]
        with self._lock:
            n = len(self.calls)
            self.calls.append({"messages": messages, "params": params, "json_schema": json_schema})
            self.events.append("chat")
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
        finally:
            with self._lock:
                self.active -= 1
        if any(s in user for s in self.fail_on):
            if self.fail_times is None or self.fail_times > 0:
                if self.fail_times is not None:
                    self.fail_times -= 1
                raise self.fail_with(f"forced failure for {user[:30]!r}")
        text = self.reply(n, messages, params)
        for word in text.split(" "):
            yield ChatChunk(text=word + " ")
        yield ChatChunk(done=True, prompt_tokens=10, completion_tokens=len(text.split()),
                        done_reason=self.done_reason)

    def reply(self, n: int, messages: list[dict[str, str]], params: GenerationParams) -> str:
        """The text of call ``n`` (replies cycled, else an echo of the user message)."""
        user = messages[-1]["content"]
        return self.replies[n % len(self.replies)] if self.replies else f"Script for: {user[:60]}"

    def unload(self) -> None:
        if self.loaded:
            self.unloads += 1
            self.events.append("unload")
        self.loaded = False


class FakeTTS(TTSBackend):
    """A TTS double: a 220 Hz tone, 0.06 s per word, at 16 kHz; records calls."""

    name = "fake-tts"
    max_chunk_chars = 200

    def __init__(self, *, fail_on: tuple[str, ...] = (), silent: bool = False, **_: Any) -> None:
        self.sample_rate = 16000
        self.model = "fake-voice"
        self.device = "cpu"
        self.fail_on = fail_on
        self.silent = silent
        self.calls: list[tuple[str, Voice]] = []
        self.events: list[str] = []

    def load(self) -> None:
        self.events.append("load")
        self.loaded = True

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        self.calls.append((text, voice))
        self.events.append("synthesize")
        if any(s in text for s in self.fail_on):
            raise RecordError("forced synthesis failure", stage="voice")
        n = int(self.sample_rate * 0.06 * max(1, len(text.split())))
        if self.silent:
            return np.zeros(n, dtype=np.float32)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)

    def unload(self) -> None:
        self.events.append("unload")
        self.loaded = False


class RecordingEmitter(Emitter):
    """Keeps every event as ``(name, fields)``."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]


def lines_of(*records: Any) -> list[InputLine]:
    """InputLines from Python objects (dicts) or raw bytes."""
    out = []
    for i, rec in enumerate(records, start=1):
        raw = rec if isinstance(rec, bytes) else orjson.dumps(rec)
        out.append(parse_line(raw, i))
    return out


class SpeechTTS(FakeTTS):
    """FakeTTS at a speech-like rate (``seconds_per_word``, default 0.35 s ≈ 2.9 words/s).

    FakeTTS's 0.06 s per word is faster than any voice, so the voice stage's
    plausibility check (at most 5 words/s) rejects it; use this double when a
    test needs files written. ``loads``/``unloads`` count real transitions.
    """

    def __init__(self, *, seconds_per_word: float = 0.35, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds_per_word = seconds_per_word
        self.loads = 0
        self.unloads = 0

    def load(self) -> None:
        if not self.loaded:
            self.loads += 1
        super().load()

    def unload(self) -> None:
        if self.loaded:
            self.unloads += 1
        super().unload()

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        self.calls.append((text, voice))
        self.events.append("synthesize")
        if any(s in text for s in self.fail_on):
            raise RecordError("forced synthesis failure", stage="voice")
        n = int(self.sample_rate * self.seconds_per_word * max(1, len(text.split())))
        if self.silent:
            return np.zeros(n, dtype=np.float32)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        # a 220 Hz tone with a 3 Hz "syllable" envelope, so loudness gating sees speech-like level changes
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)
        return (0.3 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class SeededLLM(FakeLLM):
    """Replies picked by the request's seed (``replies[seed % len]``), so the text of a
    candidate does not depend on the order in which concurrent calls arrive."""

    def reply(self, n: int, messages: list[dict[str, str]], params: GenerationParams) -> str:
        assert self.replies and params.seed is not None
        return self.replies[params.seed % len(self.replies)]


class FakeBatchLLM(SeededLLM):
    """A batching backend double (``supports_batch``): records each ``generate_batch`` call."""

    supports_batch = True
    supports_concurrency = False

    def __init__(self, replies: list[str], **kwargs: Any) -> None:
        super().__init__(replies, **kwargs)
        self.batches: list[list[int]] = []  # per call: candidates per request
        self.parallel: list[int] = []  # per call: the calls its caller said it keeps in flight

    def generate_batch(self, requests: list[Any], *, parallel: int = 1) -> list[Any]:
        import time

        from ai_content_pipeline.backends.base import Completion

        self.load()
        with self._lock:
            self.batches.append([len(r.params) for r in requests])
            self.parallel.append(parallel)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        out: list[Any] = []
        for r in requests:
            if any(s in r.messages[-1]["content"] for s in self.fail_on):
                out.append(RecordError("forced failure in a batch", stage="script"))
                continue
            out.append([Completion(text=self.reply(0, r.messages, p), prompt_tokens=10 if i == 0 else 0,
                                   completion_tokens=7, done_reason=self.done_reason, seconds=0.01)
                        for i, p in enumerate(r.params)])
        return out


#: A template whose checks need no model (the artist and title mentioned, a whole last sentence)
#: and whose user prompt is ``TITLE|ARTIST``, so a double can answer for the song it is asked about.
MENTIONS_TEMPLATE = """\
name: check-intro
version: 1
description: an intro checked for its mentions only
required: [artist, title]
target_words: 10
checks:
  mentions: [artist, title]
  no_echo: false
  complete: true
system: You are a DJ.
user: "{{ title }}|{{ artist }}"
"""
