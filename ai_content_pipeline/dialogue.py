"""Dialogue scripts: two or more hosts (personas) taking turns, parsed from a model's reply.

A dialogue template (``dialogue: true``) asks the model for a conversation. Its reply is read
by :func:`parse` into turns, each ``{"speaker": persona name, "text": what they say}``, and the
script's ``text`` becomes one ``Label: text`` line per turn (:attr:`Dialogue.text`, the label a
host's display name), so tools that read text only still see who speaks.

Labels :func:`parse` reads at the start of a line, in any case, with markdown bold or italics
around the name or the whole label and a list bullet or ``>`` before it::

    Sam: …   SAM: …   **Sam:** …   **Sam**: …   *Sam:* …   __Sam__: …   [Sam]: …
    Sam - …   Sam – …   Sam — …   Sam (laughing): …   DJ Sam: …   Host Sam: …

The name is a host's display name or persona name, or the first word of a display name of
several words that no other host shares. A colon label after the end of a sentence inside a
line (``… great point. Julie: Thanks!``) starts a turn too.

Nothing the model wrote is dropped silently:

- text before the first label is the opener's turn when the first labelled turn is another
  host's (the prompt ends on the opener's label, so a model that takes the hint goes straight
  into the line); before the opener's own label it is *stray* text (a title, a narration);
- a line labelled with a name that is no host's (``Narrator:``, ``Host 2:``, ``Alex:``,
  ``**Note:**``) starts stray text, which runs to the next host's label;
- stray text stays in :attr:`Dialogue.text` where it was, and the ``stray`` check fails naming it.

The dialogue checks (:func:`failures`; a template turns them on in its ``checks:`` block,
see :class:`~ai_content_pipeline.checks.Checks`): ``speakers`` (each host has at least N
turns), ``turn_words`` (no turn longer than N words), ``clean_turns`` (no speaker label or
stage direction such as "(laughs)", "[music]", "*sighs*" inside a turn's text), ``alternate``
(no host speaks twice in a row) and ``stray`` (no text outside a host's turn; always on).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .checks import COMMON_WORDS, fold


class Host(NamedTuple):
    """A host as the parser knows it: ``name`` (the persona's) and ``display_name``."""

    name: str
    display_name: str


@dataclass(frozen=True)
class Segment:
    """A piece of a dialogue: a host's turn (``speaker``: the persona name) or stray text
    (``speaker`` ``None``: text outside any host's turn, as written)."""

    speaker: str | None
    text: str


#: Words a label may put before a host's name ("DJ Sam:", "Host Julie:").
_TITLES = ("dj ", "host ", "co host ", "cohost ", "the host ", "presenter ", "mc ")
#: First words of labels that name a speaker who is no host ("Narrator:", "Host 2:", "Guest:").
_SPEAKER_WORDS = frozenset("""host hosts cohost co guest narrator announcer speaker dj presenter moderator
interviewer interviewee voice voiceover person caller listener expert both all everyone together
audience crowd chorus character man woman boy girl""".split())

_BULLET = r"(?:[-•>]\s+|\d{1,2}[.)]\s+)?"
_EMPH = r"[*_]{0,3}"
_NAME = r"[^\W\d_][\w'’.]*(?:[ \-][\w'’.]+){0,3}"
#: A label at the start of a line; ``sep`` is a colon or a dash with a space after it.
_LINE_LABEL = re.compile(
    rf"^[ \t]*{_BULLET}(?P<o>{_EMPH})[ \t]*\[?(?P<name>{_NAME})\]?[ \t]*"
    rf"(?:\((?P<aside>[^()\n]{{1,40}})\)[ \t]*)?(?P<m>{_EMPH})[ \t]*"
    rf"(?P<sep>:|[-–—](?=[ \t]|$))[ \t]*(?P<c>{_EMPH})[ \t]*")
#: A colon label after a sentence's end inside a line: ``… great. **Julie:** Thanks``.
_INLINE_LABEL = re.compile(
    rf"(?<=[.!?…])[\"'”’»)]*(?P<gap>[ \t]+){_EMPH}(?P<name>{_NAME}){_EMPH}[ \t]*:")
_WRAP_QUOTES = {'"': '"', "“": "”", "«": "»"}


class _Names:
    """Folded label forms of a dialogue's hosts → persona names."""

    def __init__(self, hosts: Sequence[Host]) -> None:
        forms: dict[str, set[str]] = {}
        for host in hosts:
            display = fold(host.display_name)
            for form in {fold(host.name), display}:
                if form:
                    forms.setdefault(form, set()).add(host.name)
            words = display.split()
            if len(words) > 1:
                forms.setdefault(f"\x00{words[0]}", set()).add(host.name)  # a first name, weaker
        exact = {f: next(iter(n)) for f, n in forms.items() if len(n) == 1 and not f.startswith("\x00")}
        first = {f[1:]: next(iter(n)) for f, n in forms.items()
                 if len(n) == 1 and f.startswith("\x00") and f[1:] not in exact}
        self.forms = {**first, **exact}

    def host(self, label: str) -> str | None:
        """The persona name a label's name part means, or ``None``."""
        folded = fold(label)
        while True:
            if folded in self.forms:
                return self.forms[folded]
            title = next((t for t in _TITLES if folded.startswith(t)), None)
            if title is None:
                return None
            folded = folded[len(title):]


def _speaker_like(match: re.Match[str]) -> bool:
    """Whether a label with a colon that names no host names some other speaker: wrapped in
    emphasis, a speaker word ("Narrator", "Host 2", "Guest"), or capitalized words that are no
    common word ("Alex", "Dr Lee"). "Fun fact:" or "Remember:" are no speaker."""
    if match.group("sep") != ":":
        return False
    name = match.group("name")
    words = fold(name).split()
    if not words:
        return False
    if match.group("o") or match.group("m") or match.group("c") or words[0] in _SPEAKER_WORDS:
        return True
    raw = [w for w in re.split(r"[ \-]+", name) if w]
    return (len(raw) <= 3 and all(w[0].isupper() for w in raw if w[0].isalpha())
            and words[0] not in COMMON_WORDS)


def _pieces(text: str, names: _Names) -> list[str]:
    """The reply's lines, each cut again before a host's colon label that follows a sentence's end."""
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _INLINE_LABEL.finditer(line):
            if names.host(m.group("name")) is None:
                continue
            cut = m.start("gap")
            out.append(line[start:cut])
            start = m.end("gap")
        out.append(line[start:])
    return out


def _clean(lines: list[str]) -> str:
    """A turn's text: its lines joined by single spaces, wrapping quotes removed."""
    text = " ".join(" ".join(line.split()) for line in lines if line.strip())
    if len(text) >= 2 and text[0] in _WRAP_QUOTES and text[-1] == _WRAP_QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] not in inner and _WRAP_QUOTES[text[0]] not in inner:
            text = inner.strip()
    return text


@dataclass(frozen=True)
class Dialogue:
    """A parsed dialogue: its segments in order, its hosts (first opens) and their labels."""

    segments: tuple[Segment, ...]
    hosts: tuple[Host, ...]

    @property
    def turns(self) -> list[Segment]:
        """The hosts' turns, in order (stray text left out)."""
        return [s for s in self.segments if s.speaker is not None]

    @property
    def stray(self) -> list[str]:
        """Text outside any host's turn, as written, in order."""
        return [s.text for s in self.segments if s.speaker is None]

    @property
    def labels(self) -> dict[str, str]:
        """``{persona name: label}``: the display name, or the persona name where two hosts
        share a display name."""
        counts: dict[str, int] = {}
        for h in self.hosts:
            counts[fold(h.display_name)] = counts.get(fold(h.display_name), 0) + 1
        return {h.name: h.display_name if counts[fold(h.display_name)] == 1 and fold(h.display_name)
                else h.name for h in self.hosts}

    @property
    def text(self) -> str:
        """The whole script: one ``Label: text`` line per turn, stray text where it was."""
        labels = self.labels
        return "\n".join(f"{labels.get(s.speaker, s.speaker)}: {s.text}" if s.speaker is not None else s.text
                         for s in self.segments)

    @property
    def spoken(self) -> str:
        """What the hosts say: the turns' texts, one a line (labels and stray text left out)."""
        return "\n".join(s.text for s in self.turns)

    @property
    def words(self) -> int:
        """Words the hosts say (labels and stray text not counted)."""
        return len(self.spoken.split())

    def failures(self, checks: Any) -> list[tuple[str, Any]]:
        """The dialogue checks of ``checks`` this dialogue fails (:func:`failures`)."""
        return failures(self, checks)

    def turn_list(self) -> list[dict[str, str]]:
        """``[{"speaker": persona name, "text": ...}]``: the ``script.turns`` field."""
        return [{"speaker": str(s.speaker), "text": s.text} for s in self.turns]


def hosts_of(personas: Iterable[Any]) -> tuple[Host, ...]:
    """:class:`Host` tuples of persona objects (anything with ``name`` and ``display_name``)."""
    return tuple(Host(p.name, p.display_name or p.name) for p in personas)


def parse(reply: str, hosts: Sequence[Host] | Iterable[Any]) -> Dialogue:
    """The dialogue in a model's ``reply`` (see the module docstring for the labels read).

    :param hosts: the dialogue's hosts, first the opener: :class:`Host` tuples or personas.
    :returns: a :class:`Dialogue`; a reply with no label at all is one turn of the opener;
        empty turns (a label followed by nothing) are left out.
    """
    hosts = tuple(h if isinstance(h, Host) else Host(h.name, h.display_name or h.name) for h in hosts)
    names = _Names(hosts)
    raw: list[tuple[str | None | bool, list[str]]] = [(False, [])]  # False: before any label
    for piece in _pieces(reply, names):
        m = _LINE_LABEL.match(piece)
        speaker = names.host(m.group("name")) if m else None
        if m and speaker is not None:  # a closing emphasis with none opened is the text's own
            raw.append((speaker, [piece[m.end() if m.group("o") or m.group("m") else m.start("c"):]]))
        elif m and _speaker_like(m):
            raw.append((None, [piece.strip()]))
        else:
            raw[-1][1].append(piece)
    lead = raw[0][1]
    first_labelled = next((who for who, _ in raw[1:] if who), None)
    opener = hosts[0].name if hosts else None
    segments: list[Segment] = []
    if any(line.strip() for line in lead):
        # the opener's line the prompt began, unless the opener's own label comes first
        speaker = opener if first_labelled != opener or first_labelled is None else None
        segments.append(Segment(speaker, _clean(lead) if speaker else "\n".join(x.strip() for x in lead if x.strip())))
    for who, lines in raw[1:]:
        if who is None:
            segments.append(Segment(None, " ".join(" ".join(x.split()) for x in lines if x.strip())))
            continue
        text = _clean(lines)
        if text:
            segments.append(Segment(str(who), text))
    return Dialogue(tuple(segments), hosts)


# -- one host's line, asked for alone --------------------------------------------------------
#: "Sam says:", "Julie replied:" at the start of a reply: a narrator's label, not a line.
_SAYS = re.compile(rf"^[ \t]*{_EMPH}(?P<name>{_NAME}?)[ \t]+(?:says|said|replies|replied|answers|answered|"
                   rf"asks|asked|adds|added){_EMPH}[ \t]*[:,][ \t]*{_EMPH}[ \t]*", re.I)


def _strip_directions(text: str) -> tuple[str, list[str]]:
    """``text`` less its stage directions (:func:`_direction`, each taken out where it is)."""
    removed: list[str] = []
    for _ in range(20):
        found = _direction(text)
        if found is None:
            break
        removed.append(found)
        text = text.replace(found, " ", 1)
    return re.sub(r"\s+([,.!?;:])", r"\1", " ".join(text.split())), removed


def clean_turn(reply: str, hosts: Sequence[Host] | Iterable[Any], max_words: int | None = None
               ) -> tuple[str, list[str]]:
    """One host's line from a reply that was asked for that line alone.

    A leading speaker label (any host's, or a speaker's such as ``Narrator:``, as :func:`parse`
    reads them) or ``Sam says:`` is taken off; the line ends where a label of any speaker
    starts another turn (a small model writes on as the other host); stage directions
    ("(laughs)", "[music]", "*smiles*") are taken out; quotes wrapping the line and emphasis
    marks go; the line ends on its last whole sentence and keeps whole sentences up to
    ``max_words`` words (always its first one).

    :returns: ``(text, removed)``: ``text`` is ``""`` when nothing is left; ``removed`` what was
        taken out (labels, directions, text after another speaker's label, a cut sentence),
        each at most 80 characters.
    """
    from .text import split_sentences, trim_chatter

    hosts = tuple(h if isinstance(h, Host) else Host(h.name, h.display_name or h.name) for h in hosts)
    names = _Names(hosts)
    removed: list[str] = []
    text = trim_chatter(reply)
    for _ in range(3):  # "**Sam:** Julie says: ..." — each leading label in turn
        m = _LINE_LABEL.match(text)
        if m and (names.host(m.group("name")) is not None or _speaker_like(m)):
            removed.append(text[:m.end()].strip()[:80])
            text = text[m.end():]
            continue
        m = _SAYS.match(text)
        if m:
            removed.append(text[:m.end()].strip()[:80])
            text = text[m.end():]
            continue
        break
    kept: list[str] = []
    for i, piece in enumerate(_pieces(text, names)):
        m = _LINE_LABEL.match(piece)
        if i and m and (names.host(m.group("name")) is not None or _speaker_like(m)):
            rest = "\n".join(_pieces(text, names)[i:]).strip()
            removed.append(rest[:80])
            break
        kept.append(piece)
    text, directions = _strip_directions(_clean(kept))
    removed += directions
    text = _clean([text.replace("**", "").replace("__", "")])
    sentences = [x.strip() for x in split_sentences(text) if x.strip()]
    if sentences and not re.search(r"[.!?…][\"'”’»)]*$", sentences[-1]):
        removed.append(sentences.pop()[:80])  # cut off by the token budget
    out: list[str] = []
    for sentence in sentences:
        if out and max_words is not None and len(" ".join([*out, sentence]).split()) > max_words:
            removed.append(sentence[:80])
            continue
        out.append(sentence)
    return " ".join(out), removed


def assemble(turns: Iterable[tuple[str, str]], hosts: Sequence[Host] | Iterable[Any]) -> Dialogue:
    """A :class:`Dialogue` of turns written one by one: ``[(persona name, text)]`` in order."""
    hosts = tuple(h if isinstance(h, Host) else Host(h.name, h.display_name or h.name) for h in hosts)
    return Dialogue(tuple(Segment(who, text) for who, text in turns if text), hosts)


# -- the dialogue checks -----------------------------------------------------------------
#: A stage direction inside a turn: [music], *sighs*, **pauses**, _whispers_ (any bracket or
#: emphasis), or a parenthesis that reads as one: (laughs), (both laugh), (smiling), (softly).
_DIRECTION = re.compile(r"\[[^\]\n]{1,60}\]|\*{1,2}[^*\n]{1,60}\*{1,2}|(?<!\w)_[^_\n]{1,40}_(?!\w)|"
                        r"\((?P<paren>[^()\n]{1,60})\)")
#: First words of a parenthesis that is a stage direction.
_DIRECTION_WORDS = frozenset("""laughs laugh laughing chuckles chuckle chuckling sighs sigh sighing pauses pause
pausing smiles smile smiling grins grinning giggles whispers whispering softly quietly excitedly laughter
music sound sounds sfx applause cheers both together beat silence intro outro jingle theme fade fades
cut upbeat dramatic clears coughs nods gasps""".split())
_GENERIC_LABEL = re.compile(
    r"(?:^|(?<=[.!?…]\s)|(?<=[.!?…][\"'”’]\s))\**\s*(?:" + "|".join(sorted(_SPEAKER_WORDS)) +
    r")(?:\s*\w{1,2})?\s*\**\s*:", re.I)


def _direction(text: str) -> str | None:
    """The first stage direction in a turn's text, as written, or ``None``. A bracket of more
    than 8 words is an aside said aloud, not a direction; a parenthesis is one when its first
    word is a direction word ("laughs", "music", "both") or a lower-case "-ing"/"-ly" word."""
    for m in _DIRECTION.finditer(text):
        if len(m.group(0).split()) > 8:
            continue
        paren = m.group("paren")
        if paren is not None:
            first = (paren.split() or [""])[0]
            if not (first.lower() in _DIRECTION_WORDS
                    or (first.islower() and first.endswith(("ing", "ly")) and len(paren.split()) <= 3)):
                continue
        return m.group(0)
    return None


def _label_inside(text: str, hosts: Sequence[Host]) -> str | None:
    """A speaker label inside a turn's text: a host's name and a colon anywhere, or a
    speaker word ("Host:", "Narrator:", "Guest 2:") at the start of a sentence."""
    names = _Names(hosts)
    for m in re.finditer(rf"(?<![\w'’])\**(?P<name>{_NAME})\**\s*:", text):
        words = m.group("name").split()
        for i in range(len(words)):  # "and then Sam:" → "Sam"
            if names.host(" ".join(words[i:])) is not None:
                return m.group(0).strip()
    generic = _GENERIC_LABEL.search(text)
    return generic.group(0).strip() if generic else None


def check_speakers(dialogue: Dialogue, min_turns: int) -> dict[str, Any] | None:
    """``{"turns": {persona: count}, "min": min_turns}`` when a host has fewer than
    ``min_turns`` turns, else ``None``."""
    counts = {h.name: 0 for h in dialogue.hosts}
    for t in dialogue.turns:
        counts[str(t.speaker)] = counts.get(str(t.speaker), 0) + 1
    if all(n >= min_turns for n in counts.values()):
        return None
    return {"turns": counts, "min": min_turns}


def check_turn_words(dialogue: Dialogue, max_words: int) -> list[str]:
    """The turns longer than ``max_words`` words: ``["turn 4 (julie): 93 words"]``."""
    return [f"turn {i} ({t.speaker}): {len(t.text.split())} words"
            for i, t in enumerate(dialogue.turns, start=1) if len(t.text.split()) > max_words]


def check_clean_turns(dialogue: Dialogue) -> list[str]:
    """Turns whose text holds a speaker label or a stage direction:
    ``["turn 3 (julie): (laughs)", "turn 5 (sam): Julie:"]``."""
    found: list[str] = []
    for i, t in enumerate(dialogue.turns, start=1):
        bad = _direction(t.text) or _label_inside(t.text, dialogue.hosts)
        if bad is not None:
            found.append(f"turn {i} ({t.speaker}): {bad}")
    return found


def check_alternate(dialogue: Dialogue) -> list[str]:
    """Places where a host speaks twice in a row: ``["turns 3-4: sam"]``."""
    turns = dialogue.turns
    return [f"turns {i}-{i + 1}: {turns[i].speaker}" for i in range(1, len(turns))
            if turns[i].speaker == turns[i - 1].speaker]


def check_stray(dialogue: Dialogue) -> list[str]:
    """Text outside any host's turn (each at most 80 characters, as written)."""
    return [s if len(s) <= 80 else s[:77] + "..." for s in dialogue.stray]


def failures(dialogue: Dialogue, checks: Any) -> list[tuple[str, Any]]:
    """``(check name, detail)`` of each dialogue check ``checks`` turns on that ``dialogue``
    fails, in report order (``stray`` always runs).

    :param checks: a :class:`~ai_content_pipeline.checks.Checks` block.
    """
    out: list[tuple[str, Any]] = []
    if checks.speakers is not None:
        few = check_speakers(dialogue, checks.speakers)
        if few is not None:
            out.append(("speakers", few))
    if checks.turn_words is not None:
        long = check_turn_words(dialogue, checks.turn_words)
        if long:
            out.append(("turn_words", long))
    for name, on, check in (("clean_turns", checks.clean_turns, check_clean_turns),
                            ("alternate", checks.alternate, check_alternate),
                            ("stray", True, check_stray)):
        found = check(dialogue) if on else []
        if found:
            out.append((name, found))
    return out


__all__ = ["Dialogue", "Host", "Segment", "assemble", "check_alternate", "check_clean_turns", "check_speakers",
           "check_stray", "check_turn_words", "clean_turn", "failures", "hosts_of", "parse", "turn_problems"]


def turn_problems(text: str, hosts: Sequence[Host] | Iterable[Any]) -> str | None:
    """A stage direction or speaker label left in one turn's ``text`` (as written), or ``None``."""
    hosts = tuple(h if isinstance(h, Host) else Host(h.name, h.display_name or h.name) for h in hosts)
    return _direction(text) or _label_inside(text, hosts)
