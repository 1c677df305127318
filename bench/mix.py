"""aicp mix on a generated show: real-time factor and peak memory, beside an ffmpeg command line.

Generates songs (numpy: an instrumental start, then a louder "vocal" part; 3.5 minutes each)
and voiced intros (a gated 2 kHz tone, 8 s each) until the show lasts ``--minutes`` (default 60),
then runs, as fresh processes:

- ``aicp mix --segue talk-up --show show.mp3`` (talk-up ducking, joining, -16 LUFS, true peak
  at most -1 dBTP, chapters);
- an ``ffmpeg`` command line doing the same work on the same files (``sidechaincompress`` ducking
  each song under its intro, ``concat``, then ``loudnorm`` to -16 LUFS / -1 dBTP, one pass,
  libmp3lame at the same 192 kbit/s and LAME quality), when ``ffmpeg`` is on PATH (else it
  says it is missing; ``--no-ffmpeg`` skips it).

Prints wall time, CPU seconds (user + system, all threads), the real-time factor (wall / show
seconds; target <= 0.02 on 2 cores), the CPU real-time factor (CPU / show seconds: what a
loaded machine does not distort) and the child's peak resident memory (target <= 300 MB for a
three-hour show); with ffmpeg, ffmpeg's time over ours (wall and CPU) from the same run.

Usage: .venv/bin/python bench/mix.py [--minutes 60] [--keep DIR] [--no-ffmpeg]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_content_pipeline.mixing import LAME_QUALITY  # noqa: E402
from tests.mix_audio import write_song, write_voice  # noqa: E402

SONG_SECONDS, INTRO_SECONDS, VOICE_SECONDS = 210.0, 12.0, 8.0


def build(folder: Path, minutes: float) -> tuple[Path, float, list[tuple[Path, Path]]]:
    """The voiced records of a show of about ``minutes`` (one song file reused per 10 songs)."""
    songs = [write_song(folder / f"song{i}.flac", SONG_SECONDS, INTRO_SECONDS) for i in range(10)]
    records, pairs, seconds, i = [], [], 0.0, 0
    while seconds < minutes * 60:
        voice = write_voice(folder / f"intro{i}.wav", VOICE_SECONDS, seed=i)
        song = songs[i % len(songs)]
        records.append({"id": f"s{i}", "artist": f"Artist {i}", "title": f"Song {i}", "file": str(song),
                        "intro_seconds": INTRO_SECONDS, "audio": {"path": str(voice)}})
        pairs.append((voice, song))
        seconds += SONG_SECONDS
        i += 1
    path = folder / "voiced.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, seconds, pairs


def plan(folder: Path) -> tuple[Path, float, list[tuple[Path, Path]]]:
    """What :func:`build` wrote in ``folder``: the records file, the show's seconds, (intro, song) pairs."""
    source = folder / "voiced.jsonl"
    records = [json.loads(line) for line in source.read_text().splitlines()]
    return source, len(records) * SONG_SECONDS, [(Path(r["audio"]["path"]), Path(r["file"])) for r in records]


def timed(argv: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one process (its own rusage, from ``wait4``)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        sys.exit(f"{argv[0]} failed ({child.returncode}): {err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def ffmpeg_argv(pairs: list[tuple[Path, Path]], out: Path) -> list[str]:
    """One ffmpeg command: each intro over its song ducked by sidechaincompress (the voice
    delayed to end 0.5 s before the post), the segues concatenated, loudnorm, MP3."""
    argv = ["ffmpeg", "-y", "-loglevel", "error"]
    for voice, song in pairs:
        argv += ["-i", str(voice), "-i", str(song)]
    chains, labels = [], []
    delay_ms = int((INTRO_SECONDS - 0.5 - VOICE_SECONDS) * 1000)
    for k in range(len(pairs)):
        v, s = 2 * k, 2 * k + 1
        # the voice is padded with silence to the song's end (apad): sidechaincompress and amix
        # otherwise end with the shorter input, the voice, and the song would be cut after it
        chains.append(f"[{v}:a]aresample=44100,aformat=channel_layouts=stereo,adelay={delay_ms}:all=1,apad,"
                      f"asplit=2[v{k}a][v{k}b]")
        chains.append(f"[{s}:a]aresample=44100,aformat=channel_layouts=stereo[s{k}]")
        chains.append(f"[s{k}][v{k}a]sidechaincompress=threshold=0.02:ratio=8:attack=300:release=800[d{k}]")
        chains.append(f"[d{k}][v{k}b]amix=inputs=2:duration=first:normalize=0[m{k}]")
        labels.append(f"[m{k}]")
    chains.append(f"{''.join(labels)}concat=n={len(pairs)}:v=0:a=1,loudnorm=I=-16:TP=-1:LRA=11[out]")
    return argv + ["-filter_complex", ";".join(chains), "-map", "[out]", "-ar", "44100", "-c:a", "libmp3lame",
                   "-b:a", "192k", "-compression_level", LAME_QUALITY, str(out)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--keep", help="build the files in this folder and keep them")
    parser.add_argument("--no-ffmpeg", action="store_true", help="time aicp mix alone")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="aicp-mix-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build(folder, args.minutes)
        return
    try:
        # the files are generated in a child process: a child forked from this one would
        # otherwise start with the generator's memory in its peak RSS
        subprocess.run([sys.executable, __file__, "--build-only", "--minutes", str(args.minutes),
                        "--keep", str(folder)], check=True)
        source, seconds, pairs = plan(folder)
        aicp = [os.path.join(os.path.dirname(sys.executable), "aicp-mix")]  # pip install -e . makes it
        wall, cpu, rss = timed([*aicp, "--segue", "talk-up", "--show", str(folder / "show.mp3"), "--overwrite",
                                "-q", str(source)])
        print(f"show: {len(pairs)} segues, {seconds / 60:.1f} min; cores: {os.cpu_count()}; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"aicp mix   wall {wall:7.1f} s  cpu {cpu:7.1f} s  RTF {wall / seconds:.4f}  "
              f"CPU RTF {cpu / seconds:.4f}  peak RSS {rss:6.0f} MB")
        if args.no_ffmpeg:
            return
        if shutil.which("ffmpeg") is None:
            print("ffmpeg: not on PATH here; the side-by-side run is skipped")
        else:
            wall2, cpu2, rss2 = timed(ffmpeg_argv(pairs, folder / "show-ffmpeg.mp3"))
            import mutagen

            length = mutagen.File(folder / "show-ffmpeg.mp3").info.length
            print(f"ffmpeg's show: {length / 60:.1f} min (ours {seconds / 60:.1f})")
            print(f"ffmpeg     wall {wall2:7.1f} s  cpu {cpu2:7.1f} s  RTF {wall2 / seconds:.4f}  "
                  f"CPU RTF {cpu2 / seconds:.4f}  peak RSS {rss2:6.0f} MB")
            print(f"ffmpeg / aicp mix: wall {wall2 / wall:.2f}x, CPU {cpu2 / cpu:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
