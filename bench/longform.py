"""Long-form script speed on the embedded model, and the share of time spent outside it.

Writes one long-form script (default: podcast-longform scaled to 2,000 words)
with the real embedded llama.cpp backend, wrapped in a timer that counts the
seconds spent inside the backend's reply streams. Prints words per second,
total seconds (model load excluded), the seconds to the first streamed token
of each chunk, and the share of time outside the model (aicp's own work:
prompts, files, fsync, ledger, events, rolling summaries; target < 5%).

Usage: .venv/bin/python bench/longform.py [--words 2000] [--seed 42] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from ai_content_pipeline.backends.base import ChatChunk, GenerationParams, LLMBackend
from ai_content_pipeline.backends.llamacpp import LlamaCppBackend
from ai_content_pipeline.events import NullEmitter
from ai_content_pipeline.jsonl import parse_line
from ai_content_pipeline.stages.registry import build_stage
from ai_content_pipeline.stages.script import ScriptOptions

RECORD = {"id": "bench", "topic": "How vinyl records made a comeback",
          "notes": "sales grew for more than fifteen years in a row; record stores and pressing plants reopened"}


class TimedLLM(LLMBackend):
    """Delegates to ``inner`` and adds up the seconds spent waiting on its reply streams."""

    def __init__(self, inner: LLMBackend) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.supports_json_schema = inner.supports_json_schema  # type: ignore[misc]
        self.model = inner.model
        self.device = inner.device
        self.model_seconds = 0.0
        self.requests = 0

    @property  # type: ignore[override]
    def loaded(self) -> bool:
        return self.inner.loaded

    def load(self) -> None:
        self.inner.load()

    def unload(self) -> None:
        self.inner.unload()

    def chat(self, messages: list[dict[str, str]], params: GenerationParams, *,
             json_schema: dict[str, Any] | None = None) -> Iterator[ChatChunk]:
        self.requests += 1
        stream = self.inner.chat(messages, params, json_schema=json_schema)
        while True:
            t0 = time.perf_counter()
            try:
                chunk = next(stream)
            except StopIteration:
                self.model_seconds += time.perf_counter() - t0
                return
            self.model_seconds += time.perf_counter() - t0
            yield chunk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work-dir", default=None)
    args = ap.parse_args()

    llm = TimedLLM(LlamaCppBackend())
    t_load = time.perf_counter()
    llm.load()
    load_seconds = time.perf_counter() - t_load
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="aicp-bench-longform-")
    options = ScriptOptions(template="podcast-longform", persona="sam", words=args.words,
                            seed=args.seed, work_dir=work_dir)
    stage = build_stage("script", llm, options, NullEmitter())  # the registry picks long-form
    line = parse_line(json.dumps(RECORD).encode(), 1)
    t0 = time.perf_counter()
    out = next(stage.run([line]))
    total = time.perf_counter() - t0
    llm.unload()
    if "error" in out:
        raise SystemExit(f"the run failed: {out['error']}")
    script = out["script"]
    outside = total - llm.model_seconds
    print(f"model: {llm.model} ({llm.device}), load {load_seconds:.2f} s; target {args.words} words; "
          f"work dir {work_dir}")
    print(f"words: {script['words']}  total: {total:.1f} s  words/s: {script['words'] / total:.1f}  "
          f"requests: {llm.requests}  tokens: {script['tokens']}")
    print(f"pack: {script['pack']['seconds']:.1f} s")
    print("chunk  section                 words/target  cont  first-token s  seconds")
    for c in script["chunks"]:
        print(f"{c['index']:>5}  {c['section']:<22}  {c['words']:>5}/{c['target']:<6}  {c['continuations']:>4}  "
              f"{c['first_token_seconds'] if c['first_token_seconds'] is not None else '-':>13}  {c['seconds']:>7}")
    print(f"time in the model: {llm.model_seconds:.2f} s; outside it: {outside:.3f} s "
          f"= {100 * outside / total:.2f}% (target < 5%)")


if __name__ == "__main__":
    main()
