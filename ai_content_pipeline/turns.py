"""Voicing a dialogue: its turns joined into one take, their timings, and captions.

A dialogue script (``script.turns``: ``[{"speaker": persona name, "text": ...}]``, written by a
dialogue template) is voiced turn by turn, each with its speaker's voice; this module joins
the turns' audio and writes the captions:

- each turn's audio is trimmed of the silence the engine put at its edges (level below
  :data:`TRIM_DBFS` under the turn's peak, :data:`TRIM_KEEP_SECONDS` kept), faded in and out
  over :data:`FADE_SECONDS` (raised cosine: no click at a join), and followed by a gap of
  silence between :data:`GAP_RANGE` seconds (0.25-0.45 s), drawn per gap from the take's seed
  (:func:`turn_gaps`: the same take gets the same gaps);
- with a loudness target, each host's turns are first brought to it together
  (:func:`balance_hosts`: engines speak at different levels), then the whole take is normalized;
- the spans (``start``, ``end`` in seconds, from the file's first sample) are where each turn's
  audio lies in the joined file: speech inside, silence between;
- captions (:func:`captions`) are one cue per turn: WebVTT with a ``<v Name>`` voice span, or
  SRT with a ``Name: `` prefix, the name a host's display name.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputError
from .records import get_path

if TYPE_CHECKING:
    import numpy as np

#: Seconds of silence between two turns: each gap is drawn in this range from the take's seed.
GAP_RANGE = (0.25, 0.45)
#: Seconds of the fade-in and fade-out at each turn's edges.
FADE_SECONDS = 0.015
#: A turn's edges quieter than this (dB under its peak, 10 ms frames) are trimmed.
TRIM_DBFS = -45.0
#: Seconds of audio kept outside the first and last frame above :data:`TRIM_DBFS`.
TRIM_KEEP_SECONDS = 0.03
#: Caption formats :func:`captions` writes (``--captions``).
CAPTION_FORMATS = ("vtt", "srt")
CaptionFormat = Literal["vtt", "srt"]


def dialogue_turns(record: dict[str, Any], text_field: str | None = None) -> list[dict[str, str]] | None:
    """The turns to voice one by one: ``script.turns`` when the text voiced is ``script.text``
    (``text_field`` unset or ``script.text``) and the record has turns; else ``None``.

    :returns: ``[{"speaker": str, "text": str}]``, turns with blank text left out.
    :raises InputError: ``script.turns`` is not a list of ``{"speaker": name, "text": str}``, or
        every turn is blank (field ``script.turns``).
    """
    if text_field and text_field != "script.text":
        return None
    value = get_path(record, "script.turns")
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise InputError("field 'script.turns' must be a list of {speaker, text}", field="script.turns")
    turns: list[dict[str, str]] = []
    for n, turn in enumerate(value, start=1):
        if not (isinstance(turn, dict) and isinstance(turn.get("speaker"), str) and turn["speaker"].strip()
                and isinstance(turn.get("text"), str)):
            raise InputError(f"turn {n} of script.turns is not {{\"speaker\": name, \"text\": str}}",
                             field="script.turns", hint="pipe records from aicp-script with a dialogue template")
        if turn["text"].strip():
            turns.append({"speaker": turn["speaker"].strip(), "text": " ".join(turn["text"].split())})
    if not turns:
        raise InputError("script.turns has no text to voice", field="script.turns")
    return turns


def dialogue_key(turns: Sequence[dict[str, str]], voices: dict[str, Any], lexicons: dict[str, Any],
                 gaps: Sequence[float], backend: Any) -> dict[str, Any]:
    """What a dialogue adds to its ledger key: the turns, each host's voice (backend, model,
    name, settings, seed: a :class:`~ai_content_pipeline.backends.base.Voice` by speaker) and the
    entries of its lexicon (:class:`~ai_content_pipeline.lexicon.Lexicon` or ``None``) its turns
    use, and the gaps. ``backend``: the run's TTS backend (its name and model where a voice names
    none, and whether a voice takes phonemes)."""
    hosts: dict[str, Any] = {}
    for name, voice in voices.items():
        lexicon = lexicons.get(name)
        said = " ".join(t["text"] for t in turns if t["speaker"] == name)
        hosts[name] = {"backend": voice.backend or backend.name, "model": voice.model or backend.model,
                       "voice": voice.name, "settings": voice.settings, "seed": voice.seed,
                       "lexicon": lexicon.used(said, backend.phonemes_for(voice)) if lexicon else []}
    return {"turns": list(turns), "hosts": hosts, "gaps": list(gaps)}


def speakers(turns: Sequence[dict[str, str]]) -> list[str]:
    """The speakers of ``turns``, each once, in order of first turn."""
    return list(dict.fromkeys(t["speaker"] for t in turns))


def turn_labels(text: Any, turns: Sequence[dict[str, str]]) -> dict[str, str]:
    """``{speaker: label}`` as the script's ``text`` writes them (one ``Label: text`` line per
    turn, a host's display name as label); speakers whose line is not found are left out."""
    labels: dict[str, str] = {}
    lines = text.splitlines() if isinstance(text, str) else []
    for turn in turns:
        if turn["speaker"] in labels:
            continue
        tail = f": {turn['text']}"
        for line in lines:
            label = line.strip()[:-len(tail)].strip() if line.strip().endswith(tail) else ""
            if label and "\n" not in label:
                labels[turn["speaker"]] = label
                break
    return labels


def turn_gaps(count: int, seed: Any) -> list[float]:
    """``count - 1`` gaps in seconds (3 decimals), each in :data:`GAP_RANGE`, drawn from ``seed``
    (any value with a stable ``str``): the same seed gives the same gaps."""
    rng = random.Random(f"turn-gaps:{seed}")
    return [round(rng.uniform(*GAP_RANGE), 3) for _ in range(max(0, count - 1))]


def trim_edges(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``samples`` without the near-silence at their start and end (see :data:`TRIM_DBFS`);
    all of them when no frame is louder (a silent turn is left for the audio checks)."""
    import numpy as np

    frame = max(1, int(0.01 * sample_rate))
    n = len(samples) // frame
    if n == 0:
        return samples
    rms = np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    peak = float(rms.max())
    if peak <= 0:
        return samples
    loud = np.flatnonzero(rms >= peak * 10 ** (TRIM_DBFS / 20))
    keep = int(TRIM_KEEP_SECONDS * sample_rate)
    start = max(0, int(loud[0]) * frame - keep)
    end = min(len(samples), (int(loud[-1]) + 1) * frame + keep)
    return samples[start:end]


def faded(samples: np.ndarray, sample_rate: int, seconds: float = FADE_SECONDS) -> np.ndarray:
    """A copy of ``samples`` (float32) faded in and out over ``seconds`` (raised cosine), so it
    starts and ends at zero."""
    import numpy as np

    out = np.array(samples, dtype=np.float32, copy=True)
    n = min(int(round(seconds * sample_rate)), len(out) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float64))).astype(np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def join_turns(parts: Sequence[np.ndarray], sample_rate: int,
               gaps: Sequence[float]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Join the turns' audio (mono float32, all at ``sample_rate`` Hz) into one take: each turn
    trimmed (:func:`trim_edges`) and faded (:func:`faded`), ``gaps[i]`` seconds of silence after
    turn ``i``.

    :returns: the samples and each turn's ``(start, end)`` in seconds (3 decimals).
    :raises ValueError: fewer gaps than joins.
    """
    import numpy as np

    if len(gaps) < len(parts) - 1:
        raise ValueError(f"{len(parts)} turns need {len(parts) - 1} gaps, not {len(gaps)}")
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for i, part in enumerate(parts):
        turn = faded(trim_edges(np.asarray(part, dtype=np.float32), sample_rate), sample_rate)
        spans.append((round(at / sample_rate, 3), round((at + len(turn)) / sample_rate, 3)))
        pieces.append(turn)
        at += len(turn)
        if i < len(parts) - 1:
            gap = np.zeros(int(round(gaps[i] * sample_rate)), dtype=np.float32)
            pieces.append(gap)
            at += len(gap)
    return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)), spans


def balance_hosts(parts: Sequence[np.ndarray], speakers: Sequence[str], sample_rate: int,
                  target_lufs: float) -> list[np.ndarray]:
    """The turns' audio with each host's turns gained together to ``target_lufs`` integrated
    loudness (measured over all of that host's turns), so hosts spoken by engines of different
    levels sound equally loud; a host whose audio is silent is left as it is. The joined take is
    normalized as a whole afterwards (peaks are limited then, not here: float samples).

    :param speakers: the speaker of each part, in order.
    """
    import numpy as np

    from .audio import measure_loudness

    gains: dict[str, float] = {}
    for name in dict.fromkeys(speakers):
        own = [p for p, who in zip(parts, speakers, strict=True) if who == name]
        measured = measure_loudness(np.concatenate(own).astype(np.float32), sample_rate) if own else None
        gains[name] = 1.0 if measured is None else float(10 ** ((target_lufs - measured) / 20))
    return [(np.asarray(p, dtype=np.float32) * np.float32(gains[who])).astype(np.float32)
            for p, who in zip(parts, speakers, strict=True)]


def shared_voice(voices: dict[str, Any]) -> bool:
    """Whether two or more hosts' :class:`~ai_content_pipeline.backends.base.Voice` objects are
    one voice: the same backend, model, voice name and voice file for all (speed, seed and
    other prosody settings do not make another voice)."""
    def identity(v: Any) -> tuple[Any, ...]:
        return (v.backend, v.model, v.name, str(v.settings.get("voice")))

    return len(voices) > 1 and len({identity(v) for v in voices.values()}) == 1


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def captions(cues: Sequence[tuple[str | None, float, float, str]], format: CaptionFormat) -> str:
    """Captions text: one cue per ``(speaker label or None, start s, end s, text)``.

    ``vtt``: WebVTT, the text in a ``<v Label>`` voice span; ``srt``: SubRip, ``Label: text``.
    A cue without a label is the text alone.

    :raises ValueError: another ``format``.
    """
    if format not in CAPTION_FORMATS:
        raise ValueError(f"unknown caption format {format!r}")
    blocks: list[str] = ["WEBVTT"] if format == "vtt" else []
    for n, (label, start, end, text) in enumerate(cues, start=1):
        text = " ".join(text.split())
        label = " ".join(label.split()) if label else None
        if format == "vtt":
            line = (f"<v {_vtt_escape(label)}>{_vtt_escape(text)}</v>" if label else _vtt_escape(text))
            blocks.append(f"{n}\n{_stamp(start, '.')} --> {_stamp(end, '.')}\n{line}")
        else:
            line = f"{label}: {text}" if label else text
            blocks.append(f"{n}\n{_stamp(start, ',')} --> {_stamp(end, ',')}\n{line}")
    return "\n\n".join(blocks) + "\n"


def write_captions(path: str, cues: Sequence[tuple[str | None, float, float, str]], format: CaptionFormat) -> str:
    """Write :func:`captions` to ``path`` atomically (UTF-8); returns ``path``.

    :raises OSError: the file cannot be written.
    """
    from .files import write_atomic

    data = captions(cues, format).encode("utf-8")
    write_atomic(path, lambda handle: handle.write(data))
    return path


__all__ = ["CAPTION_FORMATS", "FADE_SECONDS", "GAP_RANGE", "balance_hosts", "captions", "dialogue_key", "dialogue_turns", "faded", "join_turns",
           "shared_voice", "speakers", "trim_edges", "turn_gaps", "turn_labels", "write_captions"]
