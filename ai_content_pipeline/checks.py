"""Deterministic checks on a generated script (no model call): is this take fit to air?

A template declares its checks in a ``checks:`` block (see :class:`Checks`)::

    checks:
      mentions: [artist, title]        # record fields the text must name
      no_echo: true                    # no instructions or meta-text read out
      length: {min: 0.5, max: 1.5}     # words within [min, max] x target_words
      complete: true                   # ends on a whole sentence

- ``mentions``: each item is a dotted path into the prompt context (record
  fields at the top, ``persona.station``...) or a list of paths, of which the
  first one with a value counts. A path with no value is not required. The
  match ignores case, accents ("Sigur Ros" names "Sigur Rós") and punctuation;
  a leading "The", a trailing "(Remastered)"/" - Live" part and an
  "X and the Ys" band's "and the Ys" may be left out.
- ``no_echo``: the text must not repeat the prompt. Two kinds of phrase are
  looked for: any run of :data:`ECHO_NGRAM` words of the rendered prompt
  (system and user) that contains none of the context's values (field values,
  persona name, station, catchphrase are what the speaker is meant to say),
  and meta-text any prompt invites: word budgets ("under 60 words"), sentence
  counts ("in three short sentences"), preambles ("Here's the intro:"),
  speaker labels ("Julie:", "DJ:") and assistant disclaimers ("As an AI...").
- ``length``: ``min * target_words <= words <= max * target_words``.
- ``complete``: the text ends with ``.``, ``!``, ``?`` or ``…`` (closing quotes
  or brackets after it allowed). A take cut by the token limit is first
  trimmed back to its last whole sentence (:func:`trim_to_sentence`).

:func:`evaluate` returns ``{"passed": bool, "failed": [names], "details": {name: ...}}``
(details only for the failed checks).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .records import get_path
from .text import sentence_spans

#: Length (in words) of the prompt phrases ``no_echo`` looks for in the text.
ECHO_NGRAM = 5
#: Order in which check names are reported.
CHECK_NAMES = ("mentions", "no_echo", "length", "complete")

# Letters NFKD does not decompose into a base letter + accent.
_FOLD_EXTRA = str.maketrans({"ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe",
                             "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "þ": "th", "Þ": "th",
                             "ı": "i", "&": " and "})
_APOSTROPHES = re.compile(r"['’‘`´]")
_POSSESSIVE = re.compile(r"(?<=\w)['’‘`´]s\b", re.I)  # "Nirvana's" -> "Nirvana"
_NON_WORD = re.compile(r"[^0-9a-z]+")


class LengthWindow(BaseModel):
    """``length`` check: words within ``[min, max] x target_words``."""

    model_config = ConfigDict(extra="forbid")

    min: float = Field(0.5, ge=0)
    max: float = Field(1.5, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LengthWindow:
        if self.max < self.min:
            raise ValueError("length.max must not be below length.min")
        return self


class Checks(BaseModel):
    """A template's ``checks:`` block (see the module docstring).

    A template without the block gets ``no_echo`` and ``complete`` only.
    """

    model_config = ConfigDict(extra="forbid")

    mentions: list[str | list[str]] = []
    no_echo: bool = True
    length: LengthWindow | None = None
    complete: bool = True

    def names(self) -> list[str]:
        """The checks this block turns on, in report order."""
        on = {"mentions": bool(self.mentions), "no_echo": self.no_echo,
              "length": self.length is not None, "complete": self.complete}
        return [n for n in CHECK_NAMES if on[n]]


# -- text folding ----------------------------------------------------------------------------
def fold(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents, case and punctuation dropped.

    ``"Sigur Rós"`` → ``"sigur ros"``; ``"What’s Going On?"`` → ``"whats going on"``;
    ``"AC/DC"`` → ``"ac dc"``; ``"&"`` reads as ``"and"``.
    """
    text = str(text).translate(_FOLD_EXTRA)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = _APOSTROPHES.sub("", text)
    return _NON_WORD.sub(" ", text).strip()


def _contains(haystack: str, needle: str) -> bool:
    """``needle`` as whole words in ``haystack`` (both folded), spaces aside (``acdc`` / ``ac dc``)."""
    if not needle:
        return False
    if f" {needle} " in f" {haystack} ":
        return True
    glued = needle.replace(" ", "")
    if len(glued) < 4:
        return False
    words = haystack.split()
    for i in range(len(words)):  # runs of whole words that spell the needle without spaces
        run = ""
        for word in words[i:]:
            run += word
            if run == glued:
                return True
            if len(run) >= len(glued) or not glued.startswith(run):
                break
    return False


#: A featured-artist credit: "feat." / "ft." / "featuring" between two names.
_FEATURING = re.compile(r"\s+(?:feat\.?|ft\.?|featuring)\s+", re.I)


def name_variants(value: Any) -> list[str]:
    """Folded forms of a name that count as naming it (full form first).

    Drops a leading "the", a bracketed or " - " suffix ("(Remastered)", " - Live"), a
    featured artist ("X feat. Y", "X ft. Y", "X featuring Y": X), and the "and the Ys" of an
    "X and the Ys" band; never shortens a name to nothing.
    """
    raw = str(value).strip()
    forms = [raw, re.sub(r"\s*[\(\[][^\)\]]*[\)\]]\s*$", "", raw), re.split(r"\s+[-–—]\s+", raw)[0],
             _FEATURING.split(raw)[0]]
    out: list[str] = []
    for form in forms:
        f = fold(form)
        for g in (f, re.sub(r"^the ", "", f), re.split(r" and the ", f)[0]):
            if g and g not in out:
                out.append(g)
    return out


# -- the individual checks -------------------------------------------------------------------
def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip()) and not isinstance(
        value, dict | list)


def check_mentions(text: str, mentions: Iterable[str | list[str]], context: dict[str, Any]) -> list[str]:
    """Names (paths) of the ``mentions`` the text does not name; ``[]`` when all are named.

    :param context: the prompt context (record fields at the top level, ``persona``...).
    """
    folded = fold(text)
    # A possessive names its owner: "Nirvana's" names "Nirvana" (and still "What's" = "whats").
    bare = fold(_POSSESSIVE.sub("", str(text)))
    missing: list[str] = []
    for item in mentions:
        paths = [item] if isinstance(item, str) else list(item)
        for path in paths:
            value = get_path(context, path)
            if _present(value):
                if not any(_contains(folded, v) or _contains(bare, v) for v in name_variants(value)):
                    missing.append(path)
                break
    return missing


_SMALL = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "a few")
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred")
_COUNT = r"(?:\d+|" + "|".join(_SMALL + _TENS) + r")(?:[\s-]+(?:" + "|".join(_SMALL + _TENS) + r"))?"
#: Meta-text any prompt invites: (name, pattern over the original text).
META_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("word budget", re.compile(
        r"\b\d+[\s-]+words?\b|\bword (?:count|limit|budget)\b|"
        r"\b(?:" + "|".join(_TENS) + r")(?:[\s-]+\w+)?[\s-]+words?\b|"
        rf"\b(?:under|within|about|around|fewer than|less than|no more than|up to|at most)\s+{_COUNT}\s+words?\b",
        re.I)),
    ("sentence count", re.compile(rf"\b{_COUNT}\s+(?:(?:short|full|brief|complete)\s+)?sentences?\b", re.I)),
    ("preamble", re.compile(
        r"\bhere(?:['’]s| is| are| you go)\b[^.!?\n]{0,40}?\b(?:intro(?:duction)?|outro|script|segment|"
        r"station id(?:entification)?|version|draft|response|announcement)\b|"
        r"^\s*(?:sure|certainly|of course|absolutely)\b[!,.]", re.I | re.M)),
    ("assistant", re.compile(
        r"\bas an ai\b|\b(?:ai|large) language model\b|\bi(?:['’]m| am) (?:just )?an ai\b|"
        r"\bi (?:cannot|can['’]t) (?:help|assist|provide|fulfil)", re.I)),
    ("stage direction", re.compile(
        r"^\s*(?:\([^)\n]{1,60}\)|\[[^\]\n]{1,60}\]|\*[^*\n]{1,60}\*)\s*$|"
        r"[\(\[\*](?:laughs|chuckles|sighs|pauses?|music[^)\]*\n]{0,30})[\)\]\*]", re.I | re.M)),
]
_LABEL_LINE = re.compile(r"^\s*\**\s*([A-Za-z][A-Za-z .'’-]{0,30}?)\s*\**\s*:", re.M)
_GENERIC_LABELS = {"dj", "host", "announcer", "narrator", "speaker", "intro", "outro", "script",
                   "segment", "station id", "response", "answer", "assistant", "output", "text"}


def _context_values(context: dict[str, Any]) -> list[str]:
    """Folded values the speaker may say: record fields, persona name/station, catchphrase..."""
    values: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if depth > 3:
            return
        if isinstance(node, dict):
            for key, v in node.items():
                if key in ("style", "voice", "source", "sections"):
                    continue  # instructions about speaking, not things to say
                walk(v, depth + 1)
        elif isinstance(node, list):
            for v in node:
                walk(v, depth + 1)
        elif isinstance(node, str | int | float) and not isinstance(node, bool):
            f = fold(str(node))
            if f:
                values.append(f)

    walk(context, 0)
    return sorted(set(values), key=len, reverse=True)


def echo_phrases(prompt: str, context: dict[str, Any], n: int = ECHO_NGRAM) -> set[str]:
    """Phrases of ``n`` words from the rendered ``prompt`` that a take must not repeat.

    Runs of words that include a context value (a field value, the persona's name
    or station, the catchphrase) are left out: saying those is the job.
    """
    folded = f" {fold(prompt)} "
    for value in _context_values(context):
        folded = folded.replace(f" {value} ", " \x00 ")
    words = folded.split()
    phrases = set()
    for i in range(len(words) - n + 1):
        gram = words[i:i + n]
        if "\x00" not in gram:
            phrases.add(" ".join(gram))
    return phrases


def check_no_echo(text: str, prompt: str, context: dict[str, Any], *,
                  phrases: set[str] | None = None) -> list[str]:
    """What the text repeats of its prompt or of assistant meta-text; ``[]`` when nothing.

    :param prompt: the rendered system and user prompts, joined.
    :param phrases: precomputed :func:`echo_phrases` (saves the work for many candidates).
    :returns: short descriptions such as ``"prompt: stay under 60 words"``,
        ``"word budget: under 60 words"``, ``"label: Julie:"``.
    """
    found: list[str] = []
    phrases = echo_phrases(prompt, context) if phrases is None else phrases
    words = fold(text).split()
    for i in range(len(words) - ECHO_NGRAM + 1):
        gram = " ".join(words[i:i + ECHO_NGRAM])
        if gram in phrases:
            found.append(f"prompt: {gram}")
            break
    for name, pattern in META_PATTERNS:
        m = pattern.search(text)
        if m:
            found.append(f"{name}: {m.group(0).strip()}")
    persona = context.get("persona")
    if not isinstance(persona, dict):
        persona = {}
    names = {fold(persona[k]) for k in ("display_name", "name") if persona.get(k)}
    for m in _LABEL_LINE.finditer(text):
        label = fold(m.group(1))
        if (label in _GENERIC_LABELS or label in names or label.startswith(("dj ", "host "))
                or (label.split() and label.split()[-1] in names)):
            found.append(f"label: {m.group(0).strip()}")
            break
    return found


_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*$")


def ends_on_sentence(text: str) -> bool:
    """True when ``text`` ends with sentence-final punctuation (closing quotes/brackets allowed)."""
    return bool(_SENTENCE_END.search(text.rstrip()))


def trim_to_sentence(text: str) -> str:
    """``text`` cut back to its last whole sentence (pysbd); ``text`` itself when none ends.

    Used on takes cut by the token limit: ``"One. Two. Thr"`` → ``"One. Two."``.
    """
    if ends_on_sentence(text):
        return text.rstrip()
    sentences = sentence_spans(text)
    # pysbd keeps the text: find the last sentence that ends properly and cut after it.
    end = 0
    pos = 0
    for sent in sentences:
        start = text.find(sent, pos)
        if start < 0:
            break
        pos = start + len(sent)
        if ends_on_sentence(sent):
            end = start + len(sent.rstrip())
    if end == 0:
        return text.rstrip()
    return text[:end].rstrip()


# -- all checks ------------------------------------------------------------------------------
def evaluate(text: str, checks: Checks, *, context: dict[str, Any], prompt: str,
             target_words: int, phrases: set[str] | None = None) -> dict[str, Any]:
    """Run ``checks`` on ``text``.

    :param context: the prompt context the text was asked with (record fields, ``persona``...).
    :param prompt: the rendered prompts (system and user), for ``no_echo``.
    :param target_words: the length target, for ``length``.
    :param phrases: precomputed :func:`echo_phrases` of ``prompt``.
    :returns: ``{"passed": bool, "failed": [names], "details": {name: detail}}``; details
        hold, per failed check, the missing paths (``mentions``), what was echoed
        (``no_echo``), ``{"words", "min", "max"}`` (``length``) or the last characters
        (``complete``).
    """
    failed: list[str] = []
    details: dict[str, Any] = {}
    if checks.mentions:
        missing = check_mentions(text, checks.mentions, context)
        if missing:
            failed.append("mentions")
            details["mentions"] = missing
    if checks.no_echo:
        echoed = check_no_echo(text, prompt, context, phrases=phrases)
        if echoed:
            failed.append("no_echo")
            details["no_echo"] = echoed
    if checks.length is not None:
        words = len(text.split())
        lo, hi = round(checks.length.min * target_words), round(checks.length.max * target_words)
        if not lo <= words <= hi:
            failed.append("length")
            details["length"] = {"words": words, "min": lo, "max": hi}
    if checks.complete and not ends_on_sentence(text):
        failed.append("complete")
        details["complete"] = text.rstrip()[-30:]
    result: dict[str, Any] = {"passed": not failed, "failed": failed}
    if details:
        result["details"] = details
    return result


def choose(candidates: list[dict[str, Any]], target_words: int) -> int:
    """Index of the best candidate among ``[{"words": int, "failed": [names]}, ...]``.

    The one passing every check and closest to ``target_words``; if none passes, the
    one with the fewest failed checks (then the closest to the target). Ties go to
    the lower index, so the choice is deterministic.

    :raises ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    return min(range(len(candidates)),
               key=lambda i: (len(candidates[i]["failed"]), abs(candidates[i]["words"] - target_words), i))


__all__ = ["CHECK_NAMES", "Checks", "LengthWindow", "check_mentions", "check_no_echo", "choose",
           "echo_phrases", "ends_on_sentence", "evaluate", "fold", "name_variants", "trim_to_sentence"]
