"""What `--log PATH.db` (the take log) costs a run, measured in one run.

Runs the script stage in this process over N songs with an LLM double, without and
with a take log, alternating the order, best of `--repeat` each:

1. a double that answers at once (no model time at all): the whole difference is the
   log's cost, printed per take in microseconds; this ratio is the worst case;
2. the same double with `--latency` seconds per reply (default 0.05 s, several times
   faster than the embedded SmolLM2-135M writes a 60-word intro here): the ratio a
   real run sees at most (target <= 1.01).

With `--embedded N` it also runs `aicp-script` on N songs with the embedded model,
without and with `--log`, as fresh processes (noisy on a shared machine: the model's
own time varies by more than 1% between runs).

Usage: .venv/bin/python bench/takelog_overhead.py [--records 2000] [--latency 0.05] [--embedded 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
REPLY = ("Good evening, night owls. Here is Queen with Bohemian Rhapsody, six minutes that changed "
         "rock radio. Stay cozy, night owls.")


def make_backend(latency: float) -> Any:
    from ai_content_pipeline.backends.base import ChatChunk, GenerationParams, LLMBackend

    class Instant(LLMBackend):
        name = "bench"

        def __init__(self) -> None:
            self.model = "bench-model"
            self.device = "cpu"

        def load(self) -> None:
            self.loaded = True

        def unload(self) -> None:
            self.loaded = False

        def chat(self, messages: list[dict[str, str]], params: GenerationParams, *,
                 json_schema: dict[str, Any] | None = None) -> Iterator[ChatChunk]:
            if latency:
                time.sleep(latency)
            yield ChatChunk(text=REPLY)
            yield ChatChunk(done=True, prompt_tokens=90, completion_tokens=30, done_reason="stop")

    return Instant()


def run_once(songs: str, log: str | None, latency: float) -> float:
    from ai_content_pipeline.events import NullEmitter
    from ai_content_pipeline.stages.commands import run_script
    from ai_content_pipeline.stages.script import ScriptOptions

    t0 = time.perf_counter()
    run_script([songs], ScriptOptions(template="song-intro", persona="julie", seed=1),
               backend=make_backend(latency), emitter=NullEmitter(), write=lambda r: None, log=log)
    return time.perf_counter() - t0


def compare(songs: str, records: int, latency: float, repeat: int, tmp: str) -> tuple[float, float]:
    plain, logged = [], []
    for i in range(repeat):
        order = [False, True] if i % 2 == 0 else [True, False]
        for with_log in order:
            db = os.path.join(tmp, f"takes-{latency}-{i}.db") if with_log else None
            (logged if with_log else plain).append(run_once(songs, db, latency))
    return min(plain), min(logged)


def embedded(n: int, tmp: str, repeat: int) -> tuple[float, float]:
    songs = os.path.join(tmp, "songs-embedded.jsonl")
    src = [json.loads(x) for x in open(os.path.join(ROOT, "examples", "songs.jsonl"))][:n]
    with open(songs, "w") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in src)
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(repeat):
        for with_log in ([False, True] if i % 2 == 0 else [True, False]):
            args = [os.path.join(BIN, "aicp-script"), "--backend", "llamacpp", "--seed", "1", "--max-tokens", "64",
                    "-q", songs]
            if with_log:
                args += ["--log", os.path.join(tmp, f"embedded-{i}.db")]
            t0 = time.perf_counter()
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "AICP_LOG_DB": ""})
            times[with_log].append(time.perf_counter() - t0)
    return min(times[False]), min(times[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000, help="songs for the instant double")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per reply of the second double")
    ap.add_argument("--latency-records", type=int, default=100, help="songs for the double with latency")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--embedded", type=int, default=0, help="also run the embedded model on N songs")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="aicp-takelog-bench-") as tmp:
        songs = os.path.join(tmp, "songs.jsonl")
        with open(songs, "w") as fh:
            for i in range(args.records):
                fh.write(json.dumps({"id": f"s{i}", "artist": "Queen", "title": f"Bohemian Rhapsody {i}"}) + "\n")
        run_once(songs, None, 0.0)  # warm up: imports, template compile
        plain, logged = compare(songs, args.records, 0.0, args.repeat, tmp)
        per_take_us = (logged - plain) / args.records * 1e6
        print(f"instant double, {args.records} takes: without log {plain:.3f} s, with log {logged:.3f} s, "
              f"ratio {logged / plain:.3f}, {per_take_us:.1f} us per take")

        few = os.path.join(tmp, "few.jsonl")
        with open(songs) as src, open(few, "w") as dst:
            dst.writelines(line for _, line in zip(range(args.latency_records), src, strict=False))
        plain, logged = compare(few, args.latency_records, args.latency, args.repeat, tmp)
        print(f"double with {args.latency * 1000:.0f} ms per reply, {args.latency_records} takes: without log "
              f"{plain:.3f} s, with log {logged:.3f} s, ratio {logged / plain:.4f} (target <= 1.01)")
        if args.embedded:
            plain, logged = embedded(args.embedded, tmp, args.repeat)
            print(f"embedded SmolLM2, {args.embedded} takes, fresh processes: without log {plain:.2f} s, "
                  f"with log {logged:.2f} s, ratio {logged / plain:.4f}")


if __name__ == "__main__":
    main()
