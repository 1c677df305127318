"""Share of dialogue scripts that pass every check, best-of-1 against best-of-4, and what it costs.

Runs `aicp-script` (embedded SmolLM2-135M on llama.cpp unless --model) on two lists no prompt
or test uses: `bench/dialogue-topics.jsonl` (10 topics, template `podcast-dialogue`, hosts sam
and julie) and `bench/dialogue-songs.jsonl` (10 songs, template `radio-banter`, hosts max and
julie), with `--best-of 1` and `--best-of 4` (four whole dialogues written side by side, turn k
of each decoded together, plus `--batch B` records at a time). The built-in templates are
written turn by turn (one model call per host's line); `--one-call` runs the one-call v1
templates of `bench/templates/` instead (the whole conversation asked for in one reply). Prints per list and in all:
the share passing every check (the dialogue checks, `grounded` included), the checks that
failed, the turns per dialogue, wall and CPU time, and the best-of-4 / best-of-1 time ratio.
Target: >= 90% passing at best-of 4.

Usage: .venv/bin/python bench/dialogue_quality.py [--seed 1] [--batch 4] [--limit N]
       [--threads N] [--show-failures] [--one-call]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
LISTS = [("topics", os.path.join(ROOT, "bench", "dialogue-topics.jsonl"), "podcast-dialogue", ["sam", "julie"]),
         ("songs", os.path.join(ROOT, "bench", "dialogue-songs.jsonl"), "radio-banter", ["max", "julie"])]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(path: str, template: str, hosts: list[str], best_of: int, batch: int, args: argparse.Namespace
        ) -> tuple[float, float, list[dict]]:
    """``(wall seconds, CPU seconds, script objects)`` of one aicp-script run over ``path``."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()[:args.limit] if args.limit else f.read().splitlines()
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as tmp:
        tmp.write(b"\n".join(lines) + b"\n")
    if args.one_call:
        template = os.path.join(ROOT, "bench", "templates", f"{template}-v1.yaml")
    cmd = [os.path.join(BIN, "aicp-script"), "--backend", "llamacpp", "--template", template,
           "--seed", str(args.seed), "--best-of", str(best_of), "--batch", str(batch), "-q", tmp.name]
    for host in hosts:
        cmd += ["--persona", host]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    t0, c0 = time.perf_counter(), _child_cpu()
    done = subprocess.run(cmd, capture_output=True, check=True)
    os.unlink(tmp.name)
    return time.perf_counter() - t0, _child_cpu() - c0, [json.loads(x)["script"] for x in done.stdout.splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4, help="records decoded together at best-of 4")
    ap.add_argument("--limit", type=int, default=None, help="only the first N records of each list")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: every CPU)")
    ap.add_argument("--model", default=None, help="a .gguf file (default: the bundled SmolLM2-135M)")
    ap.add_argument("--show-failures", action="store_true", help="print each best-of-4 take that fails")
    ap.add_argument("--lists", default="topics,songs", help="which lists to run (topics, songs)")
    ap.add_argument("--configs", default="1,4", help="which best-of settings to run (1, 4)")
    ap.add_argument("--one-call", action="store_true",
                    help="the one-call v1 templates of bench/templates/ (the whole dialogue in one reply)")
    args = ap.parse_args()

    configs = [c for c in [("best-of 1", 1, 1), (f"best-of 4, batch {args.batch}", 4, args.batch)]
               if str(c[1]) in args.configs.split(",")]
    totals: dict[str, dict[str, Any]] = {name: {"wall": 0.0, "cpu": 0.0, "passed": 0, "n": 0, "failed": collections.Counter(), "turns": 0}
              for name, _, _ in configs}
    print(f"dialogues ({'one call, v1 templates' if args.one_call else 'turn by turn'}) on "
          f"{args.model or 'SmolLM2-135M'} (llamacpp), seed {args.seed}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    for label, path, template, hosts in [x for x in LISTS if x[0] in args.lists.split(",")]:
        for name, best_of, batch in configs:
            wall, cpu, scripts = run(path, template, hosts, best_of, batch, args)
            passed = sum(s["checks"]["passed"] for s in scripts)
            failed = collections.Counter(f for s in scripts for f in s["checks"]["failed"])
            turns = sum(len(s.get("turns", [])) for s in scripts)
            t = totals[name]
            t["wall"] += wall
            t["cpu"] += cpu
            t["passed"] += passed
            t["n"] += len(scripts)
            t["failed"] += failed
            t["turns"] += turns
            n = len(scripts)
            print(f"{label:7s} {template:17s} {name:18s} passing {passed:2d}/{n:2d} ({100 * passed / n:5.1f}%)"
                  f"  {turns / n:4.1f} turns  {wall:7.1f} s wall, {cpu:7.1f} s CPU  failed: {dict(failed) or '-'}",
                  flush=True)
            if args.show_failures and best_of > 1:
                for sc in scripts:
                    if not sc["checks"]["passed"]:
                        print(f"  FAILED {sc['checks'].get('details')} | {sc['text'][:200]!r}")
    for name, _, _ in configs:
        t = totals[name]
        print(f"{'all':25s} {name:18s} passing {t['passed']:2d}/{t['n']:2d} ({100 * t['passed'] / t['n']:5.1f}%)"
              f"  {t['wall']:7.1f} s wall  failed: {dict(t['failed']) or '-'}")
    if len(configs) < 2:
        return
    one, four = (totals[name] for name, _, _ in configs)
    print(f"best-of 4 passing every check: {100 * four['passed'] / four['n']:.1f}% (target >= 90%); "
          f"best-of 1: {100 * one['passed'] / one['n']:.1f}%")
    print(f"best-of 4 / best-of 1 time: {four['wall'] / one['wall']:.2f}x wall, {four['cpu'] / one['cpu']:.2f}x CPU; "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
