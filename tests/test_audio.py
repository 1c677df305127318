"""audio.py: sentence chunking, joining, loudness, checks and the atomic write."""

from __future__ import annotations

import os

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from ai_content_pipeline import audio
from ai_content_pipeline.audio import (
    check_audio,
    chunk_text,
    duration_bounds,
    join_chunks,
    limit_peaks,
    normalize_loudness,
    resample,
    split_long,
    write_audio_atomic,
)
from ai_content_pipeline.errors import SynthesisError, UsageError

SR = 16000


def speech_like(seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A tone with a syllable-rate envelope and a few sharp peaks (speech-like crest factor)."""
    t = np.arange(int(seconds * sr), dtype=np.float32) / sr
    x = amp * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))
    x[:: sr // 4] = amp * 3  # peaks well above the body
    return x.astype(np.float32)


# -- chunking -----------------------------------------------------------------------------
def test_chunks_keep_sentences_whole_and_under_the_limit() -> None:
    text = ("Good evening, night owls. This is Julie on Night Owl FM at 11 p.m. tonight. "
            "Here comes Queen with Bohemian Rhapsody. Stay cozy.")
    chunks = chunk_text(text, 60)
    assert all(len(c) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert "This is Julie on Night Owl FM at 11 p.m. tonight." in chunks  # "p.m." is no sentence end
    assert chunk_text(text, 1000) == [text]


def test_a_long_sentence_splits_at_clauses_then_words() -> None:
    sentence = ("In nineteen seventy five, after weeks in the studio; with layer upon layer of "
                "vocals - and a piano part nobody could play twice the same way, the band finished it.")
    pieces = split_long(sentence, 60)
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()
    assert pieces == ["In nineteen seventy five, after weeks in the studio;",  # clause boundaries
                      "with layer upon layer of vocals",
                      "- and a piano part nobody could play twice the same way,",
                      "the band finished it."]
    words = "one two three four five six seven eight nine ten eleven twelve thirteen"
    assert split_long(words, 20) == ["one two three four", "five six seven eight", "nine ten eleven",
                                     "twelve thirteen"]  # no clause: at words
    word = "x" * 130
    assert split_long(word, 50) == ["x" * 50, "x" * 50, "x" * 30]


def test_blank_text_has_no_chunks() -> None:
    assert chunk_text("   ", 100) == []


# -- joining and resampling ----------------------------------------------------------------
def test_join_adds_a_pause_and_crossfades() -> None:
    a, b = np.ones(1600, np.float32) * 0.5, np.ones(800, np.float32) * 0.5
    out = join_chunks([a, b], SR, pause=0.25, crossfade=0.01)
    fade = int(0.01 * SR)
    assert len(out) == 1600 + 4000 + 800 - 2 * fade
    middle = out[1600 : 1600 + 4000 - 2 * fade]
    assert np.all(middle == 0.0)  # the pause is silent
    ramp = out[1600 - fade : 1600]
    assert ramp[0] > ramp[-1] and np.all(np.diff(ramp) <= 0)  # fades out, no click
    assert join_chunks([a], SR) is not None and len(join_chunks([a], SR)) == 1600
    assert len(join_chunks([], SR)) == 0


def test_resample_changes_rate_with_soxr() -> None:
    x = speech_like(1.0)
    y = resample(x, SR, 24000)
    assert y.dtype == np.float32 and abs(len(y) - 24000) <= 1
    assert resample(x, SR, SR) is x


# -- loudness ------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [0.02, 0.3, 0.9])
def test_normalize_reaches_target_with_peaks_below_ceiling(level: float) -> None:
    x = speech_like(3.0, amp=level / 3)
    y = normalize_loudness(x, SR, -16.0)
    loudness = pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64))
    assert abs(loudness - -16.0) < 0.5
    assert 20 * np.log10(np.max(np.abs(y))) <= -1.0 + 1e-3


def test_limiter_only_touches_audio_above_the_ceiling() -> None:
    quiet = speech_like(1.0, amp=0.1)
    assert limit_peaks(quiet, SR) is quiet
    loud = speech_like(1.0, amp=0.5)  # peaks at 1.5
    limited = limit_peaks(loud, SR)
    assert np.max(np.abs(limited)) <= 10 ** (-1 / 20) + 1e-6
    body = slice(SR // 8, SR // 8 + 100)  # far from any peak: unchanged
    assert np.allclose(limited[body], loud[body])


def test_silence_is_left_alone_by_normalize() -> None:
    x = np.zeros(SR, np.float32)
    assert np.array_equal(normalize_loudness(x, SR, -16.0), x)


# -- checks ----------------------------------------------------------------------------------
def test_checks_reject_empty_silent_and_implausible_audio() -> None:
    with pytest.raises(SynthesisError, match="empty"):
        check_audio(np.zeros(0, np.float32), SR, 3)
    with pytest.raises(SynthesisError, match="silent"):
        check_audio(np.full(SR, 1e-4, np.float32), SR, 3)
    low, high = duration_bounds(10)
    assert (low, high) == (2.0, 22.0)
    with pytest.raises(SynthesisError, match="10 words"):
        check_audio(speech_like(1.0), SR, 10)  # 10 words/s: cut short
    with pytest.raises(SynthesisError, match="plausible"):
        check_audio(speech_like(23.0), SR, 10)  # runaway
    check_audio(speech_like(3.5), SR, 10)
    check_audio(speech_like(0.5), SR, None)


# -- atomic writes ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_write_each_format(tmp_path, fmt: str) -> None:
    x = normalize_loudness(speech_like(2.0, sr=24000), 24000, -16.0)
    path = tmp_path / "out" / f"a.{fmt}"
    info = write_audio_atomic(path, x, 24000, format=fmt, words=6)
    assert os.listdir(path.parent) == [f"a.{fmt}"]
    data, rate = sf.read(path)
    assert rate == 24000 and info.sample_rate == 24000 and info.channels == 1
    assert abs(len(data) / rate - 2.0) < 0.1 and abs(info.seconds - 2.0) < 0.1
    assert info.size == path.stat().st_size > 0
    assert info.loudness_lufs is not None and abs(info.loudness_lufs + 16) < 0.5
    assert info.peak_dbfs <= -1.0


def test_silent_audio_is_an_error_and_leaves_no_file(tmp_path) -> None:
    with pytest.raises(SynthesisError, match="silent"):
        write_audio_atomic(tmp_path / "a.wav", np.zeros(SR * 2, np.float32), SR, format="wav", words=5)
    assert os.listdir(tmp_path) == []


def test_encoder_failure_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    def broken_write(handle, *args, **kwargs):
        handle.write(b"RIFF half a header")
        raise sf.LibsndfileError(1, "disk on fire")

    monkeypatch.setattr(sf, "write", broken_write)
    with pytest.raises(SynthesisError, match="cannot encode wav"):
        write_audio_atomic(tmp_path / "a.wav", speech_like(2.0), SR, format="wav", words=5)
    assert os.listdir(tmp_path) == []


def test_ctrl_c_mid_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    def interrupted(handle, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_audio_atomic(tmp_path / "a.wav", speech_like(2.0), SR, format="wav", words=5)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_an_earlier_good_file(tmp_path) -> None:
    path = tmp_path / "a.wav"
    write_audio_atomic(path, speech_like(2.0), SR, format="wav", words=5)
    before = path.read_bytes()
    with pytest.raises(SynthesisError):
        write_audio_atomic(path, np.zeros(SR, np.float32), SR, format="wav", words=5)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["a.wav"]


def test_unknown_format_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(UsageError, match="aiff"):
        write_audio_atomic(tmp_path / "a.aiff", speech_like(1.0), SR, format="aiff", words=None)


def test_output_files_get_normal_permissions(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        write_audio_atomic(tmp_path / "a.wav", speech_like(1.0), SR, format="wav", words=None)
    finally:
        os.umask(old)
    assert (tmp_path / "a.wav").stat().st_mode & 0o777 == 0o644
    assert audio.FORMATS["wav"][2] == "wav"


# -- mp3: bit rate and the peak ceiling after encoding ----------------------------------------
def _loud(sr: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(sr * 3) / sr
    x = (np.sign(np.sin(2 * np.pi * 220 * t)) * 0.5 + 0.3 * rng.standard_normal(len(t))).astype(np.float32)
    return audio.normalize_loudness(x, sr, -9.0)  # limited to -1 dBFS before encoding


@pytest.mark.parametrize("sr,bitrate", [(22050, None), (24000, 64), (44100, 320), (48000, 128), (16000, 32)])
def test_mp3_decoded_peak_stays_under_minus_1_dbfs(tmp_path, sr: int, bitrate: int | None) -> None:
    x = _loud(sr)
    info = write_audio_atomic(tmp_path / "a.mp3", x, sr, format="mp3", words=None, bitrate=bitrate,
                              peak_ceiling_dbfs=-1.0)
    decoded, rate = sf.read(info.path, dtype="float32")
    assert rate == sr and audio.peak_dbfs(decoded) <= -1.0
    assert info.peak_dbfs <= -1.0


def test_without_the_ceiling_the_codec_overshoots(tmp_path) -> None:
    """The case the ceiling is for: LAME lifts the peak of this signal above -1 dBFS."""
    info = write_audio_atomic(tmp_path / "a.mp3", _loud(22050), 22050, format="mp3", words=None)
    decoded, _ = sf.read(info.path, dtype="float32")
    assert audio.peak_dbfs(decoded) > -1.0


@pytest.mark.parametrize("sr,kbps,expected", [(44100, 128, 128), (44100, 64, 64), (22050, 32, 32),
                                              (24000, 320, 160), (48000, 8, 32)])
def test_mp3_bitrate_is_constant_and_clamped_to_the_mpeg_range(tmp_path, sr: int, kbps: int, expected: int) -> None:
    x = _loud(sr)
    info = write_audio_atomic(tmp_path / "b.mp3", x, sr, format="mp3", words=None, bitrate=kbps)
    measured = info.size * 8 / info.seconds / 1000
    assert abs(measured - expected) / expected < 0.1, measured
