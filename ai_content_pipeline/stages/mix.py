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
    :ivar out_dir: folder of the per-record segue files (without ``show``).
    :ivar format: format of the per-record files.
    :ivar loudness: integrated loudness target (LUFS) of voice, music and the written file.
    :ivar true_peak: true-peak ceiling of the written file (dBTP).
    :ivar duck_depth: music level under the voice (dB, negative).
    :ivar duck_attack: :ivar duck_release: seconds the music takes to duck and to come back.
    :ivar crossfade: seconds the song fades in under the voice in a talk-up without ``intro_seconds``.
    :ivar title: :ivar artist: the show file's title and artist tags.
    :ivar cover: a JPEG or PNG file embedded as the file's cover art.
    :ivar strict: stop at the first failed record. :ivar overwrite: replace existing files.
    """

    segue: Literal["talk-up", "before"] = "talk-up"
    song_field: str = "file"
    show: str | None = None
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
        elif options.format not in MIX_FORMATS:
            raise UsageError(f"unknown mix format {options.format!r}", hint=f"choose one of: {', '.join(MIX_FORMATS)}")
        if options.segue not in ("talk-up", "before"):
            raise UsageError(f"unknown segue {options.segue!r}", hint="choose talk-up or before")
        super().__init__(backend, options, emitter, ledger)
        self.options: MixOptions
        from ..mixing import _cover

        _cover(options.cover)  # an unreadable cover stops the run before any mixing
        self.duck = DuckSettings(options.duck_depth, options.duck_attack, options.duck_release)

    def planned_files(self, lines: Iterable[InputLine]) -> Iterator[tuple[str, str]]:
        """The show file, or each record's segue file."""
        if self.options.show is not None:
            yield "show file", self.options.show
            return
        for line in lines:
            if line.record is not None:
                yield "mix file", str(self._segue_path(line.record))

    def output_folders(self) -> list[str]:
        return [str(Path(self.options.show).parent) if self.options.show else self.options.out_dir]

    def _segue_path(self, record: dict[str, Any]) -> Path:
        return Path(self.options.out_dir) / f"{slugify(record_id(record)) or 'record'}.{self.options.format}"

    def _render(self, record: dict[str, Any], rate: int) -> tuple[Any, str | None, str | None]:
        """``(blocks of samples, segue kind, chapter title)`` of one record.

        :raises InputError: no voice and no song file; an unreadable file; a bad ``intro_seconds``.
        """
        from ..mixing import decode, plan_segue, segue_blocks

        voice_path, song_path = voice_file(record), song_file(record, self.options.song_field)
        if voice_path is None and song_path is None:
            raise InputError(f"nothing to mix: no audio.path and no {self.options.song_field}", stage="mix",
                             hint="pipe records from aicp-voice, or name the song with --song-field")
        post = intro_seconds(record)
        voice = decode(voice_path, rate) if voice_path else None
        song = decode(song_path, rate) if song_path else None
        plan = plan_segue(self.options.segue, len(voice) / rate if voice is not None else 0.0,
                          len(song) / rate if song is not None else 0.0, post, crossfade=self.options.crossfade)
        samples = segue_blocks(plan, voice, song, rate, self.options.loudness, self.duck)
        return samples, plan.kind, chapter_title(record) if song is not None else None

    def _tags(self) -> Any:
        from ..mixing import ShowTags

        return ShowTags(title=self.options.title, artist=self.options.artist, cover=self.options.cover)

    def _refuse(self, path: Path) -> None:
        from .common import refuse_overwrite

        if path.exists() and not self.options.overwrite:
            raise refuse_overwrite(path, "mix file")

    def _one_file(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        from ..mixing import ShowWriter

        rid = record_id(record)
        self.tracker.start(index, rid)
        path = self._segue_path(record)
        try:
            self._refuse(path)
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
            if self.options.show is None:
                for index, line in enumerate(lines):
                    yield self._each(index, line, functools.partial(self._one_file, index))
                return
            yield from self._show(lines)

    def _show(self, lines: Iterable[InputLine]) -> Iterator[dict[str, Any]]:
        from ..mixing import ShowWriter

        assert self.options.show is not None
        self._refuse(Path(self.options.show))
        writer = ShowWriter(self.options.show, self.options.loudness, self.options.true_peak)
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

__all__ = ["MIX", "MIX_FORMATS", "MixOptions", "MixStage", "MixStepConfig", "chapter_title", "intro_seconds",
           "song_file", "voice_file"]
