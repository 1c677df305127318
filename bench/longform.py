"""Long-form script speed on the embedded model, the share of time spent outside it, and
what of the section plan reached the text.

Writes one long-form script (default: podcast-longform scaled to 2,000 words)
with the real embedded llama.cpp backend, wrapped in a timer that counts the
seconds spent inside the backend's reply streams. Prints words per second,
total seconds (model load excluded), the seconds to the first streamed token
of each chunk, and the share of time outside the model (aicp's own work:
prompts, files, fsync, ledger, events, checks; target < 5%).

Then audits the stitched text (:func:`audit`): instruction text in it (section
names, runs of five words of a brief or of the template's prompts, numbering,
labels, headings, preambles, markdown: ``check_instructions``), joins between
sections or paragraphs that cut a sentence, and what cleaning removed.
``--audit DIR`` audits the work folder of an earlier run (``DIR/chunks/NN.txt``)
without writing anything, so a run of an older version can be measured the same way.

Usage: .venv/bin/python bench/longform.py [--words 2000] [--seed 42] [--best-of 1] [--work-dir DIR]
       .venv/bin/python bench/longform.py --audit DIR [--words 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ai_content_pipeline.backends.base import ChatChunk, GenerationParams, LLMBackend
from ai_content_pipeline.backends.llamacpp import LlamaCppBackend
from ai_content_pipeline.checks import check_instructions, cut_joins, echo_phrases, fold
from ai_content_pipeline.events import NullEmitter
from ai_content_pipeline.jsonl import parse_line
from ai_content_pipeline.stages.longform import plan_for
from ai_content_pipeline.stages.registry import build_stage
from ai_content_pipeline.stages.script import ScriptOptions
from ai_content_pipeline.templates import load_template

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


#: Prompt text of the templates before and after podcast-longform@3, for the audit's five-word runs.
OLD_PROMPTS = ("Podcast episode: Facts: Names: Numbers: Audience: Already said, do not repeat: Now write part "
               "of Do not greet the listeners again. Do not end the show. Write about words. Go on with the "
               "part: about more words. Do not repeat what you said. Carry on from what you just said, "
               "without a new greeting. The show goes on after this.")


def audit(texts: list[str], words: int) -> dict[str, Any]:
    """What of the plan and its instructions is in the section texts ``texts``, and the cut joins.

    :returns: ``{"findings": [str], "cut_joins": [int], "cut_paragraphs": int}``: findings are
        section names (as written in the plan, or a line of their own in any case), five-word runs of a brief or of the prompts (old and new
        shapes) and ``check_instructions``' finds, per section as ``"N: what"``.
    """
    template = load_template("podcast-longform")
    plan = plan_for(template, words=words)
    prompts = " ".join([OLD_PROMPTS, template.prompts["continue"], *(s.brief for s in plan)])
    grams = echo_phrases(prompts, {})
    findings: list[str] = []
    for n, text in enumerate(texts, start=1):
        folded = f" {fold(text)} "
        lines = {fold(line) for line in text.splitlines()}
        findings += [f"{n}: plan: {s.name}" for s in plan if s.name in text or fold(s.name) in lines]
        findings += sorted({f"{n}: prompt: {g}" for g in grams if f" {g} " in folded})
        findings += [f"{n}: {f}" for f in check_instructions(text, [s.name for s in plan])]
    paragraphs = [p for text in texts for p in text.split("\n\n") if p.strip()]
    return {"findings": findings, "cut_joins": cut_joins(texts),
            "cut_paragraphs": len(cut_joins(paragraphs))}


def print_audit(texts: list[str], words: int) -> None:
    result = audit(texts, words)
    print(f"instruction text in the episode: {len(result['findings'])} finds"
          f" in {len({f.split(':')[0] for f in result['findings']})} of {len(texts)} sections")
    for f in result["findings"][:40]:
        print(f"  {f}")
    print(f"joins that cut a sentence: {len(result['cut_joins'])} of {max(0, len(texts) - 1)} section joins "
          f"{result['cut_joins']}; {result['cut_paragraphs']} paragraph joins")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--best-of", type=int, default=1)
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--audit", metavar="DIR", help="audit the chunks of an earlier run's work folder and stop")
    args = ap.parse_args()
    if args.audit:
        chunks = sorted(Path(args.audit, "chunks").glob("[0-9][0-9]*.txt"))
        print(f"audit of {args.audit}: {len(chunks)} sections")
        print_audit([p.read_text(encoding="utf-8") for p in chunks], args.words)
        return

    llm = TimedLLM(LlamaCppBackend())
    t_load = time.perf_counter()
    llm.load()
    load_seconds = time.perf_counter() - t_load
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="aicp-bench-longform-")
    options = ScriptOptions(template="podcast-longform", persona="sam", words=args.words,
                            seed=args.seed, work_dir=work_dir, best_of=args.best_of)
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
    checks = script["checks"]
    failing = [f"{s['index']} {s['failed']}" for s in checks.get("sections", []) if s["failed"]]
    print(f"checks: passed {checks['passed']}, failed {checks['failed']}; sections failing: {failing or 'none'}")
    removed = [r for c in script["chunks"] for r in (c.get("checks") or {}).get("removed", [])]
    print(f"removed by cleaning: {len(removed)} lines or sentences")
    for r in removed[:30]:
        print(f"  {r!r}")
    print_audit([Path(work_dir, Path(script["dir"]).name, "chunks", f"{c['index']:02d}.txt").read_text(encoding="utf-8")
                 for c in script["chunks"]], args.words)


if __name__ == "__main__":
    main()
