"""The pronunciation lexicon: words and names a TTS engine says wrong, and how to say them.

A lexicon is a YAML mapping of a word or phrase to a *respelling* (``say``) and/or to
*phonemes* (``phonemes``: IPA as espeak-ng writes it)::

    Você É Linda:
      say: voh-SAY eh LEEN-dah
      phonemes: "vo.ˈse ɛ ˈlĩ.dɐ"
    Björk: byerk                    # a plain string is a respelling

Where entries come from, later ones winning over earlier ones for the same word: built-in
(none), every ``*.yaml`` in the user folder's ``lexicon/`` (:func:`user_lexicon_files`, in name
order: ``$AICP_HOME/lexicon``, else ``$XDG_CONFIG_HOME/aicp/lexicon``, else ``~/.config/aicp/lexicon``), the voicing persona's ``lexicon:`` block, then the ``--lexicon FILE`` files in the order
given (the command line wins, as ``--voice`` wins over a persona's voice).

Matching (:meth:`Lexicon.matches`): whole words and phrases only (no word character right
before or after), case-insensitive, on NFKC-normalised text (so ``Voce\\u0302``, full-width
letters, ligatures and a no-break space match the plain spelling; NFKC rather than NFC because
text pasted from the web carries such compatibility forms; typographic apostrophes match ``'``), any run of white space in a phrase
matching any other, the leftmost match first and, of those starting at one place, the longest.
The text that is not matched is passed to the engine exactly as it was.

Applying (:func:`speak`): an engine that takes phonemes (``TTSBackend.takes_phonemes``: Piper)
gets an entry's phonemes for the matched span and phonemises the rest as usual; other engines
get the respelling. An entry with phonemes only, on an engine that cannot take them, is said as
written, with one warning per run (:class:`RunLexicon`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from .errors import ConfigError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from .backends.base import TTSBackend, Voice

#: Longest word or phrase an entry may name, and longest ``say``/``phonemes`` value (characters).
MAX_WORD_CHARS = 200
MAX_VALUE_CHARS = 500
#: Characters no ``say`` or ``phonemes`` value may hold: control characters; and in phonemes the
#: brackets of Piper's ``[[ raw phonemes ]]`` blocks, which would end the entry's block early.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BRACKETS = re.compile(r"[\[\]]")


class LexiconEntry(BaseModel):
    """How to say one word or phrase: a respelling, phonemes, or both.

    :ivar say: a respelling the engine reads instead (``voh-SAY``), 1-500 characters.
    :ivar phonemes: IPA as espeak-ng writes it (``vo.ˈse``), 1-500 characters, no ``[`` ``]``;
        used by engines that take phonemes (Piper), the respelling by the others.

    A plain string stands for ``{say: STRING}``. At least one of the two must be given.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    say: str | None = Field(None, min_length=1, max_length=MAX_VALUE_CHARS)
    phonemes: str | None = Field(None, min_length=1, max_length=MAX_VALUE_CHARS)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"say": data}
        if data is None:
            raise ValueError("give say (a respelling) or phonemes (IPA), or both")
        return data

    @model_validator(mode="after")
    def _complete(self) -> LexiconEntry:
        if self.say is None and self.phonemes is None:
            raise ValueError("give say (a respelling) or phonemes (IPA), or both")
        for name in ("say", "phonemes"):
            value = getattr(self, name)
            if value is not None and _CONTROL.search(value):
                raise ValueError(f"{name} holds a control character")
        if self.phonemes is not None and _BRACKETS.search(self.phonemes):
            raise ValueError("phonemes may not hold [ or ]")
        return self

    @model_serializer(mode="wrap")
    def _given(self, handler: Any) -> dict[str, Any]:
        """Only the fields given (``aicp personas show`` prints no ``say: null``)."""
        return {k: v for k, v in handler(self).items() if v is not None}


#: A lexicon's entries as a file or a persona's ``lexicon:`` block gives them.
LexiconTable = dict[str, LexiconEntry]
_TABLE: TypeAdapter[dict[str, LexiconEntry]] = TypeAdapter(LexiconTable)


@dataclass(frozen=True)
class Entry:
    """One entry of a :class:`Lexicon`: the word as written, how to say it, where it came from."""

    word: str
    say: str | None
    phonemes: str | None
    source: str

    def key_part(self, phonemes: bool) -> list[str | None]:
        """What of this entry reaches an engine (``phonemes``: it takes phonemes), for the take key."""
        if phonemes and self.phonemes is not None:
            return [self.word, None, self.phonemes]
        return [self.word, self.say, None]


@dataclass(frozen=True)
class Match:
    """A matched span of a text: ``text[start:end]`` is to be said as ``entry`` says."""

    start: int
    end: int
    entry: Entry


@dataclass(frozen=True)
class Part:
    """A piece of text to speak: ``text`` as written; ``phonemes`` to say instead (IPA), or
    ``None``; ``say`` the respelling an engine without phoneme input falls back to."""

    text: str
    phonemes: str | None = None
    say: str | None = None


#: Typographic apostrophes matched as ``'`` (``Guns N’ Roses`` is ``Guns N' Roses``).
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def fold(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` NFKC-normalised and case-folded, typographic apostrophes as ``'``, with each folded
    character's ``(start, end)`` in ``text`` (two lists). A base character and its combining
    marks fold together."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and unicodedata.combining(text[j]):
            j += 1
        piece = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text[i:j]).casefold())
        piece = piece.translate(_APOSTROPHES)
        for ch in piece:
            out.append(ch)
            starts.append(i)
            ends.append(j)
        i = j
    return "".join(out), starts, ends


def match_key(word: str) -> str:
    """The form two words are compared in: NFKC, case-folded, white space runs as one space."""
    return " ".join(fold(word)[0].split())


class Lexicon:
    """Entries by :func:`match_key`; a later entry for the same key replaces the earlier one.

    :param entries: :class:`Entry` objects, in precedence order (last wins).
    """

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries: dict[str, Entry] = {}
        for entry in entries:
            self.entries.pop(match_key(entry.word), None)  # the later one's place and spelling
            self.entries[match_key(entry.word)] = entry
        self._pattern: re.Pattern[str] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def then(self, other: Lexicon) -> Lexicon:
        """This lexicon with ``other``'s entries over it."""
        return Lexicon([*self.entries.values(), *other.entries.values()])

    def _regex(self) -> re.Pattern[str]:
        if self._pattern is None:
            keys = sorted(self.entries, key=lambda k: (-len(k), k))  # the longest first at one place
            words = "|".join(r"\s+".join(re.escape(w) for w in key.split(" ")) for key in keys)
            self._pattern = re.compile(rf"(?<!\w)(?:{words})(?!\w)")
        return self._pattern

    def matches(self, text: str) -> list[Match]:
        """The entries said in ``text``, left to right, never overlapping (see the module docstring).

        :returns: :class:`Match` spans into ``text`` itself (not its folded form).
        """
        if not self.entries:
            return []
        folded, starts, ends = fold(text)
        found = []
        for m in self._regex().finditer(folded):
            key = " ".join(m.group().split())
            found.append(Match(starts[m.start()], ends[m.end() - 1], self.entries[key]))
        return found

    def parts(self, text: str, phonemes: bool) -> tuple[list[Part], list[Entry], list[Entry]]:
        """``text`` cut at its matches for an engine that takes ``phonemes`` or not.

        :returns: ``(parts, used, unsaid)``: the pieces (a respelling already put in place;
            adjacent plain pieces joined), the entries that changed what is said, and those
            said as written (phonemes only, on an engine without phoneme input).
        """
        parts: list[Part] = []
        used: list[Entry] = []
        unsaid: list[Entry] = []
        at = 0

        def plain(piece: str) -> None:
            if not piece:
                return
            if parts and parts[-1].phonemes is None:
                parts[-1] = Part(parts[-1].text + piece)
            else:
                parts.append(Part(piece))

        for m in self.matches(text):
            plain(text[at:m.start])
            written, entry = text[m.start:m.end], m.entry
            if phonemes and entry.phonemes is not None:
                parts.append(Part(written, entry.phonemes, entry.say))
                used.append(entry)
            elif entry.say is not None:
                plain(entry.say)
                used.append(entry)
            else:
                plain(written)
                unsaid.append(entry)
            at = m.end
        plain(text[at:])
        return parts, used, unsaid

    def used(self, text: str, phonemes: bool) -> list[list[str | None]]:
        """What of this lexicon changes how ``text`` is said on an engine that takes ``phonemes``
        or not: ``[[word, say, phonemes], ...]`` sorted (``[]``: nothing). The voice stage adds
        it to the take key, so a changed entry is voiced again and an unrelated one is not."""
        _, used, _ = self.parts(text, phonemes)
        unique = {tuple(e.key_part(phonemes)) for e in used}
        return [list(t) for t in sorted(unique, key=lambda t: [x or "" for x in t])]


def table_problem(table: Mapping[Any, Any]) -> tuple[Any, str, str | None] | None:
    """The first problem of a lexicon mapping's words, ``(word, message, hint)``, or ``None``: a
    word that is not a string, is empty or longer than :data:`MAX_WORD_CHARS`, or matches the
    same text as an earlier word (``Björk`` and ``BJÖRK``)."""
    seen: dict[str, str] = {}
    for word in table:
        if not isinstance(word, str):
            return word, f"entry {word!r}: a word must be a string", "quote it: '1999': nineteen ninety-nine"
        key = match_key(word)
        if not key or len(word) > MAX_WORD_CHARS:
            return word, f"entry {word!r}: a word is 1-{MAX_WORD_CHARS} characters, not only white space", None
        if key in seen:
            return word, (f"entries {seen[key]!r} and {word!r} name the same word (matching ignores case "
                          "and Unicode forms)"), "keep one of them"
        seen[key] = word
    return None


def entries_of(table: Mapping[str, Any], source: str, lines: Mapping[str, int] | None = None) -> list[Entry]:
    """The entries of a lexicon mapping (a file's, a persona's ``lexicon:`` block).

    :param source: what to name in errors (``lexicon file names.yaml``, ``persona rosa``).
    :param lines: the YAML line of each word, for errors.
    :raises ConfigError: not a mapping, an invalid entry or word, or two words that match the
        same text (``Björk`` and ``BJÖRK``); the message names the source, line and word.
    """
    lines = lines or {}

    def where(word: Any) -> str:
        line = lines.get(str(word))
        return f"{source}:{line}" if line else source

    if not isinstance(table, Mapping):
        raise ConfigError(f"{source} must be a mapping of words to how to say them",
                          hint='e.g. Björk: byerk, or Você: {phonemes: "vo.ˈse"}')
    problem = table_problem(table)
    if problem is not None:
        raise ConfigError(f"{where(problem[0])}: {problem[1]}", hint=problem[2])
    try:
        checked = _TABLE.validate_python(dict(table))
    except ValidationError as exc:
        first = exc.errors()[0]
        word, *rest = first["loc"] or ("",)
        what = ".".join(str(p) for p in rest if not str(p).startswith("function-"))
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where(word)}: entry {word!r}: {what + ': ' if what else ''}{msg}",
                          hint="an entry is a respelling (Björk: byerk) or {say: ..., phonemes: ...}") from exc
    out = [Entry(word=word.strip(), say=entry.say, phonemes=entry.phonemes, source=source)
           for word, entry in checked.items()]
    return out


def load_lexicon_file(path: str | Path) -> Lexicon:
    """The lexicon in a YAML file (UTF-8, at most 1 MiB; see :mod:`~ai_content_pipeline.yamlfile`).

    :raises UsageError: the file is missing or unreadable (exit 2).
    :raises ConfigError: invalid YAML or entries (exit 2), naming the file, line and word.
    """
    import yaml

    from .faults import path_problem
    from .yamlfile import YAMLProblem, decode_utf8, load_yaml, read_limited

    path = Path(path)
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # a name of other bytes, escaped
    problem = path_problem(path)
    if problem is not None:
        raise UsageError(f"lexicon file {shown} {problem}", hint="--lexicon takes a YAML file of words")
    try:
        data, node = load_yaml(decode_utf8(read_limited(path)))
    except OSError as exc:
        raise UsageError(f"cannot read lexicon file {shown}: {exc.strerror}") from exc
    except YAMLProblem as exc:
        raise ConfigError(f"lexicon file {exc.where(shown)}: {exc.problem}", hint=exc.hint) from exc
    if data is None:
        return Lexicon()
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)
    return Lexicon(entries_of(data, f"lexicon file {shown}", lines))


def user_lexicon_files(folder: str | Path) -> list[Path]:
    """The lexicon files of the user folder's ``lexicon/`` (``folder``: ``user_dir() / "lexicon"``,
    see :func:`~ai_content_pipeline.templates.store.user_dir`): its ``*.yaml`` and ``*.yml``,
    hidden ones left out, in name order (``[]`` when there is no such folder)."""
    folder = Path(folder)
    try:
        return sorted(p for p in folder.iterdir()
                      if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file())
    except OSError:
        return []


def persona_lexicon(persona: Any) -> Lexicon:
    """The entries of a persona's ``lexicon:`` block (already validated with the persona)."""
    table = getattr(persona, "lexicon", None) or {}
    source = f"persona {getattr(persona, 'name', '?')}"
    return Lexicon(Entry(word=w.strip(), say=e.say, phonemes=e.phonemes, source=source) for w, e in table.items())


@dataclass
class RunLexicon:
    """The lexicon of one voice run: the user folder's files and ``files`` loaded once (at
    construction: a bad file stops the run before any model loads), each persona's entries
    laid between them, and the warning about entries an engine cannot say, once per entry.

    :param files: ``--lexicon`` files, in order (later wins), or one file.
    :param folder: the user folder's ``lexicon/`` (``None``: none).
    :param warn: ``warn(message)`` for the one-time warnings (``None``: none).
    :raises UsageError: a file is missing. :raises ConfigError: a file is invalid.
    """

    files: Iterable[str | Path] = ()
    folder: str | Path | None = None
    warn: Callable[[str], None] | None = None
    _warned: set[str] = field(default_factory=set)
    _by_block: dict[tuple[Any, ...], Lexicon] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user = Lexicon()
        for path in user_lexicon_files(self.folder) if self.folder is not None else []:
            self.user = self.user.then(load_lexicon_file(path))
        self.given = Lexicon()
        for given in [self.files] if isinstance(self.files, (str, Path)) else self.files:
            self.given = self.given.then(load_lexicon_file(given))

    def for_persona(self, persona: Any | None) -> Lexicon:
        """The lexicon a record voiced by ``persona`` uses: user folder, persona, then files (one
        :class:`Lexicon` per distinct persona block: records rebuilt from ``script.persona_voice``
        share it)."""
        table = getattr(persona, "lexicon", None) or {}
        key = (getattr(persona, "name", None), *((w, e.say, e.phonemes) for w, e in table.items())) if table else ()
        found = self._by_block.get(key)
        if found is None:
            found = self._by_block[key] = self.user.then(persona_lexicon(persona)).then(self.given)
        return found

    def speak(self, backend: TTSBackend, text: str, voice: Voice, lexicon: Lexicon | None) -> np.ndarray:
        """``backend`` speaks ``text`` with ``lexicon`` applied (see :func:`speak`); entries it
        cannot say are warned about once per run."""
        return speak(backend, text, voice, lexicon, self._unsaid)

    def _unsaid(self, entry: Entry) -> None:
        key = match_key(entry.word)
        if key in self._warned or self.warn is None:
            return
        self._warned.add(key)
        self.warn(f"lexicon entry '{entry.word}' ({entry.source}) has phonemes only, and this voice "
                  "engine cannot take phonemes: it is said as written (add say: a respelling)")


def speak(backend: TTSBackend, text: str, voice: Voice, lexicon: Lexicon | None,
          unsaid: Callable[[Entry], None] | None = None) -> np.ndarray:
    """``backend.synthesize`` of ``text`` with ``lexicon`` applied: the matched spans as the
    entries' phonemes (``backend.phonemes_for(voice)``, through ``backend.synthesize_parts``) or
    respellings; float32 ``[n_samples]`` at ``backend.sample_rate``.

    :param unsaid: called with each entry said as written (phonemes only, no phoneme input).
    :raises RecordError: what the backend raises.
    """
    if not lexicon:
        return backend.synthesize(text, voice)
    takes = backend.phonemes_for(voice)
    parts, _, skipped = lexicon.parts(text, takes)
    for entry in skipped:
        if unsaid is not None:
            unsaid(entry)
    if any(p.phonemes is not None for p in parts):
        return backend.synthesize_parts(parts, voice)
    return backend.synthesize("".join(p.text for p in parts), voice)


__all__ = ["Entry", "Lexicon", "LexiconEntry", "LexiconTable", "Match", "Part", "RunLexicon", "entries_of",
           "fold", "load_lexicon_file", "match_key", "persona_lexicon", "speak", "user_lexicon_files"]
