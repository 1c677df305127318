"""aicp mix --playlist: a playout playlist whose Liquidsoap annotations follow the show's plan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ai_content_pipeline import mixing
from ai_content_pipeline.cli.mix import mix_command
from ai_content_pipeline.mixing import plan_segue
from tests.cli_helpers import invoke
from tests.mix_audio import write_song, write_voice

RATE = 44100
_PAIR = re.compile(r'([A-Za-z0-9_]+)="((?:[^"\\]|\\.)*)"')


def parse_m3u(text: str) -> list[tuple[str, dict[str, str], str]]:
    """``(path, annotations, EXTINF title)`` per entry of an extended M3U of ``annotate:`` lines."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    entries, title = [], ""
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            title = line.split(",", 1)[1]
            continue
        assert line.startswith("annotate:"), line
        body = line[len("annotate:"):]
        notes, at = {}, 0
        for match in _PAIR.finditer(body):
            assert match.start() == at, body  # key="value" pairs, comma-separated, nothing between
            notes[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
            at = match.end() + 1
        assert body[at - 1] == ":", body
        entries.append((body[at:], notes, title))
    return entries


def records(tmp_path: Path) -> list[dict]:
    out = []
    spec = [("Ana", "Sun", 20.0, 8.0, 5.0), ("Bo", "Moon \"live\"", 24.0, 6.0, 9.0), ("Cy", "Rain", 18.0, None, 4.0)]
    for i, (artist, title, seconds, intro, voice_seconds) in enumerate(spec):
        record = {"id": f"s{i}", "artist": artist, "title": title,
                  "file": str(write_song(tmp_path / f"song{i}.flac", seconds, intro or 5.0)),
                  "audio": {"path": str(write_voice(tmp_path / f"intro{i}.wav", voice_seconds, seed=i))}}
        if intro:
            record["intro_seconds"] = intro
        out.append(record)
    out.insert(1, {"id": "station", "audio": {"path": str(write_voice(tmp_path / "id.wav", 3.0, seed=9))}})
    return out


def plan_of(record: dict, segue: str) -> mixing.SeguePlan:
    voice = len(mixing.decode(record["audio"]["path"], RATE)) / RATE
    song = len(mixing.decode(record["file"], RATE)) / RATE if "file" in record else 0.0
    return plan_segue(segue, voice, song, record.get("intro_seconds"))


@pytest.mark.parametrize("segue", ["talk-up", "before"])
def test_playlist_cue_points_follow_the_plan_of_the_show(tmp_path, segue):
    recs = records(tmp_path)
    source = tmp_path / "voiced.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in recs))
    show, playlist = tmp_path / "show.wav", tmp_path / "playout.m3u8"
    result = invoke(mix_command, "aicp-mix", ["--segue", segue, "--show", str(show), "--playlist", str(playlist),
                                              str(source)])
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(r["mix"]["playlist"] == str(playlist) and r["mix"]["file"] == str(show) for r in out)

    entries = parse_m3u(playlist.read_text(encoding="utf-8"))
    expected_paths = []
    for r in recs:
        expected_paths.append(str(Path(r["audio"]["path"]).resolve()))
        if "file" in r:
            expected_paths.append(str(Path(r["file"]).resolve()))
    assert [p for p, _, _ in entries] == expected_paths
    it = iter(entries)
    for r in recs:
        plan = plan_of(r, segue)
        _, intro, _ = next(it)
        assert intro["aicp_role"] == "intro"
        assert float(intro["liq_cue_in"]) == 0.0
        assert float(intro["liq_cue_out"]) == pytest.approx(plan.voice_seconds, abs=1e-3)
        assert float(intro["liq_fade_out"]) == 0.0
        if "file" not in r:  # a station ID: nothing plays under it
            assert float(intro["liq_cross_duration"]) == 0.0
            continue
        _, song, title = next(it)
        assert song["aicp_role"] == "song" and song["title"] == r["title"] and song["artist"] == r["artist"]
        assert title == f"{r['artist']} - {r['title']}"
        # played in sequence, the next entry starting liq_cross_duration before the intro ends:
        # the song's position when the voice starts, and where the voice ends in it, as the show has them
        cue_in, cross = float(song["liq_cue_in"]), float(intro["liq_cross_duration"])
        position_at_voice = cue_in - (float(intro["liq_cue_out"]) - cross)
        assert position_at_voice == pytest.approx(plan.voice_start - plan.song_start, abs=2e-3)
        assert position_at_voice + plan.voice_seconds == pytest.approx(plan.voice_end - plan.song_start, abs=2e-3)
        assert float(song["liq_fade_in"]) == pytest.approx(plan.fade_in, abs=1e-3)
        assert float(song["liq_cue_out"]) == pytest.approx(plan.song_seconds, abs=1e-3)
        assert float(song["liq_cross_duration"]) == 0.0  # the next intro follows the song's end
        assert float(song["aicp_song_lead"]) == pytest.approx(max(plan.voice_start - plan.song_start, 0), abs=1e-3)
        if segue == "talk-up":
            assert intro["aicp_duck_db"] == "-12" and float(intro["aicp_duck_release"]) == 0.8
            if r.get("intro_seconds"):  # the voice ends half a second before the vocals
                assert position_at_voice + plan.voice_seconds == pytest.approx(r["intro_seconds"] - 0.5, abs=2e-3)
        else:
            assert cross == 0.0 and "aicp_duck_db" not in intro
    assert next(it, None) is None


def test_a_playlist_alone_writes_no_audio_and_gives_each_record_its_plan(tmp_path):
    recs = records(tmp_path)
    source = tmp_path / "voiced.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in recs))
    playlist = tmp_path / "out" / "playout.m3u8"
    result = invoke(mix_command, "aicp-mix", ["--playlist", str(playlist), "-o", str(tmp_path / "segues"), str(source)])
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "segues").exists()
    out = [json.loads(line) for line in result.stdout.splitlines()]
    for r, o in zip(recs, out, strict=True):
        plan = plan_of(r, "talk-up")
        assert o["mix"]["playlist"] == str(playlist) and o["mix"]["segue"] == plan.kind
        assert o["mix"]["plan"]["voice_start"] == pytest.approx(plan.voice_start, abs=1e-3)
        assert o["mix"]["seconds"] == pytest.approx(plan.seconds, abs=1e-3)
    assert len(parse_m3u(playlist.read_text())) == 7


def test_a_playlist_of_another_extension_is_a_usage_error(tmp_path):
    source = tmp_path / "voiced.jsonl"
    source.write_text(json.dumps(records(tmp_path)[0]) + "\n")
    result = invoke(mix_command, "aicp-mix", ["--playlist", str(tmp_path / "p.txt"), str(source)])
    assert result.exit_code == 2 and result.stdout == "" and ".m3u8" in result.stderr


def test_an_existing_playlist_is_kept_without_overwrite(tmp_path):
    source = tmp_path / "voiced.jsonl"
    source.write_text(json.dumps(records(tmp_path)[0]) + "\n")
    (tmp_path / "p.m3u8").write_text("mine\n")
    result = invoke(mix_command, "aicp-mix", ["--playlist", str(tmp_path / "p.m3u8"), str(source)])
    assert result.exit_code == 2 and (tmp_path / "p.m3u8").read_text() == "mine\n"
