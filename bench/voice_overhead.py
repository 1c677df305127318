"""aicp-voice's overhead over a plain Piper loop, measured in one run.

Builds 20 script records (what aicp-script writes for examples/songs.jsonl,
with fixed texts so runs compare), then times, in the same run and as fresh
processes (both pay Python start-up and model load):

- ``aicp-voice --backend piper`` with loudness normalization on (-16 LUFS),
  WAV files, the persona's voice settings;
- a plain loop: ``PiperVoice.load`` then ``voice.synthesize_wav`` per text with
  the same voice settings, one WAV file each.

Prints both times (wall and the child's CPU seconds: on a shared machine the
CPU time is the steadier measure), their ratio (target <= 1.10), the audio
seconds and the real-time factors (synthesis seconds / audio seconds from the
records, and wall seconds / audio seconds for the whole command).

Usage: .venv/bin/python bench/voice_overhead.py [--records 20] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

PLAIN = r"""
import json, sys, wave
from piper import PiperVoice, SynthesisConfig
jobs = json.load(open(sys.argv[1]))
voice = PiperVoice.load(jobs["model"], config_path=jobs["config"])
config = SynthesisConfig(**jobs["settings"], normalize_audio=False)
for n, text in enumerate(jobs["texts"]):
    with wave.open(f"{sys.argv[2]}/{n}.wav", "wb") as wav:
        voice.synthesize_wav(text, wav, config)
"""

TEXT = ("Good evening, night owls, this is Julie on Night Owl FM. Here is {artist} with {title}, "
        "from {year}, off the album {album}. Let the night play on.")


def timed(cmd: list[str], stdin: bytes | None = None) -> tuple[float, float, bytes]:
    """Run ``cmd``: (wall seconds, CPU seconds of the child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each, interleaved; the fastest of each is reported")
    args = ap.parse_args()

    from ai_content_pipeline.backends.piper import bundled_voice_paths
    from ai_content_pipeline.templates import load_persona

    songs = [json.loads(x) for x in open(os.path.join(ROOT, "examples", "songs.jsonl"))][: args.records]
    persona = load_persona("julie")
    records = [{**s, "script": {"text": TEXT.format(**s), "persona": "julie", "take": 0}} for s in songs]
    texts = [r["script"]["text"] for r in records]
    settings = persona.voice.piper.model_dump(exclude_none=True, exclude={"voice"})
    model, config = bundled_voice_paths()  # type: ignore[misc]
    tmp = tempfile.mkdtemp(prefix="aicp-voice-bench-")
    jobs = os.path.join(tmp, "jobs.json")
    json.dump({"model": str(model), "config": str(config), "settings": settings, "texts": texts}, open(jobs, "w"))
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)

    plain_runs, aicp_runs, outs = [], [], b""
    for n in range(args.repeat):
        plain_dir = os.path.join(tmp, f"plain{n}")
        os.makedirs(plain_dir)
        plain_runs.append(timed([sys.executable, "-c", PLAIN, jobs, plain_dir])[:2])
        wall, cpu, outs = timed([os.path.join(BIN, "aicp-voice"), "--backend", "piper", "-q",
                                 "--out-dir", os.path.join(tmp, f"aicp{n}")], data)
        aicp_runs.append((wall, cpu))

    audio = [json.loads(line)["audio"] for line in outs.splitlines()]
    audio_seconds = sum(a["seconds"] for a in audio)
    synth_rtf = statistics.median(a["rtf"] for a in audio)
    plain, voiced = min(plain_runs), min(aicp_runs)
    plain_cpu, voiced_cpu = min(c for _, c in plain_runs), min(c for _, c in aicp_runs)
    print(f"records:            {len(records)} ({audio_seconds:.1f} s of audio, "
          f"loudness {statistics.mean(a['loudness_lufs'] for a in audio):.2f} LUFS), "
          f"best of {args.repeat}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"plain piper loop:   {plain[0]:.2f} s wall, {plain_cpu:.2f} s CPU")
    print(f"aicp-voice:         {voiced[0]:.2f} s wall, {voiced_cpu:.2f} s CPU")
    print(f"ratio:              {voiced[0] / plain[0]:.3f} wall, {voiced_cpu / plain_cpu:.3f} CPU (target <= 1.10)")
    print(f"synthesis RTF:      {synth_rtf:.3f} (median per record)")
    print(f"aicp-voice RTF:     {voiced[0] / audio_seconds:.3f} (wall / audio, incl. start-up and load)")


if __name__ == "__main__":
    main()
