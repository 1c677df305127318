"""aicp-voice's overhead over a plain loop of the engine's own calls (Piper or Kokoro), measured in one run.

Builds 20 script records (what aicp-script writes for examples/songs.jsonl,
with fixed texts so runs compare), then times, in the same run and as fresh
processes (both pay Python start-up and model load):

- ``aicp-voice --backend piper`` (or ``--backend kokoro``) with loudness
  normalization on (-16 LUFS), WAV files, the persona's (julie's) voice settings;
- a plain loop: for Piper, ``PiperVoice.load`` then ``voice.synthesize_wav`` per
  text with the same voice settings; for Kokoro (``--backend kokoro``, the
  packaged model and voices file), ``kokoro_onnx.Kokoro(model, voices)`` then
  ``kokoro.create(text, voice, speed)`` and ``soundfile.write`` per text; one WAV
  file each.

Prints, for each record count (default 20 and 200), both times (wall and the
child's CPU seconds: on a shared machine the CPU time is the steadier measure)
and their ratio (target <= 1.05), then the per-record cost and the start-up
cost (model load, imports) of each, from the difference between the two rows,
the audio seconds and the real-time factors (synthesis seconds / audio seconds
from the records, and wall seconds / audio seconds for the whole command).

Usage: .venv/bin/python bench/voice_overhead.py [--backend piper|kokoro] [--records 20,200] [--repeat 3]
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

PLAIN_KOKORO = r"""
import json, sys
import soundfile as sf
from kokoro_onnx import Kokoro
jobs = json.load(open(sys.argv[1]))
kokoro = Kokoro(jobs["model"], jobs["voices"])
for n, text in enumerate(jobs["texts"]):
    samples, rate = kokoro.create(text, voice=jobs["voice"], speed=jobs["speed"], lang="en-us")
    sf.write(f"{sys.argv[2]}/{n}.wav", samples, rate)
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
    ap.add_argument("--backend", choices=("piper", "kokoro"), default="piper",
                    help="the engine of both sides (kokoro: the packaged model and voices file)")
    ap.add_argument("--records", default="20,200", help="comma-separated record counts, one row each")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each, alternating plain and aicp; the fastest of each is reported")
    args = ap.parse_args()
    counts = [int(n) for n in args.records.split(",")]

    from ai_content_pipeline.templates import load_persona

    songs = [json.loads(x) for x in open(os.path.join(ROOT, "examples", "songs.jsonl"))]
    persona = load_persona("julie")
    if args.backend == "kokoro":
        from ai_content_pipeline.backends.kokoro import packaged_model, packaged_voices

        block = persona.voice.block("kokoro")
        plain = PLAIN_KOKORO
        engine = {"model": str(packaged_model()), "voices": str(packaged_voices()), "voice": block.voice,
                  "speed": float(block.speed or 1.0)}
    else:
        from ai_content_pipeline.backends.piper import bundled_voice_paths

        settings = persona.voice.piper.model_dump(exclude_none=True, exclude={"voice"})
        model, config = bundled_voice_paths()  # type: ignore[misc]
        plain = PLAIN
        engine = {"model": str(model), "config": str(config), "settings": settings}
    tmp = tempfile.mkdtemp(prefix="aicp-voice-bench-")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; best of {args.repeat}, "
          "alternating runs")
    rows: dict[int, tuple[float, float, float, float]] = {}
    for count in counts:
        records = [{**s, "id": f"{s['id']}-{n}", "script": {"text": TEXT.format(**s), "persona": "julie", "take": 0}}
                   for n, s in enumerate(songs[i % len(songs)] for i in range(count))]
        texts = [r["script"]["text"] for r in records]
        jobs = os.path.join(tmp, f"jobs{count}.json")
        json.dump({**engine, "texts": texts}, open(jobs, "w"))
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        plain_runs, aicp_runs, outs = [], [], b""
        for n in range(args.repeat):
            plain_dir = os.path.join(tmp, f"plain{count}-{n}")
            os.makedirs(plain_dir)
            plain_runs.append(timed([sys.executable, "-c", plain, jobs, plain_dir])[:2])
            wall, cpu, outs = timed([os.path.join(BIN, "aicp-voice"), "--backend", args.backend, "-q",
                                     "--out-dir", os.path.join(tmp, f"aicp{count}-{n}")], data)
            aicp_runs.append((wall, cpu))
        audio = [json.loads(line)["audio"] for line in outs.splitlines()]
        audio_seconds = sum(a["seconds"] for a in audio)
        plain_wall, plain_cpu = min(w for w, _ in plain_runs), min(c for _, c in plain_runs)
        aicp_wall, aicp_cpu = min(w for w, _ in aicp_runs), min(c for _, c in aicp_runs)
        rows[count] = (plain_wall, plain_cpu, aicp_wall, aicp_cpu)
        print(f"\n{count} records ({audio_seconds:.1f} s of audio, loudness "
              f"{statistics.mean(a['loudness_lufs'] for a in audio):.2f} LUFS, "
              f"load average {os.getloadavg()[0]:.1f} at end):")
        print(f"  plain {args.backend} loop:{' ' * max(1, 8 - len(args.backend))}{plain_wall:.2f} s wall, {plain_cpu:.2f} s CPU")
        print(f"  aicp-voice:         {aicp_wall:.2f} s wall, {aicp_cpu:.2f} s CPU")
        print(f"  ratio:              {aicp_wall / plain_wall:.3f} wall, {aicp_cpu / plain_cpu:.3f} CPU "
              "(target <= 1.05)")
        print(f"  synthesis RTF:      {statistics.median(a['rtf'] for a in audio):.3f} (median per record)")
        print(f"  aicp-voice RTF:     {aicp_wall / audio_seconds:.3f} (wall / audio, incl. start-up and load)")
    if len(rows) >= 2:
        (small, a), (big, b) = sorted(rows.items())[0], sorted(rows.items())[-1]
        per = [(b[i] - a[i]) / (big - small) for i in range(4)]
        start = [a[i] - small * per[i] for i in range(4)]
        print(f"\nper record ({small} → {big} records): plain {per[0] * 1000:.0f} ms wall / {per[1] * 1000:.0f} ms CPU, "
              f"aicp-voice {per[2] * 1000:.0f} ms wall / {per[3] * 1000:.0f} ms CPU "
              f"(ratio {per[2] / per[0]:.3f} wall, {per[3] / per[1]:.3f} CPU)")
        print(f"start-up (imports, model load): plain {start[0]:.2f} s wall / {start[1]:.2f} s CPU, "
              f"aicp-voice {start[2]:.2f} s wall / {start[3]:.2f} s CPU")


if __name__ == "__main__":
    main()
