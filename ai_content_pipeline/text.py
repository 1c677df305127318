"""Text helpers of the stages, a leaf module (it imports nothing of aicp): trimming a model's
chatter around a script, cleaning a long-form chunk, and the one English sentence segmenter
(pysbd, imported on first use) that chunking for speech and the long-form summary share.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# -- trimming the model's chatter ---------------------------------------------------------
_PREAMBLE = re.compile(
    r"""^\s*(?:(?:sure|certainly|of\ course|absolutely|okay|ok|alright|great)[!,.]*\s+)?
        (?:here(?:'s|\ is|\ are|\ you\ go)|below\ is)\b[^\n:]{0,120}:[ \t]*\n*""",
    re.IGNORECASE | re.VERBOSE,
)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:intro|outro|script|dj|transcript)(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
                    re.IGNORECASE)
_SIGNOFF = re.compile(
    r"\n+\s*(?:let me know|i hope (?:this|you)|feel free|would you like|note:)[^\n]*\s*$", re.IGNORECASE
)
_QUOTES = {'"': '"', "“": "”", "'": "'", "«": "»"}


def trim_chatter(text: str) -> str:
    """Remove an assistant's wrapping around a script, conservatively.

    Removes only: one leading "Sure! Here's …:" preamble line (it must end with a
    colon), one leading ``Intro:``-style label, one trailing "Let me know …" /
    "I hope this …" paragraph, and quotes that wrap the whole text when no quote
    of that kind occurs inside. Everything else is kept as written.
    """
    text = text.strip()
    stripped = _PREAMBLE.sub("", text, count=1)
    if stripped.strip():
        text = stripped.strip()
    text = _LABEL.sub("", text, count=1).strip() or text
    signed = _SIGNOFF.sub("", text).strip()
    if signed:
        text = signed
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] not in inner and _QUOTES[text[0]] not in inner:
            text = inner.strip()
    return text


# -- long-form chunks ---------------------------------------------------------------------
_HEADING_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t].*|\*\*[^*\n]{1,80}\*\*[ \t]*:?)[ \t]*$", re.MULTILINE)


def clean_chunk(text: str, section: str) -> str:
    """A chunk's speakable text: the model's chatter, markdown headings, a line that only
    repeats the section name, and ``**`` emphasis removed; paragraphs kept."""
    text = _HEADING_LINE.sub("", trim_chatter(text))
    name = re.escape(section)
    text = re.sub(rf"^[ \t]*[\"'“]?{name}[\"'”]?[ \t]*:?[ \t]*$", "", text, flags=re.MULTILINE | re.IGNORECASE)
    text = text.replace("**", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- sentences ------------------------------------------------------------------------------
_local = threading.local()


def _segmenter(*, char_span: bool = False) -> Any:
    """This thread's pysbd ``Segmenter`` (English rules), made on first use.

    One per thread, not one per process: a ``Segmenter`` keeps the text it is segmenting
    on itself (``original_text``), so one shared by the stage's worker threads gave a
    thread the sentences of another thread's text.
    """
    key = "spans" if char_span else "plain"
    segmenter = getattr(_local, key, None)
    if segmenter is None:
        import pysbd

        segmenter = pysbd.Segmenter(language="en", clean=False, char_span=char_span)
        setattr(_local, key, segmenter)
    return segmenter


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (pysbd, English rules), stripped, empty ones dropped. Thread-safe."""
    return [s.strip() for s in _segmenter().segment(text) if s.strip()]


def sentence_spans(text: str) -> list[str]:
    """Sentences of ``text`` as pysbd cuts them, unstripped (each a substring of ``text``,
    in order; what follows a sentence up to the next one is kept with it). Thread-safe."""
    return [span.sent for span in _segmenter(char_span=True).segment(text)]


#: Characters of a chunk's end that :func:`last_sentences` segments: enough for two long
#: sentences of 40 words, and it keeps pysbd's cost per chunk flat whatever the chunk's length.
SUMMARY_TAIL_CHARS = 800


def last_sentences(text: str, count: int, max_words: int = 40) -> str:
    """The last ``count`` sentences of ``text`` (pysbd), at most ``max_words`` words."""
    tail = text[-SUMMARY_TAIL_CHARS:]
    sentences = split_sentences(tail)
    picked = " ".join(sentences[-count:]) if sentences else tail
    words = picked.split()
    return " ".join(words[-max_words:])


__all__ = ["clean_chunk", "last_sentences", "sentence_spans", "split_sentences", "trim_chatter"]
