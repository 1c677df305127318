"""The allowed range of every numeric option: one source for the flags, the chain schema and files.

Each :class:`Limit` is used twice: the click options of ``aicp script`` / ``aicp
voice`` turn it into an ``IntRange``/``FloatRange`` (:func:`ai_content_pipeline.cli.options.click_range`)
and the stage option dataclasses (so chain ``params``), templates and personas
carry it as an ``Annotated`` constraint that pydantic checks (the aliases
below). A chain's ``--dry-run`` therefore rejects ``temperature: 99`` exactly
as ``--temperature 99`` is rejected.

This module imports neither click nor pydantic (``--help`` stays fast); the
constraint markers come from ``annotated_types``, which pydantic reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, Lt


@dataclass(frozen=True)
class Limit:
    """A numeric range: ``min``/``max`` (``None``: unbounded), open ends excluded.

    :ivar kind: ``int`` or ``float``.
    """

    kind: type
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def lower(self) -> Ge | Gt | None:
        """The ``annotated_types`` marker of the lower bound."""
        if self.min is None:
            return None
        return Gt(self.min) if self.min_open else Ge(self.min)

    def upper(self) -> Le | Lt | None:
        """The ``annotated_types`` marker of the upper bound."""
        if self.max is None:
            return None
        return Lt(self.max) if self.max_open else Le(self.max)

    def describe(self) -> str:
        """``0 to 2``, ``at least 1``, ``above 0 to 1``..."""
        lo = None if self.min is None else f"{'above ' if self.min_open else ''}{_num(self.min)}"
        hi = None if self.max is None else f"{'below ' if self.max_open else ''}{_num(self.max)}"
        if lo and hi:
            return f"{lo} to {hi}"
        return f"at least {lo}" if lo else f"at most {hi}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


#: Sampling temperature of the LLM (``--temperature``, ``params.temperature``).
TEMPERATURE = Limit(float, 0, 2)
#: Nucleus sampling (``--top-p``).
TOP_P = Limit(float, 0, 1, min_open=True)
#: Completion token limit (``--max-tokens``).
MAX_TOKENS = Limit(int, 1, 1_000_000)
#: Takes per record (``--variants``).
VARIANTS = Limit(int, 1, 100)
#: Concurrent requests (``--jobs``).
JOBS = Limit(int, 1, 64)
#: Extra attempts for transient errors (``--retries``).
RETRIES = Limit(int, 0, 10)
#: Seeds (``--seed``, persona ``seed``): 32-bit unsigned, what llama.cpp and NumPy take.
SEED = Limit(int, 0, 2**32 - 1)
#: Candidates per take (``--best-of``).
BEST_OF = Limit(int, 1, 16)
#: Records whose takes llama.cpp decodes together (``--batch``).
BATCH = Limit(int, 1, 64)
#: CPU threads llama.cpp computes with (``--threads``); 512 is ggml's ``GGML_MAX_N_THREADS``.
THREADS = Limit(int, 1, 512)
#: Long-form word total (``--words``).
WORDS = Limit(int, 50, 100_000)
#: Seconds an Ollama request may wait to connect or between two reads (``--timeout``).
TIMEOUT = Limit(float, 0, 86_400, min_open=True)
#: Seconds a take may last on air (``--max-seconds``, a record's ``intro_seconds``).
AIR_SECONDS = Limit(float, 0, 86_400, min_open=True)
#: Integrated loudness target in LUFS (``--loudness``).
LOUDNESS = Limit(float, -70, -5)
#: Output sample rate in Hz (``--sample-rate``).
SAMPLE_RATE = Limit(int, 8000, 192_000)
#: mp3 bit rate in kbit/s (``--bitrate``); the encoder takes the nearest rate its MPEG
#: version allows (32-320 at 32 kHz and up, 8-160 at 16-24 kHz, 8-64 below).
BITRATE = Limit(int, 8, 320)
#: Chatterbox emotion intensity and guidance (``--exaggeration``, ``--cfg-weight``).
EXAGGERATION = Limit(float, 0, 2)
CFG_WEIGHT = Limit(float, 0, 2)
#: Chatterbox sampling temperature (``aicp voice --temperature``).
VOICE_TEMPERATURE = Limit(float, 0, 2, min_open=True)

# -- pydantic-readable aliases: annotated_types markers made from the limits above ------------
Temperature = Annotated[float, TEMPERATURE.lower(), TEMPERATURE.upper()]
TopP = Annotated[float, TOP_P.lower(), TOP_P.upper()]
MaxTokens = Annotated[int, MAX_TOKENS.lower(), MAX_TOKENS.upper()]
Variants = Annotated[int, VARIANTS.lower(), VARIANTS.upper()]
Jobs = Annotated[int, JOBS.lower(), JOBS.upper()]
Threads = Annotated[int, THREADS.lower(), THREADS.upper()]
Retries = Annotated[int, RETRIES.lower(), RETRIES.upper()]
Seed = Annotated[int, SEED.lower(), SEED.upper()]
Words = Annotated[int, WORDS.lower(), WORDS.upper()]
BestOf = Annotated[int, BEST_OF.lower(), BEST_OF.upper()]
Batch = Annotated[int, BATCH.lower(), BATCH.upper()]
Timeout = Annotated[float, TIMEOUT.lower(), TIMEOUT.upper()]
Loudness = Annotated[float, LOUDNESS.lower(), LOUDNESS.upper()]
AirSeconds = Annotated[float, AIR_SECONDS.lower(), AIR_SECONDS.upper()]
SampleRate = Annotated[int, SAMPLE_RATE.lower(), SAMPLE_RATE.upper()]
Bitrate = Annotated[int, BITRATE.lower(), BITRATE.upper()]
Exaggeration = Annotated[float, EXAGGERATION.lower(), EXAGGERATION.upper()]
CfgWeight = Annotated[float, CFG_WEIGHT.lower(), CFG_WEIGHT.upper()]
VoiceTemperature = Annotated[float, VOICE_TEMPERATURE.lower(), VOICE_TEMPERATURE.upper()]
#: Audio file formats (``--format``); the keys of :data:`ai_content_pipeline.audio.FORMATS`.
AudioFormat = Literal["wav", "flac", "ogg", "mp3"]
AUDIO_FORMATS: tuple[str, ...] = ("wav", "flac", "ogg", "mp3")

__all__ = ["AIR_SECONDS", "AUDIO_FORMATS", "AirSeconds", "BITRATE", "Bitrate", "BATCH", "BEST_OF", "CFG_WEIGHT", "EXAGGERATION", "JOBS", "LOUDNESS", "MAX_TOKENS", "RETRIES",
           "SAMPLE_RATE", "SEED", "TEMPERATURE", "TIMEOUT", "TOP_P", "VARIANTS", "VOICE_TEMPERATURE",
           "WORDS", "AudioFormat", "Batch", "BestOf", "CfgWeight", "Exaggeration", "Jobs", "Limit", "Loudness", "MaxTokens",
           "Retries", "SampleRate", "Seed", "Temperature", "Timeout", "TopP", "Variants", "VoiceTemperature",
           "Words"]
