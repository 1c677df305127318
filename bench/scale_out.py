"""Scaling out over N simulated GPU hosts: one aicp-script with N hosts, and N shards + aicp merge.

Each simulated host is a local server speaking the Ollama API (tests/ollama_server.py) that
streams its reply at a fixed rate for the whole host, --tps tokens (words) per second however
many requests it serves at once, by sleeping: the hosts use no CPU, so the figures measure
aicp's own scaling, not this machine's cores. For N = 1, 2, 4:

(a) one `aicp-script --backend ollama --host H1 ... --host HN --jobs J` over --records songs;
(b) N processes `aicp-script --shard K/N --host HK --jobs J` at once, then `aicp merge`.

Throughput = completion tokens / wall seconds (process start-up and the merge included);
the ratio is throughput / (N x the one-host figure), target >= 0.9 for both. Then one host of
two is killed mid-run (its replies in flight are cut): every record must still come out
once, in input order, without an error, exit 0. The merged output of (b) must list the
same records in the same order as (a).

Usage: .venv/bin/python bench/scale_out.py [--records 256] [--tps 50] [--words 25] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, str(ROOT))

from tests.ollama_server import OllamaServer, Reply  # noqa: E402


def hosts(stack: ExitStack, n: int, tps: float, text: str) -> list[OllamaServer]:
    return [stack.enter_context(OllamaServer(reply_for=lambda body: Reply(text=text), tokens_per_second=tps))
            for _ in range(n)]


def script_args(urls: list[str], jobs: int) -> list[str]:
    args = [os.path.join(BIN, "aicp-script"), "--backend", "ollama", "--jobs", str(jobs), "--seed", "1", "-q"]
    for url in urls:
        args += ["--host", url]
    return args


def tokens_of(lines: list[str]) -> int:
    return sum(json.loads(line)["script"]["tokens"]["completion"] for line in lines)


def run_one(songs: Path, urls: list[str], jobs: int) -> tuple[float, list[str], subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([*script_args(urls, jobs), str(songs)], capture_output=True, text=True)
    return time.perf_counter() - t0, proc.stdout.splitlines(), proc


def run_shards(songs: Path, urls: list[str], jobs: int, work: Path) -> tuple[float, list[str]]:
    n = len(urls)
    t0 = time.perf_counter()
    procs = []
    for k, url in enumerate(urls):
        out = open(work / f"out.{k}.jsonl", "wb")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen([*script_args([url], jobs), "--shard", f"{k}/{n}", str(songs)],
                                       stdout=out, stderr=subprocess.PIPE), out))
    for proc, out in procs:
        _, err = proc.communicate()
        out.close()
        if proc.returncode != 0:
            raise SystemExit(f"a shard failed ({proc.returncode}): {err.decode()[-400:]}")
    merged = subprocess.run([os.path.join(BIN, "aicp"), "merge", "-q", *(str(work / f"out.{k}.jsonl")
                                                                         for k in range(n))],
                            capture_output=True, text=True)
    if merged.returncode != 0:
        raise SystemExit(f"aicp merge failed ({merged.returncode}): {merged.stderr[-400:]}")
    return time.perf_counter() - t0, merged.stdout.splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--tps", type=float, default=50.0, help="tokens (words) per second of each host")
    parser.add_argument("--words", type=int, default=25, help="words in each reply")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs (requests in flight per host)")
    parser.add_argument("--sizes", default="1,2,4")
    args = parser.parse_args()
    text = " ".join(["word"] * (args.words - 1)) + " end."
    with tempfile.TemporaryDirectory(prefix="aicp-scale-") as tmp:
        work = Path(tmp)
        songs = work / "songs.jsonl"
        songs.write_text("".join(json.dumps({"id": f"s{i:03d}", "artist": f"Artist {i}", "title": f"Song {i}"})
                                 + "\n" for i in range(args.records)))
        sizes = [int(s) for s in args.sizes.split(",")]
        print(f"{args.records} records x {args.words} tokens; each host {args.tps:g} tokens/s; "
              f"--jobs {args.jobs} per host; load average {os.getloadavg()[0]:.1f}")
        print(f"{'N':>2} {'mode':<22} {'seconds':>8} {'tokens/s':>9} {'ratio':>6}")
        base: float | None = None
        ratios: dict[str, list[float]] = {"a": [], "b": []}
        reference: list[str] | None = None
        for n in sizes:
            with ExitStack() as stack:
                servers = hosts(stack, n, args.tps, text)
                urls = [s.url for s in servers]
                seconds, lines, proc = run_one(songs, urls, args.jobs)
                if proc.returncode != 0:
                    raise SystemExit(f"aicp-script failed ({proc.returncode}): {proc.stderr[-400:]}")
                rate = tokens_of(lines) / seconds
                base = rate if base is None else base
                ratio = rate / (n * base)
                ratios["a"].append(ratio) if n > 1 else None
                ids = [json.loads(line)["id"] for line in lines]
                reference = reference or ids
                assert ids == reference, "(a) wrote other records or another order"
                print(f"{n:>2} {'(a) one process':<22} {seconds:>8.2f} {rate:>9.1f} {ratio:>6.3f}", flush=True)
            if n == 1:
                continue
            with ExitStack() as stack:
                servers = hosts(stack, n, args.tps, text)
                seconds, lines = run_shards(songs, [s.url for s in servers], args.jobs, work)
                rate = tokens_of(lines) / seconds
                ratio = rate / (n * base)
                ratios["b"].append(ratio)
                assert [json.loads(line)["id"] for line in lines] == reference, "(b) merge differs from (a)"
                print(f"{n:>2} {'(b) shards + merge':<22} {seconds:>8.2f} {rate:>9.1f} {ratio:>6.3f}", flush=True)

        # one host of two killed mid-run
        with ExitStack() as stack:
            servers = hosts(stack, 2, args.tps, text)
            expected = args.records * args.words / (2 * args.tps)
            timer = threading.Timer(expected * 0.4, servers[0].kill)
            timer.start()
            seconds, lines, proc = run_one(songs, [s.url for s in servers], args.jobs)
            timer.cancel()
            records = [json.loads(line) for line in lines]
            ids = [r["id"] for r in records]
            errors = sum("error" in r for r in records)
            by_host = {s.url: sum(r.get("script", {}).get("host") == s.url for r in records) for s in servers}
            cut = len(servers[0].requests_to("/api/chat")) - by_host[servers[0].url]
            ok = proc.returncode == 0 and ids == reference and errors == 0 and servers[0].dead
            print(f"kill one host of 2 at {expected * 0.4:.1f} s: exit {proc.returncode}, {len(ids)} records "
                  f"once and in order: {ids == reference}, errors {errors}; served {list(by_host.values())}; "
                  f"{cut} cut replies sent to the other host; {seconds:.2f} s -> {'OK' if ok else 'FAILED'}")
        worst = {k: min(v) for k, v in ratios.items() if v}
        print("ratio to N x one host: " + ", ".join(f"({k}) min {v:.3f}" for k, v in worst.items())
              + " (target >= 0.9)")
        return 0 if ok and all(v >= 0.9 for v in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
