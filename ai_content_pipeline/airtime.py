"""How long a take may last on air: its word target from a time limit, and the ``fits`` check.

A take has a time limit when ``aicp-script --max-seconds S`` (chain and service ``params``:
``max_seconds``) is given or its record has an ``intro_seconds`` field (the song's
instrumental start, the radio "post": the voice must end before the vocals); with both, the
smaller one. The script stage turns the limit into words with the speaking rate of the voice
that will read the take (:func:`words_per_second`) and caps the template's word target there
(:func:`fitting_words`): the prompt asks for a length that fits, and a take longer than that
fails the ``length`` check. It writes the limit to ``script.max_seconds``.

The voice stage reads the limit back (``script.max_seconds`` when it voices ``script.text``,
and the record's ``intro_seconds``: the smaller one) and adds a ``fits`` check to
``audio.checks``, failed when the file is longer than the limit (:func:`fits_detail`).

Speaking rates (words per second, whole files of the voice stage: sentence pauses and
leading/trailing silence included):

- Piper: :data:`PIPER_WORDS_PER_SECOND` at ``length_scale`` 1.0, measured on the bundled
  voice (joe, en_US medium) with ``bench/speech_rate.py``, divided by the persona's
  ``voice.piper.length_scale`` (which stretches the speech, not the pauses).
- Any other backend (Chatterbox, Kokoro, a plug-in): :data:`DEFAULT_WORDS_PER_SECOND`.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InputError
from .limits import AIR_SECONDS

#: Words per second of the bundled Piper voice (joe, en_US medium) at ``length_scale`` 1.0:
#: the 10th percentile of the per-file rates over the 44 song intros of
#: ``bench/grounded-labels.jsonl`` written for ``examples/songs.jsonl`` (pooled rate 3.21,
#: median 3.14, slowest 1.88; ``bench/speech_rate.py``). The slow end is taken so that nine
#: takes in ten of the target length fit. Dividing by ``length_scale`` is on the safe side
#: above 1.0 (at 1.08: 2.40 against a measured 10th percentile of 2.50; pauses do not
#: stretch) and about 4% optimistic below it (at 0.92: 2.82 against 2.70).
PIPER_WORDS_PER_SECOND = 2.59
#: Words per second assumed for TTS backends without a measured rate (Chatterbox, Kokoro,
#: plug-ins): 2.5, a calm radio pace (150 words a minute).
DEFAULT_WORDS_PER_SECOND = 2.5
#: The record field that holds a song's instrumental start, in seconds.
INTRO_FIELD = "intro_seconds"


def words_per_second(persona: Any | None, backend: str = "piper") -> float:
    """The speaking rate of ``persona``'s voice on TTS ``backend``, in words per second.

    :param persona: a :class:`~ai_content_pipeline.templates.Persona` (its
        ``voice.piper.length_scale`` sets Piper's pace) or ``None`` (the backend's default pace).
    :param backend: the TTS backend's name: ``piper`` has a measured rate, any other name
        gets :data:`DEFAULT_WORDS_PER_SECOND`.
    :returns: a rate above 0.
    """
    if backend != "piper":
        return DEFAULT_WORDS_PER_SECOND
    scale = None
    if persona is not None:
        scale = getattr(persona.voice.piper, "length_scale", None)
    return PIPER_WORDS_PER_SECOND / (scale if scale else 1.0)


def fitting_words(seconds: float, rate: float) -> int:
    """The most words that fit in ``seconds`` at ``rate`` words per second (at least 1)."""
    return max(1, math.floor(seconds * rate + 1e-9))


def record_seconds(record: dict[str, Any], field: str = INTRO_FIELD, *, stage: str = "script",
                   label: str | None = None) -> float | None:
    """The record's ``intro_seconds`` (or ``field``, named ``label`` in messages), or ``None``
    when it has none (absent, null).

    :raises InputError: the field is not a number of seconds above 0 and at most
        :data:`~ai_content_pipeline.limits.AIR_SECONDS`'s maximum (a string, a boolean, 0, NaN...).
    """
    value = record.get(field)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or not 0 < value <= (AIR_SECONDS.max or math.inf)):
        raise InputError(f"field '{label or field}' must be a number of seconds, {AIR_SECONDS.describe()}",
                         field=label or field, stage=stage,
                         hint="the song's instrumental start in seconds, e.g. 12.5")
    return float(value)


def time_limit(record: dict[str, Any], max_seconds: float | None = None, *,
               stage: str = "script") -> float | None:
    """The seconds a take of ``record`` may last: the smaller of ``max_seconds`` and the
    record's ``intro_seconds``, or ``None`` when neither is given.

    :raises InputError: a bad ``intro_seconds`` (see :func:`record_seconds`).
    """
    limits = [s for s in (max_seconds, record_seconds(record, stage=stage)) if s is not None]
    return min(limits) if limits else None


def fits_detail(seconds: float, limit: float) -> dict[str, Any]:
    """The ``fits`` check's detail: ``{"seconds": audio seconds, "max_seconds": limit}``."""
    return {"seconds": round(float(seconds), 3), "max_seconds": limit}


def add_check(audio: dict[str, Any], name: str, passed: bool, detail: Any = None) -> dict[str, Any]:
    """Merge check ``name`` into ``audio["checks"]`` (created when absent) and return ``audio``.

    ``audio.checks`` has the shape of ``script.checks``: ``{"passed": bool, "failed": [names],
    "details": {name: detail}}``; checks already there stay (``passed`` is true only when
    every check passed), a check of the same name is replaced. ``detail`` is kept for a
    failed check only.
    """
    old = audio.get("checks")
    if not isinstance(old, dict):
        old = {}
    failed = [f for f in (old.get("failed") or []) if f != name]
    details = {k: v for k, v in (old.get("details") or {}).items() if k != name}
    if not passed:
        failed.append(name)
        if detail is not None:
            details[name] = detail
    checks: dict[str, Any] = {"passed": not failed, "failed": failed}
    if details:
        checks["details"] = details
    audio["checks"] = checks
    return audio


__all__ = ["DEFAULT_WORDS_PER_SECOND", "INTRO_FIELD", "PIPER_WORDS_PER_SECOND", "add_check", "fits_detail",
           "fitting_words", "record_seconds", "time_limit", "words_per_second"]
