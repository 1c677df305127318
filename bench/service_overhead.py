"""aicp serve's overhead over aicp run-chain, and status-poll latency under load, in one run.

1. The same chain (N songs, script on the embedded SmolLM2-135M with a fixed seed and
   max tokens, then Piper voice) through `aicp run-chain` (a fresh process each time)
   and through a running `aicp serve` (POST, then follow the SSE stream to its end),
   alternating, best of --repeat each. Prints both times and their ratio (target <= 1.05).
2. While one more such job runs in the server, 50 concurrent pollers (asyncio + httpx)
   each GET /api/v1/generate/ID every --poll-interval seconds; prints p50/p99 latency
   (target p99 < 50 ms) and how much longer that job took than the best service run.

Usage: .venv/bin/python bench/service_overhead.py [--records 6] [--max-tokens 48] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, str(ROOT))


def run_chain_once(chain: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([os.path.join(BIN, "aicp"), "run-chain", "--config", str(chain), "-q"], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def service_once(srv: object, body: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    jid = srv.submit(body)  # type: ignore[attr-defined]
    for _, _event in srv.events(jid):  # type: ignore[attr-defined]
        pass
    elapsed = time.perf_counter() - t0
    status = srv.client.get(f"/api/v1/generate/{jid}").json()["status"]  # type: ignore[attr-defined]
    assert status == "completed", status
    return elapsed, jid


async def pollers(base: str, jid: str, count: int, interval: float, stop: asyncio.Event) -> list[float]:
    import httpx

    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, offset: float) -> None:
        await asyncio.sleep(offset)
        while not stop.is_set():
            t0 = time.perf_counter()
            r = await client.get(f"/api/v1/generate/{jid}", params={"records_limit": 0})
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200
            await asyncio.sleep(interval)

    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client, interval * i / count) for i in range(count)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--poll-interval", type=float, default=0.5, help="seconds between one poller's requests")
    args = ap.parse_args()

    import yaml

    from tests.service.serve_process import ServeProcess

    tmp = Path(tempfile.mkdtemp(prefix="aicp-bench-svc-"))
    songs = [json.loads(x) for x in open(ROOT / "examples" / "songs.jsonl")][: args.records]
    (tmp / "songs.jsonl").write_text("".join(json.dumps(s) + "\n" for s in songs))
    params = {"max_tokens": args.max_tokens, "seed": args.seed}
    steps = [{"type": "script", "template": "song-intro", "persona": "julie", "backend": "llamacpp",
              "params": params},
             {"type": "voice", "backend": "piper", "params": {"format": "wav", "loudness": -16}}]
    chain = tmp / "chain.yaml"
    chain.write_text(yaml.safe_dump({"name": "bench", "input": str(tmp / "songs.jsonl"),
                                     "output_dir": str(tmp / "cli-out"), "steps": steps}))
    body = {"chain": {"name": "bench", "steps": steps}, "records": songs}

    srv = ServeProcess(tmp / "data")
    try:
        times: dict[str, list[float]] = {"run-chain": [], "serve": []}
        for r in range(args.repeat):
            for which in (["run-chain", "serve"] if r % 2 == 0 else ["serve", "run-chain"]):
                t = run_chain_once(chain, tmp / "cli-out") if which == "run-chain" else service_once(srv, body)[0]
                times[which].append(t)
        t_cli, t_srv = min(times["run-chain"]), min(times["serve"])

        stop = asyncio.Event()

        async def loaded() -> tuple[list[float], float]:
            t0 = time.perf_counter()
            jid = srv.submit(body)

            async def follow() -> None:
                await asyncio.to_thread(lambda: [None for _ in srv.events(jid)])
                stop.set()
            lat, _ = await asyncio.gather(pollers(srv.base, jid, args.pollers, args.poll_interval, stop), follow())
            return lat, time.perf_counter() - t0
        latencies, t_loaded = asyncio.run(loaded())
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"records: {len(songs)}, max_tokens: {args.max_tokens}, seed: {args.seed}, script (llamacpp) + voice (piper)")
    print(f"aicp run-chain:  {t_cli:7.2f} s  (best of {args.repeat}: {', '.join(f'{t:.2f}' for t in times['run-chain'])})")
    print(f"aicp serve job:  {t_srv:7.2f} s  (best of {args.repeat}: {', '.join(f'{t:.2f}' for t in times['serve'])})")
    print(f"ratio:           {t_srv / t_cli:7.3f}  (target <= 1.05)")
    print(f"status polls with {args.pollers} pollers every {args.poll_interval} s: {len(latencies)} requests, "
          f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms (target p99 < 50 ms)")
    print(f"job under polling: {t_loaded:.2f} s ({t_loaded / t_srv:.3f} x the best unpolled service run); "
          f"median poll {statistics.median(latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
