"""Audio helpers of the voice stage: text chunking, joining, loudness, validated atomic writes.

Samples are always mono ``float32`` NumPy arrays of shape ``[n_samples]`` in
``[-1, 1]`` at a sample rate in Hz. Sentences come from pysbd, resampling from
soxr, files from soundfile. Loudness (ITU-R BS.1770 integrated, LUFS) is
:mod:`ai_content_pipeline.loudness`, numpy only and tested equal to pyloudnorm
(which pulls in scipy.signal, about 1 s of start-up, and costs several times
more per measurement). The look-ahead sample-peak limiter (:func:`limit_peaks`)
lets speech reach -16 LUFS with peaks below -1 dBFS. Those libraries are
imported on first use so ``aicp-voice --help`` stays fast.

Checks every file passes before it gets its final name (see :func:`check_audio`):

- not empty (at least one sample);
- not silent: sample peak above ``SILENCE_PEAK`` (-60 dBFS);
- duration plausible for its word count: at most ``MAX_WORDS_PER_SECOND`` (5.0)
  words a second and at least ``MIN_WORDS_PER_SECOND`` (0.5) words a second,
  with ``DURATION_SLACK_SECONDS`` (2.0 s) of allowance for pauses and lead-in.
  Fast radio speech is about 3-3.5 words/s; 5 catches truncated output and
  0.5 (+2 s) catches runaway generation or a stuck model.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SynthesisError, UsageError
from .faults import os_error
from .files import write_atomic
from .text import split_sentences

#: ``--format`` → (soundfile format, subtype, file extension).
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "wav"),
    "flac": ("FLAC", "PCM_16", "flac"),
    "ogg": ("OGG", "VORBIS", "ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
}

SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS sample peak
MAX_WORDS_PER_SECOND = 5.0
MIN_WORDS_PER_SECOND = 0.5
DURATION_SLACK_SECONDS = 2.0
PEAK_CEILING_DBFS = -1.0
PAUSE_SECONDS = 0.25
CROSSFADE_SECONDS = 0.01
LIMITER_WINDOW_SECONDS = 0.01
#: Loudness gained per dB of gain once the limiter works (measured 0.45-0.6 on Piper and
#: Chatterbox speech at -16 LUFS / -1 dBFS): the secant search's first step.
FIRST_SLOPE = 0.6

_CLAUSE = re.compile(r"(?<=[,;:\u2013\u2014])\s+|\s+(?=[\u2013\u2014-]\s)")


@dataclass
class AudioInfo:
    """What was written: ``path``, ``format``, ``sample_rate`` (Hz), ``channels``,
    ``seconds`` (duration), ``frames`` (samples per channel), ``size`` (bytes),
    ``peak_dbfs`` (sample peak) and ``loudness_lufs`` (integrated, BS.1770)."""

    path: str
    format: str
    sample_rate: int
    channels: int
    seconds: float
    frames: int
    size: int
    peak_dbfs: float
    loudness_lufs: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return asdict(self)


# -- text chunking ---------------------------------------------------------------------
def split_long(sentence: str, max_chars: int) -> list[str]:
    """Split one sentence longer than ``max_chars`` at clause boundaries
    (commas, semicolons, colons, dashes), then at word boundaries; a single
    word longer than the limit is cut hard. Every piece is at most ``max_chars``."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _CLAUSE.split(sentence):
        words = clause.split() if len(clause) > max_chars else [clause]
        for word in words:
            while len(word) > max_chars:
                pieces.append(word[:max_chars])
                word = word[max_chars:]
            pieces.append(word)
    return _pack(pieces, max_chars)


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        joined = f"{current} {piece}" if current else piece
        if len(joined) <= max_chars:
            current = joined
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Pack the sentences of ``text`` into chunks of at most ``max_chars`` characters.

    Sentences stay whole and in order; one longer than the limit is split by
    :func:`split_long`. Returns ``[]`` for blank text.
    """
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces.extend(split_long(sentence, max_chars))
    return _pack(pieces, max_chars)


# -- joining, resampling, loudness -------------------------------------------------------
def as_mono_float32(samples: Any) -> np.ndarray:
    """Coerce a backend's output to ``float32`` of shape ``[n_samples]``.

    :raises SynthesisError: when it is not 1-D (or ``[1, n]``) or holds NaN/inf.
    """
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise SynthesisError(f"the backend returned audio of shape {array.shape}, expected [n_samples]",
                             stage="voice")
    if not np.all(np.isfinite(array)):
        raise SynthesisError("the backend returned audio with NaN or infinite samples", stage="voice")
    return array


def join_chunks(chunks: list[np.ndarray], sample_rate: int, *, pause: float = PAUSE_SECONDS,
                crossfade: float = CROSSFADE_SECONDS) -> np.ndarray:
    """Join chunk audio with ``pause`` seconds of silence between chunks.

    Each boundary (chunk → pause → chunk) is an overlap-add crossfade of
    ``crossfade`` seconds with linear ramps, so no chunk starts or stops with a
    click. Returns ``float32`` ``[n_samples]``.
    """
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(int(round(pause * sample_rate)), dtype=np.float32)
    fade = int(round(crossfade * sample_rate))
    out = chunks[0].astype(np.float32)
    for chunk in chunks[1:]:
        out = _crossfade(_crossfade(out, gap, fade), chunk.astype(np.float32), fade)
    return out


def _crossfade(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    n = min(n, len(a), len(b))
    if n <= 0:
        return np.concatenate([a, b])
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    middle = a[-n:] * (1.0 - ramp) + b[:n] * ramp
    return np.concatenate([a[:-n], middle, b[n:]])


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``samples`` from ``from_rate`` to ``to_rate`` Hz (soxr, high quality)."""
    if from_rate == to_rate:
        return samples
    import soxr

    return np.asarray(soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float32)


def _padded(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``samples`` padded with silence to one 400 ms gating block if shorter."""
    block = int(0.4 * sample_rate) + 1
    return np.pad(samples, (0, block - len(samples))) if len(samples) < block else samples


def measure_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 gating; equal to pyloudnorm's to 1e-6 LU,
    see :mod:`ai_content_pipeline.loudness`).

    Audio shorter than one 400 ms gating block is padded with silence. Returns
    ``None`` when every block is gated out (silence).
    """
    from .loudness import integrated_loudness

    value = integrated_loudness(_padded(samples, sample_rate), sample_rate)
    return value if np.isfinite(value) else None


def peak_dbfs(samples: np.ndarray) -> float:
    """Sample peak in dBFS (``-inf`` for digital silence)."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    return 20 * float(np.log10(peak)) if peak > 0 else float("-inf")


def limiter_gain(samples: np.ndarray, sample_rate: int, *, ceiling_dbfs: float = PEAK_CEILING_DBFS,
                 window: float = LIMITER_WINDOW_SECONDS) -> np.ndarray | None:
    """The gain envelope (``[n_samples]``, 0-1) of the look-ahead peak limiter, or ``None``
    when no sample peak exceeds ``ceiling_dbfs`` (dBFS); see :func:`limit_peaks`."""
    from .loudness import moving_mean, moving_minimum

    ceiling = 10 ** (ceiling_dbfs / 20)
    magnitude = np.abs(samples)
    over = np.flatnonzero(magnitude > ceiling)
    if not len(over):
        return None
    size = 2 * max(1, int(window * sample_rate)) + 1
    gain = np.ones(len(samples), dtype=np.float64)
    # The gain differs from 1 only within `size` samples of a peak: filter those stretches
    # alone (peaks further apart than 2*size are separate stretches), with edges at 1.
    cuts = np.flatnonzero(np.diff(over) > 2 * size) + 1
    for first, last in zip(over[np.r_[0, cuts]], over[np.r_[cuts - 1, len(over) - 1]], strict=True):
        lo, hi = max(0, int(first) - size), min(len(samples), int(last) + size + 1)
        need = np.minimum(1.0, ceiling / np.maximum(magnitude[lo:hi], 1e-12))
        gain[lo:hi] = moving_mean(moving_minimum(need, size), size)
    return gain


def limit_peaks(samples: np.ndarray, sample_rate: int, *, ceiling_dbfs: float = PEAK_CEILING_DBFS,
                window: float = LIMITER_WINDOW_SECONDS) -> np.ndarray:
    """Look-ahead peak limiter: sample peaks at or below ``ceiling_dbfs`` (dBFS).

    The gain each sample needs (``min(1, ceiling / |x|)``) is spread with a
    moving minimum over ``±window`` seconds and smoothed with a moving average
    of the same width, so gain falls and recovers over about ``2 * window``
    around each peak instead of clipping it. This is a *sample* peak limit, not
    a true-peak (oversampled) one. The moving filters are
    :func:`~ai_content_pipeline.loudness.moving_minimum` and
    :func:`~ai_content_pipeline.loudness.moving_mean` (equal to scipy.ndimage's
    ``minimum_filter1d``/``uniform_filter1d`` with ``mode="nearest"``), run only
    on the stretches around peaks.
    """
    gain = limiter_gain(samples, sample_rate, ceiling_dbfs=ceiling_dbfs, window=window)
    if gain is None:
        return samples
    ceiling = 10 ** (ceiling_dbfs / 20)
    return np.clip(samples * gain, -ceiling, ceiling).astype(np.float32)


def normalize_loudness(samples: np.ndarray, sample_rate: int, target_lufs: float, *,
                       peak_ceiling_dbfs: float = PEAK_CEILING_DBFS) -> np.ndarray:
    """Bring integrated loudness to ``target_lufs`` (LUFS) with sample peaks at or below
    ``peak_ceiling_dbfs`` (dBFS); see :func:`normalize_loudness_measured`."""
    return normalize_loudness_measured(samples, sample_rate, target_lufs,
                                       peak_ceiling_dbfs=peak_ceiling_dbfs)[0]


def normalize_loudness_measured(samples: np.ndarray, sample_rate: int, target_lufs: float, *,
                                peak_ceiling_dbfs: float = PEAK_CEILING_DBFS,
                                tolerance: float = 0.05) -> tuple[np.ndarray, float | None]:
    """Normalize loudness like :func:`normalize_loudness`; also return the final loudness (LUFS).

    A gain is applied and peaks above the ceiling are limited (:func:`limit_peaks`).
    Limiting lowers loudness a little (speech has a peak-to-loudness ratio near
    20 dB, so -16 LUFS at -1 dBFS needs a few dB of it), so the gain is corrected
    by the secant method on gain (dB) → loudness (first slope :data:`FIRST_SLOPE`)
    until within ``tolerance`` LU, at most 6 tries. The input is K-weighted once;
    each try measures ``gain * envelope * K(input)``
    (:func:`~ai_content_pipeline.loudness.gated_loudness`, within about 1e-4 LU of
    measuring the limited output itself). Silent input is returned unchanged
    (loudness ``None``).
    """
    from .loudness import gated_loudness, k_weighted

    padded = _padded(samples, sample_rate)
    weighted = k_weighted(padded, sample_rate)
    loudness = gated_loudness(weighted, sample_rate)
    if not np.isfinite(loudness):
        return samples, None
    ceiling = 10 ** (peak_ceiling_dbfs / 20)
    gains: list[float] = []
    levels: list[float] = []
    gain_db = target_lufs - loudness
    out, level = samples, loudness
    for _ in range(6):
        scale = 10 ** (gain_db / 20)
        scaled = (samples * scale).astype(np.float32)
        envelope = limiter_gain(scaled, sample_rate, ceiling_dbfs=peak_ceiling_dbfs)
        if envelope is None:
            out, level = scaled, loudness + gain_db
        else:
            out = np.clip(scaled * envelope, -ceiling, ceiling).astype(np.float32)
            if len(envelope) < len(weighted):  # input shorter than a gating block, padded
                envelope = np.concatenate([envelope, np.ones(len(weighted) - len(envelope))])
            level = gated_loudness(weighted * (scale * envelope), sample_rate)
        if not np.isfinite(level):
            return out, None
        if abs(target_lufs - level) < tolerance:
            return out, level
        gains.append(gain_db)
        levels.append(level)
        slope = FIRST_SLOPE if envelope is not None else 1.0
        if len(gains) >= 2 and gains[-1] != gains[-2]:
            slope = min(1.0, max(0.2, (levels[-1] - levels[-2]) / (gains[-1] - gains[-2])))
        gain_db += (target_lufs - level) / slope
    return out, level


# -- checks and atomic writes -----------------------------------------------------------
def duration_bounds(words: int) -> tuple[float, float]:
    """``(min_seconds, max_seconds)`` a file with ``words`` words may last (see module doc)."""
    words = max(1, words)
    return words / MAX_WORDS_PER_SECOND, words / MIN_WORDS_PER_SECOND + DURATION_SLACK_SECONDS


def check_audio(samples: np.ndarray, sample_rate: int, words: int | None) -> None:
    """Raise :class:`SynthesisError` when audio is empty, silent or of implausible length.

    :param words: the word count of the text spoken; ``None`` skips the duration check.
    """
    if samples.size == 0:
        raise SynthesisError("the synthesized audio is empty", stage="voice")
    if float(np.max(np.abs(samples))) <= SILENCE_PEAK:
        raise SynthesisError("the synthesized audio is silent (peak below -60 dBFS)", stage="voice")
    if words is not None:
        seconds = samples.size / sample_rate
        low, high = duration_bounds(words)
        if not low <= seconds <= high:
            raise SynthesisError(
                f"the synthesized audio lasts {seconds:.2f} s for {words} words "
                f"(plausible: {low:.2f}-{high:.2f} s)",
                hint="the backend may have cut the text short or run on; try again or another voice",
                stage="voice",
            )


def output_format(name: str) -> tuple[str, str, str]:
    """``(soundfile format, subtype, extension)`` for ``--format name``.

    :raises UsageError: unknown format.
    """
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown audio format '{name}'", hint=f"choose one of: {', '.join(FORMATS)}") from None


#: Formats whose decoded samples differ from the encoded ones (a codec's ringing can
#: lift a peak above the ceiling): their peaks are measured after decoding.
LOSSY_FORMATS = ("mp3", "ogg")
#: Encode tries before a lossy file's decoded peak is under the ceiling (each lowers the gain).
ENCODE_TRIES = 4


def mp3_compression(bitrate_kbps: int, sample_rate: int) -> float:
    """libsndfile's compression level (0-1) for a constant mp3 bit rate in kbit/s.

    The inverse of libsndfile's ``mpeg_l3_encoder_set_quality``: bit rates run from
    320 to 32 kbit/s at 32 kHz and above (MPEG-1), 160 to 8 at 16-24 kHz (MPEG-2), 64 to 8
    below (MPEG-2.5); a rate outside its version's range is clamped, and LAME takes the
    nearest standard rate.
    """
    low, high = (32.0, 320.0) if sample_rate >= 32000 else (8.0, 160.0) if sample_rate >= 16000 else (8.0, 64.0)
    rate = min(max(float(bitrate_kbps), low), high)
    return min((high - rate) / (high - low), 0.99)  # libsndfile refuses 1.0; 0.99 still gets the lowest


def _encode(samples: np.ndarray, sample_rate: int, format: str, bitrate: int | None) -> bytes:
    import soundfile as sf

    sf_format, subtype, _ = output_format(format)
    extra: dict[str, Any] = {}
    if format == "mp3" and bitrate is not None:
        extra = {"bitrate_mode": "CONSTANT", "compression_level": mp3_compression(bitrate, sample_rate)}
    encoded = io.BytesIO()
    sf.write(encoded, np.clip(samples, -1.0, 1.0), sample_rate, format=sf_format, subtype=subtype, **extra)
    return encoded.getvalue()


def encode_with_ceiling(samples: np.ndarray, sample_rate: int, format: str, *, bitrate: int | None = None,
                        peak_ceiling_dbfs: float | None = None) -> tuple[bytes, float]:
    """Encode ``samples`` as ``format``; for a lossy format with a ceiling, decode the result and,
    while its sample peak is above ``peak_ceiling_dbfs`` (dBFS), lower the gain and encode again.

    A lossy codec can lift peaks (mp3 by up to 1-2 dB on loud speech), so a peak limited to
    -1 dBFS before encoding may decode above it; the gain is lowered by the overshoot plus
    0.1 dB, at most :data:`ENCODE_TRIES` times.

    :param samples: ``float32`` ``[n_samples]`` mono.
    :param bitrate: mp3 constant bit rate in kbit/s (``None``: the encoder's default).
    :returns: ``(file bytes, gain in dB applied)`` (``0.0`` when none was needed).
    :raises soundfile.LibsndfileError: the encoder failed.
    """
    import soundfile as sf

    gain_db = 0.0
    data = _encode(samples, sample_rate, format, bitrate)
    if peak_ceiling_dbfs is None or format not in LOSSY_FORMATS:
        return data, gain_db
    for _ in range(ENCODE_TRIES):
        decoded, _rate = sf.read(io.BytesIO(data), dtype="float32")
        over = peak_dbfs(decoded) - peak_ceiling_dbfs
        if over <= 0:
            break
        gain_db -= over + 0.1
        data = _encode(samples * np.float32(10 ** (gain_db / 20)), sample_rate, format, bitrate)
    return data, gain_db


def write_audio_atomic(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int, *,
                       format: str, words: int | None, loudness_lufs: float | None = None,
                       bitrate: int | None = None, peak_ceiling_dbfs: float | None = None) -> AudioInfo:
    """Check ``samples`` and write them to ``path``, all or nothing.

    The audio is checked (:func:`check_audio`), encoded in memory, read back (frames and
    rate must match) and written through :func:`~ai_content_pipeline.files.write_atomic`
    (a temporary name in the same folder, on disk before it is renamed to ``path``). On any
    failure, Ctrl-C included, the temporary file is removed and nothing is left behind.

    :param samples: ``float32`` ``[n_samples]`` mono, in ``[-1, 1]`` (clipped on write).
    :param sample_rate: Hz. :param format: a key of :data:`FORMATS`.
    :param words: word count of the spoken text for the duration check (``None``: skip).
    :param loudness_lufs: the loudness already measured (skips measuring it again).
    :param bitrate: mp3 constant bit rate in kbit/s (``None``: the encoder's default).
    :param peak_ceiling_dbfs: for mp3 and ogg, the decoded file's sample peak stays at or
        below this (:func:`encode_with_ceiling`); the reported loudness follows the gain.
    :raises SynthesisError: a failed check or an unreadable result (per record).
    :raises UsageError: the folder cannot be written (permissions, read-only, not a folder).
    :raises DiskFull: no space left (names the path and the free space; exit 1).
    """
    import soundfile as sf

    output_format(format)
    samples = as_mono_float32(samples)
    check_audio(samples, sample_rate, words)
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, target.parent, doing="write to") from exc
    try:  # encoded in memory: libsndfile never writes to the disk itself, so a full disk
        data, gain_db = encode_with_ceiling(samples, sample_rate, format, bitrate=bitrate,  # is a plain
                                            peak_ceiling_dbfs=peak_ceiling_dbfs)  # OSError below
    except (sf.LibsndfileError, RuntimeError, AssertionError) as exc:
        raise SynthesisError(f"cannot encode {format}: {exc}", stage="voice") from exc
    try:  # the encoded bytes read back (frames and rate) before any file is made
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise SynthesisError(f"the written {format} file did not read back: {exc}", stage="voice") from exc
    if not data or info.frames <= 0 or info.samplerate != sample_rate:
        raise SynthesisError(f"the written {format} file did not read back correctly", stage="voice")
    started = False

    def fill(handle: Any) -> None:
        nonlocal started
        started = True
        handle.write(data)

    try:
        write_atomic(target, fill)
    except OSError as exc:  # before the file was made: its folder; after: the file (a full disk)
        raise (os_error(exc, target) if started else os_error(exc, target.parent, doing="write to")) from exc
    size = len(data)
    loudness = loudness_lufs if loudness_lufs is not None else measure_loudness(samples, sample_rate)
    return AudioInfo(
        path=str(target), format=format, sample_rate=sample_rate, channels=1,
        seconds=round(info.frames / sample_rate, 3), frames=int(info.frames), size=size,
        peak_dbfs=round(peak_dbfs(samples) + gain_db, 2),
        loudness_lufs=_rounded(None if loudness is None else loudness + gain_db),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
