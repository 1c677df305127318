"""A podcast feed from episode records: RSS 2.0 with the iTunes and Podcasting 2.0 tags.

:func:`write_feed` reads episode records (the JSON Lines ``aicp mix`` writes, or voiced
records) and writes ``feed.xml`` through feedgen (its ``podcast`` extension for the iTunes
tags, :class:`PodcastIndexExtension` here for the ``podcast:`` namespace), plus one JSON
chapters file per episode that has chapters, beside the feed.

What an episode record gives (first field found wins):

- **audio file**: ``mix.file``, else ``audio.path`` (a voiced record without a mix); the
  file must exist: its size on disk is the enclosure length. MIME type: ``mix.type``, else
  by extension (``.mp3`` audio/mpeg, ``.m4a`` audio/mp4, ``.opus``/``.ogg`` audio/ogg,
  ``.flac`` audio/flac, ``.wav`` audio/wav). Duration: ``mix.seconds``, ``audio.seconds``,
  else read from the file (mutagen).
- **title**: ``title``, ``topic``, else the record's id. **description**: ``description``,
  ``summary``, else the script text (``script.text``), else the title. **date**: ``date``,
  ``published`` (ISO 8601 or RFC 2822; a date without a zone is UTC), else the audio
  file's modification time. ``title_field``/``description_field``/``date_field`` name
  another (dotted) field instead.
- **chapters**: ``mix.chapters`` (``[{"start", "end"?, "title"}]``, seconds).
- **captions**: ``captions``, ``mix.captions`` or ``audio.captions``: a ``.vtt`` (text/vtt)
  or ``.srt`` (application/x-subrip) file that must exist.

A show: the records ``aicp mix --show`` wrote all name one show file (``mix.file``), each with
its own ``mix.start``/``mix.end`` in it. They are folded into ONE episode (:func:`fold_shows`):
the show file is the enclosure, its chapters (a song each) ``podcast:chapters``; its title
is ``mix.title`` (the show's ``--title``), else the file's title tag, else the file name; its
description names the songs; its date is the first record's; its GUID a UUID (version 5) of
``LINK#show:FILE-NAME`` unless the first record has a ``guid``.

URLs: every file is published flat under ``base_url``: the enclosure is
``base_url/NAME`` where NAME is the audio file's name (percent-encoded), the captions
``base_url/CAPTIONS-NAME``, the chapters file ``base_url/AUDIO-STEM.chapters.json`` (written
beside the feed), the feed itself ``base_url/FEED-NAME`` (its ``atom:link rel=self`` and
the channel's ``podcast:guid``).

GUIDs: a record's own ``guid`` field when it has one, else a UUID (version 5, URL
namespace) of ``LINK#ID``: the channel link and the record's id
(:func:`~ai_content_pipeline.records.record_id`: its ``id``, or a hash of its own fields
without the stage outputs). An episode fed again (the same GUID, or the same enclosure URL
as an item in the feed) replaces that item and keeps its GUID; the other items already in
the feed are kept as they were, GUIDs included.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import email.utils
import math
import mimetypes
import os
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .records import get_path, record_id

#: The Podcasting 2.0 namespace (https://podcastindex.org/namespace/1.0).
PODCAST_NS = "https://podcastindex.org/namespace/1.0"
ITUNES_NS = "http://www.itunes.com/dtds/podcast-1.0.dtd"
ATOM_NS = "http://www.w3.org/2005/Atom"
#: The namespace of a channel's ``podcast:guid`` (Podcasting 2.0 spec).
PODCAST_GUID_NS = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
CHAPTERS_TYPE = "application/json+chapters"
#: How long a run waits for another one writing the same feed (seconds).
LOCK_WAIT_SECONDS = 60.0
CHAPTERS_VERSION = "1.2.0"
AUDIO_TYPES = {".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".aac": "audio/aac",
               ".opus": "audio/ogg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".flac": "audio/flac",
               ".wav": "audio/wav"}
CAPTION_TYPES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
TITLE_FIELDS = ("title", "topic")
DESCRIPTION_FIELDS = ("description", "summary", "script.text")
DATE_FIELDS = ("date", "published")


class FeedError(UsageError):
    """An episode that cannot be published or a feed that cannot be written (exit 2)."""


@dataclass
class Channel:
    """The podcast: what ``aicp feed``'s options give (``None``: taken from the existing feed).

    :ivar base_url: ``http(s)://`` URL the episode files and the feed are served under.
    :ivar image: cover art: a ``.jpg``/``.png`` URL, or a file name under ``base_url``.
    :ivar category: an Apple Podcasts category, ``Category`` or ``Category/Subcategory``.
    """

    title: str | None = None
    link: str | None = None
    base_url: str | None = None
    description: str | None = None
    author: str | None = None
    image: str | None = None
    language: str | None = None
    category: str | None = None
    explicit: bool | None = None


@dataclass
class Fields:
    """Which record field holds each episode value (dotted paths, first found wins)."""

    title: tuple[str, ...] = TITLE_FIELDS
    description: tuple[str, ...] = DESCRIPTION_FIELDS
    date: tuple[str, ...] = DATE_FIELDS


@dataclass
class FeedResult:
    """What :func:`write_feed` did: GUIDs added (new), replaced (fed again) and kept as they
    were; records left out (``(where, message)``: they carried an ``error``, or were not
    JSON objects); the chapters files written."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chapters_files: list[str] = field(default_factory=list)


def _ext_classes() -> tuple[type, type]:
    """The feedgen extension classes of the ``podcast:`` namespace (feedgen imported here,
    when a feed is written: ``--help`` stays fast)."""
    import feedgen.feed  # noqa: F401 - loads lxml.etree, which feedgen.util uses without importing it
    from feedgen.ext.base import BaseEntryExtension, BaseExtension
    from feedgen.util import xml_elem

    class PodcastIndexExtension(BaseExtension):  # type: ignore[misc]
        """Channel tags of the ``podcast:`` namespace: ``podcast:guid``."""

        def __init__(self) -> None:
            self.guid: str | None = None

        def extend_ns(self) -> dict[str, str]:
            return {"podcast": PODCAST_NS}

        def extend_rss(self, feed: Any) -> Any:
            if self.guid:
                xml_elem(f"{{{PODCAST_NS}}}guid", feed[0]).text = self.guid
            return feed

    class PodcastIndexEntryExtension(BaseEntryExtension):  # type: ignore[misc]
        """Item tags of the ``podcast:`` namespace: ``podcast:chapters`` and
        ``podcast:transcript``; or, for an item kept from an existing feed, its old content."""

        def __init__(self) -> None:
            self.chapters: dict[str, str] | None = None
            self.transcripts: list[dict[str, str]] = []
            self.preserved: Any = None

        def extend_ns(self) -> dict[str, str]:
            return {"podcast": PODCAST_NS}

        def extend_rss(self, entry: Any) -> Any:
            if self.preserved is not None:
                entry.clear()
                entry.attrib.update(self.preserved.attrib)
                entry.text = self.preserved.text
                entry.extend(copy.deepcopy(child) for child in self.preserved)
                return entry
            if self.chapters:
                xml_elem(f"{{{PODCAST_NS}}}chapters", entry, **self.chapters)
            for transcript in self.transcripts:
                xml_elem(f"{{{PODCAST_NS}}}transcript", entry, **transcript)
            return entry

    return PodcastIndexExtension, PodcastIndexEntryExtension


#: What XML 1.0 cannot carry: control characters (dropped) and lone surrogates (U+FFFD).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """``value`` as text XML 1.0 and UTF-8 can carry: control characters other than tab and
    newlines dropped, lone surrogates (a non-UTF-8 file name or argument) made U+FFFD."""
    return _NOT_XML.sub(lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else "", str(value))


def file_url(base_url: str, name: str) -> str:
    """``base_url/NAME`` with ``name`` percent-encoded byte for byte as the file system has it
    (one slash between them)."""
    return xml_text(base_url).rstrip("/") + "/" + urllib.parse.quote(os.fsencode(name))


def _check_url(value: str, what: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FeedError(f"{what} {value!r} is not an http(s) URL",
                        hint="podcast apps fetch files over http(s): give e.g. https://example.com/podcast")
    return value


def _first(record: dict[str, Any], paths: Iterable[str]) -> Any:
    for path in paths:
        value = get_path(record, path)
        if value is not None and value != "":
            return value
    return None


def parse_date(value: Any, where: str) -> datetime:
    """A record's date: ISO 8601 (``2026-12-06``, ``2026-12-06T08:00:00Z``) or RFC 2822
    (``Sun, 06 Dec 2026 08:00:00 +0000``), or a Unix time in seconds; UTC when no zone given.

    :raises FeedError: anything else.
    """
    parsed: datetime | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            parsed = None
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                parsed = None
    if parsed is None:
        raise FeedError(f"{where}: date {value!r} is neither ISO 8601 nor RFC 2822",
                        hint="write it like 2026-12-06 or 2026-12-06T08:00:00Z")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def duration_text(seconds: float) -> str:
    """``H:MM:SS`` of ``seconds`` (rounded to the second), as ``itunes:duration`` reads."""
    total = int(round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _seconds(record: dict[str, Any], path: Path, where: str) -> float:
    value = _first(record, ("mix.seconds", "audio.seconds"))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    import mutagen  # only for a record that does not say its length

    try:
        info = mutagen.File(path)
    except Exception:  # noqa: BLE001 - mutagen raises many kinds on a file it cannot read
        info = None
    if info is None or not getattr(info.info, "length", None):
        raise FeedError(f"{where}: the record gives no duration (mix.seconds) and {path} cannot be read for one",
                        hint="give mix.seconds, or an audio file mutagen reads (MP3, M4A, Ogg, FLAC, WAV)")
    return float(info.info.length)


def _show_title(mix: dict[str, Any], path: str) -> str:
    """A show's title: ``mix.title``, else the file's title tag (mutagen), else its name."""
    if isinstance(mix.get("title"), str) and mix["title"].strip():
        return str(mix["title"]).strip()
    try:
        import mutagen

        audio = mutagen.File(path, easy=True)
        titles = audio.get("title") if audio is not None and audio.tags is not None else None
        if titles:
            return str(titles[0])
    except Exception:  # noqa: BLE001 - mutagen raises many kinds on a file it cannot read
        pass
    return Path(path).stem


def fold_shows(lines: list[Any]) -> list[Any]:
    """``lines`` with the records of each show folded into one: records whose ``mix`` names a
    file and places them in it (``mix.start``) and that name one file are one episode, the
    record made of them standing where the first stood (see the module docstring).
    Lines that are not such records are returned as they are."""
    groups: dict[str, list[Any]] = {}
    for line in lines:
        record = line.record
        mix = record.get("mix") if isinstance(record, dict) and not record.get("error") else None
        if isinstance(mix, dict) and isinstance(mix.get("file"), str) and isinstance(mix.get("start"), (int, float)):
            groups.setdefault(os.path.abspath(mix["file"]), []).append(line)
    if not groups:
        return lines
    first = {id(members[0]): members for members in groups.values()}
    folded_away = {id(line) for members in groups.values() for line in members[1:]}
    out = []
    for line in lines:
        if id(line) in folded_away:
            continue
        members = first.get(id(line))
        if members is None:
            out.append(line)
            continue
        records = [m.record for m in members]
        head = records[0]
        mix = {k: v for k, v in head["mix"].items() if k not in ("start", "end", "segue")}
        title = _show_title(mix, mix["file"])
        songs = [c.get("title") for c in mix.get("chapters") or [] if isinstance(c, dict) and c.get("title")]
        description = f"{title}: " + ", ".join(map(str, songs)) + "." if songs else title
        folded: dict[str, Any] = {"id": f"show:{Path(mix['file']).name}", "title": title,
                                  "description": description, "mix": mix}
        for key in ("guid", "date", "published"):
            if head.get(key) not in (None, ""):
                folded[key] = head[key]
        out.append(dataclasses.replace(line, record=folded))
    return out


def _existing_file(value: Any, what: str, where: str, hint: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"{where}: {what} is {'missing' if value is None else 'not a file name'}", hint=hint)
    path = Path(value)
    if not path.is_file():
        raise FeedError(f"{where}: {what} {value} {'is not a file' if path.exists() else 'does not exist'}",
                        hint="run aicp feed where the records' paths lead (they are read relative to the "
                             "current folder), or fix the path")
    return path


@dataclass
class Episode:
    """One item ready for feedgen (built by :func:`episode`)."""

    guid: str
    title: str
    description: str
    date: datetime
    url: str
    length: int
    mime: str
    seconds: float
    audio: Path
    chapters: list[dict[str, Any]] | None
    captions: list[tuple[str, Path, str]]  # (URL, file, MIME type)


def episode(record: dict[str, Any], channel: Channel, fields: Fields, where: str) -> Episode:
    """The :class:`Episode` of one record (see the module docstring for the fields read).

    :param where: how messages name the record (``episodes.jsonl line 3``).
    :raises FeedError: no audio file or one that does not exist, a bad date, chapters or captions.
    """
    assert channel.base_url and channel.link
    audio = _existing_file(_first(record, ("mix.file", "audio.path")), "the episode's audio file (mix.file)",
                           where, "feed records aicp mix wrote (mix.file), or voiced records (audio.path)")
    mime = get_path(record, "mix.type")
    if not isinstance(mime, str) or "/" not in mime:
        mime = AUDIO_TYPES.get(audio.suffix.lower()) or mimetypes.guess_type(audio.name)[0]
    if not mime:
        raise FeedError(f"{where}: cannot tell the MIME type of {audio}", hint="give mix.type (audio/mpeg...)")
    rid = record_id(record)
    title = _first(record, fields.title)
    title = xml_text(title) if title is not None else rid
    description = _first(record, fields.description)
    description = xml_text(description) if description is not None else title
    raw_date = _first(record, fields.date)
    date = (parse_date(raw_date, where) if raw_date is not None
            else datetime.fromtimestamp(audio.stat().st_mtime, tz=timezone.utc))
    guid = record.get("guid")
    if not isinstance(guid, str) or not guid.strip():
        guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{channel.link}#{rid}"))
    chapters = get_path(record, "mix.chapters")
    if chapters is not None:
        chapters = _chapters(chapters, where)
    captions = []
    caption_value = _first(record, ("captions", "mix.captions", "audio.captions"))
    if caption_value is not None:
        path = _existing_file(caption_value, "its captions file", where, "give a .vtt or .srt file")
        kind = CAPTION_TYPES.get(path.suffix.lower())
        if kind is None:
            raise FeedError(f"{where}: captions {path} are neither WebVTT (.vtt) nor SubRip (.srt)",
                            hint="podcast apps read captions as .vtt or .srt")
        captions.append((file_url(channel.base_url, path.name), path, kind))
    return Episode(guid=xml_text(guid).strip(), title=title, description=description, date=date,
                   url=file_url(channel.base_url, audio.name), length=audio.stat().st_size, mime=mime,
                   seconds=_seconds(record, audio, where), audio=audio, chapters=chapters or None,
                   captions=captions)


def _chapters(value: Any, where: str) -> list[dict[str, Any]]:
    """``mix.chapters`` as Podcasting 2.0 JSON chapters (``startTime``, ``endTime``?, ``title``)."""
    if not isinstance(value, list):
        raise FeedError(f"{where}: mix.chapters is not a list", hint='give [{"start": 0, "title": "..."}]')
    out = []
    for n, chapter in enumerate(value, start=1):
        start = chapter.get("start") if isinstance(chapter, dict) else None
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start) or start < 0:
            raise FeedError(f"{where}: chapter {n} has no start time in seconds",
                            hint='each chapter is {"start": seconds, "end": seconds, "title": text}')
        item: dict[str, Any] = {"startTime": round(float(start), 3)}
        end = chapter.get("end")
        if isinstance(end, (int, float)) and not isinstance(end, bool) and math.isfinite(end) and end >= start:
            item["endTime"] = round(float(end), 3)
        if chapter.get("title") is not None:
            item["title"] = xml_text(chapter["title"])
        out.append(item)
    return sorted(out, key=lambda c: c["startTime"])


def _chapters_name(audio: Path) -> str:
    """The name of an episode's JSON chapters file: ``AUDIO-STEM.chapters.json``."""
    return f"{audio.stem}.chapters.json"


def chapters_document(chapters: list[dict[str, Any]], title: str, podcast: str) -> dict[str, Any]:
    """A Podcasting 2.0 JSON chapters document (version 1.2.0) of one episode."""
    return {"version": CHAPTERS_VERSION, "title": title, "podcastName": podcast, "chapters": chapters}


def _xml_parser() -> Any:
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


@dataclass
class _Existing:
    channel: Channel
    items: list[tuple[str, datetime, Any]]  # (guid, date, <item> element)


def read_existing(path: str | os.PathLike[str]) -> _Existing:
    """The channel values and items of a feed ``aicp feed`` (or another tool) wrote.

    :raises FeedError: the file is not an RSS 2.0 feed, or one of its items has no ``guid``.
    """
    from lxml import etree

    try:
        root = etree.parse(str(path), _xml_parser()).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise FeedError(f"--out {path} exists but cannot be read as XML: {exc}",
                        hint="give another --out, or remove the file to start a new feed") from exc
    channel_el = root.find("channel")
    if root.tag != "rss" or channel_el is None:
        raise FeedError(f"--out {path} exists but is not an RSS feed",
                        hint="give another --out, or remove the file to start a new feed")

    def text(tag: str) -> str | None:
        found = channel_el.findtext(tag)
        return found.strip() if found and found.strip() else None

    image = channel_el.find(f"{{{ITUNES_NS}}}image")
    category = channel_el.find(f"{{{ITUNES_NS}}}category")
    category_text = None
    if category is not None and category.get("text"):
        sub = category.find(f"{{{ITUNES_NS}}}category")
        category_text = category.get("text") + (f"/{sub.get('text')}" if sub is not None and sub.get("text") else "")
    explicit = text(f"{{{ITUNES_NS}}}explicit")
    base_url = None
    for link in channel_el.findall(f"{{{ATOM_NS}}}link"):
        href = link.get("href") or ""
        if link.get("rel") == "self" and "/" in href:
            base_url = href.rsplit("/", 1)[0]
    channel = Channel(title=text("title"), link=text("link"), base_url=base_url, description=text("description"),
                      language=text("language"), author=text(f"{{{ITUNES_NS}}}author"),
                      image=image.get("href") if image is not None else None, category=category_text,
                      explicit=None if explicit is None else explicit.lower() in ("yes", "true"))
    items = []
    for n, item in enumerate(channel_el.findall("item"), start=1):
        guid = (item.findtext("guid") or "").strip()
        if not guid:
            raise FeedError(f"--out {path}: item {n} has no guid, so a new episode cannot be told from it",
                            hint="give each item a <guid>, or start a new feed")
        try:
            date = email.utils.parsedate_to_datetime(item.findtext("pubDate") or "")
        except (TypeError, ValueError, IndexError):
            date = datetime.fromtimestamp(0, tz=timezone.utc)
        items.append((guid, date if date.tzinfo else date.replace(tzinfo=timezone.utc), item))
    return _Existing(channel, items)


def _merge_channel(given: Channel, old: Channel | None) -> Channel:
    """``given`` with each unset value taken from the existing feed's channel ``old``."""
    values: dict[str, Any] = {name: getattr(given, name) if getattr(given, name) is not None or old is None
                              else getattr(old, name) for name in given.__dataclass_fields__}
    clean: dict[str, Any] = {name: xml_text(value) if isinstance(value, str) else value
                             for name, value in values.items()}
    return Channel(**clean)


def check_channel(channel: Channel, out: str | os.PathLike[str]) -> None:
    """Check the channel before any work: title, link and base URL given, URLs http(s), an
    image a ``.jpg``/``.png``, a category at most two levels.

    :raises FeedError: naming the option to give.
    """
    if not channel.title:
        raise FeedError("the feed needs a title", hint="give --title 'My podcast'")
    if not channel.link:
        raise FeedError("the feed needs a link (the podcast's web page)", hint="give --link https://example.com")
    _check_url(channel.link, "--link")
    if not channel.base_url:
        raise FeedError("no --base-url: the enclosure URLs are the base URL and each audio file's name",
                        hint=f"give --base-url, the http(s) address the episode files and {Path(out).name} "
                             "will be served under")
    _check_url(channel.base_url, "--base-url")
    if channel.image and not channel.image.endswith((".jpg", ".png")):
        raise FeedError(f"--image {channel.image} does not end in .jpg or .png",
                        hint="podcast apps want square JPEG or PNG cover art, named NAME.jpg or NAME.png")
    if channel.category and channel.category.count("/") > 1:
        raise FeedError(f"--category {channel.category!r} has more than two levels",
                        hint="give Category or Category/Subcategory (Apple Podcasts' list)")


def write_feed(lines: Iterable[Any], out: str | os.PathLike[str], channel: Channel,
               fields: Fields | None = None) -> FeedResult:
    """Write (or extend) the podcast feed ``out`` with one item per episode record.

    :param lines: :class:`~ai_content_pipeline.jsonl.InputLine` objects (``record`` or ``error``).
    :param out: the feed file; when it exists its items are kept (as they were, GUIDs
        included) and unset ``channel`` values are read from it. Written atomically
        (:func:`~ai_content_pipeline.files.write_atomic`), as are the chapters files
        (``AUDIO-STEM.chapters.json`` beside it).
    :returns: a :class:`FeedResult`.
    :raises FeedError: (exit 2) a bad channel, an existing ``out`` that is not a feed, an
        episode without its audio file, with a bad date, chapters or captions, two episodes
        whose files share a name (one URL). Nothing is written then.
    """
    lines = list(lines)  # all read first: a slow pipe upstream does not hold the feed's lock
    with _feed_lock(out):
        return _write_feed(lines, out, channel, fields or Fields())


@contextlib.contextmanager
def _feed_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``.FEED-NAME.lock`` beside an existing feed folder while the feed is read and
    replaced, so that two runs appending to one feed take turns instead of one losing the
    other's episodes; the lock file is removed when done (the kernel drops the lock if the
    process dies). A folder that does not exist yet is not created for it.

    :raises FeedError: another run held it for :data:`LOCK_WAIT_SECONDS`.
    """
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        yield
        return
    import filelock

    path = os.path.join(folder, f".{os.path.basename(out)}.lock")
    lock = filelock.FileLock(path, timeout=LOCK_WAIT_SECONDS, is_singleton=False)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise FeedError(f"--out {out} is being written by another aicp feed run (waited {LOCK_WAIT_SECONDS:g} s)",
                        hint=f"wait for it to end; a run killed meanwhile leaves {path}, which the next run reuses") from exc
    except OSError as exc:
        raise FeedError(f"cannot lock --out {out}: {exc.strerror or exc}") from exc
    try:
        yield
    finally:
        try:
            Path(path).unlink(missing_ok=True)
        finally:
            lock.release()


def _write_feed(lines: Iterable[Any], out: str | os.PathLike[str], channel: Channel, fields: Fields) -> FeedResult:
    """:func:`write_feed` once the feed is locked."""
    import orjson

    from .files import write_atomic

    lines = fold_shows(list(lines))
    existing = read_existing(out) if os.path.exists(out) and os.path.getsize(out) > 0 else None
    channel = _merge_channel(channel, existing.channel if existing else None)
    check_channel(channel, out)
    assert channel.title and channel.link and channel.base_url
    result = FeedResult()
    episodes: dict[str, Episode] = {}
    urls: dict[str, str] = {}
    for line in lines:
        where = f"{line.source} line {line.line}"
        if line.record is None:
            result.skipped.append((where, (line.error or {}).get("message", "not a record")))
            continue
        failed = line.record.get("error")
        if failed not in (None, False, "", {}):
            why = failed.get("message", "?") if isinstance(failed, dict) else failed
            result.skipped.append((where, f"the record failed upstream: {xml_text(why)}"))
            continue
        ep = episode(line.record, channel, fields, where)
        published = [(ep.url, ep.audio, ep.audio), *((url, path, path) for url, path, _ in ep.captions)]
        if ep.chapters:
            published.append((file_url(channel.base_url, _chapters_name(ep.audio)), ep.audio,
                              Path(_chapters_name(ep.audio))))
        for url, owner, shown in published:
            if urls.setdefault(url, str(owner.resolve())) != str(owner.resolve()):
                raise FeedError(f"{where}: {shown} would be published at {url}, the URL of another episode's file",
                                hint="every file is served under --base-url by its name: give the files distinct names")
        if ep.guid in episodes:
            raise FeedError(f"{where}: a second episode with GUID {ep.guid}",
                            hint="give each record its own id (or guid)")
        episodes[ep.guid] = ep

    fg = _build(channel, os.path.basename(out))
    old = {guid: (date, item) for guid, date, item in (existing.items if existing else [])}
    # an episode whose file is already in the feed under another GUID (its record's id or the
    # link changed) is that item again: it keeps the GUID podcast apps know it by
    by_url = {item.find("enclosure").get("url"): guid for guid, (_, item) in old.items()
              if item.find("enclosure") is not None}
    for ep in list(episodes.values()):
        known = by_url.get(ep.url)
        if ep.guid not in old and known is not None and known not in episodes:
            del episodes[ep.guid]
            ep.guid = known
            episodes[known] = ep
    entries: list[tuple[datetime, Any]] = []
    docs: list[tuple[Path, bytes]] = []
    for guid, (date, item) in old.items():
        if guid in episodes:
            result.replaced.append(guid)
            continue
        fe = fg.add_entry(order="append")
        fe.guid(guid, permalink=False)
        fe.title(item.findtext("title") or guid)
        fe.podcast_index.preserved = item
        entries.append((date, fe))
        result.kept.append(guid)
    for ep in episodes.values():
        if ep.guid not in old:
            result.added.append(ep.guid)
        fe = fg.add_entry(order="append")
        fe.guid(ep.guid, permalink=False)
        fe.title(ep.title)
        fe.description(ep.description)
        fe.pubDate(ep.date)
        fe.enclosure(ep.url, str(ep.length), ep.mime)
        fe.podcast.itunes_duration(duration_text(ep.seconds))
        if ep.chapters:
            name = _chapters_name(ep.audio)
            docs.append((Path(out).parent / name, orjson.dumps(
                chapters_document(ep.chapters, ep.title, channel.title), option=orjson.OPT_INDENT_2)))
            fe.podcast_index.chapters = {"url": file_url(channel.base_url, name), "type": CHAPTERS_TYPE}
        fe.podcast_index.transcripts = [{"url": url, "type": kind, "rel": "captions"} for url, _, kind in ep.captions]
        entries.append((ep.date, fe))
    # newest first, as podcast apps list episodes: feedgen writes entries in the order they are held
    for fe in list(fg.entry()):
        fg.remove_entry(fe)
    for _, fe in sorted(entries, key=lambda pair: pair[0], reverse=True):
        fg.add_entry(fe, order="append")
    data = fg.rss_str(pretty=True)
    for path, doc in docs:
        write_atomic(path, _writer(doc + b"\n"))
        result.chapters_files.append(str(path))
    write_atomic(out, _writer(data))
    return result


def _writer(data: bytes) -> Callable[[IO[bytes]], Any]:
    """The ``fill`` of :func:`~ai_content_pipeline.files.write_atomic` that writes ``data``."""
    return lambda handle: handle.write(data)


def _build(channel: Channel, feed_name: str) -> Any:
    """A feedgen ``FeedGenerator`` with the channel set and both podcast extensions loaded."""
    from feedgen.feed import FeedGenerator

    assert channel.base_url and channel.title and channel.link
    feed_ext, entry_ext = _ext_classes()
    fg = FeedGenerator()
    fg.load_extension("podcast")
    fg.register_extension("podcast_index", feed_ext, entry_ext)
    feed_url = file_url(channel.base_url, feed_name)
    fg.title(channel.title)
    fg.link(href=feed_url, rel="self")
    fg.link(href=channel.link, rel="alternate")  # feedgen's RSS <link> is the last link given
    fg.description(channel.description or channel.title)
    fg.generator("aicp feed (python-feedgen)")
    if channel.language:
        fg.language(channel.language)
    if channel.author:
        fg.podcast.itunes_author(channel.author)
    if channel.image:
        image = channel.image if "://" in channel.image else file_url(channel.base_url, channel.image)
        fg.podcast.itunes_image(image)
        fg.image(url=image, title=channel.title, link=channel.link)
    if channel.category:
        cat, _, sub = channel.category.partition("/")
        fg.podcast.itunes_category(cat.strip(), sub.strip() or None)
    fg.podcast.itunes_explicit("yes" if channel.explicit else "no")
    fg.podcast.itunes_summary(channel.description or channel.title)
    # the Podcasting 2.0 channel GUID: UUID v5 of the feed URL without its scheme and trailing slashes
    fg.podcast_index.guid = str(uuid.uuid5(PODCAST_GUID_NS, feed_url.split("://", 1)[1].rstrip("/")))
    return fg


def read_lines(sources: list[str], stdin: IO[bytes] | None = None) -> Iterable[Any]:
    """The :class:`~ai_content_pipeline.jsonl.InputLine` objects of ``sources`` (``-``: stdin)."""
    from .jsonl import read_records

    return read_records(sources or ["-"], stdin=stdin)


__all__ = ["CHAPTERS_TYPE", "PODCAST_NS", "Channel", "Episode", "FeedError", "FeedResult", "Fields",
           "chapters_document", "check_channel", "duration_text", "episode", "file_url", "fold_shows", "parse_date",
           "read_existing", "write_feed"]
