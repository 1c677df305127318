"""Share of song intros that pass their checks, best-of-1 against best-of-4, and what it costs.

Runs `aicp-script` (embedded SmolLM2-135M, template song-intro) on three song lists:
`examples/songs.jsonl`, `bench/songs-holdout.jsonl` and `bench/songs-world.jsonl`
(non-English names and titles, featured artists, years 1947-2020, a `notes` fact each; the
last two are used in no prompt and no test), with `--best-of 1` (today's one-call-per-take path) and `--best-of 4` (the four candidates
of a take decoded together from one prompt evaluation, plus `--batch B` records at a
time). Prints per list and in all: the `grounded` share (takes that invent no name or
number), the airable share (takes passing every check, `grounded` included), the checks
that failed, wall time, the best-of-4 / best-of-1 time ratio, and the `grounded` check's
precision and recall on the hand labels (bench/grounded_labels.py).
Targets: >= 80% airable at best-of 4; best-of-4 time <= 2.5x best-of-1.

Usage: .venv/bin/python bench/script_quality.py [--seed 1] [--batch 8] [--max-tokens N]
       [--template NAME|PATH] [--persona NAME] [--threads N] [--list NAME ...] [--limit N] [--best-of 1,4]
       [--show-failures] [--save DIR]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(ROOT, "bench"))
LISTS = {"examples/songs.jsonl": os.path.join(ROOT, "examples", "songs.jsonl"),
         "bench/songs-holdout.jsonl": os.path.join(ROOT, "bench", "songs-holdout.jsonl"),
         "bench/songs-world.jsonl": os.path.join(ROOT, "bench", "songs-world.jsonl")}


def run(path: str, best_of: int, batch: int, seed: int, max_tokens: int | None,
        template: str = "song-intro", persona: str | None = None,
        threads: int | None = None) -> tuple[float, list[dict]]:
    cmd = [os.path.join(BIN, "aicp-script"), "--backend", "llamacpp", "--template", template,
           "--seed", str(seed), "--best-of", str(best_of), "--batch", str(batch), "-q", path]
    if persona:
        cmd += ["--persona", persona]
    if threads:
        cmd += ["--threads", str(threads)]
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
    ap.add_argument("--persona", default=None, help="persona name or YAML file (default: aicp-script's)")
    ap.add_argument("--list", action="append", choices=sorted(LISTS), help="song list (repeat; default: all)")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads (default: every CPU; 1 decodes faster on a crowded machine)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N songs of each list")
    ap.add_argument("--best-of", default="1,4", help="comma list of best-of values (default: 1,4)")
    ap.add_argument("--show-failures", action="store_true", help="print each best-of-N (N > 1) take that fails")
    ap.add_argument("--save", metavar="DIR", help="write each run's output records to DIR")
    args = ap.parse_args()

    configs = [(f"best-of {n}" + (f", batch {args.batch}" if n > 1 else ""), n, 1 if n == 1 else args.batch)
               for n in (int(x) for x in args.best_of.split(","))]
    totals: dict[str, list] = {name: [0.0, 0, 0, collections.Counter(), 0, 0] for name, _, _ in configs}
    print(f"{args.template} on SmolLM2-135M (llamacpp), seed {args.seed}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    tmp = tempfile.TemporaryDirectory(prefix="aicp-quality-")
    for label in args.list or LISTS:
        path = LISTS[label]
        if args.limit:
            path = os.path.join(tmp.name, os.path.basename(path))
            with open(LISTS[label], encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
                dst.writelines(src.readlines()[:args.limit])
        for name, best_of, batch in configs:
            seconds, scripts = run(path, best_of, batch, args.seed, args.max_tokens, args.template, args.persona,
                                args.threads)
            if args.save:
                os.makedirs(args.save, exist_ok=True)
                out = os.path.join(args.save, f"{os.path.basename(path)[:-6]}.seed{args.seed}.best{best_of}.jsonl")
                with open(path, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
                    for song, sc in zip(src, scripts, strict=True):
                        dst.write(json.dumps({**json.loads(song), "script": sc}, ensure_ascii=False) + "\n")
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
                for song, sc in zip(open(path, encoding="utf-8"), scripts, strict=True):
                    if not sc["checks"]["passed"]:
                        print(f"  FAILED {json.loads(song)['id']}: {sc['checks'].get('details')} | {sc['text'][:240]!r}")
            n = len(scripts)
            print(f"{label:27s} {name:18s} grounded {grounded:2d}/{n:2d} ({100 * grounded / n:5.1f}%)"
                  f"  airable {passed:2d}/{n:2d} ({100 * passed / n:5.1f}%)"
                  f"  {seconds:6.1f} s wall, {CPU[(path, best_of)]:6.1f} s CPU  {tokens:5d} completion tokens"
                  f"  failed: {dict(failed) or '-'}")
    base = totals[configs[0][0]][0]
    cpu1 = sum(v for (_, n), v in CPU.items() if n == configs[0][1])
    for name, _, _ in configs:
        seconds, passed, n, failed, tokens, grounded = totals[name]
        print(f"{'all':27s} {name:18s} grounded {grounded:2d}/{n:2d} ({100 * grounded / n:5.1f}%)"
              f"  airable {passed:2d}/{n:2d} ({100 * passed / n:5.1f}%)  {seconds:6.1f} s"
              f"  {tokens:5d} completion tokens  failed: {dict(failed) or '-'}")
    last, n_last = totals[configs[-1][0]], configs[-1][1]
    print(f"best-of {n_last} airable (every check, grounded included): {100 * last[1] / last[2]:.1f}% "
          f"(target >= 80% at best-of 4); grounded {100 * last[5] / last[2]:.1f}%")
    if len(configs) > 1:
        cpu_last = sum(v for (_, n), v in CPU.items() if n == n_last)
        print(f"best-of {n_last} / best-of {configs[0][1]} time: {last[0] / base:.2f}x wall, "
              f"{cpu_last / cpu1:.2f}x CPU (target <= 2.5x); load average {os.getloadavg()[0]:.1f} at the end")
    import grounded_labels
    print(grounded_labels.summary())


if __name__ == "__main__":
    main()
