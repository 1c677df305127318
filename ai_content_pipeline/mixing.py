"""Radio segues and show files: decode, duck, join, normalize, encode and tag audio.

The audio work of ``aicp mix`` (:mod:`ai_content_pipeline.stages.mix`), usable on its own:

- :func:`decode` reads any file FFmpeg reads (MP3, FLAC, WAV, OGG, M4A...) through PyAV and
  resamples it with PyAV's :class:`av.AudioResampler` (libswresample) to stereo float32.
- :func:`plan_segue` places an intro and its song on one time line (``talk-up`` or
  ``before``); :func:`render_segue` mixes them: each part normalized to one loudness target
  first (:func:`gain_to`), the music ducked under the voice (:func:`duck_envelope`), in
  blocks (:func:`segue_blocks`).
- :class:`ShowWriter` joins segments into one file in one pass: each segment's blocks go to
  a temporary float32 file as they come (memory holds one segment's song and voice, never
  the show), its loudness (:class:`LoudnessMeter`) and true peak (:class:`TruePeakMeter`)
  measured on the way; once it is complete an encoder thread reads it back at the gain that
  meets both the loudness target and the true-peak ceiling and encodes it (PyAV) while the
  next segment is mixed; chapters and tags are written with mutagen.
- :func:`plan_episode` and :func:`episode_blocks` make a podcast episode (music beds ducked
  under the speech); :func:`playlist_entries` and :func:`write_playlist` a playout playlist.

Units: seconds, Hz, dB; samples are ``float32`` arrays shaped ``[frames, 2]`` (stereo).
PyAV, numpy and mutagen are imported on first use.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputError, UsageError

if TYPE_CHECKING:
    import numpy as np

#: Segue kinds: the intro over the song's instrumental start, or the intro and then the song.
Segue = Literal["talk-up", "before"]
SEGUES: tuple[str, ...] = ("talk-up", "before")

#: Broadcast-style ducking defaults: music 12 dB down under speech, reaching that depth in
#: 0.3 s before the voice starts and coming back over 0.8 s after it ends.
DUCK_DEPTH_DB = -12.0
DUCK_ATTACK_SECONDS = 0.3
DUCK_RELEASE_SECONDS = 0.8
#: The voice ends this long before the vocals (the "post") in a talk-up.
POST_MARGIN_SECONDS = 0.5
#: Voice/song overlap when a talk-up has no ``intro_seconds``: the song fades in under the voice's end.
CROSSFADE_SECONDS = 1.5
#: Loudness target of a show (LUFS integrated) and its true-peak ceiling (dBTP).
SHOW_LOUDNESS_LUFS = -16.0
TRUE_PEAK_DBTP = -1.0
#: Sample-peak ceiling of each mixed segment (dBFS): 1 dB under the true-peak ceiling leaves
#: room for inter-sample peaks and the show's final loudness gain.
SEGMENT_CEILING_DBFS = -2.0
#: Oversampling factor of the true-peak measurement (ITU-R BS.1770-4 Annex 2 asks for 4x).
OVERSAMPLE = 4
#: Frames per block when a show is measured and encoded.
BLOCK_FRAMES = 1 << 16
#: LAME's algorithm quality (``-q``; 0 best and slowest, 9 fastest): 7, "fast, ok quality",
#: costs about three quarters of 5 and at 192 kbit/s CBR sounds the same on speech and pop.
LAME_QUALITY = "7"

#: Output formats by extension: (container format, codec, MIME type, encoder bit rate or None).
#: MP3 is 192 kbit/s CBR at LAME's quality :data:`LAME_QUALITY`.
FORMATS: dict[str, tuple[str, str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg", 192_000),
    "m4a": ("ipod", "aac", "audio/mp4", 192_000),
    "opus": ("ogg", "libopus", "audio/ogg", 128_000),
    "flac": ("flac", "flac", "audio/flac", None),
    "wav": ("wav", "pcm_s16le", "audio/wav", None),
}


def show_format(path: str | os.PathLike[str]) -> str:
    """The output format of ``path`` by its extension (``mp3``, ``m4a``, ``opus``, ``flac``, ``wav``).

    :raises UsageError: any other extension.
    """
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise UsageError(f"cannot write {Path(path).name!r}: unknown audio format {ext or '(none)'!r}",
                         hint=f"name the file .{', .'.join(FORMATS)}")
    return ext


def format_rate(ext: str) -> int:
    """The sample rate a show in format ``ext`` is mixed at: 48 kHz for Opus (its only rate), else 44.1 kHz."""
    return 48_000 if ext == "opus" else 44_100


# -- decoding ---------------------------------------------------------------------------------
def decode(path: str | os.PathLike[str], rate: int) -> np.ndarray:
    """The first audio stream of ``path`` as stereo float32 ``[frames, 2]`` at ``rate`` Hz
    (mono is copied to both channels, more channels are downmixed by libswresample).

    :raises InputError: the file is missing or holds no decodable audio (stage ``mix``).
    """
    import av
    import numpy as np

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read audio file {str(path)!r}: {exc}", stage="mix",
                         hint="check the path the record names") from exc
    try:
        with container:
            if not container.streams.audio:
                raise InputError(f"{str(path)!r} holds no audio stream", stage="mix")
            # one buffer sized from the container's duration (grown if that was short): the
            # song is held once, never as a list of frames plus their join
            estimate = int((container.duration or 0) / 1_000_000 * rate) + rate
            out = np.empty((max(estimate, rate), 2), dtype=np.float32)
            n = 0
            resampler = av.AudioResampler(format="flt", layout="stereo", rate=rate)

            def put(frames: list[Any]) -> None:
                nonlocal out, n
                for frame in frames:
                    data = frame.to_ndarray().reshape(-1, 2)
                    if n + len(data) > len(out):
                        out = np.concatenate([out, np.empty((max(len(data), len(out) // 2), 2), dtype=np.float32)])
                    out[n:n + len(data)] = data
                    n += len(data)

            for frame in container.decode(container.streams.audio[0]):
                put(resampler.resample(frame))
            put(resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot decode {str(path)!r}: {exc}", stage="mix") from exc
    if not n:
        raise InputError(f"{str(path)!r} holds no audio", stage="mix")
    return out[:n]


# -- loudness -----------------------------------------------------------------------------------
def loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770-4) of stereo ``[frames, 2]`` or mono samples.

    Each channel is K-weighted by :func:`~ai_content_pipeline.loudness.k_weighted`; the
    channels' energies add (left and right weigh 1), measured by
    :func:`~ai_content_pipeline.loudness.gated_loudness`. ``-inf`` for silence.
    """
    import numpy as np

    from .loudness import gated_loudness, k_weighted

    if samples.ndim == 1:
        return gated_loudness(k_weighted(samples, rate), rate)
    meter = LoudnessMeter(rate)
    for first in range(0, len(samples), BLOCK_FRAMES * 4):
        meter.feed(samples[first:first + BLOCK_FRAMES * 4])
    if meter.frames < int(0.4 * rate):  # under one gating block: measured padded with silence
        meter.feed(np.zeros((int(0.4 * rate) - meter.frames, samples.shape[1]), dtype=np.float32))
    return meter.lufs()


def gain_to(samples: np.ndarray, rate: int, target_lufs: float) -> float:
    """The linear gain that brings ``samples`` to ``target_lufs`` integrated (1 for silence)."""
    measured = loudness(samples, rate)
    return 10 ** ((target_lufs - measured) / 20) if math.isfinite(measured) else 1.0


def normalize(samples: np.ndarray, rate: int, target_lufs: float) -> np.ndarray:
    """``samples`` scaled to ``target_lufs`` integrated (silence is returned unchanged)."""
    return (samples * gain_to(samples, rate, target_lufs)).astype("float32")


class LoudnessMeter:
    """Integrated loudness of a stream fed in blocks, memory independent of its length.

    Each block is K-weighted (:func:`~ai_content_pipeline.loudness.k_weighted`) with the
    previous 0.1 s in front (the filter's memory: its response is below 1e-9 after 0.085 s),
    and only the energy at the 400 ms gating-block bounds is kept (two numbers per 100 ms).
    :meth:`lufs` gates those blocks as :func:`~ai_content_pipeline.loudness.gated_loudness`
    does (the same bounds, absolute and relative gates): equal to measuring the joined signal
    at once to about 1e-4 LU (tested against pyloudnorm).
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frames = 0
        self._energy = 0.0
        self._lead: Any = None
        self._at: dict[int, float] = {0: 0.0}
        self._j = 0  # the next gating block whose bounds are not yet reached

    def _bounds(self, j: Any) -> tuple[Any, Any]:
        from .loudness import BLOCK_SECONDS, STEP

        lower = (BLOCK_SECONDS * (j * STEP) * self.rate).astype("int64")
        upper = (BLOCK_SECONDS * (j * STEP + 1) * self.rate).astype("int64")
        return lower, upper

    def feed(self, block: np.ndarray) -> None:
        """Add ``block`` (``[frames, channels]`` float32, the stream's next samples)."""
        import numpy as np

        from .loudness import k_weighted

        if not len(block):
            return
        tail = int(0.1 * self.rate)
        lead = self._lead if self._lead is not None else np.zeros((0, block.shape[1]), dtype=np.float32)
        joined = np.concatenate([lead, block])
        energy = np.zeros(len(block))
        for c in range(block.shape[1]):
            energy += np.square(k_weighted(joined[:, c], self.rate)[len(lead):], dtype=np.float64)
        self._lead = joined[-tail:].copy()
        cumulative = self._energy + np.cumsum(energy)
        start, end = self.frames, self.frames + len(block)
        # every bound in (start, end]: lower bounds of blocks j.., upper bounds of blocks j-4..
        hops = int(math.ceil((end - start) / (0.1 * self.rate))) + 8
        j = np.arange(max(0, self._j - 5), self._j + hops)
        lower, upper = self._bounds(j)
        for p in np.unique(np.concatenate([lower, upper])):
            if start < p <= end:
                self._at[int(p)] = float(cumulative[p - start - 1])
        self._j = int(j[lower <= end].max()) + 1 if (lower <= end).any() else self._j
        self._energy = float(cumulative[-1])
        self.frames = end

    def blocks(self) -> np.ndarray:
        """The mean square (K-weighted, channels added) of each 400 ms gating block so far:
        float64 ``[n_blocks]`` (empty under 0.4 s)."""
        import numpy as np

        from .loudness import BLOCK_SECONDS, STEP

        n = self.frames
        total = n / self.rate
        if total < BLOCK_SECONDS:
            return np.zeros(0)
        blocks = int(np.round((total - BLOCK_SECONDS) / (BLOCK_SECONDS * STEP))) + 1
        lower, upper = self._bounds(np.arange(blocks))
        lower, upper = np.minimum(lower, n), np.minimum(upper, n)
        self._at.setdefault(n, self._energy)
        at = np.vectorize(lambda p: self._at[int(p)], otypes=[float])
        return np.maximum((at(upper) - at(lower)) / (BLOCK_SECONDS * self.rate), 0.0)

    def lufs(self) -> float:
        """The gated integrated loudness so far (LUFS); ``-inf`` for silence or under 0.4 s."""
        from .loudness import gate_blocks

        z = self.blocks()
        return gate_blocks(z) if len(z) else float("-inf")


class TruePeakMeter:
    """True peak (dBTP) of a stream fed in blocks: the samples oversampled :data:`OVERSAMPLE`
    times by libswresample (PyAV's :class:`av.AudioResampler`, its default windowed-sinc
    filter), the largest magnitude of the result. An estimate as BS.1770-4 Annex 2 describes
    (it names a 4x polyphase FIR; the resampler's filter differs in its taps)."""

    def __init__(self, rate: int) -> None:
        import av

        self.rate = rate
        self.peak = 0.0
        self._resampler = av.AudioResampler(format="flt", layout="stereo", rate=rate * OVERSAMPLE)
        self._pts = 0

    def _take(self, frames: list[Any]) -> None:
        for out in frames:
            data = out.to_ndarray()
            if data.size:
                self.peak = max(self.peak, float(data.max()), -float(data.min()))

    def feed(self, block: np.ndarray) -> None:
        """Add ``block`` (``[frames, 2]`` float32)."""
        import av
        import numpy as np

        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32).reshape(1, -1),
                                           format="flt", layout="stereo")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(block)
        self._take(self._resampler.resample(frame))
        # the sample peak bounds the true peak from below whatever the filter does
        self.peak = max(self.peak, float(block.max()), -float(block.min())) if len(block) else self.peak

    def dbtp(self) -> float:
        """The true peak so far in dBTP (``-inf`` for silence); flushes the resampler."""
        self._take(self._resampler.resample(None))
        return 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")


# -- segues ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DuckSettings:
    """How music ducks under speech: ``depth_db`` (negative dB), ``attack`` and ``release`` (s)."""

    depth_db: float = DUCK_DEPTH_DB
    attack: float = DUCK_ATTACK_SECONDS
    release: float = DUCK_RELEASE_SECONDS


@dataclass(frozen=True)
class SeguePlan:
    """Where an intro and its song sit on the segment's time line (seconds from its start).

    :ivar kind: ``talk-up``, ``before``, or ``None`` (only a voice or only a song).
    :ivar voice_start: :ivar voice_seconds: the voice (0 when there is none).
    :ivar song_start: :ivar song_seconds: the song (0 when there is none).
    :ivar fade_in: seconds the song fades in over from its start (a crossfade; 0: none).
    :ivar ducked: whether the music ducks under the voice.
    :ivar seconds: the segment's length.
    """

    kind: Segue | None
    voice_start: float
    voice_seconds: float
    song_start: float
    song_seconds: float
    fade_in: float = 0.0
    ducked: bool = False

    @property
    def seconds(self) -> float:
        return max(self.voice_start + self.voice_seconds, self.song_start + self.song_seconds)

    @property
    def voice_end(self) -> float:
        return self.voice_start + self.voice_seconds


def plan_segue(kind: Segue | None, voice_seconds: float, song_seconds: float, intro_seconds: float | None = None,
               *, post_margin: float = POST_MARGIN_SECONDS, crossfade: float = CROSSFADE_SECONDS) -> SeguePlan:
    """The time line of one segue.

    ``before``: the voice, then the song. ``talk-up`` with ``intro_seconds`` (the song's
    instrumental start, the "post"): the song starts at 0 and the voice ends ``post_margin``
    before the post, ducking the music; when the voice is longer than the post allows, the
    song starts later so the voice still ends there. ``talk-up`` without it: the voice, the
    song fading in under its last ``crossfade`` seconds (at most half the voice), ducked.
    A missing voice or song (``0`` seconds) plays the other alone.
    """
    if voice_seconds <= 0 or song_seconds <= 0 or kind is None:
        return SeguePlan(None, 0.0, max(voice_seconds, 0.0), max(voice_seconds, 0.0) if voice_seconds > 0 else 0.0,
                         max(song_seconds, 0.0))
    if kind == "before":
        return SeguePlan("before", 0.0, voice_seconds, voice_seconds, song_seconds)
    if intro_seconds is not None and intro_seconds > 0:
        post = max(intro_seconds - post_margin, 0.0)
        song_start = max(0.0, voice_seconds - post)
        return SeguePlan("talk-up", song_start + post - voice_seconds, voice_seconds, song_start, song_seconds,
                         ducked=True)
    overlap = min(crossfade, voice_seconds / 2)
    return SeguePlan("talk-up", 0.0, voice_seconds, voice_seconds - overlap, song_seconds, fade_in=overlap,
                     ducked=True)


def duck_envelope(times: np.ndarray, voice_start: float, voice_end: float, duck: DuckSettings) -> np.ndarray:
    """The music's gain (linear, float32) at ``times`` (seconds): 1 away from the voice,
    ``depth_db`` from ``voice_start`` to ``voice_end``, ramping in dB over ``attack`` before
    and ``release`` after."""
    import numpy as np

    points = [voice_start - duck.attack, voice_start, voice_end, voice_end + duck.release]
    db = np.interp(times, points, [0.0, duck.depth_db, duck.depth_db, 0.0])
    return (10 ** (db / 20)).astype(np.float32)


def segue_blocks(plan: SeguePlan, voice: np.ndarray | None, song: np.ndarray | None, rate: int,
                 target_lufs: float, duck: DuckSettings = DuckSettings(),
                 block: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Mix ``voice`` and ``song`` (stereo ``[frames, 2]`` at ``rate``, either may be ``None``)
    on ``plan``'s time line, yielding float32 ``[<= block, 2]`` blocks in order,
    ``round(plan.seconds * rate)`` frames in all: each part at ``target_lufs`` (its gain
    measured once), the song ducked under the voice and faded in as the plan says, sample
    peaks limited to :data:`SEGMENT_CEILING_DBFS` by the look-ahead limiter
    (:func:`~ai_content_pipeline.audio.limiter_gain`; each block is limited with
    :data:`_MARGIN` seconds of its neighbours, so the blocks join as one limited signal).
    Memory: the two inputs plus a few blocks."""
    import numpy as np

    frames = int(round(plan.seconds * rate))
    song_gain = gain_to(song, rate, target_lufs) if song is not None and len(song) else 0.0
    voice_gain = gain_to(voice, rate, target_lufs) if voice is not None and len(voice) else 0.0
    s0, v0 = int(round(plan.song_start * rate)), int(round(plan.voice_start * rate))
    duck_from = plan.voice_start - duck.attack
    duck_to = plan.voice_end + duck.release

    def mixed(lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, 2), dtype=np.float32)
        if song_gain:
            assert song is not None
            a, b = max(lo, s0), min(hi, s0 + len(song))
            if b > a:
                part = song[a - s0:b - s0] * np.float32(song_gain)
                first, last = a / rate, b / rate
                if plan.fade_in > 0 and first < plan.song_start + plan.fade_in:
                    times = np.arange(a, b) / rate
                    part *= np.clip((times - plan.song_start) / plan.fade_in, 0.0, 1.0).astype(np.float32)[:, None]
                if plan.ducked and last > duck_from and first < duck_to:
                    times = np.arange(a, b) / rate
                    part *= duck_envelope(times, plan.voice_start, plan.voice_end, duck)[:, None]
                out[a - lo:b - lo] += part
        if voice_gain:
            assert voice is not None
            a, b = max(lo, v0), min(hi, v0 + len(voice))
            if b > a:
                out[a - lo:b - lo] += voice[a - v0:b - v0] * np.float32(voice_gain)
        return out

    yield from _limited_blocks(mixed, frames, rate, block)


#: Seconds of neighbouring audio each block is limited with (the limiter's reach is about 0.04 s).
_MARGIN = 0.1


def _limited_blocks(mixed: Callable[[int, int], np.ndarray], frames: int, rate: int,
                    block: int) -> Iterator[np.ndarray]:
    """``frames`` frames of ``mixed(lo, hi)`` (float32 ``[hi - lo, 2]``) in blocks of at most
    ``block``, each mixed with :data:`_MARGIN` seconds of its neighbours and limited to
    :data:`SEGMENT_CEILING_DBFS` (:func:`_limited`), so the blocks join as one limited signal."""
    margin = int(_MARGIN * rate)
    ceiling = 10 ** (SEGMENT_CEILING_DBFS / 20)
    for a in range(0, frames, block):
        b = min(frames, a + block)
        lo, hi = max(0, a - margin), min(frames, b + margin)
        yield _limited(mixed(lo, hi), rate, ceiling)[a - lo:b - lo]


def _limited(out: np.ndarray, rate: int, ceiling: float) -> np.ndarray:
    """``out`` (``[frames, 2]`` float32) with its sample peaks limited to ``ceiling`` (linear) by
    :func:`~ai_content_pipeline.audio.limiter_gain`, in place; untouched when no sample is over."""
    import numpy as np

    from .audio import limiter_gain

    if not len(out) or max(float(out.max()), -float(out.min())) <= ceiling:
        return out
    magnitude = np.maximum(np.abs(out[:, 0]), np.abs(out[:, 1]))
    envelope = limiter_gain(magnitude, rate, ceiling_dbfs=SEGMENT_CEILING_DBFS)
    if envelope is not None:
        out *= envelope[:, None].astype(np.float32)
        np.clip(out, -ceiling, ceiling, out=out)
    return out


def render_segue(plan: SeguePlan, voice: np.ndarray | None, song: np.ndarray | None, rate: int,
                 target_lufs: float, duck: DuckSettings = DuckSettings()) -> np.ndarray:
    """:func:`segue_blocks` joined: float32 ``[round(plan.seconds * rate), 2]``."""
    import numpy as np

    blocks = list(segue_blocks(plan, voice, song, rate, target_lufs, duck))
    return np.concatenate(blocks) if blocks else np.zeros((0, 2), dtype=np.float32)


# -- podcast episodes -------------------------------------------------------------------------------
#: Music beds of an episode: the intro bed plays alone this long before the speech...
BED_LEAD_SECONDS = 4.0
#: ...and each bed stays under the speech (ducked) this long: after its start, before its end.
BED_UNDER_SECONDS = 6.0
#: The outro bed plays on this long after the speech.
BED_TAIL_SECONDS = 4.0
#: Fade of a bed's ends (seconds).
BED_FADE_SECONDS = 2.0


@dataclass(frozen=True)
class EpisodePlan:
    """Where an episode's speech and its music beds sit (seconds from the episode's start).

    :ivar voice_start: :ivar voice_seconds: the speech.
    :ivar bed_in_seconds: how much of the intro bed plays, from 0 (0: none); it fades out over
        its last :ivar fade: seconds.
    :ivar bed_out_start: :ivar bed_out_seconds: the outro bed (0 seconds: none); it fades in
        over its first ``fade`` seconds and out over its last.
    """

    voice_start: float
    voice_seconds: float
    bed_in_seconds: float = 0.0
    bed_out_start: float = 0.0
    bed_out_seconds: float = 0.0
    fade: float = BED_FADE_SECONDS

    @property
    def voice_end(self) -> float:
        return self.voice_start + self.voice_seconds

    @property
    def seconds(self) -> float:
        return max(self.voice_end, self.bed_in_seconds, self.bed_out_start + self.bed_out_seconds)


def plan_episode(voice_seconds: float, bed_in_seconds: float = 0.0, bed_out_seconds: float = 0.0, *,
                 lead: float = BED_LEAD_SECONDS, under: float = BED_UNDER_SECONDS, tail: float = BED_TAIL_SECONDS,
                 fade: float = BED_FADE_SECONDS) -> EpisodePlan:
    """The time line of an episode: the intro bed (``bed_in_seconds`` long, 0: none) alone for
    ``lead`` seconds (less when it is shorter), then under the speech for ``under`` more; the
    outro bed from ``under`` seconds before the speech ends to ``tail`` after it (both as far as
    the beds last)."""
    voice_start = min(lead, bed_in_seconds) if bed_in_seconds > 0 else 0.0
    bed_in = min(bed_in_seconds, voice_start + under) if bed_in_seconds > 0 else 0.0
    voice_end = voice_start + voice_seconds
    out_start = max(voice_start, voice_end - under)
    bed_out = min(bed_out_seconds, voice_end + tail - out_start) if bed_out_seconds > 0 else 0.0
    return EpisodePlan(voice_start, voice_seconds, bed_in, out_start if bed_out else 0.0, bed_out, fade)


def _ramp(times: np.ndarray, start: float, end: float, fade_in: float, fade_out: float) -> np.ndarray:
    """Linear fades: 0 -> 1 over ``fade_in`` from ``start``, 1 -> 0 over ``fade_out`` to ``end``."""
    import numpy as np

    gain = np.ones(len(times), dtype=np.float32)
    if fade_in > 0:
        gain *= np.clip((times - start) / fade_in, 0.0, 1.0).astype(np.float32)
    if fade_out > 0:
        gain *= np.clip((end - times) / fade_out, 0.0, 1.0).astype(np.float32)
    return gain


def episode_blocks(plan: EpisodePlan, voice: np.ndarray, bed_in: np.ndarray | None, bed_out: np.ndarray | None,
                   rate: int, target_lufs: float, duck: DuckSettings = DuckSettings(),
                   block: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Mix an episode on ``plan``'s time line, yielding float32 ``[<= block, 2]`` blocks,
    ``round(plan.seconds * rate)`` frames in all: the speech and each bed at ``target_lufs``,
    the beds ducked under the speech (:func:`duck_envelope`) and faded at their ends, sample
    peaks limited as :func:`segue_blocks` limits them."""
    import numpy as np

    frames = int(round(plan.seconds * rate))
    layers = []  # (samples, gain, start s, seconds, fade in, fade out)
    v_gain = gain_to(voice, rate, target_lufs) if len(voice) else 0.0
    if bed_in is not None and plan.bed_in_seconds > 0:
        layers.append((bed_in, gain_to(bed_in, rate, target_lufs), 0.0, plan.bed_in_seconds, 0.0,
                       min(plan.fade, plan.bed_in_seconds / 2)))
    if bed_out is not None and plan.bed_out_seconds > 0:
        edge = min(plan.fade, plan.bed_out_seconds / 2)
        layers.append((bed_out, gain_to(bed_out, rate, target_lufs), plan.bed_out_start, plan.bed_out_seconds,
                       edge if plan.bed_out_start > 0 else 0.0, edge))
    v0 = int(round(plan.voice_start * rate))

    def mixed(lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, 2), dtype=np.float32)
        for samples, gain, start, seconds, fade_in, fade_out in layers:
            s0 = int(round(start * rate))
            a, b = max(lo, s0), min(hi, s0 + int(round(seconds * rate)), s0 + len(samples))
            if b > a:
                times = np.arange(a, b) / rate
                shape = _ramp(times, start, start + seconds, fade_in, fade_out)
                shape *= duck_envelope(times, plan.voice_start, plan.voice_end, duck)
                out[a - lo:b - lo] += samples[a - s0:b - s0] * (np.float32(gain) * shape)[:, None]
        a, b = max(lo, v0), min(hi, v0 + len(voice))
        if b > a and v_gain:
            out[a - lo:b - lo] += voice[a - v0:b - v0] * np.float32(v_gain)
        return out

    yield from _limited_blocks(mixed, frames, rate, block)


#: A pause a section boundary is moved to: at least this long...
PAUSE_MIN_SECONDS = 0.12
#: ...this far at most from where the words put it.
PAUSE_SEARCH_SECONDS = 4.0


def section_starts(voice: np.ndarray, rate: int, words: list[int]) -> list[float]:
    """Where each of the sections voiced one after another in ``voice`` starts (seconds; the
    first at 0), given each section's word count: the share of the words before it, moved to
    the middle of the nearest pause (:data:`PAUSE_MIN_SECONDS` or longer below -40 dB of the
    take's loudest 20 ms, within :data:`PAUSE_SEARCH_SECONDS`): the voice stage pauses between
    sentences, and a section ends on one."""
    import numpy as np

    total = sum(words)
    seconds = len(voice) / rate
    if not words or total <= 0 or seconds <= 0:
        return [0.0 for _ in words]
    hop = max(1, int(0.02 * rate))
    mono = voice.mean(axis=1) if voice.ndim == 2 else voice
    n = len(mono) // hop
    rms = np.sqrt(np.mean(np.square(mono[:n * hop].reshape(n, hop), dtype=np.float64), axis=1)) if n else np.zeros(0)
    silent = rms < (rms.max() * 10 ** (-40 / 20) if len(rms) else 0)
    pauses: list[float] = []  # middles of silent runs long enough
    run = 0
    for i, quiet in enumerate(np.append(silent, False)):
        if quiet:
            run += 1
            continue
        if run * hop >= PAUSE_MIN_SECONDS * rate and i - run > 0 and i < n:
            pauses.append((i - run / 2) * hop / rate)
        run = 0
    starts = [0.0]
    before = 0
    for count in words[:-1]:
        before += count
        guess = seconds * before / total
        near = [p for p in pauses if abs(p - guess) <= PAUSE_SEARCH_SECONDS and p > starts[-1]]
        starts.append(min(near, key=lambda p: abs(p - guess)) if near else max(guess, starts[-1]))
    return starts


def shift_captions(source: str | os.PathLike[str], target: str | os.PathLike[str], seconds: float) -> str:
    """Copy a WebVTT (``.vtt``) or SubRip (``.srt``) captions file to ``target`` (same format),
    every cue ``seconds`` later (webvtt-py reads and writes it); atomically. Returns ``target``.

    :raises InputError: it cannot be read as captions. :raises OSError: it cannot be written.
    """
    import io

    import webvtt

    from .files import write_atomic

    srt = str(source).lower().endswith(".srt")
    try:
        captions = webvtt.from_srt(str(source)) if srt else webvtt.read(str(source))
    except (OSError, UnicodeDecodeError, webvtt.errors.MalformedFileError) as exc:
        raise InputError(f"cannot read the captions {str(source)!r}: {exc}", stage="mix") from exc
    if seconds:
        for caption in captions.captions:
            caption.shift(seconds)
    buffer = io.StringIO()
    captions.write(buffer, format="srt" if srt else "vtt")
    data = buffer.getvalue().encode("utf-8")
    write_atomic(target, lambda handle: handle.write(data))
    return str(target)


# -- playlists for live playout -------------------------------------------------------------------
#: Liquidsoap's annotate keys a playlist entry carries (read by Liquidsoap 2.0 to 2.4; see the README):
#: cue points (request resolution since 2.2.4, the ``cue_cut`` operator before), fade durations
#: (``fade.in``/``fade.out`` as ``crossfade`` applies them) and the overlap with the next entry
#: (``cross``/``crossfade``'s ``override_duration``).
LIQ_KEYS = ("liq_cue_in", "liq_cue_out", "liq_fade_in", "liq_fade_out", "liq_cross_duration")


@dataclass(frozen=True)
class PlaylistEntry:
    """One entry of a playout playlist: ``path`` and its annotations (``key -> value``, text)."""

    path: str
    title: str
    seconds: float
    annotations: dict[str, str]

    def line(self) -> str:
        """``annotate:key="value",...:PATH`` (values quoted, ``"`` and ``\\`` escaped)."""
        def quoted(value: str) -> str:
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        pairs = ",".join(f"{k}={quoted(v)}" for k, v in self.annotations.items())
        return f"annotate:{pairs}:{self.path}"


def _seconds_text(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def playlist_entries(plan: SeguePlan, voice_path: str | None, song_path: str | None, *,
                     title: str | None = None, artist: str | None = None,
                     duck: DuckSettings = DuckSettings()) -> list[PlaylistEntry]:
    """The playlist entries of one segue, in playing order: the intro, then the song.

    The intro (``aicp_role="intro"``) is cued to its length and carries in
    ``liq_cross_duration`` the seconds the song plays under it (its overlap with the next
    entry: 0 for ``before``). The song (``aicp_role="song"``) fades in over ``liq_fade_in``
    (the plan's crossfade) and plays to its end (``liq_cross_duration`` 0: the next intro
    follows it). When the plan starts the song before the voice (a talk-up whose voice is
    shorter than the post), a player that starts the next entry only within the current one
    cannot play the song alone first: the song entry is cued in by that lead (``liq_cue_in``)
    so the voice still ends where the plan ends it, on the post; ``aicp_song_lead`` says how
    many seconds the show file plays before the voice instead. ``aicp_duck_*`` give the
    ducking the plan asks for (a playout script applies it; Liquidsoap does not on its own).
    """
    entries = []
    song_lead = max(plan.voice_start - plan.song_start, 0.0) if plan.kind else 0.0
    if voice_path is not None and plan.voice_seconds > 0:
        overlap = max(plan.voice_end - max(plan.song_start, plan.voice_start), 0.0) if song_path and plan.kind else 0.0
        notes = {"liq_cue_in": _seconds_text(0.0), "liq_cue_out": _seconds_text(plan.voice_seconds),
                 "liq_fade_in": _seconds_text(0.0), "liq_fade_out": _seconds_text(0.0),
                 "liq_cross_duration": _seconds_text(min(overlap, plan.voice_seconds)), "aicp_role": "intro",
                 "aicp_segue": plan.kind or "none"}
        if plan.ducked and song_path:
            notes.update(aicp_duck_db=f"{duck.depth_db:g}", aicp_duck_attack=_seconds_text(duck.attack),
                         aicp_duck_release=_seconds_text(duck.release))
        entries.append(PlaylistEntry(os.path.abspath(voice_path), f"Intro: {title}" if title and song_path else (title or "Voice"),
                                     plan.voice_seconds, notes))
    if song_path is not None and plan.song_seconds > 0:
        notes = {"liq_cue_in": _seconds_text(song_lead), "liq_cue_out": _seconds_text(plan.song_seconds),
                 "liq_fade_in": _seconds_text(plan.fade_in), "liq_fade_out": _seconds_text(0.0),
                 "liq_cross_duration": _seconds_text(0.0), "aicp_role": "song",
                 "aicp_song_lead": _seconds_text(song_lead)}
        if artist:
            notes["artist"] = artist
        if title:
            notes["title"] = title
        entries.append(PlaylistEntry(os.path.abspath(song_path), " - ".join(x for x in (artist, title) if x) or "Song",
                                     plan.song_seconds - song_lead, notes))
    return entries


def write_playlist(path: str | os.PathLike[str], entries: Iterable[PlaylistEntry]) -> str:
    """Write ``entries`` as an extended M3U playlist (UTF-8, ``#EXTM3U``, an ``#EXTINF`` line
    and an ``annotate:`` line per entry), atomically; returns ``path`` as text.

    :raises OSError: it cannot be written.
    """
    from .files import write_atomic

    lines = ["#EXTM3U"]
    for entry in entries:
        lines.append(f"#EXTINF:{int(round(entry.seconds))},{entry.title.replace(chr(10), ' ')}")
        lines.append(entry.line())
    data = ("\n".join(lines) + "\n").encode("utf-8")
    write_atomic(path, lambda handle: handle.write(data))
    return str(path)


# -- show files ------------------------------------------------------------------------------------
@dataclass
class Chapter:
    """One chapter: ``start`` and ``end`` in seconds, its ``title``."""

    start: float
    end: float
    title: str

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "title": self.title}


@dataclass
class ShowTags:
    """Tags of a show file: ``title``, ``artist`` (the station or host), ``album``, ``date``,
    ``cover`` (a JPEG or PNG file embedded as the front cover)."""

    title: str | None = None
    cover: str | None = None
    artist: str | None = None
    album: str | None = None
    date: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class ShowWriter:
    """Join segments into one audio file, each normalized to a loudness target, in one pass.

    :param path: the file to write; its extension picks the format (:func:`show_format`).
    :param target_lufs: integrated loudness of each segment, and so of the file (LUFS).
    :param true_peak_dbtp: the true-peak ceiling (dBTP): when a segment's loudness gain would
        exceed it, that gain is lowered to meet it (the segment is then quieter than the
        target; the result says how loud the file is).
    :raises UsageError: unknown extension.

    Use: :meth:`add` each segment (float32 ``[frames, 2]`` at :attr:`rate`, one array or its
    blocks), then :meth:`finish`; :meth:`close` removes the temporary files (``finish``
    calls it).

    How: a segment's blocks go to a temporary float32 file as they come (memory holds a few
    blocks, never the segment or the show), its loudness (:class:`LoudnessMeter`) and true
    peak (:class:`TruePeakMeter`) measured on the way; once the segment is complete, its gain
    is known and an encoder thread reads the file back, applies the gain and encodes it
    (PyAV, which lets go of the GIL while the codec works) while the next segment is mixed.
    At most two segments wait for the encoder. With ``processes`` the encoder is a child
    process instead (spawned on the first segment, about half a second): the two never
    wait on each other's hold of the interpreter (a show); a thread suits one file of one
    segment. The file's loudness is that of every
    segment's gating blocks at its gain (the blocks across a join are left out: a few
    tenths of a second per segment).
    """

    _QUEUE = 2

    def __init__(self, path: str | os.PathLike[str], target_lufs: float = SHOW_LOUDNESS_LUFS,
                 true_peak_dbtp: float = TRUE_PEAK_DBTP, rate: int | None = None, *, processes: bool = False) -> None:
        import queue

        self.path = Path(path)
        self.ext = show_format(self.path)
        self.rate = rate or format_rate(self.ext)
        self.target = target_lufs
        self.ceiling = true_peak_dbtp
        self.chapters: list[Chapter] = []
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._part = self.path.with_name(f".{self.path.name}.part")
        self._queue: queue.Queue[tuple[Path, float] | None] = queue.Queue(self._QUEUE)
        self._thread: Any = None
        self._error: BaseException | None = None
        self._raws: list[Path] = []
        self._blocks: list[Any] = []  # gating blocks of every segment at its gain
        self._peak = float("-inf")  # the file's true peak (dBTP)
        self._stop = False  # set by close(): the encoder thread ends at its next block
        self._processes = processes
        self._process: Any = None
        self._conn: Any = None
        self._waiting = 0  # segments sent to the encoder process and not yet encoded

    @property
    def seconds(self) -> float:
        """Seconds joined so far."""
        return self.frames / self.rate

    def add(self, samples: np.ndarray | Iterable[np.ndarray], chapter: str | None = None) -> tuple[float, float]:
        """Append one segment, ``samples`` (one array, or blocks in order: :func:`segue_blocks`);
        ``chapter`` titles a chapter spanning it. Returns ``(start, end)`` in seconds.

        :raises OSError: a temporary file cannot be written; an error of the encoder thread.
        """
        import numpy as np

        self._check()
        blocks: Iterable[np.ndarray]
        if isinstance(samples, np.ndarray):
            blocks = (samples[i:i + BLOCK_FRAMES] for i in range(0, len(samples), BLOCK_FRAMES))
        else:
            blocks = samples
        start = self.seconds
        meter, peak = LoudnessMeter(self.rate), TruePeakMeter(self.rate)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".raw", dir=self.path.parent)
        raw_path = Path(name)
        self._raws.append(raw_path)
        frames = 0
        with os.fdopen(handle, "wb") as raw:
            for block in blocks:
                block = np.ascontiguousarray(block, dtype=np.float32)
                if not len(block):
                    continue
                meter.feed(block)
                peak.feed(block)
                raw.write(block.data)
                frames += len(block)
        if not frames:
            raw_path.unlink(missing_ok=True)
            self._raws.remove(raw_path)
            return start, start
        if frames < int(0.4 * self.rate):  # under one gating block: measured padded with silence
            meter.feed(np.zeros((int(0.4 * self.rate) - frames, 2), dtype=np.float32))
        z = meter.blocks()
        measured = float("-inf")
        if len(z):
            from .loudness import gate_blocks

            measured = gate_blocks(z)
        gain_db = self.target - measured if math.isfinite(measured) else 0.0
        gate_db = peak.dbtp()
        if math.isfinite(gate_db) and gate_db + gain_db > self.ceiling:
            gain_db = self.ceiling - 0.05 - gate_db
        if math.isfinite(gate_db):
            self._peak = max(self._peak, gate_db + gain_db)
        self._blocks.append(z * 10 ** (gain_db / 10))
        self.frames += frames
        if chapter:
            self.chapters.append(Chapter(start, self.seconds, chapter))
        if self._processes:
            self._send(raw_path, 10 ** (gain_db / 20))
        else:
            self._start()
            self._put((raw_path, 10 ** (gain_db / 20)))
        return start, self.seconds

    def _send(self, raw_path: Path, gain: float) -> None:
        """Hand a segment to the encoder process (started on the first), at most
        :attr:`_QUEUE` of them waiting."""
        import multiprocessing

        if self._process is None:
            context = multiprocessing.get_context("spawn")
            self._conn, child = context.Pipe()
            self._process = context.Process(target=_encoder_process, args=(str(self._part), self.ext, self.rate, child),
                                            name="aicp-mix-encoder", daemon=True)
            self._process.start()
            child.close()
        while self._waiting >= self._QUEUE:
            self._receive()
        self._conn.send(("segment", str(raw_path), gain))
        self._waiting += 1

    def _receive(self) -> str:
        """The encoder process's next answer (``ack`` or ``done``).

        :raises OSError: it failed or died.
        """
        while not self._conn.poll(0.5):
            if not self._process.is_alive():
                raise OSError(f"the encoder of {self.path.name} stopped (exit {self._process.exitcode})")
        try:
            message = self._conn.recv()
        except EOFError as exc:
            raise OSError(f"the encoder of {self.path.name} stopped") from exc
        if message[0] == "error":
            raise OSError(f"cannot encode {self.path.name}: {message[1]}")
        if message[0] == "ack":
            self._waiting -= 1
        return str(message[0])

    def _put(self, item: tuple[Path, float] | None) -> None:
        import queue

        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _start(self) -> None:
        import threading

        if self._thread is None:
            self._thread = threading.Thread(target=self._encode, name="aicp-mix-encoder", daemon=True)
            self._thread.start()

    def _encode(self) -> None:
        """The encoder thread: encode each queued segment file at its gain into :attr:`_part`."""
        def items() -> Iterator[tuple[Path, float]]:
            while (item := self._queue.get()) is not None and not self._stop:
                yield item

        try:
            encode_segments(self._part, self.ext, self.rate, items(), lambda: self.chapters, lambda: self._stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
            while True:  # let the producer go on to its error instead of waiting on a full queue
                try:
                    item = self._queue.get(timeout=5)
                except Exception:  # noqa: BLE001 - queue.Empty: nothing more will come
                    return
                if item is None:
                    return

    def finish(self, tags: ShowTags | None = None) -> dict[str, Any]:
        """Encode what is left, tag and move the file into place (atomically); the ``mix`` object::

            {"file", "seconds", "bytes", "type", "sample_rate", "lufs", "true_peak_dbtp", "chapters",
             "title"?: the title tag}

        :raises UsageError: nothing was added.
        """
        import numpy as np

        try:
            if not self.frames:
                raise UsageError("nothing to mix: no record had audio", hint="pipe voiced records (aicp-voice)")
            if self._processes:
                self._conn.send(("end", list(self.chapters)))
                while self._receive() != "done":
                    pass
                self._process.join()
                self._process = None
            else:
                self._put(None)
                self._thread.join()
                self._thread = None
                self._check()
            from .loudness import gate_blocks

            z = np.concatenate(self._blocks) if self._blocks else np.zeros(0)
            lufs = gate_blocks(z) if len(z) else float("-inf")
            write_tags(self._part, self.ext, tags or ShowTags(), self.chapters, self.seconds)
            os.replace(self._part, self.path)
            result = {"file": str(self.path), "seconds": round(self.seconds, 3), "bytes": self.path.stat().st_size,
                      "type": FORMATS[self.ext][2], "sample_rate": self.rate,
                      "lufs": round(lufs, 2) if math.isfinite(lufs) else None,
                      "true_peak_dbtp": round(self._peak, 2) if math.isfinite(self._peak) else None,
                      "chapters": [c.as_dict() for c in self.chapters]}
            if tags is not None and tags.title:
                result["title"] = tags.title
            return result
        finally:
            self.close()

    def close(self) -> None:
        """Stop the encoder and remove the temporary files (the output stays as it was)."""
        if self._process is not None:
            self._process.terminate()
            self._process.join(timeout=10)
            self._process = None
            self._conn.close()
        if self._thread is not None:
            import queue

            self._stop = True
            try:
                self._queue.put(None, timeout=1)
            except queue.Full:
                pass
            self._thread.join(timeout=30)
            self._thread = None
        for raw in self._raws:
            raw.unlink(missing_ok=True)
        self._part.unlink(missing_ok=True)


def encode_segments(part: str | os.PathLike[str], ext: str, rate: int, items: Iterable[tuple[Any, float]],
                    chapters: Any, stop: Any = lambda: False, done: Any = lambda: None) -> None:
    """Encode ``items`` (``(raw float32 stereo file, linear gain)``, each file removed once
    encoded; ``done()`` is called after each) into ``part`` in format ``ext`` at ``rate`` Hz;
    ``chapters()`` gives the M4A chapters once the items are done; ``stop()`` ends early.

    :raises OSError: the file cannot be written (PyAV's errors are ``OSError``).
    """
    import av
    import numpy as np

    container_format, codec, _, bit_rate = FORMATS[ext]
    with av.open(str(part), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        if bit_rate:
            stream.bit_rate = bit_rate
        if codec == "libmp3lame":
            stream.codec_context.options = {"compression_level": LAME_QUALITY}
        pts = 0
        for raw_path, gain in items:
            with open(raw_path, "rb") as raw:
                while not stop() and (data := raw.read(BLOCK_FRAMES * 8)):
                    block = np.frombuffer(data, dtype=np.float32) * np.float32(gain)
                    frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout="stereo")
                    frame.sample_rate = rate
                    frame.pts = pts
                    pts += len(block) // 2
                    container.mux(stream.encode(frame))
            Path(raw_path).unlink(missing_ok=True)
            done()
            if stop():
                return
        container.mux(stream.encode(None))
        marks = chapters()
        if ext == "m4a" and marks:  # the muxer writes them with its index, at the end
            container.set_chapters([{"id": i + 1, "start": int(round(c.start * 1000)),
                                     "end": int(round(c.end * 1000)), "time_base": _fraction(1, 1000),
                                     "metadata": {"title": c.title}} for i, c in enumerate(marks)])


def _encoder_process(part: str, ext: str, rate: int, conn: Any) -> None:
    """A child process's encoder (:class:`ShowWriter` with ``processes``): messages on
    ``conn``: ``("segment", raw file, gain)``, then ``("end", chapters)``; answers ``("ack",)``
    per segment, then ``("done",)``, or ``("error", message)``."""
    marks: list[Chapter] = []

    def items() -> Iterator[tuple[str, float]]:
        while True:
            message = conn.recv()
            if message[0] == "end":
                marks.extend(message[1])
                return
            yield message[1], message[2]

    try:
        encode_segments(part, ext, rate, items(), lambda: marks, done=lambda: conn.send(("ack",)))
        conn.send(("done",))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass


def _fraction(a: int, b: int) -> Any:
    from fractions import Fraction

    return Fraction(a, b)


def write_tags(path: str | os.PathLike[str], ext: str, tags: ShowTags, chapters: list[Chapter],
               seconds: float) -> None:
    """Tags and chapters with mutagen: ID3v2.4 with ``CTOC``/``CHAP`` frames (MP3); MP4 atoms
    (M4A; the chapters are written by the muxer, which mutagen reads back but cannot write);
    Vorbis comments with ``CHAPTERnnn``/``CHAPTERnnnNAME`` (Opus, FLAC); RIFF WAV gets ID3 tags
    and ``CHAP`` frames in its ``id3`` chunk."""
    names = {"title": tags.title, "artist": tags.artist, "album": tags.album, "date": tags.date, **tags.extra}
    names = {k: v for k, v in names.items() if v}
    if ext in ("mp3", "wav"):
        from mutagen import id3

        frames: Any
        if ext == "mp3":
            try:
                frames = id3.ID3(str(path))
            except id3.ID3NoHeaderError:
                frames = id3.ID3()
        else:
            from mutagen.wave import WAVE

            wave = WAVE(str(path))
            if wave.tags is None:
                wave.add_tags()
            frames = wave.tags
        for key, cls in (("title", id3.TIT2), ("artist", id3.TPE1), ("album", id3.TALB), ("date", id3.TDRC)):
            if key in names:
                frames.setall(cls.__name__, [cls(encoding=3, text=[names[key]])])
        frames.delall("CHAP")
        frames.delall("CTOC")
        if chapters:
            ids = [f"ch{i + 1}" for i in range(len(chapters))]
            frames.add(id3.CTOC(element_id="toc", flags=id3.CTOCFlags.TOP_LEVEL | id3.CTOCFlags.ORDERED,
                                child_element_ids=ids, sub_frames=[id3.TIT2(encoding=3, text=["Chapters"])]))
            for cid, chapter in zip(ids, chapters, strict=True):
                frames.add(id3.CHAP(element_id=cid, start_time=int(round(chapter.start * 1000)),
                                    end_time=int(round(chapter.end * 1000)),
                                    sub_frames=[id3.TIT2(encoding=3, text=[chapter.title])]))
        cover = _cover(tags.cover)
        if cover is not None:
            frames.setall("APIC", [id3.APIC(encoding=3, mime=cover[1], type=id3.PictureType.COVER_FRONT,
                                            desc="Cover", data=cover[0])])
        if ext == "mp3":
            frames.save(str(path), v2_version=4)
        else:
            wave.save()
        return
    if ext == "m4a":
        from mutagen.mp4 import MP4

        mp4 = MP4(str(path))
        for key, atom in (("title", "\xa9nam"), ("artist", "\xa9ART"), ("album", "\xa9alb"), ("date", "\xa9day")):
            if key in names:
                mp4[atom] = [names[key]]
        cover = _cover(tags.cover)
        if cover is not None:
            from mutagen.mp4 import MP4Cover

            kind = MP4Cover.FORMAT_PNG if cover[1] == "image/png" else MP4Cover.FORMAT_JPEG
            mp4["covr"] = [MP4Cover(cover[0], imageformat=kind)]
        mp4.save()
        return
    from mutagen import File

    audio = File(str(path))
    for key, value in names.items():
        audio[key.upper()] = [value]
    for i, chapter in enumerate(chapters, start=1):
        audio[f"CHAPTER{i:03d}"] = [_timestamp(chapter.start)]
        audio[f"CHAPTER{i:03d}NAME"] = [chapter.title]
    cover = _cover(tags.cover)
    if cover is not None:
        import base64

        from mutagen.flac import Picture

        picture = Picture()
        picture.type, picture.mime, picture.desc, picture.data = 3, cover[1], "Cover", cover[0]
        if ext == "flac":
            audio.clear_pictures()
            audio.add_picture(picture)
        else:  # Ogg Opus: the FLAC picture block, base64, as a comment (the Xiph convention)
            audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(picture.write()).decode("ascii")]
    audio.save()


def _cover(path: str | None) -> tuple[bytes, str] | None:
    """``(bytes, MIME type)`` of a cover image file, or ``None`` without one.

    :raises UsageError: unreadable, or neither JPEG nor PNG.
    """
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the cover image {path!r}: {exc.strerror or exc}") from exc
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return data, "image/jpeg"
    raise UsageError(f"the cover image {path!r} is neither JPEG nor PNG", hint="give a .jpg or .png file")


def _timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (the Vorbis-comment chapter convention)."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


__all__ = ["BED_FADE_SECONDS", "BED_LEAD_SECONDS", "BED_TAIL_SECONDS", "BED_UNDER_SECONDS", "CROSSFADE_SECONDS", "DUCK_ATTACK_SECONDS", "DUCK_DEPTH_DB", "DUCK_RELEASE_SECONDS", "FORMATS",
           "SEGUES", "SHOW_LOUDNESS_LUFS", "TRUE_PEAK_DBTP", "Chapter", "DuckSettings", "EpisodePlan", "LoudnessMeter",
           "PlaylistEntry", "Segue", "SeguePlan", "ShowTags", "ShowWriter", "TruePeakMeter", "decode", "duck_envelope", "encode_segments", "episode_blocks", "plan_episode", "section_starts", "shift_captions",
           "format_rate", "loudness", "normalize", "gain_to", "plan_segue", "render_segue", "segue_blocks", "show_format", "playlist_entries", "write_playlist", "write_tags"]
