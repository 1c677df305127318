"""How well each installed voice speaks, by the listening check (``aicp-voice --verify``).

For each installed TTS backend (the registry's, so a backend installed later is measured
too) and each distinct voice the built-in personas get from it (``julie``, ``max``, ``sam``;
a voice that ``--backend auto`` gives a persona is measured with that persona's settings and
marked ``auto``),
voices 20 intros built from ``examples/songs.jsonl`` (fixed texts, so runs compare; or
``--scripts FILE``, aicp-script's output) with the voice stage, then runs the listening
check (:mod:`ai_content_pipeline.listen`) on every file and prints per voice:

- ``recall``: median and lowest share of the script's words heard; ``names``: the median
  recall of the artist and title words alone;
- ``rtf``: synthesis seconds / audio seconds (median of the records);
- ``pass``: the share of files passing the check;
- ``verify``: the check's CPU seconds as a share of the voicing's (the cost of ``--verify``);
- the broken set, made from the same files, which must all fail: ``silence`` (zeros of the
  same length), ``cut`` (the first 60 % of the file: its last sentence gone) and ``other``
  (the file of another intro, checked against this script); each row gives how many failed
  and the highest recall among them, which the default threshold must stay above.

Usage: .venv/bin/python bench/voice_quality.py [--records 20] [--scripts FILE] [--auto-only] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INTROS = (
    "Good evening, night owls, this is Julie on Night Owl FM. Here is {artist} with {title}, "
    "from {year}, off the album {album}. Let the night play on.",
    "Rise and shine, it's Max on the morning drive! {artist} gave us {title} back in {year}. "
    "Turn it up and get moving.",
    "Back in {year}, {artist} went into the studio and came out with {album}. From that record, "
    "this is {title}. It still sounds fresh today.",
    "Here's a song that changed the charts. {title}, by {artist}, recorded in {year}. "
    "Sit back and enjoy it.",
)
PERSONAS = ("julie", "max", "sam")
CUT_SHARE = 0.6


def scripts(path: str | None, count: int) -> list[dict[str, Any]]:
    """``count`` script records: ``path``'s (records with ``script.text``), else fixed intros."""
    if path:
        with open(path, encoding="utf-8") as f:
            out = [json.loads(line) for line in f if line.strip()]
        return [r for r in out if isinstance(r.get("script"), dict) and r["script"].get("text")][:count]
    with open(os.path.join(ROOT, "examples", "songs.jsonl"), encoding="utf-8") as f:
        songs = [json.loads(line) for line in f if line.strip()][:count]
    return [{**song, "script": {"text": INTROS[i % len(INTROS)].format(**song), "take": 0}}
            for i, song in enumerate(songs)]


def installed_voices(auto_only: bool = False) -> list[tuple[str, str, Any, bool]]:
    """``(backend, persona, backend object, auto)`` for each distinct voice of each usable TTS
    backend; ``auto``: ``--backend auto`` gives ``persona`` this voice (so it is measured with
    that persona's settings). ``auto_only``: only those."""
    from ai_content_pipeline.backends import registry
    from ai_content_pipeline.doctor import _run_check
    from ai_content_pipeline.templates import load_persona

    personas = {name: load_persona(name) for name in PERSONAS}
    router = registry.create_tts("auto")
    routed = {name: getattr(router, "backend_for", lambda _p: router)(persona).name
              for name, persona in personas.items()}
    found = []
    for info in registry.backends("tts"):
        if not _run_check(info, None).get("usable") and info.name not in routed.values():
            continue
        try:
            backend = registry.create_tts(info.name)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot be built is reported, not measured
            print(f"# {info.name}: not measured ({exc})", file=sys.stderr)
            continue
        seen = set()
        # the personas auto routes here first: a voice is measured with the settings they get
        for name in sorted(PERSONAS, key=lambda n: routed[n] != info.name):
            voice = backend.default_voice(personas[name], 0)
            if voice.name in seen or (auto_only and routed[name] != info.name):
                continue
            seen.add(voice.name)
            found.append((info.name, name, backend, routed[name] == info.name))
    return found


def cpu() -> float:
    return time.process_time()


def measure(backend_name: str, persona: str, backend: Any, records: list[dict[str, Any]],
            folder: str) -> dict[str, Any]:
    """Voice ``records`` with ``persona``'s voice, check every file and the broken set."""
    import numpy as np
    import soundfile as sf

    from ai_content_pipeline.events import Emitter
    from ai_content_pipeline.jsonl import InputLine
    from ai_content_pipeline.listen import PocketSphinx, listen
    from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage, record_text

    out_dir = os.path.join(folder, f"{backend_name}-{persona}")
    stage = VoiceStage(backend, VoiceOptions(out_dir=out_dir, persona=persona, overwrite=True), Emitter())
    lines = [InputLine(line=i + 1, source="bench", record=dict(r))
             for i, r in enumerate(records)]
    t0, c0 = time.perf_counter(), cpu()
    voiced = list(stage.run(lines, total=len(lines)))
    voice_wall, voice_cpu = time.perf_counter() - t0, cpu() - c0
    audio = [r for r in voiced if "audio" in r]
    recogniser = PocketSphinx()
    recogniser.knows("a")  # the model loads once per run: outside the per-file cost
    c0 = cpu()
    heard = []
    files = []
    for r in audio:
        samples, rate = sf.read(r["audio"]["path"], dtype="float32")
        files.append((samples, rate))
        heard.append(listen(samples, rate, record_text(r), recogniser, names=r))
    check_cpu = cpu() - c0
    broken: dict[str, list[Any]] = {"silence": [], "cut": [], "other": []}
    for i, (r, (samples, rate)) in enumerate(zip(audio, files, strict=True)):
        text = record_text(r)
        broken["silence"].append(listen(np.zeros_like(samples), rate, text, recogniser, names=r))
        broken["cut"].append(listen(samples[: int(samples.size * CUT_SHARE)], rate, text, recogniser, names=r))
        other, other_rate = files[(i + 1) % len(files)]
        broken["other"].append(listen(other, other_rate, text, recogniser, names=r))
    recalls = [h.recall for h in heard]
    names = [h.name_recall for h in heard if h.name_recall is not None]
    return {
        "backend": backend_name, "persona": persona, "voice": audio[0]["audio"]["voice"] if audio else None,
        "files": len(audio), "failed_records": len(voiced) - len(audio),
        "recall_median": round(statistics.median(recalls), 3) if recalls else None,
        "recall_min": round(min(recalls), 3) if recalls else None,
        "recalls": sorted(round(x, 3) for x in recalls),
        "name_recall_median": round(statistics.median(names), 3) if names else None,
        "rtf_median": round(statistics.median(r["audio"]["rtf"] for r in audio), 3) if audio else None,
        "pass_share": round(sum(h.passed for h in heard) / len(heard), 3) if heard else None,
        "failed_reasons": sorted({f for h in heard for f in h.failed}),
        "voice_wall_s": round(voice_wall, 2), "voice_cpu_s": round(voice_cpu, 2), "check_cpu_s": round(check_cpu, 2),
        "verify_cost_share": round(check_cpu / voice_cpu, 3) if voice_cpu else None,
        "broken": {kind: {"failed": sum(not h.passed for h in hs), "of": len(hs),
                          "recall_max": round(max((h.recall for h in hs), default=0.0), 3),
                          "reasons": sorted({f for h in hs for f in h.failed})}
                   for kind, hs in broken.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20, help="intros per voice")
    ap.add_argument("--scripts", help="aicp-script output to voice instead of the fixed intros")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--auto-only", action="store_true",
                    help="only the voices --backend auto gives the built-in personas")
    args = ap.parse_args()
    records = scripts(args.scripts, args.records)
    results = []
    with tempfile.TemporaryDirectory(prefix="aicp-voice-quality-") as folder:
        for backend_name, persona, backend, auto in installed_voices(args.auto_only):
            row = measure(backend_name, persona, backend, records, folder)
            row["auto"] = auto
            results.append(row)
            b = row["broken"]
            print(f"{row['backend']:>10} {row['voice']:<24} ({persona}{', auto' if auto else ''}): recall median {row['recall_median']} "
                  f"min {row['recall_min']}, names {row['name_recall_median']}, rtf {row['rtf_median']}, "
                  f"pass {row['pass_share']:.0%} {row['failed_reasons'] or ''}; verify costs "
                  f"{row['verify_cost_share']:.0%} of voicing (CPU {row['check_cpu_s']} s / {row['voice_cpu_s']} s)")
            print("           broken: " + ", ".join(
                f"{kind} {v['failed']}/{v['of']} failed (recall max {v['recall_max']})" for kind, v in b.items()))
            if any(v["failed"] != v["of"] for v in b.values()):
                print("           WARNING: a broken file passed the check", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
