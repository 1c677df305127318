"""The best `--batch B` throughput ratio this machine allows, measured in one run.

`bench/script_overhead.py` compares `aicp-script --batch 8` with a plain one-at-a-time
llama-cpp-python loop. This script asks how high that ratio can go here at all, with any
batch decoder, on the same work: it runs the plain loop on the same 20 song prompts (fixed
seed and max tokens) and times it, then, in the same process and with llama.cpp's own API,
times what no batching can avoid:

- each record's prompt after the persona's shared system prefix (the plain loop reuses
  that prefix too), evaluated one record at a time as 64-128-token batches are: prompt
  evaluation is compute-bound and costs the same per token at 32 tokens as at 512;
- one decode step of B sequences, one token each (one KV stream per sequence, as the
  batch decoder runs them), and one step of a single sequence.

The ideal batched run then costs the plain loop's start-up (import and model load) plus
every prompt plus ceil(completion tokens / B) full steps: every step full, no tail, no
Python, no sampling. The ratio of the plain loop's time to that is the ceiling; the
batch decoder's measured ratio is below it.

Usage: .venv/bin/python bench/batch_ceiling.py [--records 20] [--max-tokens 64] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    from ai_content_pipeline.backends.llamacpp import bundled_model_path, default_threads
    from ai_content_pipeline.backends.llamacpp_batch import BatchDecoder
    from ai_content_pipeline.templates import load_persona, load_template

    songs = [json.loads(x) for x in open(os.path.join(ROOT, "examples", "songs.jsonl"))][: args.records]
    template, persona = load_template("song-intro"), load_persona("julie")
    p = template.params
    threads = default_threads()

    t0 = time.perf_counter()
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(bundled_model_path()), n_ctx=4096, n_threads=threads, verbose=False)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    completion = 0
    for song in songs:
        reply = llm.create_chat_completion(messages=template.messages(song, persona), temperature=p.temperature,
                                           top_p=p.top_p, max_tokens=args.max_tokens, seed=args.seed,
                                           repeat_penalty=p.repeat_penalty)
        completion += reply["usage"]["completion_tokens"]
    plain = startup + time.perf_counter() - t0

    L = llama_cpp
    decoder = BatchDecoder(llm, threads, 4096)
    prompts = [decoder.tokenize(template.messages(s, persona))[0] for s in songs]
    system = decoder.tokenize(template.messages(songs[0], persona)[:1])[0]
    shared = next((i for i, (a, b) in enumerate(zip(prompts[0], system, strict=False)) if a != b), len(system))
    b = max(1, args.batch)
    params = L.llama_context_default_params()
    params.n_seq_max, params.n_ctx = b, b * 512
    params.n_batch = params.n_ubatch = 512
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = False
    params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = L.llama_init_from_model(llm._model.model, params)
    batch = L.llama_batch_init(512, 0, 1)
    mem = L.llama_get_memory(ctx)

    def decode(items: list[tuple[int, int, int, bool]]) -> float:
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, int(logits)
        batch.n_tokens = len(items)
        start = time.perf_counter()
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        return time.perf_counter() - start

    decode([(t, i, 0, False) for i, t in enumerate(prompts[0][:shared])])  # the shared system prefix
    prompt_seconds = 0.0
    for tokens in prompts:
        L.llama_memory_seq_rm(mem, 0, shared, -1)
        prompt_seconds += decode([(t, shared + i, 0, i == len(tokens) - shared - 1)
                                  for i, t in enumerate(tokens[shared:])])
    evaluated = sum(len(t) - shared for t in prompts)
    for seq in range(1, b):
        L.llama_memory_seq_cp(mem, 0, seq, -1, -1)
    at = len(prompts[-1])  # stream 0 holds the last prompt; positions go on from there

    def steps(n: int, repeat: int = 24) -> float:
        times = []
        for r in range(repeat):
            times.append(decode([(prompts[0][1], at + r, seq, True) for seq in range(n)]))
        for seq in range(n):
            L.llama_memory_seq_rm(mem, seq, at, -1)
        return statistics.median(times)

    one, full = steps(1), steps(b)
    L.llama_batch_free(batch)
    L.llama_free(ctx)

    ideal = startup + prompt_seconds + math.ceil(completion / b) * full
    print(f"records: {len(songs)}, max_tokens: {args.max_tokens}, seed: {args.seed}, {threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"plain llama loop: {plain:6.2f} s for {completion} completion tokens "
          f"({completion / plain:.1f} tok/s; start-up {startup:.2f} s)")
    print(f"prompts after the shared {shared}-token prefix: {evaluated} tokens, {prompt_seconds:.2f} s "
          f"({1000 * prompt_seconds / evaluated:.2f} ms/token)")
    print(f"decode step: 1 sequence {1000 * one:.1f} ms; {b} sequences {1000 * full:.1f} ms "
          f"({1000 * full / b:.2f} ms/token, {one * b / full:.2f}x the tokens/s of one)")
    print(f"ideal --batch {b} run: {ideal:.2f} s (start-up + prompts + {math.ceil(completion / b)} full steps)")
    print(f"ceiling of the throughput ratio on this machine: {plain / ideal:.2f}x")


if __name__ == "__main__":
    main()
