"""aicp-script's overhead over a plain llama-cpp-python loop, measured in one run.

Runs `aicp-script` on 20 songs with the embedded model (fixed seed and max
tokens), then, in the same run, a plain loop that calls llama-cpp-python with
the same messages and parameters (both as fresh processes, so both pay Python
start-up and model load). Prints both times, their ratio (target <= 1.05) and
the `--help` start-up time. A second row runs `aicp-script --batch 8` (eight
records decoded together by the llama.cpp batch decoder) and compares its
throughput in completion tokens per second with the plain loop's (target >= 1.5x).

Usage: .venv/bin/python bench/script_overhead.py [--records 20] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

PLAIN = r"""
import json, os, sys
from llama_cpp import Llama
jobs = json.load(open(sys.argv[1]))
llm = Llama(model_path=jobs["model"], n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
out, tokens = [], 0
for job in jobs["requests"]:
    r = llm.create_chat_completion(messages=job["messages"], temperature=job["temperature"],
                                   top_p=job["top_p"], max_tokens=job["max_tokens"], seed=job["seed"],
                                   repeat_penalty=job["repeat_penalty"])
    out.append(r["choices"][0]["message"]["content"])
    tokens += r["usage"]["completion_tokens"]
json.dump({"texts": out, "completion_tokens": tokens}, open(sys.argv[2], "w"))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=8, help="records decoded together in the batch row")
    ap.add_argument("--batch-only", action="store_true",
                    help="only the plain loop and the --batch row (skips the one-at-a-time aicp-script run)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="alternate the two runs this many times (order swapped each time); best of each")
    args = ap.parse_args()

    from ai_content_pipeline.backends.llamacpp import bundled_model_path
    from ai_content_pipeline.templates import load_persona, load_template

    songs = [json.loads(x) for x in open(os.path.join(ROOT, "examples", "songs.jsonl"))][: args.records]
    template, persona = load_template("song-intro"), load_persona("julie")
    tmp = tempfile.mkdtemp(prefix="aicp-bench-")
    songs_path = os.path.join(tmp, "songs.jsonl")
    with open(songs_path, "w") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in songs)
    p = template.params
    requests = [{"messages": template.messages(s, persona), "temperature": p.temperature, "top_p": p.top_p,
                 "max_tokens": args.max_tokens, "seed": args.seed, "repeat_penalty": p.repeat_penalty}
                for s in songs]
    jobs_path = os.path.join(tmp, "jobs.json")
    json.dump({"model": str(bundled_model_path()), "requests": requests}, open(jobs_path, "w"))

    plain_out = os.path.join(tmp, "plain.json")
    aicp_cmd = [os.path.join(BIN, "aicp-script"), "--backend", "llamacpp", "--persona", "julie",
                "--seed", str(args.seed), "--max-tokens", str(args.max_tokens), "-q", songs_path]
    plain_cmd = [sys.executable, "-c", PLAIN, jobs_path, plain_out]
    batch_cmd = [*aicp_cmd[:-1], "--batch", str(args.batch), songs_path]
    cmds = {"aicp": aicp_cmd, "plain": plain_cmd, "batch": batch_cmd}
    times: dict[str, list[float]] = {"aicp": [], "plain": [], "batch": []}
    runs: dict[str, subprocess.CompletedProcess[bytes]] = {}
    for r in range(args.repeat):
        order = ["aicp", "plain", "batch"] if r % 2 == 0 else ["batch", "plain", "aicp"]
        for which in order:
            if args.batch_only and which == "aicp":
                continue
            t0 = time.perf_counter()
            runs[which] = subprocess.run(cmds[which], capture_output=True, check=True)
            times[which].append(time.perf_counter() - t0)
    t_plain, t_batch = min(times["plain"]), min(times["batch"])
    plain = json.load(open(plain_out))
    theirs, plain_tokens = plain["texts"], plain["completion_tokens"]
    batched = [json.loads(x)["script"] for x in runs["batch"].stdout.splitlines()]
    batch_tokens = sum(o["tokens"]["completion"] for o in batched)
    print(f"records: {len(songs)}, max_tokens: {args.max_tokens}, seed: {args.seed}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if not args.batch_only:
        _sequential_rows(args, songs, runs, times, theirs, t_plain)
    tp_plain, tp_batch = plain_tokens / t_plain, batch_tokens / t_batch
    print(f"plain llama loop:  {t_plain:7.2f} s, {plain_tokens} completion tokens, {tp_plain:.1f} tok/s")
    print(f"aicp-script --batch {args.batch}: {t_batch:7.2f} s  (best of {args.repeat}: "
          f"{', '.join(f'{t:.2f}' for t in times['batch'])}), {batch_tokens} completion tokens, {tp_batch:.1f} tok/s")
    print(f"throughput ratio (--batch {args.batch} / plain loop): {tp_batch / tp_plain:.2f}x  (target >= 1.5x)")


def _sequential_rows(args: argparse.Namespace, songs: list, runs: dict, times: dict, theirs: list,
                     t_plain: float) -> None:
    t_aicp = min(times["aicp"])
    ours = [json.loads(x)["script"] for x in runs["aicp"].stdout.splitlines()]
    same = sum(o["text"] == t.strip().strip('"').strip() or o["text"] in t for o, t in zip(ours, theirs, strict=True))
    tokens = sum(o["tokens"]["completion"] for o in ours)

    helps = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([os.path.join(BIN, "aicp-script"), "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - t0)

    print(f"aicp-script completion tokens: {tokens}")
    print(f"aicp-script:       {t_aicp:7.2f} s  (best of {args.repeat}: {', '.join(f'{t:.2f}' for t in times['aicp'])})")
    print(f"plain llama loop:  {t_plain:7.2f} s  (best of {args.repeat}: {', '.join(f'{t:.2f}' for t in times['plain'])})")
    print(f"ratio:             {t_aicp / t_plain:7.3f}  (target <= 1.05)")
    print(f"same text as plain loop: {same}/{len(songs)}")
    print(f"aicp-script --help start-up: median {statistics.median(helps) * 1000:.0f} ms over 5 runs")


if __name__ == "__main__":
    main()
