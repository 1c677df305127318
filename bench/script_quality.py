"""Share of song intros that pass their checks, best-of-1 against best-of-4, and what it costs.

Runs `aicp-script` (embedded SmolLM2-135M, template song-intro) on two song lists:
`examples/songs.jsonl` and `bench/songs-holdout.jsonl` (used in no prompt and no test),
with `--best-of 1` (today's one-call-per-take path) and `--best-of 4` (the four candidates
of a take decoded together from one prompt evaluation, plus `--batch B` records at a
time). Prints per list and in all: the `grounded` share (takes that invent no name or
number), the airable share (takes passing every check, `grounded` included), the checks
that failed, wall time, and the best-of-4 / best-of-1 time ratio.
Targets: >= 80% airable at best-of 4; best-of-4 time <= 2.5x best-of-1.

Usage: .venv/bin/python bench/script_quality.py [--seed 1] [--batch 8] [--max-tokens N]
       [--template NAME|PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
LISTS = {"examples/songs.jsonl": os.path.join(ROOT, "examples", "songs.jsonl"),
         "bench/songs-holdout.jsonl": os.path.join(ROOT, "bench", "songs-holdout.jsonl")}


def run(path: str, best_of: int, batch: int, seed: int, max_tokens: int | None,
        template: str = "song-intro") -> tuple[float, list[dict]]:
    cmd = [os.path.join(BIN, "aicp-script"), "--backend", "llamacpp", "--template", template,
           "--seed", str(seed), "--best-of", str(best_of), "--batch", str(batch), "-q", path]
    if max_tokens:
        cmd += ["--max-tokens", str(max_tokens)]
    t0, c0 = time.perf_counter(), _child_cpu()
    done = subprocess.run(cmd, capture_output=True, check=True)
    seconds, cpu = time.perf_counter() - t0, _child_cpu() - c0
    CPU[(path, best_of)] = cpu
    return seconds, [json.loads(x)["script"] for x in done.stdout.splitlines()]


CPU: dict[tuple[str, int], float] = {}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="records decoded together at best-of 4")
    ap.add_argument("--max-tokens", type=int, default=None, help="default: the template's")
    ap.add_argument("--template", default="song-intro", help="template name or YAML file (default: song-intro)")
    ap.add_argument("--show-failures", action="store_true", help="print each best-of-4 take that fails")
    args = ap.parse_args()

    configs = [("best-of 1", 1, 1), (f"best-of 4, batch {args.batch}", 4, args.batch)]
    totals: dict[str, list] = {name: [0.0, 0, 0, collections.Counter(), 0, 0] for name, _, _ in configs}
    print(f"{args.template} on SmolLM2-135M (llamacpp), seed {args.seed}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for label, path in LISTS.items():
        for name, best_of, batch in configs:
            seconds, scripts = run(path, best_of, batch, args.seed, args.max_tokens, args.template)
            passed = sum(s["checks"]["passed"] for s in scripts)
            grounded = sum("grounded" not in s["checks"]["failed"] for s in scripts)
            failed = collections.Counter(f for s in scripts for f in s["checks"]["failed"])
            tokens = sum(s["tokens"]["completion"] for s in scripts)
            t = totals[name]
            t[0] += seconds
            t[1] += passed
            t[2] += len(scripts)
            t[3] += failed
            t[4] += tokens
            t[5] += grounded
            if args.show_failures and best_of > 1:
                for song, sc in zip(open(path), scripts, strict=True):
                    if not sc["checks"]["passed"]:
                        print(f"  FAILED {json.loads(song)['id']}: {sc['checks'].get('details')} | {sc['text'][:160]!r}")
            n = len(scripts)
            print(f"{label:27s} {name:18s} grounded {grounded:2d}/{n:2d} ({100 * grounded / n:5.1f}%)"
                  f"  airable {passed:2d}/{n:2d} ({100 * passed / n:5.1f}%)"
                  f"  {seconds:6.1f} s wall, {CPU[(path, best_of)]:6.1f} s CPU  {tokens:5d} completion tokens"
                  f"  failed: {dict(failed) or '-'}")
    base = totals[configs[0][0]][0]
    for name, _, _ in configs:
        seconds, passed, n, failed, tokens, grounded = totals[name]
        print(f"{'all':27s} {name:18s} grounded {grounded:2d}/{n:2d} ({100 * grounded / n:5.1f}%)"
              f"  airable {passed:2d}/{n:2d} ({100 * passed / n:5.1f}%)  {seconds:6.1f} s"
              f"  {tokens:5d} completion tokens  failed: {dict(failed) or '-'}")
    best4 = totals[configs[1][0]]
    print(f"best-of 4 airable (every check, grounded included): {100 * best4[1] / best4[2]:.1f}% (target >= 80%); "
          f"grounded {100 * best4[5] / best4[2]:.1f}%")
    cpu1 = sum(v for (_, n), v in CPU.items() if n == 1)
    cpu4 = sum(v for (_, n), v in CPU.items() if n == 4)
    print(f"best-of 4 / best-of 1 time: {best4[0] / base:.2f}x wall, {cpu4 / cpu1:.2f}x CPU (target <= 2.5x); "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
