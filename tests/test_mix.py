"""aicp mix: segue plans, the streamed loudness meter, and shows from generated songs and voices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ai_content_pipeline import mixing
from ai_content_pipeline.cli.mix import mix_command
from ai_content_pipeline.mixing import plan_segue
from tests.cli_helpers import invoke
from tests.mix_audio import BED_HZ, tone_level_db, write_song, write_voice

RATE = 44100


# -- plans ------------------------------------------------------------------------------------
def test_talk_up_voice_ends_before_the_vocals():
    plan = plan_segue("talk-up", 5.0, 30.0, 10.0)
    assert plan.song_start == 0.0
    assert plan.voice_end == pytest.approx(10.0 - mixing.POST_MARGIN_SECONDS)
    assert plan.voice_start == pytest.approx(4.5)
    assert plan.ducked and plan.seconds == pytest.approx(30.0)


def test_talk_up_longer_than_the_intro_starts_the_song_later():
    plan = plan_segue("talk-up", 12.0, 30.0, 6.0)
    assert plan.voice_start == 0.0
    assert plan.song_start == pytest.approx(12.0 - 5.5)
    assert plan.song_start + 6.0 - plan.voice_end == pytest.approx(mixing.POST_MARGIN_SECONDS)


def test_talk_up_without_intro_crossfades_the_song_under_the_voice_end():
    plan = plan_segue("talk-up", 8.0, 30.0, None, crossfade=2.0)
    assert plan.song_start == pytest.approx(6.0) and plan.fade_in == pytest.approx(2.0)
    assert plan.seconds == pytest.approx(36.0)
    short = plan_segue("talk-up", 2.0, 30.0, None, crossfade=2.0)
    assert short.fade_in == pytest.approx(1.0)  # at most half the voice


def test_before_plays_the_voice_then_the_song():
    plan = plan_segue("before", 5.0, 30.0, 10.0)
    assert (plan.voice_start, plan.song_start, plan.seconds) == (0.0, 5.0, 35.0)
    assert not plan.ducked


def test_a_record_with_only_a_voice_or_only_a_song_plays_it_alone():
    assert plan_segue("talk-up", 3.0, 0.0).seconds == 3.0
    only_song = plan_segue("talk-up", 0.0, 20.0)
    assert (only_song.song_start, only_song.seconds, only_song.kind) == (0.0, 20.0, None)


def test_duck_envelope_reaches_the_depth_within_the_voice():
    times = np.array([0.0, 1.7, 2.0, 4.0, 5.0, 5.8, 7.0])
    gain_db = 20 * np.log10(mixing.duck_envelope(times, 2.0, 5.0, mixing.DuckSettings(-12, 0.3, 0.8)))
    assert gain_db[0] == pytest.approx(0) and gain_db[1] == pytest.approx(0, abs=1e-6)
    assert gain_db[2:5] == pytest.approx([-12, -12, -12], abs=1e-5)
    assert gain_db[5] == pytest.approx(0, abs=1e-6) and gain_db[6] == pytest.approx(0)


# -- loudness -------------------------------------------------------------------------------------
def test_streamed_meter_equals_pyloudnorm_on_the_joined_signal():
    pyloudnorm = pytest.importorskip("pyloudnorm")
    rng = np.random.default_rng(3)
    signal = (rng.standard_normal((RATE * 7, 2)) * np.linspace(0.01, 0.3, RATE * 7)[:, None]).astype(np.float32)
    signal[RATE * 2:RATE * 3] = 0  # a silent stretch the gates drop
    meter = mixing.LoudnessMeter(RATE)
    for start in range(0, len(signal), 12_345):
        meter.feed(signal[start:start + 12_345])
    reference = pyloudnorm.Meter(RATE).integrated_loudness(signal.astype(np.float64))
    assert meter.lufs() == pytest.approx(reference, abs=0.01)
    assert mixing.loudness(signal, RATE) == pytest.approx(reference, abs=0.01)


def true_peak_dbtp(samples: np.ndarray) -> float:
    """An independent true-peak estimate: scipy's polyphase 4x oversampling."""
    from scipy.signal import resample_poly

    return float(20 * np.log10(np.abs(resample_poly(samples, 4, 1, axis=0)).max()))


# -- a show ---------------------------------------------------------------------------------------
SONGS = [  # (artist, title, seconds, intro_seconds or None, voice seconds)
    ("Ana", "Sun", 20.0, 8.0, 5.0),
    ("Bo", "Moon", 24.0, 6.0, 9.0),
    ("Cy", "Rain", 18.0, None, 4.0),
]


@pytest.fixture
def show_input(tmp_path: Path) -> tuple[Path, list[dict]]:
    records = []
    for i, (artist, title, seconds, intro, voice_seconds) in enumerate(SONGS):
        song = write_song(tmp_path / f"song{i}.flac", seconds, intro if intro else 5.0)
        take = write_voice(tmp_path / f"intro{i}.wav", voice_seconds, seed=i)
        record = {"id": f"s{i}", "artist": artist, "title": title, "file": str(song),
                  "audio": {"path": str(take), "seconds": voice_seconds}}
        if intro:
            record["intro_seconds"] = intro
        records.append(record)
        if i == 0:  # a station ID between the first two songs
            records.append({"id": "station", "audio": {"path": str(write_voice(tmp_path / "id.wav", 3.0, seed=9))}})
    path = tmp_path / "voiced.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


def planned(records: list[dict], segue: str = "talk-up") -> list[tuple[float, mixing.SeguePlan]]:
    """(start in the show, plan) of each record, from the generated lengths."""
    out, at = [], 0.0
    for r in records:
        voice = len(mixing.decode(r["audio"]["path"], RATE)) / RATE
        song = len(mixing.decode(r["file"], RATE)) / RATE if "file" in r else 0.0
        plan = plan_segue(segue, voice, song, r.get("intro_seconds"))
        out.append((at, plan))
        at += round(plan.seconds * RATE) / RATE
    return out


def test_show_matches_its_plan_loudness_peaks_chapters_and_ducking(tmp_path, show_input):
    from mutagen.id3 import ID3
    from mutagen.mp3 import MP3

    source, records = show_input
    show = tmp_path / "show.mp3"
    result = invoke(mix_command, "aicp-mix", ["--segue", "talk-up", "--show", str(show), "--title", "Test", str(source)])
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in records]
    plans = planned(records)
    total = plans[-1][0] + round(plans[-1][1].seconds * RATE) / RATE

    assert abs(MP3(show).info.length - total) <= 0.05
    mix = out[0]["mix"]
    assert mix["file"] == str(show) and mix["bytes"] == show.stat().st_size and mix["type"] == "audio/mpeg"
    assert abs(mix["seconds"] - total) <= 0.05 and mix["sample_rate"] == RATE
    assert [r["mix"]["segue"] for r in out] == ["talk-up", None, "talk-up", "talk-up"]

    # chapters: one per song, read back with mutagen, at the songs' places in the show
    tags = ID3(show)
    chapters = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    song_plans = [(at, p) for (at, p), r in zip(plans, records, strict=False) if "file" in r]
    assert [c.sub_frames["TIT2"].text[0] for c in chapters] == [f"{a} – {t}" for a, t, *_ in SONGS]
    for chapter, (at, plan) in zip(chapters, song_plans, strict=False):
        assert abs(chapter.start_time / 1000 - at) <= 0.05
        assert abs(chapter.end_time / 1000 - (at + plan.seconds)) <= 0.05
    assert tags.getall("CTOC")[0].child_element_ids == [c.element_id for c in chapters]
    assert mix["chapters"] == [{"start": round(at, 3), "end": round(at + round(p.seconds * RATE) / RATE, 3),
                                "title": f"{a} – {t}"} for (at, p), (a, t, *_) in zip(song_plans, SONGS, strict=False)]

    # loudness and peaks of what was written (decoded again)
    decoded = mixing.decode(show, RATE)
    pyloudnorm = pytest.importorskip("pyloudnorm")
    assert abs(pyloudnorm.Meter(RATE).integrated_loudness(decoded.astype(np.float64)) - (-16.0)) <= 0.5
    assert true_peak_dbtp(decoded) <= -1.0 + 0.1  # the MP3 codec's own overshoot
    assert mix["true_peak_dbtp"] <= -1.0 and abs(mix["lufs"] + 16) <= 0.5
    assert np.abs(decoded).max() < 1.0

    # during each talk-up the bed is at least the ducking depth under its level after it
    mono = decoded.mean(axis=1)
    delay = 0.0  # the decoder removes the encoder delay (LAME tag)
    # (a talk-up without intro_seconds: the window is the song's fade-in under the voice, lower still)
    for (at, plan), r in zip(plans, records, strict=False):
        if "file" not in r:
            continue
        ducked = tone_level_db(mono, RATE, BED_HZ, at + delay + max(plan.voice_start, plan.song_start) + 0.1,
                               at + delay + plan.voice_end - 0.1)
        free = tone_level_db(mono, RATE, BED_HZ, at + delay + plan.voice_end + 2.0, at + plan.seconds - 1.0)
        assert free - ducked >= 12.0 - 0.2, (r["id"], free, ducked)


@pytest.mark.parametrize("ext", ["m4a", "opus", "flac", "wav"])
def test_show_formats_carry_their_chapters(tmp_path, show_input, ext):
    import mutagen

    source, records = show_input
    show = tmp_path / f"show.{ext}"
    result = invoke(mix_command, "aicp-mix", ["--show", str(show), "--segue", "before", str(source)])
    assert result.exit_code == 0, result.stderr
    mix = json.loads(result.stdout.splitlines()[0])["mix"]
    titles = [f"{a} – {t}" for a, t, *_ in SONGS]
    starts = [c["start"] for c in mix["chapters"]]
    audio = mutagen.File(show)
    assert abs(audio.info.length - mix["seconds"]) <= 0.05
    if ext == "m4a":
        read = [(c.title, c.start) for c in audio.chapters]
        assert [t for t, _ in read] == titles
        assert all(abs(a - b) <= 0.05 for (_, a), b in zip(read, starts, strict=False))
    elif ext == "wav":
        assert [c.sub_frames["TIT2"].text[0] for c in sorted(audio.tags.getall("CHAP"), key=lambda c: c.start_time)] == titles
    else:
        assert [audio[f"CHAPTER{i:03d}NAME"][0] for i in range(1, 4)] == titles
        assert audio["CHAPTER002"][0] == mixing._timestamp(starts[1])


def test_each_record_gets_its_own_segue_file_without_show(tmp_path, show_input):
    source, records = show_input
    result = invoke(mix_command, "aicp-mix", ["-o", str(tmp_path / "segs"), "-f", "flac", str(source)])
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    for record in out:
        mix = record["mix"]
        assert Path(mix["file"]).is_file() and mix["file"].endswith(".flac") and mix["type"] == "audio/flac"
        assert abs(mix["lufs"] + 16) <= 0.5 and mix["true_peak_dbtp"] <= -1.0
    assert out[1]["mix"]["chapters"] == [] and out[0]["mix"]["chapters"][0]["title"] == "Ana – Sun"
    assert "3 ok" not in result.stdout and "4 ok" in result.stderr


def test_a_record_without_audio_gets_an_error_and_the_show_goes_on(tmp_path, show_input):
    source, records = show_input
    bad = [*records, {"id": "empty"}, {"id": "gone", "file": str(tmp_path / "missing.mp3")}]
    source.write_text("".join(json.dumps(r) + "\n" for r in bad))
    result = invoke(mix_command, "aicp-mix", ["--show", str(tmp_path / "s.wav"), str(source)])
    assert result.exit_code == 3, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[-2]["error"]["stage"] == "mix" and "nothing to mix" in out[-2]["error"]["message"]
    assert "missing.mp3" in out[-1]["error"]["message"] and "mix" not in out[-1]
    assert len(out[0]["mix"]["chapters"]) == 3


def test_an_existing_show_is_not_replaced_without_overwrite(tmp_path, show_input):
    source, _ = show_input
    show = tmp_path / "show.wav"
    show.write_bytes(b"keep")
    result = invoke(mix_command, "aicp-mix", ["--show", str(show), str(source)])
    assert result.exit_code == 2 and result.stdout == ""
    assert show.read_bytes() == b"keep" and "show.wav" in result.stderr
    assert invoke(mix_command, "aicp-mix", ["--show", str(show), "--overwrite", str(source)]).exit_code == 0


def test_an_unknown_show_format_is_a_usage_error(tmp_path, show_input):
    source, _ = show_input
    result = invoke(mix_command, "aicp-mix", ["--show", str(tmp_path / "show.xyz"), str(source)])
    assert result.exit_code == 2 and result.stdout == ""
    assert "unknown audio format" in result.stderr
    assert not list(tmp_path.glob(".show.xyz*"))


def test_a_chain_step_of_type_mix_writes_the_show(tmp_path, show_input):
    from ai_content_pipeline.cli.chain import run_chain_command

    source, records = show_input
    config = tmp_path / "chain.yaml"
    config.write_text(f"name: mix-only\ninput: {source}\noutput_dir: {tmp_path / 'out'}\nsteps:\n"
                      f"  - type: mix\n    params: {{show: {tmp_path / 'out' / 'show.flac'}, segue: before}}\n")
    result = invoke(run_chain_command, "aicp run-chain", ["--config", str(config)])
    assert result.exit_code == 0, result.stderr
    out = [json.loads(line) for line in (tmp_path / "out" / "01-mix.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert out[0]["mix"]["file"] == str(tmp_path / "out" / "show.flac")
    assert (tmp_path / "out" / "show.flac").is_file()


def test_a_target_the_peaks_cannot_meet_keeps_the_true_peak_and_says_how_loud_it_is(tmp_path):
    pyloudnorm = pytest.importorskip("pyloudnorm")
    rng = np.random.default_rng(4)
    spiky = (rng.standard_normal((RATE * 6, 2)) * 0.01).astype(np.float32)
    spiky[::RATE // 2] = 0.9  # a high crest factor: -16 LUFS would put the peaks far over 0 dBFS
    writer = mixing.ShowWriter(tmp_path / "spiky.wav", -16.0, -1.0)
    writer.add(spiky)
    mix = writer.finish()
    decoded = mixing.decode(tmp_path / "spiky.wav", RATE)
    assert true_peak_dbtp(decoded) <= -1.0 + 0.05 and mix["true_peak_dbtp"] <= -1.0
    measured = pyloudnorm.Meter(RATE).integrated_loudness(decoded.astype(np.float64))
    assert mix["lufs"] < -20 and abs(mix["lufs"] - measured) <= 0.1


def test_show_memory_does_not_grow_with_its_length(tmp_path):
    import tracemalloc

    def peak(segments: int) -> int:
        writer = mixing.ShowWriter(tmp_path / f"long{segments}.wav")
        block = (np.random.default_rng(1).standard_normal((RATE * 10, 2)) * 0.05).astype(np.float32)
        tracemalloc.start()
        for i in range(segments):
            writer.add(iter([block[:RATE * 5], block[RATE * 5:]]), f"song {i}")
        writer.finish()
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    short, long = peak(3), peak(30)  # 30 s and 300 s of show
    assert long < short * 1.5 + 2_000_000


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.mark.parametrize("ext", ["mp3", "m4a", "flac", "opus"])
def test_the_cover_image_is_embedded(tmp_path, ext):
    import base64

    import mutagen
    from mutagen.flac import Picture

    cover = tmp_path / "cover.png"
    cover.write_bytes(PNG)
    writer = mixing.ShowWriter(tmp_path / f"c.{ext}")
    writer.add(np.zeros((writer.rate, 2), dtype=np.float32) + 0.01, "A – B")
    writer.finish(mixing.ShowTags(title="Show", cover=str(cover)))
    audio = mutagen.File(tmp_path / f"c.{ext}")
    if ext == "mp3":
        assert audio.tags.getall("APIC")[0].data == PNG and audio.tags.getall("APIC")[0].mime == "image/png"
    elif ext == "m4a":
        assert bytes(audio.tags["covr"][0]) == PNG
    elif ext == "flac":
        assert audio.pictures[0].data == PNG
    else:
        assert Picture(base64.b64decode(audio["METADATA_BLOCK_PICTURE"][0])).data == PNG


def test_a_cover_that_is_not_an_image_is_a_usage_error(tmp_path, show_input):
    source, _ = show_input
    (tmp_path / "cover.txt").write_text("no image")
    result = invoke(mix_command, "aicp-mix", ["--show", str(tmp_path / "s.mp3"), "--cover",
                                              str(tmp_path / "cover.txt"), str(source)])
    assert result.exit_code == 2 and result.stdout == "" and "neither JPEG nor PNG" in result.stderr
    assert not (tmp_path / "s.mp3").exists()


def test_a_show_closed_before_it_is_finished_leaves_no_files(tmp_path):
    writer = mixing.ShowWriter(tmp_path / "s.mp3")
    tone = (0.1 * np.sin(np.arange(RATE * 5) / 7.0)).astype(np.float32)
    for i in range(4):
        writer.add(np.stack([tone, tone], axis=1), f"song {i}")
    writer.close()
    assert list(tmp_path.iterdir()) == []


def test_an_encoder_error_reaches_the_caller(tmp_path, monkeypatch):
    writer = mixing.ShowWriter(tmp_path / "s.mp3")
    monkeypatch.setattr(mixing, "FORMATS", {**mixing.FORMATS, "mp3": ("mp3", "no-such-codec", "audio/mpeg", None)})
    block = np.full((RATE, 2), 0.01, dtype=np.float32)
    with pytest.raises(Exception, match="no-such-codec|Unknown|codec"):
        try:
            for _ in range(6):
                writer.add(block)
            writer.finish()
        finally:
            writer.close()
    assert list(tmp_path.iterdir()) == []
