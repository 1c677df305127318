"""The mix stage: voiced records in, the same records with a ``mix`` object out.

Per input record: the voice file (``audio.path``, as the voice stage writes it, or
``audio.file``) and the song file (``--song-field``, default ``file``), either may be
missing (a station ID has only a voice). They are decoded (PyAV), loudness-matched at one
target and placed as the segue says (:func:`~ai_content_pipeline.mixing.plan_segue`:
``talk-up`` ducks the song under the voice, ending the voice before the vocals when the
record gives ``intro_seconds``; ``before`` plays the voice, then the song).

Without ``show`` each record's segue is its own file ``OUT_DIR/{id}.{format}``. With
``show`` every segue joins one file in record order (:class:`~ai_content_pipeline.mixing.ShowWriter`),
with a chapter ``Artist – Title`` per song; the records are written once the show is done.
The record gets::

    {"file": str, "seconds": float, "bytes": int, "type": MIME type, "sample_rate": Hz,
     "lufs": float, "true_peak_dbtp": float,
     "chapters": [{"start": s, "end": s, "title": str}], "segue": "talk-up" | "before" | null,
     "start"?: s, "end"?: s}

``start``/``end`` (with ``show``) place the record in the show file, which every record's
``mix`` names (one show: one distinct ``file``). A record that fails (an unreadable file,
nothing to mix) gets an ``error`` (stage ``mix``) and is left out of the show.

A record with no song that is a long-form or dialogue episode (``script.chunks`` sections,
``audio.sections``, ``audio.turns``) or gets music beds (``bed_in``/``bed_out``) is written as a podcast
episode (:meth:`MixStage._episode`): the beds ducked under the speech and faded
(:func:`~ai_content_pipeline.mixing.plan_episode`), a chapter per section, tags (title,
album, artist, date, cover), and the voice stage's captions (``audio.captions``) carried over,
shifted by the intro bed's lead, as ``mix.captions``.

With ``playlist`` the segues also go to an M3U playlist for live playout (Liquidsoap,
AzuraCast): the intro and the song of each record as entries with Liquidsoap ``annotate:``
cue and crossfade keys (:func:`~ai_content_pipeline.mixing.playlist_entries`), on the plan
the show file uses; ``mix.playlist`` names it. Without ``show`` a playlist run writes no
audio: each record's ``mix`` is then ``{"playlist", "segue", "seconds", "plan"}`` (``plan``:
``voice_start``, ``voice_seconds``, ``song_start``, ``song_seconds``, ``fade_in``, seconds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError, RecordError
from ..jsonl import InputLine
from ..mixing import (
    CROSSFADE_SECONDS,
    DUCK_ATTACK_SECONDS,
    DUCK_DEPTH_DB,
    DUCK_RELEASE_SECONDS,
    SHOW_LOUDNESS_LUFS,
    TRUE_PEAK_DBTP,
)
from ..records import get_path, record_id, slugify
from .common import Stage
from .kind import StageKind, StepConfig

#: Formats of the per-record segue files (without ``show``).
MIX_FORMATS = ("mp3", "m4a", "opus", "flac", "wav")


@dataclass
class MixOptions:
    """Options of a mix stage run.

    :ivar segue: ``talk-up`` (the intro over the song's start, the music ducked) or ``before``.
    :ivar song_field: dotted path of the song's audio file in a record.
    :ivar show: one show file joining every segue (its extension picks the format), or ``None``.
    :ivar playlist: an M3U playlist for live playout (``.m3u8``/``.m3u``), or ``None``.
    :ivar out_dir: folder of the per-record segue files (without ``show``).
    :ivar format: format of the per-record files.
    :ivar loudness: integrated loudness target (LUFS) of voice, music and the written file.
    :ivar true_peak: true-peak ceiling of the written file (dBTP).
    :ivar duck_depth: music level under the voice (dB, negative).
    :ivar duck_attack: :ivar duck_release: seconds the music takes to duck and to come back.
    :ivar crossfade: seconds the song fades in under the voice in a talk-up without ``intro_seconds``.
    :ivar title: :ivar artist: the show file's title and artist tags (an episode's title:
        the record's own when ``title`` is not set).
    :ivar album: the album tag (the show's or podcast's name). :ivar date: the date tag
        (an episode: the record's ``date`` when not set, else today).
    :ivar bed_in: :ivar bed_out: music beds of each episode (files), or ``None``.
    :ivar cover: a JPEG or PNG file embedded as the file's cover art.
    :ivar strict: stop at the first failed record. :ivar overwrite: replace existing files.
    """

    segue: Literal["talk-up", "before"] = "talk-up"
    song_field: str = "file"
    show: str | None = None
    playlist: str | None = None
    out_dir: str = "aicp-out/mix"
    format: str = "mp3"
    loudness: float = SHOW_LOUDNESS_LUFS
    true_peak: float = TRUE_PEAK_DBTP
    duck_depth: float = DUCK_DEPTH_DB
    duck_attack: float = DUCK_ATTACK_SECONDS
    duck_release: float = DUCK_RELEASE_SECONDS
    crossfade: float = CROSSFADE_SECONDS
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    date: str | None = None
    bed_in: str | None = None
    bed_out: str | None = None
    cover: str | None = None
    strict: bool = False
    overwrite: bool = False


def voice_file(record: dict[str, Any]) -> str | None:
    """The voice file of a voiced record: ``audio.path`` (the voice stage's), else ``audio.file``."""
    audio = record.get("audio")
    if isinstance(audio, dict):
        for key in ("path", "file"):
            if isinstance(audio.get(key), str) and audio[key].strip():
                return str(audio[key])
    return None


def song_file(record: dict[str, Any], field: str) -> str | None:
    """The song file ``field`` (dotted) names, or ``None``."""
    value = get_path(record, field)
    return value if isinstance(value, str) and value.strip() else None


def chapter_title(record: dict[str, Any]) -> str:
    """``Artist – Title`` of a record's song (what of the two it has; else its id)."""
    parts = [str(record[k]).strip() for k in ("artist", "title") if isinstance(record.get(k), str) and record[k].strip()]
    return " – ".join(parts) or record_id(record)


def intro_seconds(record: dict[str, Any]) -> float | None:
    """The song's instrumental start (``intro_seconds``), or ``None``.

    :raises InputError: it is there but not a number of seconds above 0.
    """
    value = record.get("intro_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"intro_seconds must be a number of seconds above 0, not {value!r}", stage="mix")
    return float(value)


def episode_sections(record: dict[str, Any]) -> list[dict[str, Any]]:
    """An episode's sections, in order: ``audio.sections`` (``[{"title", "start"}]``, seconds
    in the voice file) when the voice stage gives them, else the long-form plan's voiced
    sections (``script.chunks``: ``section`` as the title, ``words`` above 0; a section left
    out has none). ``[]`` without any."""
    given = get_path(record, "audio.sections")
    if isinstance(given, list) and given and all(isinstance(s, dict) and s.get("title") for s in given):
        return [{"title": str(s["title"]), "start": s.get("start")} for s in given]
    chunks = get_path(record, "script.chunks")
    if not isinstance(chunks, list):
        return []
    out = []
    for chunk in chunks:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("section"), str):
            continue
        words = chunk.get("words")
        if isinstance(words, int) and not isinstance(words, bool) and words > 0:
            out.append({"title": chunk["section"], "words": words})
    return out


def episode_title(record: dict[str, Any]) -> str:
    """An episode's title: ``title``, the long-form pack's ``script.pack.title``, ``topic``, else its id."""
    for path in ("title", "script.pack.title", "topic"):
        value = get_path(record, path)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return record_id(record)


def _record_date(record: dict[str, Any]) -> str:
    """The record's ``date`` (text), else today's date (``YYYY-MM-DD``, UTC)."""
    value = record.get("date")
    if isinstance(value, str) and value.strip():
        return value.strip()
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).date().isoformat()


class MixStage(Stage):
    """Mix voiced records into segues and (with ``show``) one show file; no backend.

    :param backend: unused (``None``). :param options: :class:`MixOptions`.
    :raises UsageError: an unknown show extension or format (at construction).
    """

    stage = "mix"
    persona_required = False

    def __init__(self, backend: Any, options: MixOptions | None = None, emitter: Any = None, ledger: Any = None) -> None:
        from ..errors import UsageError
        from ..mixing import DuckSettings, show_format

        options = options or MixOptions()
        if options.show is not None:
            show_format(options.show)
        if options.playlist is not None and Path(options.playlist).suffix.lower() not in (".m3u8", ".m3u"):
            raise UsageError(f"cannot write the playlist {Path(options.playlist).name!r}: not .m3u8 or .m3u",
                             hint="name the playlist FILE.m3u8")
        if (options.bed_in or options.bed_out) and (options.show or options.playlist):
            raise UsageError("music beds (--bed-in, --bed-out) are for episode files, not a show or playlist",
                             hint="leave out --show and --playlist: each episode record becomes its own file")
        for bed in (options.bed_in, options.bed_out):
            if bed is not None and not Path(bed).is_file():
                raise UsageError(f"the music bed {bed!r} is not a file", hint="give an audio file (MP3, FLAC, WAV...)")
        if options.show is None and options.playlist is None and options.format not in MIX_FORMATS:
            raise UsageError(f"unknown mix format {options.format!r}", hint=f"choose one of: {', '.join(MIX_FORMATS)}")
        if options.segue not in ("talk-up", "before"):
            raise UsageError(f"unknown segue {options.segue!r}", hint="choose talk-up or before")
        super().__init__(backend, options, emitter, ledger)
        self.options: MixOptions
        from ..mixing import _cover

        _cover(options.cover)  # an unreadable cover stops the run before any mixing
        self.duck = DuckSettings(options.duck_depth, options.duck_attack, options.duck_release)
        self._entries: list[Any] = []

    def planned_files(self, lines: Iterable[InputLine]) -> Iterator[tuple[str, str]]:
        """The show file and the playlist, or each record's segue file."""
        if self.options.playlist is not None:
            yield "playlist", self.options.playlist
        if self.options.show is not None:
            yield "show file", self.options.show
        if self.options.show is not None or self.options.playlist is not None:
            return
        for line in lines:
            if line.record is not None:
                yield "mix file", str(self._segue_path(line.record))

    def output_folders(self) -> list[str]:
        if self.options.show or self.options.playlist:
            return [str(Path(p).parent) for p in (self.options.show, self.options.playlist) if p]
        return [self.options.out_dir]

    def _segue_path(self, record: dict[str, Any]) -> Path:
        return Path(self.options.out_dir) / f"{slugify(record_id(record)) or 'record'}.{self.options.format}"

    def _plan(self, record: dict[str, Any], rate: int) -> tuple[Any, Any, Any]:
        """``(voice samples, song samples, plan)`` of one record (either samples may be ``None``);
        the record's playlist entries are kept for :meth:`_playlist_write`.

        :raises InputError: no voice and no song file; an unreadable file; a bad ``intro_seconds``.
        """
        from ..mixing import decode, plan_segue, playlist_entries

        voice_path, song_path = voice_file(record), song_file(record, self.options.song_field)
        if voice_path is None and song_path is None:
            raise InputError(f"nothing to mix: no audio.path and no {self.options.song_field}", stage="mix",
                             hint="pipe records from aicp-voice, or name the song with --song-field")
        post = intro_seconds(record)
        voice = decode(voice_path, rate) if voice_path else None
        song = decode(song_path, rate) if song_path else None
        plan = plan_segue(self.options.segue, len(voice) / rate if voice is not None else 0.0,
                          len(song) / rate if song is not None else 0.0, post, crossfade=self.options.crossfade)
        if self.options.playlist is not None:
            title = record.get("title") if isinstance(record.get("title"), str) else None
            artist = record.get("artist") if isinstance(record.get("artist"), str) else None
            self._entries.extend(playlist_entries(plan, voice_path, song_path, title=title or record_id(record),
                                                  artist=artist, duck=self.duck))
        return voice, song, plan

    def _render(self, record: dict[str, Any], rate: int) -> tuple[Any, str | None, str | None]:
        """``(blocks of samples, segue kind, chapter title)`` of one record (see :meth:`_plan`)."""
        from ..mixing import segue_blocks

        voice, song, plan = self._plan(record, rate)
        samples = segue_blocks(plan, voice, song, rate, self.options.loudness, self.duck)
        return samples, plan.kind, chapter_title(record) if song is not None else None

    def _playlist_write(self) -> str | None:
        """Write the playlist of the entries gathered so far (when ``playlist`` is set).

        :raises UsageError: it cannot be written.
        """
        from ..errors import UsageError
        from ..mixing import write_playlist

        if self.options.playlist is None:
            return None
        try:
            return write_playlist(self.options.playlist, self._entries)
        except OSError as exc:
            raise UsageError(f"cannot write the playlist {self.options.playlist}: {exc.strerror or exc}") from exc

    def _one_plan(self, index: int, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A playlist-only record: ``(record, its plan)`` (``None`` when it failed)."""
        rid = record_id(record)
        self.tracker.start(index, rid)
        try:
            _, _, plan = self._plan(record, 44_100)
        except RecordError as exc:
            return self._fail(index, rid, record, exc), None
        return record, {"segue": plan.kind, "seconds": round(plan.seconds, 3),
                        "plan": {"voice_start": round(plan.voice_start, 3), "voice_seconds": round(plan.voice_seconds, 3),
                                 "song_start": round(plan.song_start, 3), "song_seconds": round(plan.song_seconds, 3),
                                 "fade_in": round(plan.fade_in, 3)}}

    def _tags(self) -> Any:
        from ..mixing import ShowTags

        return ShowTags(title=self.options.title, artist=self.options.artist, album=self.options.album,
                        date=self.options.date, cover=self.options.cover)

    def _refuse(self, path: Path) -> None:
        from .common import refuse_overwrite

        if path.exists() and not self.options.overwrite:
            raise refuse_overwrite(path, "mix file")

    def _is_episode(self, record: dict[str, Any]) -> bool:
        """A record without a song that has sections or dialogue turns (or gets beds): an episode file."""
        if song_file(record, self.options.song_field) is not None or voice_file(record) is None:
            return False
        return bool(self.options.bed_in or self.options.bed_out or episode_sections(record)
                    or get_path(record, "audio.turns"))

    def _episode(self, record: dict[str, Any], path: Path) -> dict[str, Any]:
        """Write the episode of ``record`` to ``path``; its ``mix`` object (``segue`` ``None``,
        ``episode`` true, ``captions`` when carried over).

        :raises InputError: an unreadable voice, bed or captions file.
        """
        from ..mixing import (
            Chapter,
            ShowWriter,
            decode,
            episode_blocks,
            plan_episode,
            section_starts,
            shift_captions,
        )

        writer = ShowWriter(path, self.options.loudness, self.options.true_peak)
        try:
            rate = writer.rate
            voice_path = voice_file(record)
            assert voice_path is not None
            voice = decode(voice_path, rate)
            beds = [decode(b, rate) if b else None for b in (self.options.bed_in, self.options.bed_out)]
            plan = plan_episode(len(voice) / rate, *(len(b) / rate if b is not None else 0.0 for b in beds))
            writer.add(episode_blocks(plan, voice, beds[0], beds[1], rate, self.options.loudness, self.duck))
            sections = episode_sections(record)
            if sections:
                given = [s.get("start") for s in sections]
                numbers = [float(g) for g in given if isinstance(g, (int, float)) and not isinstance(g, bool)]
                if len(numbers) == len(given):
                    starts = numbers
                else:
                    starts = section_starts(voice, rate, [int(s.get("words") or 0) for s in sections])
                starts = [plan.voice_start + t if i else 0.0 for i, t in enumerate(starts)]
                ends = [*starts[1:], writer.seconds]
                writer.chapters = [Chapter(a, b, str(s["title"])) for a, b, s in zip(starts, ends, sections, strict=True)]
            tags = self._tags()
            tags.title = self.options.title or episode_title(record)
            tags.date = self.options.date or _record_date(record)
            mix = writer.finish(tags)
        finally:
            writer.close()
        mix.update(segue=None, episode=True)
        captions = get_path(record, "audio.captions")
        if isinstance(captions, str) and captions.strip():
            source = Path(captions)
            if not source.is_file():
                raise InputError(f"the captions file {captions!r} (audio.captions) does not exist", stage="mix")
            target = path.with_suffix(source.suffix.lower())
            try:
                mix["captions"] = shift_captions(source, target, plan.voice_start)
            except OSError as exc:
                raise InputError(f"cannot write the captions {str(target)!r}: {exc.strerror or exc}", stage="mix") from exc
        return mix

    def _one_file(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        from ..mixing import ShowWriter

        rid = record_id(record)
        self.tracker.start(index, rid)
        path = self._segue_path(record)
        kind = None
        try:
            self._refuse(path)
            if self._is_episode(record):
                mix = self._episode(record, path)
            else:
                writer = ShowWriter(path, self.options.loudness, self.options.true_peak)
                try:
                    samples, kind, chapter = self._render(record, writer.rate)
                    writer.add(samples, chapter)
                    mix = writer.finish(self._tags())
                finally:
                    writer.close()
        except RecordError as exc:
            return self._fail(index, rid, record, exc)
        mix["segue"] = kind
        with self.tracker.lock:
            self.stats.audio_seconds += mix["seconds"]
        self.tracker.complete(index, rid, audio_seconds=mix["seconds"], path=mix["file"])
        return {**record, "mix": mix}

    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Generator[dict[str, Any], None, None]:
        """Yield one output record per input line, in input order (with ``show``: all of them
        once the show file is written)."""
        if total is not None:
            self.stats.total = total
        with self._backend_run():
            if self.options.show is None and self.options.playlist is not None:
                yield from self._playlist_only(lines)
                return
            if self.options.show is None:
                for index, line in enumerate(lines):
                    yield self._each(index, line, functools.partial(self._one_file, index))
                return
            yield from self._show(lines)

    def _playlist_only(self, lines: Iterable[InputLine]) -> Iterator[dict[str, Any]]:
        assert self.options.playlist is not None
        self._refuse(Path(self.options.playlist))
        held: list[tuple[int, dict[str, Any], dict[str, Any] | None]] = []
        for index, line in enumerate(lines):
            planned: dict[str, Any] = {}

            def work(record: dict[str, Any], index: int = index, planned: dict[str, Any] = planned) -> dict[str, Any]:
                out, plan = self._one_plan(index, record)
                if plan is not None:
                    planned.update(plan)
                return out

            out = self._each(index, line, work)
            held.append((index, out, planned or None))
        path = self._playlist_write()
        for index, record, plan in held:
            if plan is None:
                yield record
                continue
            with self.tracker.lock:
                self.stats.audio_seconds += plan["seconds"]
            self.tracker.complete(index, record_id(record), audio_seconds=plan["seconds"], path=path)
            yield {**record, "mix": {"playlist": path, **plan}}

    def _show(self, lines: Iterable[InputLine]) -> Iterator[dict[str, Any]]:
        from ..mixing import ShowWriter

        assert self.options.show is not None
        self._refuse(Path(self.options.show))
        if self.options.playlist is not None:
            self._refuse(Path(self.options.playlist))
        writer = ShowWriter(self.options.show, self.options.loudness, self.options.true_peak, processes=True)
        held: list[tuple[int, dict[str, Any], dict[str, Any] | None]] = []
        try:
            for index, line in enumerate(lines):
                placed: dict[str, Any] = {}

                def work(record: dict[str, Any], index: int = index, placed: dict[str, Any] = placed) -> dict[str, Any]:
                    rid = record_id(record)
                    self.tracker.start(index, rid)
                    try:
                        samples, kind, chapter = self._render(record, writer.rate)
                    except RecordError as exc:
                        return self._fail(index, rid, record, exc)
                    start, end = writer.add(samples, chapter)
                    placed.update(segue=kind, start=round(start, 3), end=round(end, 3))
                    return record

                out = self._each(index, line, work)
                held.append((index, out, placed or None))
            mix = writer.finish(self._tags())
        finally:
            writer.close()
        playlist = self._playlist_write()
        if playlist is not None:
            mix["playlist"] = playlist
        for index, record, where in held:
            if where is None:
                yield record
                continue
            placed = where
            rid = record_id(record)
            with self.tracker.lock:
                self.stats.audio_seconds += placed["end"] - placed["start"]
            self.tracker.complete(index, rid, audio_seconds=round(placed["end"] - placed["start"], 3), path=mix["file"])
            yield {**record, "mix": {**mix, **placed}}


class MixStepConfig(StepConfig):
    """A ``mix`` step of a chain file: voiced records into segues or a show (see ``aicp mix``)."""

    type: Literal["mix"]


#: The ``mix`` stage kind: segue files in ``output_dir/mix`` (``out_dir``), or one show file.
MIX = StageKind(
    name="mix", stage=MixStage, options=MixOptions, step_model=MixStepConfig, backend=None,
    record_field="mix", dirs={"out_dir": ("mix", False)},
    events="`audio_seconds`, `path`", command="ai_content_pipeline.cli.mix:mix_command",
)

__all__ = ["MIX", "MIX_FORMATS", "MixOptions", "MixStage", "MixStepConfig", "chapter_title", "episode_sections",
           "episode_title", "intro_seconds",
           "song_file", "voice_file"]
