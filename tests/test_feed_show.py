"""aicp feed on a show: the records of one ``aicp mix --show`` are one episode (the show file,
its chapters), and shows appended later keep the earlier ones' GUIDs."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser

from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.cli.mix import mix_command
from tests.cli_helpers import invoke
from tests.mix_audio import write_song, write_voice

BASE = "https://cdn.example.com/radio"
NEW = ["--title", "Radio Night", "--link", "https://example.com/radio", "--base-url", BASE]


def _show(tmp_path: Path, name: str, title: str, songs: int = 2) -> Path:
    """Mix a short show ``name`` (``songs`` songs and a station ID); its records file."""
    records = []
    for i in range(songs):
        records.append({"id": f"{name}-{i}", "artist": f"Artist {i}", "title": f"Song {i}", "date": f"2026-12-0{i + 1}",
                        "file": str(write_song(tmp_path / f"{name}-song{i}.wav", 6.0, 2.0)),
                        "intro_seconds": 2.0,
                        "audio": {"path": str(write_voice(tmp_path / f"{name}-intro{i}.wav", 1.0, seed=i))}})
    records.insert(1, {"id": f"{name}-id", "audio": {"path": str(write_voice(tmp_path / f"{name}-id.wav", 1.0))}})
    source = tmp_path / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = invoke(mix_command, "aicp-mix", ["--show", str(tmp_path / f"{name}.mp3"), "--title", title, str(source)])
    assert result.exit_code == 0, result.stderr
    aired = tmp_path / f"{name}-aired.jsonl"
    aired.write_text(result.stdout)
    return aired


def test_a_show_is_one_episode_with_its_chapters_and_a_new_show_keeps_the_old_guid(tmp_path):
    first = _show(tmp_path, "morning", "Morning Show")
    out = tmp_path / "site" / "feed.xml"
    r = invoke(cli, "aicp", ["feed", "--out", str(out), *NEW, str(first)])
    assert r.exit_code == 0, r.stderr
    assert r.stderr.startswith("aicp feed: 1 added, 0 replaced, 0 kept")
    parsed = feedparser.parse(str(out))
    assert not parsed.bozo and len(parsed.entries) == 1
    entry = parsed.entries[0]
    mix = json.loads(first.read_text().splitlines()[0])["mix"]
    assert entry.title == "Morning Show"
    assert entry.enclosures == [{"href": f"{BASE}/morning.mp3", "length": str(mix["bytes"]), "type": "audio/mpeg"}]
    assert entry.summary == "Morning Show: Artist 0 – Song 0, Artist 1 – Song 1."
    assert entry.published_parsed[:3] == (2026, 12, 1)
    doc = json.loads((tmp_path / "site" / "morning.chapters.json").read_text())
    assert [(c["title"], c["startTime"]) for c in doc["chapters"]] == [(c["title"], c["start"]) for c in mix["chapters"]]
    assert [c["title"] for c in doc["chapters"]] == ["Artist 0 – Song 0", "Artist 1 – Song 1"]
    guid = entry.id

    second = _show(tmp_path, "evening", "Evening Show")
    r = invoke(cli, "aicp", ["feed", "--out", str(out), str(second)])
    assert r.exit_code == 0 and r.stderr.startswith("aicp feed: 1 added, 0 replaced, 1 kept"), r.stderr
    entries = {e.title: e.id for e in feedparser.parse(str(out)).entries}
    assert entries["Morning Show"] == guid and entries["Evening Show"] != guid and len(entries) == 2

    # the first show's records fed again: the same item, replaced, its GUID kept
    r = invoke(cli, "aicp", ["feed", "--out", str(out), str(first)])
    assert r.exit_code == 0 and r.stderr.startswith("aicp feed: 0 added, 1 replaced, 1 kept"), r.stderr
    assert {e.title: e.id for e in feedparser.parse(str(out)).entries} == entries
