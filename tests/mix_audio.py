"""Generated audio for the mix tests and bench: songs with an instrumental start and a louder
"vocal" part, and speech-like "voice" takes (numpy alone; no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

#: The instrumental's tone (all through the song) and the "vocals'" tone (from the post on).
BED_HZ = 220.0
VOCAL_HZ = 660.0
#: The voice's carrier: far from both music tones, so each can be measured on its own.
VOICE_HZ = 2000.0


def song(seconds: float, intro: float, rate: int = 44100) -> np.ndarray:
    """Stereo float32: a 220 Hz bed all through, a louder 660 Hz "vocal" from ``intro`` on."""
    t = np.arange(int(seconds * rate)) / rate
    bed = 0.1 * np.sin(2 * np.pi * BED_HZ * t)
    vocal = np.where(t >= intro, 0.35 * np.sin(2 * np.pi * VOCAL_HZ * t) * (0.8 + 0.2 * np.sin(2 * np.pi * 2 * t)), 0.0)
    mono = bed + vocal
    return np.stack([mono, 0.95 * mono], axis=1).astype(np.float32)


def voice(seconds: float, rate: int = 22050, seed: int = 0) -> np.ndarray:
    """Mono float32 "speech": a 2 kHz carrier gated into syllables of 4 per second."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    syllables = (np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)) > -0.2).astype(np.float64)
    return (0.3 * np.sin(2 * np.pi * VOICE_HZ * t) * syllables).astype(np.float32)


def write_song(path: Path, seconds: float, intro: float, rate: int = 44100) -> Path:
    """A generated song file (format by ``path``'s extension: wav, flac, ogg)."""
    sf.write(path, song(seconds, intro, rate), rate)
    return path


def write_voice(path: Path, seconds: float, rate: int = 22050, seed: int = 0) -> Path:
    """A generated voice take (WAV, mono, as aicp-voice writes)."""
    sf.write(path, voice(seconds, rate, seed), rate)
    return path


def tone_level_db(samples: np.ndarray, rate: int, hz: float, start: float, end: float) -> float:
    """The level (dB) of the ``hz`` component of mono ``samples`` between ``start`` and ``end`` s:
    a lock-in over whole periods (correlation with a complex exponential)."""
    a, b = int(start * rate), int(end * rate)
    t = np.arange(a, b) / rate
    amplitude = 2 * abs(np.mean(samples[a:b] * np.exp(-2j * np.pi * hz * t)))
    return float(20 * np.log10(max(amplitude, 1e-12)))
