"""The listening check: transcribe a voiced file offline and compare it with its script.

``aicp-voice --verify`` (chain voice step ``params.verify``, service ``voice_params.verify``)
runs :func:`listen` on each file it writes and merges the result into the record's
``audio.checks`` (:func:`merge_checks`)::

    {"passed": bool, "failed": [names],
     "details": {"listen": {"recall": float, "name_recall": float | None, "last_recall": float,
                            "words": int, "heard": int, "unknown": int, "threshold": float,
                            "recogniser": str, "transcript": str}}}

``recall`` is the share of the script's words heard, in order: both texts are normalised
(:func:`words`: accents and case folded, punctuation dropped except a word's inner
apostrophe, numbers spelled out as they are spoken: ``1975`` → ``nineteen seventy five``,
``'70s`` → ``seventies``, ``3rd`` → ``third``), script words the recogniser cannot spell (not in
its dictionary) are left out, and the words of the longest in-order match of the two word
lists (:class:`difflib.SequenceMatcher`) count as heard. The failure reasons:

- ``silent``: no 20 ms frame of the file reaches :data:`SILENT_DBFS` (nothing is transcribed);
- ``unintelligible``: ``recall`` below the threshold (:data:`RECALL_THRESHOLD` unless given):
  a garbled voice, or a file that says other text;
- ``truncated``: fewer than :data:`LAST_RECALL_MIN` of the last sentence's words heard (a
  last sentence under :data:`LAST_MIN_WORDS` known words takes the words before it too);

``name_recall`` (the record's ``artist`` and ``title`` words alone) is reported, not failed on:
PocketSphinx's general language model misses names in good files too (bench/voice_quality.py:
one good Piper file in 20 had none of its name words heard), so it is a figure to watch per
voice, not a verdict per file.

The recogniser is a :class:`Recogniser` (a protocol: PocketSphinx, whose wheel ships an
English model, by default; another engine plugs in by implementing :meth:`~Recogniser.transcribe`
and :meth:`~Recogniser.knows`). PocketSphinx is imported only when a check runs.
"""

from __future__ import annotations

import difflib
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import SynthesisError

#: Default pass mark on ``recall`` (share of the script's words heard), measured with
#: bench/voice_quality.py (Piper joe, 20 intros): good files 0.52-0.96 (median 0.76), another
#: intro's file checked against a script at most 0.21; the mark sits between the two. A cut
#: file keeps up to 0.64 of its words: ``truncated`` catches it.
RECALL_THRESHOLD = 0.35
#: Share of the last sentence's words that must be heard, else ``truncated``.
LAST_RECALL_MIN = 0.34
#: Known words the "last sentence" spans at least (a short one takes the words before it).
LAST_MIN_WORDS = 5
#: A file whose loudest 20 ms frame stays below this RMS level (dBFS) is ``silent``.
SILENT_DBFS = -50.0
#: Failure reasons, in report order.
REASONS = ("silent", "unintelligible", "truncated")
#: Record fields whose words make ``name_recall``.
NAME_FIELDS = ("artist", "title")


class Recogniser(Protocol):
    """An offline speech recogniser for the listening check.

    :ivar name: a label for reports (``pocketsphinx``).
    :ivar sample_rate: the rate in Hz :meth:`transcribe` wants its samples at.
    """

    name: str
    sample_rate: int

    def transcribe(self, samples: np.ndarray) -> str:
        """The words heard in ``samples`` (float32 mono in [-1, 1] at :attr:`sample_rate`)."""
        ...

    def knows(self, word: str) -> bool:
        """Whether the recogniser can output ``word`` (a :func:`words` token) at all."""
        ...


class PocketSphinx:
    """:class:`Recogniser` on PocketSphinx's bundled US English model (16 kHz), built on first
    use, one decoder for the process (calls are serialised by a lock).

    :param options: PocketSphinx decoder options (``beam``, ``fwdflat``...) over
        :data:`POCKETSPHINX_OPTIONS`.
    :raises SynthesisError: PocketSphinx is not installed (on first use).
    """

    name = "pocketsphinx"
    sample_rate = 16000

    def __init__(self, **options: Any) -> None:
        self.options = {**POCKETSPHINX_OPTIONS, **options}
        self._decoder: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError as exc:  # pragma: no cover - a dependency of the package
                raise SynthesisError("the listening check needs PocketSphinx, which is not installed",
                                     hint="pip install pocketsphinx", stage="voice") from exc
            self._decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL", **self.options)
        return self._decoder

    def transcribe(self, samples: np.ndarray) -> str:
        """One utterance over the whole file; the hypothesis's words (``""`` when none)."""
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        with self._lock:
            decoder = self._get()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def knows(self, word: str) -> bool:
        """``word`` is in PocketSphinx's pronunciation dictionary."""
        with self._lock:
            return self._get().lookup_word(word) is not None


#: PocketSphinx options of the listening check: the first search pass only (no flat-lexicon
#: second pass, no lattice best path), every second frame (``ds``) and at most 3,000 active
#: HMMs a frame. On 20 Piper intros (bench/voice_quality.py's) this decodes in half the
#: CPU time of PocketSphinx's defaults (0.12 s against 0.23 s a second of audio) with the same
#: spread of recall (0.48-0.94 against 0.53-0.95); narrower beams lost a quarter of the good
#: files.
POCKETSPHINX_OPTIONS: dict[str, Any] = {"fwdflat": False, "bestpath": False, "ds": 2, "maxhmmpf": 3000}


# -- words ---------------------------------------------------------------------------------
_DECADE = re.compile(r"(?<![\w'’])['’]?(\d{2}|1\d{3}|20\d{2})['’]?s\b")
_ORDINAL = re.compile(r"\b(\d{1,9})(st|nd|rd|th)\b", re.I)
_YEAR = re.compile(r"(?<![\d.,])(1[1-9]\d{2}|20\d{2})(?![\d]|[.,]\d)")
_NUMBER = re.compile(r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d|[.,]\d)")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i",
                       "&": " and ", "%": " percent ", "’": "'", "‘": "'", "`": "'", "´": "'"})


def _spoken(number: str, to: str = "cardinal") -> str:
    from num2words import num2words

    value: float | int = float(number) if "." in number else int(number)
    return f" {num2words(value, to=to)} ".replace(" and ", " ")


def _decade(match: re.Match[str]) -> str:
    digits = match.group(1)
    if len(digits) == 2:
        tens = _spoken(digits).split()[-1]
        prefix = ""
    else:
        spoken = _spoken(digits, "year").split()
        tens, prefix = spoken[-1], " ".join(spoken[:-1])
    plural = tens[:-1] + "ies" if tens.endswith("y") else tens + "s"
    return f" {prefix} {plural} "


def words(text: str) -> list[str]:
    """``text`` as the words a listener hears: accents and case folded, numbers spelled out
    (years as years, decades, ordinals, cardinals with decimals), hyphens and other
    punctuation as spaces, a word's inner apostrophe kept (``here's``).

    ``"Back in 1975, the '80s — 3rd place!"`` → ``back in nineteen seventy five the eighties
    third place``.
    """
    text = unicodedata.normalize("NFKC", str(text)).lower().translate(_FOLD)
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = _DECADE.sub(_decade, text)
    text = _ORDINAL.sub(lambda m: _spoken(m.group(1), "ordinal"), text)
    text = _YEAR.sub(lambda m: _spoken(m.group(1), "year"), text)
    text = _NUMBER.sub(lambda m: _spoken(m.group(0).replace(",", "")), text)
    text = text.replace("-", " ")
    return _TOKEN.findall(text)


def _sentences(text: str) -> list[str]:
    from .text import split_sentences

    return split_sentences(text) or [text]


def _spellable(tokens: list[str], recogniser: Recogniser) -> list[str]:
    """``tokens`` the recogniser can spell (a possessive it cannot: its stem)."""
    out = []
    for token in tokens:
        if recogniser.knows(token):
            out.append(token)
        elif token.endswith("'s") and recogniser.knows(token[:-2]):
            out.append(token[:-2])
    return out


# -- the check -----------------------------------------------------------------------------
@dataclass
class Hearing:
    """What :func:`listen` found for one file.

    :ivar recall: share of the script's known words heard in order (0-1).
    :ivar name_recall: the same over the record's artist and title words (``None``: none).
    :ivar last_recall: the same over the last sentence (see module doc).
    :ivar words: the script's words the recogniser knows. :ivar unknown: those it does not.
    :ivar heard: words in the transcript. :ivar transcript: the recogniser's text.
    :ivar failed: reasons from :data:`REASONS`. :ivar threshold: the recall pass mark used.
    """

    recall: float
    name_recall: float | None
    last_recall: float
    words: int
    unknown: int
    heard: int
    transcript: str
    threshold: float
    recogniser: str
    failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No failure reason."""
        return not self.failed

    def as_checks(self) -> dict[str, Any]:
        """``{"passed", "failed", "details": {"listen": {...}}}`` for ``audio.checks``."""
        detail = {"recall": round(self.recall, 3),
                  "name_recall": None if self.name_recall is None else round(self.name_recall, 3),
                  "last_recall": round(self.last_recall, 3), "words": self.words, "heard": self.heard,
                  "unknown": self.unknown, "threshold": self.threshold, "recogniser": self.recogniser,
                  "transcript": self.transcript}
        return {"passed": self.passed, "failed": list(self.failed), "details": {"listen": detail}}


def _matched(script: list[str], heard: list[str]) -> list[bool]:
    """For each script word, whether the longest in-order match with ``heard`` uses it."""
    hit = [False] * len(script)
    for block in difflib.SequenceMatcher(None, script, heard, autojunk=False).get_matching_blocks():
        for i in range(block.a, block.a + block.size):
            hit[i] = True
    return hit


def _share(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else 1.0


def loudest_frame_dbfs(samples: np.ndarray, sample_rate: int, frame_seconds: float = 0.02) -> float:
    """RMS level in dBFS of the loudest ``frame_seconds`` frame (``-inf`` for no sound)."""
    n = max(1, int(sample_rate * frame_seconds))
    usable = samples[: samples.size // n * n] if samples.size >= n else np.pad(samples, (0, n - samples.size))
    rms = np.sqrt(np.mean(usable.astype(np.float64).reshape(-1, n) ** 2, axis=1))
    top = float(rms.max()) if rms.size else 0.0
    return 20 * np.log10(top) if top > 0 else float("-inf")


def listen(samples: np.ndarray, sample_rate: int, text: str, recogniser: Recogniser, *,
           names: Mapping[str, Any] | None = None, threshold: float = RECALL_THRESHOLD) -> Hearing:
    """Transcribe ``samples`` and compare them with ``text``.

    :param samples: mono float audio in [-1, 1]. :param sample_rate: its rate in Hz.
    :param text: the script that was voiced. :param names: the record (its
        :data:`NAME_FIELDS` strings give ``name_recall``). :param threshold: recall pass mark.
    :returns: a :class:`Hearing`.
    """
    tokens = words(text)
    known = _spellable(tokens, recogniser)
    unknown = len(tokens) - len(known)
    silent = samples.size == 0 or loudest_frame_dbfs(samples, sample_rate) < SILENT_DBFS
    transcript = ""
    if not silent:
        from .audio import resample

        audio = np.asarray(samples, dtype=np.float32)
        if sample_rate != recogniser.sample_rate:
            audio = resample(audio, sample_rate, recogniser.sample_rate)
        transcript = recogniser.transcribe(audio)
    heard = words(transcript)
    hits = _matched(known, heard)
    recall = _share(hits)

    last: list[bool] = []
    for sentence in reversed(_sentences(text)):
        count = len(_spellable(words(sentence), recogniser))
        last = hits[len(hits) - len(last) - count: len(hits) - len(last)] + last
        if len(last) >= LAST_MIN_WORDS:
            break
    last_recall = _share(last)

    name_words = [w for f in NAME_FIELDS if isinstance((names or {}).get(f), str)
                  for w in _spellable(words(names[f]), recogniser)]  # type: ignore[index]
    name_recall = None
    if name_words:
        heard_set = set(heard)
        name_recall = sum(w in heard_set for w in name_words) / len(name_words)

    failed: list[str] = []
    if silent:
        failed.append("silent")
    else:
        if known and recall < threshold:
            failed.append("unintelligible")
        if last and last_recall < LAST_RECALL_MIN:
            failed.append("truncated")
    return Hearing(recall=recall, name_recall=name_recall, last_recall=last_recall, words=len(known),
                   unknown=unknown, heard=len(heard), transcript=transcript, threshold=threshold,
                   recogniser=recogniser.name, failed=failed)


def listen_file(path: str, text: str, recogniser: Recogniser, *, names: Mapping[str, Any] | None = None,
                threshold: float = RECALL_THRESHOLD) -> Hearing:
    """:func:`listen` on the audio file ``path`` (any format the voice stage writes).

    :raises SynthesisError: the file cannot be read.
    """
    import soundfile as sf

    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise SynthesisError(f"cannot read {path} to check it: {exc}", stage="voice") from exc
    return listen(samples.mean(axis=1), int(rate), text, recogniser, names=names, threshold=threshold)


def merge_checks(existing: Any, new: Mapping[str, Any]) -> dict[str, Any]:
    """``audio.checks`` with the checks ``new`` adds: ``passed`` only when both passed,
    ``failed`` the union (existing names first), ``details`` merged (``new``'s keys win).

    ``existing`` that is not a checks object (absent, hand-edited) counts as none.
    """
    if not isinstance(existing, Mapping):
        return {"passed": bool(new.get("passed")), "failed": list(new.get("failed") or []),
                "details": dict(new.get("details") or {})}
    failed = [str(f) for f in existing.get("failed") or [] if isinstance(f, str)]
    failed += [f for f in new.get("failed") or [] if f not in failed]
    details = existing.get("details")
    return {"passed": existing.get("passed") is not False and bool(new.get("passed")),
            "failed": failed,
            "details": {**(details if isinstance(details, Mapping) else {}), **(new.get("details") or {})}}


__all__ = ["LAST_MIN_WORDS", "LAST_RECALL_MIN", "NAME_FIELDS", "POCKETSPHINX_OPTIONS", "REASONS",
           "RECALL_THRESHOLD", "SILENT_DBFS", "Hearing", "PocketSphinx", "Recogniser", "listen", "listen_file",
           "loudest_frame_dbfs", "merge_checks", "words"]
