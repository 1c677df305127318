"""Deterministic checks on a generated script (no model call): is this take fit to air?

A template declares its checks in a ``checks:`` block (see :class:`Checks`)::

    checks:
      mentions: [artist, title]        # record fields the text must name
      no_echo: true                    # no instructions or meta-text read out
      grounded: true                   # no name or number the take was not given
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
- ``grounded`` (off unless the block turns it on): every capitalized name, number,
  year, decade and date of the text must be in what the take was given: the context's
  values (record fields, persona) and the rendered prompt (:func:`check_grounded`).
- ``length``: ``min * target_words <= words <= max * target_words``; a take with a time
  limit (``aicp-script --max-seconds``, a record's ``intro_seconds``) also fails it when
  longer than the words that fit (``max_words``), with or without the block.
- ``complete``: the text ends with ``.``, ``!``, ``?`` or ``…`` (closing quotes
  or brackets after it allowed). A take cut by the token limit is first
  trimmed back to its last whole sentence (:func:`trim_to_sentence`).
- ``topic``: paths as ``mentions``, for a subject given as a sentence: at least half of
  its key words are said (:func:`check_topic`).
- dialogue templates only: ``speakers``, ``turn_words``, ``clean_turns``, ``alternate``
  and the always-on ``stray`` (:mod:`ai_content_pipeline.dialogue`); the checks above then
  run on what the hosts say.

:func:`evaluate` returns ``{"passed": bool, "failed": [names], "details": {name: ...}}``
(details only for the failed checks).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .records import get_path
from .text import sentence_spans

#: Length (in words) of the prompt phrases ``no_echo`` looks for in the text.
ECHO_NGRAM = 5
#: Order in which check names are reported.
CHECK_NAMES = ("mentions", "no_echo", "grounded", "length", "complete", "topic",
               # dialogue templates only (:mod:`ai_content_pipeline.dialogue`)
               "speakers", "turn_words", "clean_turns", "alternate", "stray")
#: The checks only a dialogue template may turn on (``stray`` is always on for one).
DIALOGUE_CHECKS = ("speakers", "turn_words", "clean_turns", "alternate")

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
    grounded: bool = False
    length: LengthWindow | None = None
    complete: bool = True
    #: fields naming the subject in words (a topic sentence): most of its key words are said
    topic: list[str | list[str]] = []
    #: dialogue templates: each host has at least this many turns
    speakers: int | None = Field(None, ge=1, le=100)
    #: dialogue templates: no turn longer than this many words
    turn_words: int | None = Field(None, ge=1)
    #: dialogue templates: no speaker label or stage direction inside a turn's text
    clean_turns: bool = False
    #: dialogue templates: no host speaks twice in a row
    alternate: bool = False
    #: set by a dialogue template: ``stray`` (no text outside a host's turn) runs too
    _dialogue: bool = PrivateAttr(default=False)

    def dialogue_only(self) -> list[str]:
        """The dialogue checks this block turns on (a one-voice template may not)."""
        return [n for n in DIALOGUE_CHECKS if getattr(self, n) not in (None, False)]

    def names(self) -> list[str]:
        """The checks this block turns on, in report order."""
        on = {"mentions": bool(self.mentions), "no_echo": self.no_echo, "grounded": self.grounded,
              "length": self.length is not None, "complete": self.complete, "topic": bool(self.topic),
              "speakers": self.speakers is not None, "turn_words": self.turn_words is not None,
              "clean_turns": self.clean_turns, "alternate": self.alternate, "stray": self._dialogue}
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
    return [path for path, value in _given(mentions, context)
            if not any(_contains(folded, v) or _contains(bare, v) for v in name_variants(value))]


def _given(items: Iterable[str | list[str]], context: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of each item of a ``mentions``-style list (a path, or a list of paths
    of which the first with a value counts) that has a value in ``context``."""
    for item in items:
        for path in [item] if isinstance(item, str) else list(item):
            value = get_path(context, path)
            if _present(value):
                yield path, value
                break


#: Words of a topic that do not say what it is about ("How", "made", "more").
_TOPIC_FILLER = frozenset("""how why what when where who which made make makes making became become becomes
more most less many much way ways really still ever never even get gets got keep kept""".split())


def _stem(word: str) -> str:
    """A crude English stem for matching a topic's words: ``cities``/``city`` → ``city``,
    ``planting`` → ``plant``, ``records`` → ``record``."""
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)] + repl
            break
    return word[:6]


def check_topic(text: str, topic: Iterable[str | list[str]], context: dict[str, Any]) -> list[str]:
    """Paths of ``topic`` (as ``mentions``: a path or a list of which the first with a value
    counts) whose value the text does not name: at least half of the value's key words (no
    common or filler words; plurals and "-ing" forms match) must occur. ``[]`` when all do.

    "How vinyl records made a comeback" is named by "records are back: vinyl is selling again".
    """
    said = {_stem(w) for w in fold(_POSSESSIVE.sub("", str(text))).split()}
    missing: list[str] = []
    for path, value in _given(topic, context):
        keys = {_stem(w) for w in fold(value).split()
                if len(w) > 2 and w not in COMMON_WORDS and w not in _TOPIC_FILLER}
        if keys and len(keys & said) * 2 < len(keys):
            missing.append(path)
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


# -- grounded: every name and number of the take comes from what it was given ----------------
#: Words that are never a claim, even capitalized: pronouns, function words, greetings,
#: times of day, weekdays, radio boilerplate (folded forms).
COMMON_WORDS = frozenset("""
a an the this that these those it its i im id ive ill me my mine we were us our you youre youll
youve your yours he hes him his she shes her hers they theyre them their there theres here heres
and or but so yet nor for of to in on at by with from as into onto up down out over off about
after before if when while then than now just also too very all any some every each no not yes
is are was be been being do does did have has had will would can could shall should may might
must lets let what whats who whos whom whose which where wheres why how hows
oh ah hey hi hello wow well okay ok yeah welcome goodbye bye thanks thank please sure happy new year years
good great evening morning afternoon night tonight today tomorrow yesterday weekend week
monday tuesday wednesday thursday friday saturday sunday
ladies gentlemen folks friends everyone everybody listeners listener
dj djs fm am radio station live air song songs music track tune album single artist band
next up coming stay tuned enjoy listen remember imagine picture
""".split())
#: Lower-case words that may join the capitalized words of one name ("Hounds of Love").
_NAME_JOINERS = frozenset("of the and de del la le les du da di do dos das von van der den y e n".split())
#: Abbreviated titles whose full stop does not end a sentence ("Mr. Mercury").
_TITLES = frozenset("Mr Mrs Ms Dr St Mt Jr Sr Prof Sgt Capt Col Gen Rev".split())
_TOKEN = re.compile(r"[^\W_]+(?:['’.][^\W_]+)*")  # "Queen's", "E.M.A"
_OPEN_QUOTES = "\"“‘'«„("
#: What comes before a sentence's first word: its start, an end mark, a line, a spaced dash.
_SENTENCE_BEFORE = re.compile(r"(?:[.!?…:;)\]\n]|[.!?…][\"'”’»)]+|\s[-–—])\s*$")
#: Word endings of a verb or adverb form ("Mentioning", "Released", "Finally").
_VERB_FORM = re.compile(r"(?:ing|ed|ly)$")
_JOIN_SEP = re.compile(r"^(?:[ \t]+|-|/|[ \t]*&[ \t]*)$")
#: A closing quote just before a word (``"Bohemian Rhapsody," Staying``): small models
#: often start a new sentence after a quoted title without an end mark.
_AFTER_CLOSING_QUOTE = re.compile(r"[^\s\"“„«]\"\s+$|[”»]\s*$")
#: Spellings of accented letters that name the same word: "Groenemeyer" for "Grönemeyer",
#: "Arukou" for "Arukō" (folding alone gives "Gronemeyer", "Aruko").
_TRANSLITERATIONS = (str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}),
                     str.maketrans({"ō": "ou", "ū": "uu", "Ō": "Ou", "Ū": "Uu"}),
                     str.maketrans({"ō": "oo", "ū": "uu", "Ō": "Oo", "Ū": "Uu"}))

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS_VALUE = {w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_DECADE_WORDS = {w + "ies": 10 * (i + 2) for i, w in enumerate(
    "twent thirt fort fift sixt sevent eight ninet".split())}
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS_VALUE, *_SCALES, "oh"], key=len, reverse=True))
#: A run of number words ("nineteen eighty-five", "two thousand and five", "thirty-seven").
_NUMBER_WORDS = re.compile(rf"\b(?:{_NUMBER_WORD})(?:(?:[\s-]+|\s+and\s+)(?:{_NUMBER_WORD}))*\b", re.I)
#: A written number: "1985", "'85", "1980s", "80s", "40th", "No. 1", "1,000,000", "3:45".
_DIGITS = re.compile(r"(?<![\w'’])(?:['’](?=\d\d\b|\d0s\b))?\d+(?:[,.:]\d+)*(?:st|nd|rd|th|s)?(?!\w)", re.I)
#: Number and decade words: the numbers' part of the check judges them, capitalized or not.
_SPOKEN = frozenset([*_UNITS, *_TENS_VALUE, *_SCALES, *_DECADE_WORDS, "oh"])
_CENTURY_AFTER = re.compile(r"^[\s-]+century\b", re.I)


#: Longest digit run read as a number; longer ones are matched as text.
_MAX_DIGITS = 18


def _number_run_value(words: list[str]) -> int | None:
    """The value of number words (``["thirty", "seven"]`` → 37), or ``None`` if they do not
    read as one number."""
    total, current, seen = 0, 0, False
    for w in words:
        if w in _UNITS or w in _TENS_VALUE:
            value = _UNITS.get(w, _TENS_VALUE.get(w, 0))
            if seen and current % 10 and value < 100:  # "five six": two numbers
                return None
            if seen and current % 100 and w in _TENS_VALUE:
                return None
            current += value
            seen = True
        elif w in _SCALES:
            scale = _SCALES[w]
            current = max(current, 1) * scale if scale == 100 else current
            if scale > 100:
                total += max(current, 1) * scale
                current = 0
            seen = True
        else:
            return None
    return total + current


def _spoken_number(run: str) -> tuple[int, str] | None:
    """``(value, kind)`` of a run of number words; kind ``"year"`` for "nineteen eighty-five"
    style years (and "nineteen oh five"), else ``"number"``; ``None`` when not a number."""
    words = [w for w in re.split(r"[\s-]+", run.lower()) if w and w != "and"]
    if not words or len(words) > 8:  # no number said in words is longer
        return None
    # a year read as two pairs: "nineteen eighty five", "twenty twenty", "nineteen oh five"
    for cut in range(1, len(words)):
        head, tail = words[:cut], words[cut:]
        if tail[0] == "oh" and len(tail) == 2:
            hi, lo = _number_run_value(head), _number_run_value(tail[1:])
        else:
            hi, lo = _number_run_value(head), _number_run_value(tail)
        if (hi is not None and lo is not None and 10 <= hi <= 20 and 0 <= lo <= 99
                and not any(w in _SCALES for w in words) and (len(head), hi) != (1, 10)):
            return hi * 100 + lo, "year"
    if "oh" in words:
        return None
    value = _number_run_value(words)
    return (value, "number") if value is not None else None


class _Source:
    """What a take was given, folded: its words, phrase text, numbers and years."""

    def __init__(self, prompt: str, context: dict[str, Any]) -> None:
        parts = [prompt]

        def walk(node: Any, depth: int) -> None:
            if depth > 4:
                return
            if isinstance(node, dict):
                for key, v in node.items():
                    if key not in ("voice", "seed"):  # a persona's voice settings are not things to say
                        walk(v, depth + 1)
            elif isinstance(node, list | tuple):
                for v in node:
                    walk(v, depth + 1)
            elif isinstance(node, str | int | float) and not isinstance(node, bool):
                parts.append(str(node))

        walk(context, 0)
        raw = "\n".join(parts)
        given = _POSSESSIVE.sub("", raw)
        spellings = {given.translate(table) for table in _TRANSLITERATIONS} - {given}
        self.text = " \n ".join(f" {fold(t)} " for t in [given, *sorted(spellings)])
        self.words = set(self.text.split())
        self.numbers: set[int] = set()
        for m in re.finditer(r"\d+(?:[,.]\d{3})*", raw):
            digits = re.sub(r"\D", "", m.group(0))
            if len(digits) <= _MAX_DIGITS:
                self.numbers.add(int(digits))
        for m in _NUMBER_WORDS.finditer(raw):
            spoken = _spoken_number(m.group(0))
            if spoken is not None:
                self.numbers.add(spoken[0])
        self.years = {n for n in self.numbers if 1000 <= n <= 2099}
        self._stems: set[str] | None = None

    def has_word(self, word: str) -> bool:
        return (word in self.words or word in COMMON_WORDS or (len(word) > 3 and word.endswith("s")
                and (word[:-1] in self.words or word[:-1] in COMMON_WORDS)) or self._demonym(word))

    def _demonym(self, word: str) -> bool:
        """"brazilian" for a given "Brazil", "japanese" for "Japan", "korean" for "Korea",
        "mexican" for "Mexico": a people's word formed on a given place name."""
        if self._stems is None:
            self._stems = {w for w in self.words if len(w) >= 4 and not w.isdigit()}
            self._stems |= {w[:-1] for w in self._stems if len(w) >= 5 and w[-1] in "aeiouy"}
        for suffix in ("ian", "ean", "an", "ese", "n"):
            stem = word[:-len(suffix)]
            if word.endswith(suffix) and len(stem) >= 4 and stem in self._stems:
                return True
        return False

    def has_phrase(self, folded: str) -> bool:
        return bool(folded) and f" {folded} " in self.text


def _number_supported(token: str, after: str, source: _Source) -> bool:
    """Whether a written number (``"1985"``, ``"'85"``, ``"80s"``, ``"21st"``...) is given."""
    t = token.lower().lstrip("'’")
    digits = re.sub(r"\D", "", t)
    if not digits:
        return True
    if len(digits) > _MAX_DIGITS:  # no such number is given (and int() of it is slow)
        return source.has_phrase(fold(t))
    decade = re.fullmatch(r"(\d+)0s", t)
    if decade:  # "1980s" / "80s": a given year in that decade
        tens = int(decade.group(1))
        return any(y // 10 == tens or (tens < 10 and (y // 10) % 10 == tens) for y in source.years)
    ordinal = re.fullmatch(r"(\d+)(?:st|nd|rd|th)", t)
    if ordinal:
        n = int(ordinal.group(1))
        if _CENTURY_AFTER.match(after):  # "the 21st century": a given year in it
            return any((y - 1) // 100 + 1 == n for y in source.years) or n in source.numbers
        return n in source.numbers
    if token[0] in "'’" and re.fullmatch(r"\d\d", t):  # "'85": a given year ending so
        return int(t) in source.numbers or any(y % 100 == int(t) for y in source.years)
    if re.fullmatch(r"\d+(?:,\d{3})+", t) or re.fullmatch(r"\d+", t):
        return int(digits) in source.numbers
    return source.has_phrase(fold(t)) or int(digits) in source.numbers


def _claims_numbers(text: str, source: _Source) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    for m in _DIGITS.finditer(text):
        if not _number_supported(m.group(0), text[m.end():m.end() + 12], source):
            found.append((m.start(), m.end(), m.group(0)))
    for m in _NUMBER_WORDS.finditer(text):
        spoken = _spoken_number(m.group(0))
        if spoken is None:
            continue
        value, kind = spoken
        words = [w for w in re.split(r"[\s-]+", m.group(0).lower()) if w and w != "and"]
        if kind == "number" and (value <= 10 or all(w in _SCALES for w in words)):
            continue  # "one of the best", "two legends", "a million hearts": not claims
        if value in source.numbers or source.has_phrase(fold(m.group(0))):
            continue
        if kind == "number" and value < 100 and any(y % 100 == value for y in source.years):
            continue  # "back in seventy-five": a given year, said short
        found.append((m.start(), m.end(), m.group(0)))
    for m in re.finditer(r"\bthe\s+(" + "|".join(_DECADE_WORDS) + r")\b", text, re.I):
        tens = _DECADE_WORDS[m.group(1).lower()]
        if not any(y % 100 // 10 * 10 == tens for y in source.years):
            found.append((m.start(1), m.end(1), m.group(1)))
    for m in re.finditer(r"\bnumber[\s-]+(one|1)\b|#\s?1\b|\bno\.\s?1\b", text, re.I):
        if not source.has_phrase(fold(m.group(0))):
            found.append((m.start(), m.end(), m.group(0)))
    return found


def _claims_names(text: str, source: _Source) -> list[tuple[int, int, str]]:
    tokens = list(_TOKEN.finditer(text))
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.group(0)[0].isupper():
            i += 1
            continue
        span = [tok]
        j = i + 1
        while j < len(tokens):
            sep = text[span[-1].end():tokens[j].start()]
            word = tokens[j].group(0)
            prev = span[-1].group(0)
            abbreviated = sep.startswith(".") and _JOIN_SEP.match(sep[1:] or " ") and (
                prev in _TITLES or (len(prev) == 1 and prev.isupper()))  # "Mr. Mercury", "B. B. King"
            if (_JOIN_SEP.match(sep) or abbreviated) and word[0].isupper():
                span.append(tokens[j])
                j += 1
                continue
            # one or two joiner words, or a number, between two capitalized words: "Hounds of
            # Love", "On Top of the World", "Power 101 Morning Drive"
            k = j
            while (k < len(tokens) and k - j < 2 and _JOIN_SEP.match(text[tokens[k - 1].end():tokens[k].start()])
                   and (tokens[k].group(0).lower() in _NAME_JOINERS or tokens[k].group(0)[0].isdigit())):
                k += 1
            if (k > j and k < len(tokens) and _JOIN_SEP.match(text[tokens[k - 1].end():tokens[k].start()])
                    and tokens[k].group(0)[0].isupper()):
                span.extend(tokens[j:k + 1])
                j = k + 1
                continue
            break
        i = j
        before = text[max(0, span[0].start() - 12):span[0].start()]
        quoted = bool(before) and before[-1] in _OPEN_QUOTES and (len(before) < 2 or not before[-2].isalnum())
        at_start = span[0].start() == len(before) and not before.strip()
        initial = not quoted and (at_start or bool(_SENTENCE_BEFORE.search(before))
                                  or (len(span) == 1 and bool(_AFTER_CLOSING_QUOTE.search(before))))
        if initial and len(span) == 1:
            continue  # "Tonight", "Bebe": a lone capital opening a sentence is no name
        words = [fold(_POSSESSIVE.sub("", t.group(0))) for t in span]
        if source.has_phrase(" ".join(words)):
            continue
        loose = [k for k, (t, w) in enumerate(zip(span, words, strict=True))
                 if t.group(0)[0].isupper() and not all(source.has_word(x) or x in _SPOKEN for x in w.split())]
        if not loose:
            continue
        first = 0  # "Tonight Lady Gaga", "I'm Max": opening common words are no part of the name
        while words[first] in COMMON_WORDS and (initial or words[first] in ("i", "im", "id", "ive", "ill")):
            first += 1
        if initial and first < len(span) - 1 and _VERB_FORM.search(words[first]):
            # "Mentioning the Tropicália", "Featuring Daddy Yankee": an opening verb or
            # adverb is no part of the name that follows it
            rest = first + 1
            while rest < len(span) - 1 and words[rest] in _NAME_JOINERS:
                rest += 1
            if all(source.has_word(x) or x in _SPOKEN for w in words[rest:] for x in w.split()):
                continue
        start = span[first].start()
        claim = re.sub(r"['’]s?$", "", text[start:span[-1].end()])
        found.append((start, start + len(claim), claim))
    return found


def check_grounded(text: str, prompt: str, context: dict[str, Any]) -> list[str]:
    """The names and numbers of ``text`` that nothing the take was given supports; ``[]`` when none.

    Claims are capitalized spans (a lone capital opening a sentence excepted), numbers in
    digits ("1985", "'85", "the 80s", "40th", "No. 1") and in words ("nineteen eighty-five",
    "thirty-seven"; counts up to ten are no claim). A span is supported when its words are
    in the given text (record fields, persona, rendered prompt: ``prompt`` and ``context``)
    or are :data:`COMMON_WORDS`; matching folds case, accents and punctuation as
    ``mentions`` does, and a possessive or plural ``s`` names its word. A number is supported
    when given (a decade or century when a given year falls in it).

    :param prompt: the rendered system and user prompts, joined.
    :param context: the prompt context (record fields, ``persona``...).
    :returns: the unsupported claims as written, in text order, each once
        (e.g. ``["1985", "Winter Olympics", "Berlin"]``).
    """
    source = _Source(prompt, context)
    claims = sorted(set(_claims_numbers(text, source) + _claims_names(text, source)),
                    key=lambda c: (c[0], -c[1], c[2]))
    out: list[str] = []
    seen: set[str] = set()
    reach = -1  # the furthest end of the (distinct) spans so far: a span ending within it is inside one
    for _start, end, claim in claims:
        inside = end <= reach
        reach = max(reach, end)
        if not inside and claim not in seen:  # "No. 1" once, not again as "1"
            out.append(claim)
            seen.add(claim)
    return out


# -- long-form: instruction text and sentence joins ------------------------------------------
_ORDINAL = r"(?:\d+|[ivx]+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|first|second|third|" \
           r"fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final|next)"
_UNIT = r"(?:part|section|segment|chapter|block)"
#: Instruction text a section plan invites a model to read out: (name, pattern over the text).
#: Case matters where the plain words are ordinary speech ("the numbers", "what happened").
INSTRUCTION_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("numbering", re.compile(rf"\b{_UNIT}s?\s+{_ORDINAL}\s+(?:of|out of)\s+{_ORDINAL}\b", re.I)),
    ("heading", re.compile(rf"^[ \t]*(?:#+[ \t]*|[*_]+[ \t]*)?(?:{_UNIT}|episode)[ \t]+{_ORDINAL}\b[^\n.!?]{{0,60}}"
                           r"(?::|[ \t]*$|[ \t]+[-–—])", re.I | re.M)),
    ("heading", re.compile(r"^[ \t]*(?:#{1,6}[ \t]+\S|[*_]{1,2}[^*_\n]{1,60}[*_]{1,2}[ \t]*:?[ \t]*$)", re.M)),
    ("label", re.compile(
        r"^[ \t]*[*_]*(?:sections?|parts?|segments?|chapters?|title|topic|facts?|key[ _]facts|names|numbers|outline|"
        r"notes|sources|audience|summary|brief|already said|episode|podcast(?: episode)?|word count|words|"
        r"target|host|transcript|instructions?)[*_]*[ \t]*:", re.I | re.M)),
    ("label", re.compile(r"\b(?:Section|Part|Facts|Key facts|Names|Numbers|Outline|Notes|Sources|Brief|"
                         r"Already said|Word count|Target words|Title|Topic)[ \t]*:")),
    ("instruction", re.compile(
        r"\b(?:now\s+)?write\s+(?:(?:the\s+)?(?:next\s+|following\s+)?(?:part|section)\b|about\s+\d+)|"
        r"\b(?:do not|don['’]t)\s+(?:greet the listeners|end the show|repeat (?:what|anything|yourself))|"
        r"\balready said\b|\bword (?:count|target)\b|\bkey_facts\b|\btarget_words\b|\{\{|\}\}", re.I)),
    ("preamble", re.compile(
        rf"\bhere(?:['’]s| is| are| you go)\b[^.!?\n]{{0,40}}?\b(?:{_UNIT}|episode|podcast|continuation|"
        r"paragraphs?|transcript|words)\b", re.I)),
    ("sign-off", re.compile(r"\bi hope (?:this|that) helps\b|\bfeel free to (?:ask|adjust|modify|"
                            rf"edit)\b|\b(?:end of|continued in)\s+(?:the\s+)?{_UNIT}\b|\(\s*(?:continued|cont\.?)\s*\)",
                            re.I)),
    ("markdown", re.compile(r"^[ \t]*(?:[-*•][ \t]+\S|\d+[.)][ \t]+\S|>[ \t]|[-=*_]{3,}[ \t]*$|\|.*\|[ \t]*$)|"
                            r"\*\*|__|`", re.M)),
]


def check_instructions(text: str, plan_names: Iterable[str] = ()) -> list[str]:
    """Instruction text of a section plan in ``text``: numbering ("part 3 of 10"), headings,
    prompt labels ("Numbers:", "Section:"), instructions ("now write part…", "do not greet
    the listeners"), "Here is part…" preambles, sign-offs, markdown, and any ``plan_names``
    (section names, matched with their capitalization: "Rumor Watch" anywhere; a one-word
    name only as a line or a label of its own, "History:"); ``[]`` when none.

    Runs of the prompts' words are :func:`check_no_echo`'s part; this adds what a plan adds.

    :returns: short descriptions such as ``"numbering: part 3 of 10"``, ``"plan: Rumor Watch"``.
    """
    found: list[str] = []
    for name, pattern in INSTRUCTION_PATTERNS:
        m = pattern.search(text)
        if m:
            found.append(f"{name}: {m.group(0).strip()}")
    for section in plan_names:
        section = section.strip()
        if not section:
            continue
        if " " in section:
            where = rf"(?<!\w){re.escape(section)}(?!\w)"
        else:
            where = rf"^[ \t#*_]*{re.escape(section)}[ \t*_]*(?::|$)"
        if re.search(where, text, re.M):
            found.append(f"plan: {section}")
    return found


def starts_on_sentence(text: str) -> bool:
    """True when ``text`` opens a sentence: its first letter or digit (after opening quotes)
    is a capital or a digit, not a lower-case word or an ellipsis carrying on a cut one."""
    stripped = text.lstrip()
    if not stripped or stripped.startswith(("...", "…", ",", ";", "-", "–", "—")):
        return False
    first = stripped.lstrip("\"'“‘«([ ")[:1]
    return bool(first) and (first.isdigit() or first.isupper() or not first.isalpha())


def cut_joins(pieces: list[str]) -> list[int]:
    """Joins that cut a sentence when ``pieces`` are stitched in order: the numbers ``n``
    (1-based) of the joins between piece ``n`` and ``n + 1`` where the first does not end on
    a whole sentence or the second does not open one; ``[]`` when every join is clean."""
    return [n for n in range(1, len(pieces))
            if not ends_on_sentence(pieces[n - 1]) or not starts_on_sentence(pieces[n])]


# -- a template's closing line ---------------------------------------------------------------
def with_close(text: str, close: str) -> str:
    """``text`` (a model's take) with a template's rendered ``close`` appended as sentences of
    their own, said once: a sentence of ``text`` that is one of the close's sentences (folded
    as ``mentions`` matches: case, accents and punctuation ignored) is left out first, so a
    model that said "Here is Song by Artist." itself does not say it twice. ``text`` itself
    is not mended: one that stops mid-sentence stays so (``evaluate``'s ``complete`` fails it).

    :returns: ``text`` unchanged when ``close`` is blank; the close alone when nothing of
        ``text`` is left.
    """
    close = close.strip()
    if not close:
        return text
    said = {fold(s) for s in sentence_spans(close)} - {""}
    kept = "".join(s for s in sentence_spans(text) if fold(s) not in said).strip() if text.strip() else ""
    return f"{kept} {close}" if kept else close


# -- all checks ------------------------------------------------------------------------------
def evaluate(text: str, checks: Checks, *, context: dict[str, Any], prompt: str,
             target_words: int, phrases: set[str] | None = None,
             max_words: int | None = None, dialogue: Any = None, close: str = "") -> dict[str, Any]:
    """Run ``checks`` on ``text``.

    :param context: the prompt context the text was asked with (record fields, ``persona``...).
    :param prompt: the rendered prompts (system and user), for ``no_echo`` and ``grounded``.
    :param target_words: the length target, for ``length``.
    :param phrases: precomputed :func:`echo_phrases` of ``prompt``.
    :param max_words: the most words that fit the take's time limit: more fails ``length``
        (also when ``checks`` has no ``length`` window); ``None``: no time limit.
    :param dialogue: a dialogue template's parsed take (:class:`~ai_content_pipeline.dialogue.Dialogue`):
        the checks above run on what the hosts say (labels and stray text left out), then the
        dialogue checks (``speakers``, ``turn_words``, ``clean_turns``, ``alternate``, ``stray``).
    :param close: the template's rendered closing line (:func:`with_close`): text the take was
        given (``grounded`` takes its names and numbers as the prompt's); when ``text`` ends with
        it, ``complete`` also fails a text before it that stops mid-sentence. ``no_echo`` looks
        for the prompt's phrases only.
    :returns: ``{"passed": bool, "failed": [names], "details": {name: detail}}``; details
        hold, per failed check, the missing paths (``mentions``), what was echoed
        (``no_echo``), ``{"words", "min", "max"}`` (``length``), the last characters
        (``complete``) or the unsupported names and numbers (``grounded``).
    """
    failed: list[str] = []
    details: dict[str, Any] = {}
    if dialogue is not None:
        text = dialogue.spoken
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
    if checks.grounded:
        unsupported = check_grounded(text, f"{prompt}\n{close}" if close.strip() else prompt, context)
        if unsupported:
            failed.append("grounded")
            details["grounded"] = unsupported
    if checks.length is not None or max_words is not None:
        words = len(text.split())
        lo, hi = 0, max_words if max_words is not None else 0
        if checks.length is not None:
            lo, hi = round(checks.length.min * target_words), round(checks.length.max * target_words)
            if max_words is not None:
                lo, hi = min(lo, max_words), min(hi, max_words)
        if not lo <= words <= hi:
            failed.append("length")
            details["length"] = {"words": words, "min": lo, "max": hi}
    head = text.rstrip()
    if close.strip() and head.endswith(close.strip()):
        head = head[:-len(close.strip())].rstrip()
    if checks.complete and not (ends_on_sentence(text) and (not head or ends_on_sentence(head))):
        failed.append("complete")
        details["complete"] = (head if not ends_on_sentence(head) else text.rstrip())[-30:]
    if checks.topic:
        unnamed = check_topic(text, checks.topic, context)
        if unnamed:
            failed.append("topic")
            details["topic"] = unnamed
    if dialogue is not None:
        for name, detail in dialogue.failures(checks):
            failed.append(name)
            details[name] = detail
    result: dict[str, Any] = {"passed": not failed, "failed": failed}
    if details:
        result["details"] = details
    return result


def choose(candidates: list[dict[str, Any]], target_words: int) -> int:
    """Index of the best candidate among ``[{"words": int, "failed": [names]}, ...]``.

    The one passing every check and closest to ``target_words``; if none passes, one
    that passes ``grounded`` (a take that invents nothing before one that does, whatever
    else fails), then the one with the fewest failed checks, then the closest to the
    target. Ties go to the lower index, so the choice is deterministic.

    :raises ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    return min(range(len(candidates)),
               key=lambda i: (bool(candidates[i]["failed"]), "grounded" in candidates[i]["failed"],
                              len(candidates[i]["failed"]), abs(candidates[i]["words"] - target_words), i))


__all__ = ["CHECK_NAMES", "COMMON_WORDS", "DIALOGUE_CHECKS", "INSTRUCTION_PATTERNS", "Checks", "LengthWindow",
           "check_grounded", "check_instructions", "check_mentions", "check_no_echo", "check_topic", "choose",
           "cut_joins", "echo_phrases", "ends_on_sentence", "evaluate", "fold", "name_variants",
           "starts_on_sentence", "trim_to_sentence", "with_close"]
