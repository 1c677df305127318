"""Give each voiced record of the demo a song file, generated when it has none.

Reads voiced records (JSON Lines) on stdin, writes them on stdout with ``file`` (a song the
record names and that exists is kept; else a generated 20 s stereo WAV in ``--out-dir``: a
soft chord for a 6 s instrumental start, then a brighter "vocal" line) and ``intro_seconds``,
ready for ``aicp mix``. numpy and soundfile only.

Usage: python examples/demo_songs.py --out-dir aicp-out/radio-intros/songs < 02-voice.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
SECONDS = 20.0
INTRO = 6.0


def song(seed: int) -> np.ndarray:
    """A 20 s stereo float32 song: a chord all through, a melody from :data:`INTRO` on."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * RATE)) / RATE
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    chord = sum(0.06 * np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5, 2.0))
    notes = root * 4 * 2 ** (rng.choice([0, 2, 4, 7, 9, 12], size=int(SECONDS * 2)) / 12)
    melody = 0.12 * np.sin(2 * np.pi * np.repeat(notes, int(RATE / 2))[: len(t)] * t) * (t >= INTRO)
    envelope = np.minimum(1.0, t / 0.5) * np.minimum(1.0, (SECONDS - t) / 1.5)
    mono = (chord + melody) * envelope
    return np.stack([mono, 0.9 * mono], axis=1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, help="folder of the generated songs")
    args = parser.parse_args()
    folder = Path(args.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for n, line in enumerate(sys.stdin):
        if not line.strip():
            continue
        record = json.loads(line)
        given = record.get("file")
        if not (isinstance(given, str) and Path(given).is_file()):
            path = folder / f"{record.get('id', n)}.wav"
            sf.write(path, song(n), RATE)
            record["file"] = str(path)
            record["intro_seconds"] = INTRO
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
