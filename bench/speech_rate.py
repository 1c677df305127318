"""The bundled Piper voice's speaking rate (words per second), the figure the word target of
``aicp-script --max-seconds`` / a record's ``intro_seconds`` is computed from.

Voices the song-intro takes of ``bench/grounded-labels.jsonl`` that were written for
``examples/songs.jsonl`` (real SmolLM2-135M intros) with ``aicp-voice``'s own stage (sentence
chunks, pauses between them, loudness normalization: the file the ``fits`` check measures),
on the bundled Piper voice (joe, en_US medium) at each ``length_scale`` given, and prints the
words per second of every take's file: the pooled rate (all words / all seconds), the median
and the 10th percentile (the slowest takes, which bound how many words fit), and the rate at
1.0 divided by the rate at each other scale (the rate scales as 1 / length_scale when that
ratio equals the scale).

Usage: .venv/bin/python bench/speech_rate.py [--scales 1.0,1.08,0.92] [--takes 44]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def takes(limit: int) -> list[dict]:
    with open(os.path.join(ROOT, "bench", "grounded-labels.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if r["template"] == "song-intro" and "examples/songs.jsonl" in r["from"]]
    return rows[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1.0,1.08,0.92")
    parser.add_argument("--takes", type=int, default=44)
    args = parser.parse_args()

    from ai_content_pipeline.backends.registry import create_tts
    from ai_content_pipeline.events import Emitter
    from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
    from tests.doubles import lines_of

    rows = takes(args.takes)
    tts = create_tts("piper")
    pooled: dict[float, float] = {}
    for scale in [float(s) for s in args.scales.split(",")]:
        records = [{"id": f"t{i}", "text": r["text"]} for i, r in enumerate(rows)]
        with tempfile.TemporaryDirectory() as out:
            stage = VoiceStage(tts, VoiceOptions(out_dir=out), Emitter())
            stage.backend.load()
            original = stage.backend.default_voice

            def voice(persona=None, seed=None, scale=scale, original=original):
                v = original(persona, 0)
                return type(v)(name=v.name, settings={**v.settings, "length_scale": scale}, seed=0)

            stage.backend.default_voice = voice  # type: ignore[method-assign]
            out_records = list(stage.run(lines_of(*records), total=len(records)))
        rates, words, seconds = [], 0, 0.0
        for rec in out_records:
            if "audio" not in rec:
                print("failed:", rec.get("error"), file=sys.stderr)
                continue
            n = len(rec["text"].split())
            words += n
            seconds += rec["audio"]["seconds"]
            rates.append(n / rec["audio"]["seconds"])
        pooled[scale] = words / seconds
        deciles = statistics.quantiles(rates, n=10)
        print(f"length_scale {scale:.2f}: {len(rates)} takes, {words} words, {seconds:.1f} s: "
              f"pooled {pooled[scale]:.3f} words/s, median {statistics.median(rates):.3f}, "
              f"10th percentile {deciles[0]:.3f}, min {min(rates):.3f}, max {max(rates):.3f}")
    if 1.0 in pooled:
        for scale, rate in pooled.items():
            if scale != 1.0:
                print(f"rate(1.0) / rate({scale:.2f}) = {pooled[1.0] / rate:.3f} (1/length_scale model: {scale:.3f})")


if __name__ == "__main__":
    main()
