"""The demo's last step: voiced records get generated songs (examples/demo_songs.py) and
`aicp mix` makes a show of them, as `make demo` runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli_helpers import run_bin
from tests.mix_audio import write_voice

ROOT = Path(__file__).resolve().parents[1]


def test_voiced_demo_records_become_a_show_with_a_chapter_per_song(tmp_path):
    from mutagen.id3 import ID3

    records = [{"id": f"song-00{i}", "artist": a, "title": t,
                "audio": {"path": str(write_voice(tmp_path / f"v{i}.wav", 3.0, seed=i))}}
               for i, (a, t) in enumerate([("Queen", "Bohemian Rhapsody"), ("Fleetwood Mac", "Dreams")], start=1)]
    voiced = "".join(json.dumps(r) + "\n" for r in records)
    songs = subprocess.run([sys.executable, str(ROOT / "examples/demo_songs.py"), "--out-dir", str(tmp_path / "songs")],
                           input=voiced, capture_output=True, text=True, check=True)
    with_songs = [json.loads(line) for line in songs.stdout.splitlines()]
    assert [Path(r["file"]).name for r in with_songs] == ["song-001.wav", "song-002.wav"]
    assert all(r["intro_seconds"] == 6.0 for r in with_songs)
    show = tmp_path / "show.mp3"
    mixed = run_bin("aicp-mix", "--show", str(show), "--title", "aicp demo show", "-q",
                    input=songs.stdout.encode(), timeout=300)
    assert mixed.returncode == 0, mixed.stderr.decode()
    chapters = sorted(ID3(show).getall("CHAP"), key=lambda c: c.start_time)
    assert [c.sub_frames["TIT2"].text[0] for c in chapters] == ["Queen – Bohemian Rhapsody", "Fleetwood Mac – Dreams"]
    assert abs(json.loads(mixed.stdout.decode().splitlines()[0])["mix"]["seconds"] - 40.0) <= 0.05
