"""``make test-chatterbox``: the real ``chatterbox-tts`` package behind ``aicp-voice``, on a CPU.

Needs the interpreter of ``.venv-chatterbox`` (the project with its ``[chatterbox]``
extra); no GPU, no model hub (``HF_HUB_OFFLINE=1``). Steps, each timed:

1. ``make_checkpoint.py WORK/checkpoint``: the real model classes with random weights
   (seeded), T3 made to stop after ``--speech-tokens`` speech tokens (see
   :func:`make_checkpoint.end_speech_after`).
2. ``aicp-voice --backend chatterbox --checkpoint-dir WORK/checkpoint --device cpu
   --stream`` on two short records (personas julie and max), run through
   ``spy_cli.py``, which records what the adapter asked of the installed library.
3. Checks: exit status 0; two records with ``audio``, backend ``chatterbox``; each file
   24,000 Hz, mono, as many samples as ``generate`` returned, a whole number of S3Gen
   frames (960 samples = one speech token = 40 ms) between ``MIN_TOKENS`` and
   ``--speech-tokens`` of them; ``from_local(checkpoint, "cpu")`` once, ``sr`` 24,000, the
   Perth watermarker applied to every take; ``generate`` called with the persona's
   exaggeration / cfg_weight / temperature, no ``audio_prompt_path`` (``conds.pt``), under
   ``torch.inference_mode()``, seeded with the persona's seed, returning a float32 CPU
   ``torch.Tensor`` of shape ``[1, n]``; the model garbage-collected after the last take
   (the adapter released it) and ``model_load``/``model_unload`` events for ``cpu``.

Random weights speak noise: these check shapes and calls, never speech. Length bounds:
T3 emits at most ``--speech-tokens`` tokens before its stop token; tokens >= 6561 (about
20% of the 8194 ids) are dropped, so a take lasts about 0.8 x 40 ms x N and at most
40 ms x N (1.6 s for N = 40). ``MIN_TOKENS`` (15, 0.6 s) is far below that (a binomial
40 x 0.8 is below 15 with probability ~1e-7) and at least the voice stage's own floor
for the 3-word texts (3 words / 5 words a second = 0.6 s); its ceiling for them is
3 / 0.5 + 2 = 8 s, so even a take of all 40 tokens passes it. Runs are seeded, so the
lengths are the same on every run with the same package versions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 24000
SAMPLES_PER_TOKEN = 960  # S3Gen: 2 mel frames of 480 samples per 25 Hz speech token
MIN_TOKENS = 15
RECORDS = [
    {"id": "cb-1", "persona": "julie", "text": "Good evening, everyone."},
    {"id": "cb-2", "persona": "max", "text": "Turn it up!"},
]
PACKAGES = ("chatterbox-tts", "torch", "torchaudio", "transformers", "diffusers", "safetensors",
            "tokenizers", "resemble-perth", "s3tokenizer", "librosa", "numpy", "setuptools")


class CheckFailed(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        raise CheckFailed(what)


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def run(cmd: list[str], env: dict[str, str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=env, timeout=timeout, text=True, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".venv-chatterbox/check"))
    parser.add_argument("--speech-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (OMP_NUM_THREADS); on a shared 2-core host one "
                             "thread ran T3 about 7 times faster than two")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per step")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint (3.2 GB) afterwards")
    args = parser.parse_args(argv)
    t_all = time.perf_counter()
    times: dict[str, float] = {}
    vers = versions()
    print("versions: " + json.dumps(vers), flush=True)
    if vers["chatterbox-tts"] == "missing":
        print("chatterbox-tts is not installed in this interpreter (use .venv-chatterbox)", file=sys.stderr)
        return 2

    work: Path = args.work.resolve()
    ckpt, out_dir = work / "checkpoint", work / "audio"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONUNBUFFERED": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    # 1. checkpoint
    t = time.perf_counter()
    built = run([sys.executable, str(HERE / "make_checkpoint.py"), str(ckpt),
                 "--speech-tokens", str(args.speech_tokens)], env, args.timeout,
                stdout=subprocess.PIPE)
    times["checkpoint"] = time.perf_counter() - t
    print(built.stdout.strip(), flush=True)
    check(built.returncode == 0, f"checkpoint built (exit {built.returncode})")
    manifest = json.loads(built.stdout.strip().splitlines()[-1])

    # 2. aicp-voice on two records
    inp = work / "records.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    spy = work / "spy.jsonl"
    t = time.perf_counter()
    voice = run([sys.executable, str(HERE / "spy_cli.py"), str(spy), "--backend", "chatterbox",
                 "--checkpoint-dir", str(ckpt), "--device", "cpu", "--out-dir", str(out_dir),
                 "--stream", str(inp)], env, args.timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times["aicp-voice"] = time.perf_counter() - t
    (work / "stdout.jsonl").write_text(voice.stdout)
    (work / "stderr.txt").write_text(voice.stderr)
    events = [json.loads(line) for line in voice.stderr.splitlines()
              if line.startswith("{") and '"schema_version"' in line]
    outputs = [json.loads(line) for line in voice.stdout.splitlines() if line.startswith("{")]
    records = [o for o in outputs if "id" in o]
    observed = [json.loads(line) for line in spy.read_text().splitlines()] if spy.exists() else []
    if voice.returncode != 0:
        print(voice.stderr[-4000:], file=sys.stderr)

    # 3. checks
    import soundfile
    import torch  # noqa: F401 - present in this interpreter, as the adapter needs

    from ai_content_pipeline.templates import load_persona

    print("checks:", flush=True)
    check(voice.returncode == 0, f"aicp-voice exit status 0 (got {voice.returncode})")
    loads = [o for o in observed if o["kind"] == "from_local"]
    gens = [o for o in observed if o["kind"] == "generate"]
    marks = [o for o in observed if o["kind"] == "watermark"]
    released = [o for o in observed if o["kind"] == "released"]
    check(len(loads) == 1 and loads[0]["ckpt_dir"] == str(ckpt) and loads[0]["device"] == "cpu",
          "ChatterboxTTS.from_local(checkpoint_dir, 'cpu') called once")
    check(loads[0]["cls"] == "chatterbox.tts.ChatterboxTTS" and loads[0]["sr"] == SAMPLE_RATE
          and loads[0]["conds"], f"the installed chatterbox.tts.ChatterboxTTS, sr {loads[0]['sr']}, conds.pt loaded")
    check(loads[0]["watermarker"].startswith("perth.") and "Implicit" in loads[0]["watermarker"],
          f"watermarker {loads[0]['watermarker']}")
    check(len(records) == 2 and all("audio" in r and "error" not in r for r in records),
          "two records out, each with audio, none with error: "
          + json.dumps([r.get("error") for r in records if "error" in r]))
    check(len(gens) == len(RECORDS) == len(marks), f"generate called {len(gens)} times, watermark applied {len(marks)} times")
    for rec, record, gen in zip(RECORDS, records, gens, strict=True):
        persona = load_persona(rec["persona"])
        cb = persona.voice.chatterbox
        audio = record["audio"]
        want = {"exaggeration": cb.exaggeration, "cfg_weight": cb.cfg_weight, "temperature": cb.temperature}
        print(f" {rec['id']} ({rec['persona']}): {json.dumps({k: audio[k] for k in ('path', 'seconds', 'rtf', 'backend', 'voice', 'chunks')})}")
        check(gen["text"] == rec["text"] and gen["args"] == [], "generate(text, ...) with the record's text")
        check(gen["kwargs"] == {"audio_prompt_path": None, **want},
              f"generate kwargs {gen['kwargs']} (persona {rec['persona']}: {want})")
        check(gen["inference_mode"], "generate ran under torch.inference_mode()")
        check(gen["seed"] == persona.seed, f"torch seeded with the persona's seed {persona.seed} (saw {gen['seed']})")
        check(gen["type"] == "torch.Tensor" and len(gen["shape"]) == 2 and gen["shape"][0] == 1
              and gen["dtype"] == "torch.float32" and gen["device"] == "cpu",
              f"generate returned {gen['type']} {gen['dtype']} {gen['shape']} on {gen['device']}")
        n = gen["shape"][1]
        tokens = n / SAMPLES_PER_TOKEN
        check(n % SAMPLES_PER_TOKEN == 0 and MIN_TOKENS <= tokens <= args.speech_tokens,
              f"{n} samples = {tokens:g} speech tokens (bounds {MIN_TOKENS}-{args.speech_tokens})")
        check(audio["backend"] == "chatterbox" and audio["sample_rate"] == SAMPLE_RATE and audio["channels"] == 1,
              f"record audio: backend {audio['backend']}, {audio['sample_rate']} Hz, {audio['channels']} channel")
        info = soundfile.info(audio["path"])
        check(info.samplerate == SAMPLE_RATE and info.channels == 1 and info.frames == n,
              f"file {Path(audio['path']).name}: {info.samplerate} Hz, {info.channels} channel, "
              f"{info.frames} frames = {info.frames / info.samplerate:.2f} s")
    names = [e["event"] for e in events]
    load_ev = [e for e in events if e["event"] == "model_load"]
    unload_ev = [e for e in events if e["event"] == "model_unload"]
    check(len(load_ev) == 1 and load_ev[0]["backend"] == "chatterbox" and load_ev[0]["device"] == "cpu"
          and load_ev[0]["model"] == str(ckpt), f"model_load event: {load_ev[:1]}")
    check(len(unload_ev) == 1 and names.index("model_unload") > names.index("model_load"),
          "model_unload event after the records")
    check(len(released) == 1 and released[0]["after"].count("generate") == len(RECORDS)
          and "exit" not in released[0]["after"], "the model was garbage-collected after the last take, before exit")

    audio_seconds = sum(r["audio"]["seconds"] for r in records)
    synth_seconds = sum(g["seconds"] for g in gens)
    times["all"] = time.perf_counter() - t_all
    summary = {
        "versions": vers, "threads": args.threads, "speech_tokens": args.speech_tokens,
        "checkpoint_step_seconds": manifest.get("step_seconds"),
        "model_load_seconds": load_ev[0]["seconds"],
        "generate_seconds": [g["seconds"] for g in gens],
        "audio_seconds": [r["audio"]["seconds"] for r in records],
        "rtf": [r["audio"]["rtf"] for r in records],
        "rtf_overall": round(synth_seconds / audio_seconds, 1),
        "step_seconds": {k: round(v, 1) for k, v in times.items()},
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print("summary: " + json.dumps(summary), flush=True)
    if not args.keep:
        shutil.rmtree(ckpt, ignore_errors=True)
    print(f"test-chatterbox: passed in {times['all']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as exc:
        print(f"test-chatterbox: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
