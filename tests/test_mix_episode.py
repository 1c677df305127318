"""aicp mix podcast episodes: a long-form voiced record with music beds -> one episode file with a
chapter per section, tags and captions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai_content_pipeline import mixing
from ai_content_pipeline.cli.mix import mix_command
from tests.cli_helpers import invoke
from tests.mix_audio import BED_HZ, VOICE_HZ, tone_level_db, write_song

RATE = 44100
SECTIONS = [("Cold Open", 40, 4.0), ("What Happened", 120, 12.0), ("Wrap", 30, 3.0)]  # title, words, seconds


def speech(seconds: float, rate: int = 22050, seed: int = 0) -> np.ndarray:
    """Speech-like 2 kHz syllables with a 0.25 s pause every 1.5 s (sentence ends)."""
    t = np.arange(int(seconds * rate)) / rate
    on = (np.sin(2 * np.pi * 4 * t + seed) > -0.2) & ((t % 1.5) < 1.25)
    return (0.3 * np.sin(2 * np.pi * VOICE_HZ * t) * on).astype(np.float32)


def longform_record(tmp_path: Path, captions: str | None = "vtt") -> dict:
    """A voiced long-form record: three sections voiced one after another (a pause between)."""
    parts = []
    for i, (_, _, seconds) in enumerate(SECTIONS):
        parts.append(speech(seconds, seed=i))
        parts.append(np.zeros(int(0.25 * 22050), dtype=np.float32))
    take = tmp_path / "ep1.wav"
    sf.write(take, np.concatenate(parts[:-1]), 22050)
    audio = {"path": str(take), "seconds": sum(s for *_, s in SECTIONS) + 0.5}
    if captions:
        cap = tmp_path / f"ep1.{captions}"
        if captions == "vtt":
            cap.write_text("WEBVTT\n\n1\n00:00:00.000 --> 00:00:04.000\nHello and welcome.\n\n"
                           "2\n00:00:04.250 --> 00:00:16.250\nHere is what happened.\n")
        else:
            cap.write_text("1\n00:00:00,000 --> 00:00:04,000\nHello and welcome.\n")
        audio["captions"] = str(cap)
    return {"id": "ep1", "topic": "Night markets", "date": "2026-12-01",
            "script": {"text": "…", "pack": {"title": "Night Markets Explained"},
                       "chunks": [{"index": i, "section": name, "words": words}
                                  for i, (name, words, _) in enumerate(SECTIONS)]},
            "audio": audio}


def test_a_longform_record_with_beds_is_an_episode_with_a_chapter_per_section(tmp_path):
    from mutagen.id3 import ID3

    record = longform_record(tmp_path)
    source = tmp_path / "voiced.jsonl"
    source.write_text(json.dumps(record) + "\n")
    bed_in = write_song(tmp_path / "in.flac", 30.0, 30.0)  # the 220 Hz bed alone: no "vocal"
    bed_out = write_song(tmp_path / "out.flac", 30.0, 30.0)
    cover = tmp_path / "cover.png"
    from tests.test_mix import PNG

    cover.write_bytes(PNG)
    out_dir = tmp_path / "site"
    result = invoke(mix_command, "aicp-mix", ["--bed-in", str(bed_in), "--bed-out", str(bed_out), "-o", str(out_dir),
                                              "--album", "Night Notes", "--artist", "Sam", "--cover", str(cover),
                                              str(source)])
    assert result.exit_code == 0, result.stderr
    mix = json.loads(result.stdout)["mix"]
    episode = out_dir / "ep1.mp3"
    assert mix["file"] == str(episode) and mix["episode"] is True and mix["segue"] is None

    voice_seconds = len(mixing.decode(record["audio"]["path"], RATE)) / RATE
    plan = mixing.plan_episode(voice_seconds, 30.0, 30.0)
    assert plan.voice_start == pytest.approx(mixing.BED_LEAD_SECONDS)
    assert mix["seconds"] == pytest.approx(plan.seconds, abs=0.05)
    assert plan.seconds == pytest.approx(mixing.BED_LEAD_SECONDS + voice_seconds + mixing.BED_TAIL_SECONDS, abs=1e-6)

    # chapters read back with mutagen: one per section, the first from 0, each later one at its
    # section's start in the speech (the pause before it) plus the bed's lead
    tags = ID3(episode)
    chapters = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [c.sub_frames["TIT2"].text[0] for c in chapters] == [name for name, *_ in SECTIONS]
    assert chapters[0].start_time == 0
    boundary = plan.voice_start
    for chapter, (_, _, seconds) in zip(chapters[1:], SECTIONS, strict=False):
        boundary += seconds + 0.25
        assert abs(chapter.start_time / 1000 - (boundary - 0.125)) <= 0.2, (chapter.start_time, boundary)
    assert abs(chapters[-1].end_time / 1000 - mix["seconds"]) <= 0.05
    assert tags.getall("TIT2")[0].text[0] == "Night Markets Explained"
    assert tags.getall("TALB")[0].text[0] == "Night Notes" and tags.getall("TPE1")[0].text[0] == "Sam"
    assert str(tags.getall("TDRC")[0].text[0]) == "2026-12-01"
    assert tags.getall("APIC")[0].data == PNG

    # the beds: alone at full level first, ducked under the speech, gone in the middle, back after
    mono = mixing.decode(episode, RATE).mean(axis=1)
    alone = tone_level_db(mono, RATE, BED_HZ, 0.5, plan.voice_start - 0.5)
    under = tone_level_db(mono, RATE, BED_HZ, plan.voice_start + 0.5, plan.voice_start + 3.0)
    middle = tone_level_db(mono, RATE, BED_HZ, plan.voice_start + 8.0, plan.voice_end - 8.0)
    after = tone_level_db(mono, RATE, BED_HZ, plan.voice_end + 1.0, plan.voice_end + 1.8)
    assert alone - under >= 12.0 - 0.5 and alone - middle >= 40 and abs(after - alone) <= 1.5
    assert np.abs(mono).max() < 1.0

    # captions carried over beside the episode, every cue the bed's lead later
    import webvtt

    assert mix["captions"] == str(out_dir / "ep1.vtt")
    cues = list(webvtt.read(mix["captions"]))
    assert [c.start_in_seconds for c in cues] == [4, 8]  # whole seconds in webvtt-py
    assert cues[0].start == "00:00:04.000" and cues[1].start == "00:00:08.250"
    assert cues[1].text == "Here is what happened."


def test_an_episode_without_beds_starts_with_the_speech_and_keeps_srt_captions(tmp_path):
    import mutagen

    record = longform_record(tmp_path, captions="srt")
    source = tmp_path / "voiced.jsonl"
    source.write_text(json.dumps(record) + "\n")
    result = invoke(mix_command, "aicp-mix", ["-o", str(tmp_path / "out"), "-f", "flac", str(source)])
    assert result.exit_code == 0, result.stderr
    mix = json.loads(result.stdout)["mix"]
    audio = mutagen.File(mix["file"])
    assert [audio[f"CHAPTER{i:03d}NAME"][0] for i in (1, 2, 3)] == [name for name, *_ in SECTIONS]
    assert audio["TITLE"] == ["Night Markets Explained"]
    assert Path(mix["captions"]).read_text().startswith("1\n00:00:00,000 --> 00:00:04,000")


def test_beds_with_a_show_are_a_usage_error(tmp_path):
    record = longform_record(tmp_path, captions=None)
    source = tmp_path / "voiced.jsonl"
    source.write_text(json.dumps(record) + "\n")
    bed = write_song(tmp_path / "in.flac", 5.0, 5.0)
    result = invoke(mix_command, "aicp-mix", ["--bed-in", str(bed), "--show", str(tmp_path / "s.mp3"), str(source)])
    assert result.exit_code == 2 and result.stdout == "" and "--bed-in" in result.stderr


def test_section_starts_move_to_the_nearest_pause():
    rate = 1000
    voice = np.ones(10 * rate, dtype=np.float32) * 0.3
    voice[int(3.6 * rate):int(3.9 * rate)] = 0  # a pause at 3.75 s, near the 1:2 word share (3.33 s)
    assert mixing.section_starts(voice, rate, [10, 20]) == [0.0, pytest.approx(3.75, abs=0.02)]
    flat = np.ones(10 * rate, dtype=np.float32) * 0.3  # no pause: the word share
    assert mixing.section_starts(flat, rate, [10, 30]) == [0.0, pytest.approx(2.5)]
