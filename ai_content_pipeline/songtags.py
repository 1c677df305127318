"""A song's facts from its audio file's tags: ``artist``, ``title``, ``album``, ``year``, ``genre``.

A record that names its song's audio file (the ``file`` field by default, as the mix stage
reads it; ``aicp-script --song-field``) gets the fields it lacks from the file's tags, read
with mutagen: ID3 (MP3, and WAV/AIFF files that carry an ID3 chunk), Vorbis comments (FLAC,
Ogg Vorbis, Opus), MP4 atoms (M4A/AAC, ALAC), APEv2 and ASF (WMA). RIFF ``INFO`` chunks
of WAV files are not read (mutagen does not read them).

Fields the record already has (anything but absent, ``null`` or a blank string) win. ``year``
becomes a number (the first four digits of the date tag: ``1975-11-21`` → 1975; none
outside 1000-2999); a tag with
several values (two artists) is joined with ``, ``. A relative path is taken from the
current directory.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from .errors import AicpError

#: The record fields tags may fill, in this order.
TAG_FIELDS = ("artist", "title", "album", "year", "genre")
#: Longest tag value kept (characters); a longer one is cut there.
MAX_TAG_CHARS = 500

# keys of each field in mutagen's tag mappings, compared case-insensitively: the "easy" names
# (EasyID3, EasyMP4, Vorbis comments), APEv2 names, ASF (WMA) names
_KEYS = {
    "artist": ("artist", "albumartist", "album artist", "author", "wm/albumartist"),
    "title": ("title",),
    "album": ("album", "wm/albumtitle"),
    "year": ("date", "year", "originaldate", "wm/year", "wm/originalreleaseyear"),
    "genre": ("genre", "wm/genre"),
}
# ID3 frames of each field, for files whose ID3 tags mutagen gives without the easy names
_ID3_FRAMES = {
    "artist": ("TPE1", "TPE2"),
    "title": ("TIT2",),
    "album": ("TALB",),
    "year": ("TDRC", "TYER", "TDOR", "TORY"),
    "genre": ("TCON",),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_YEAR = re.compile(r"^\s*(\d{4})(?!\d)")


class TagsUnreadable(AicpError):
    """A song file whose tags cannot be read: missing, not a file, unreadable, not audio
    mutagen knows. The message names the file and why."""


def _text(values: Any) -> str | None:
    """One clean string from a tag's value (a list of strings, an ID3 frame, an APE/ASF value)."""
    if hasattr(values, "genres"):  # ID3 TCON: "(17)" and "17" spelled as "Rock"
        values = values.genres
    elif hasattr(values, "text"):  # other ID3 text frames
        values = values.text
    if not isinstance(values, list | tuple):
        values = [values]
    parts = [_CONTROL.sub(" ", str(v)).strip() for v in values]
    joined = ", ".join(dict.fromkeys(p for p in parts if p))
    return joined[:MAX_TAG_CHARS].strip() or None


def _field_value(field: str, text: str) -> Any:
    if field == "year":  # a year from 1000 to 2999, else none ("0000" is a tagger's blank)
        m = _YEAR.match(text)
        return int(m.group(1)) if m and 1000 <= int(m.group(1)) <= 2999 else None
    return text


def read_tags(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``artist``, ``title``, ``album``, ``year`` (int) and ``genre`` tags of the audio file
    at ``path``; fields without a tag are left out (``{}`` for a file without tags).

    :raises TagsUnreadable: no such file, not a regular file, unreadable, or a format mutagen
        does not know.
    """
    import mutagen
    from mutagen.id3 import ID3

    where = os.fspath(path)
    if not os.path.exists(where):
        raise TagsUnreadable(f"song file {where} not found")
    if not os.path.isfile(where):
        raise TagsUnreadable(f"song file {where} is not a file")
    try:
        audio = mutagen.File(where, easy=True)
    except (mutagen.MutagenError, OSError, ValueError, EOFError, IndexError, KeyError,
            OverflowError, UnicodeError) as exc:  # mutagen's parsers on a damaged file
        raise TagsUnreadable(f"cannot read the tags of song file {where}: {exc}") from exc
    if audio is None:
        raise TagsUnreadable(f"song file {where} is no audio file whose tags aicp reads",
                             hint="MP3, FLAC, Ogg, Opus, M4A, WAV/AIFF with ID3, APE, WMA")
    tags = audio.tags
    if not tags:
        return {}
    out: dict[str, Any] = {}
    if isinstance(tags, ID3):
        for field, frames in _ID3_FRAMES.items():
            for frame in frames:
                found = tags.get(frame)
                text = _text(found) if found is not None else None
                value = _field_value(field, text) if text else None
                if value is not None:
                    out[field] = value
                    break
        return out
    keys = {str(k).lower(): k for k in tags.keys()}
    for field, names in _KEYS.items():
        for name in names:
            if name not in keys:
                continue
            text = _text(tags[keys[name]])
            value = _field_value(field, text) if text else None
            if value is not None:
                out[field] = value
                break
    return out


def missing(record: dict[str, Any], field: str) -> bool:
    """Whether ``record`` lacks ``field`` (absent, ``null`` or a blank string)."""
    value = record.get(field)
    return value is None or (isinstance(value, str) and not value.strip())


class SongTags:
    """Fills records' missing fields from their song files' tags, each file read once per run
    (thread-safe).

    :param field: the record field that names the audio file (``file``).
    """

    def __init__(self, field: str = "file") -> None:
        self.field = field
        self._cache: dict[str, dict[str, Any] | TagsUnreadable] = {}
        self._lock = threading.Lock()

    def path(self, record: dict[str, Any]) -> str | None:
        """The song file ``record`` names (a non-blank string in :attr:`field`), else ``None``."""
        value = record.get(self.field)
        return value if isinstance(value, str) and value.strip() else None

    def fill(self, record: dict[str, Any]) -> tuple[dict[str, Any], TagsUnreadable | None]:
        """``record`` with its missing :data:`TAG_FIELDS` from its song file's tags (the same
        dict when nothing is added), and the problem that kept the tags from being read
        (``None`` when read, or when no file is named or no field is missing).
        """
        path = self.path(record)
        if path is None or not any(missing(record, f) for f in TAG_FIELDS):
            return record, None
        with self._lock:
            cached = self._cache.get(path)
        if cached is None:
            try:
                cached = read_tags(path)
            except TagsUnreadable as exc:
                cached = exc
            with self._lock:
                self._cache.setdefault(path, cached)
        if isinstance(cached, TagsUnreadable):
            return record, cached
        added = {f: v for f, v in cached.items() if missing(record, f)}
        return ({**record, **added} if added else record), None


__all__ = ["MAX_TAG_CHARS", "TAG_FIELDS", "SongTags", "TagsUnreadable", "missing", "read_tags"]
