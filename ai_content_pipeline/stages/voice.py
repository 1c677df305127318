"""The voice stage: records in, the same records with an ``audio`` object out.

Per input record: take the text (``--text-field``, else ``script.text``, else
``text``), pick the persona (the record's ``persona``/``dj``, else
``script.persona``, else the stage default; for the name in ``script.persona`` the
settings in ``script.persona_voice`` unless ``-p FILE`` loaded that name) and so the
backend's voice and seed,
compute the request key, serve it from the checkpoint ledger on ``--resume``
(only when the file still exists with the recorded size) or synthesize it:
split into sentence chunks of at most ``backend.max_chunk_chars`` characters,
synthesize each (the pronunciation lexicon applied: :mod:`ai_content_pipeline.lexicon`), join with a short pause, resample, normalize loudness, check
and write the file atomically (:mod:`ai_content_pipeline.audio`). The record
gets::

    {"path": str, "format": str, "sample_rate": int, "channels": 1, "seconds": float,
     "backend": str, "voice": str, "chunks": int, "rtf": float,
     "loudness_lufs": float | None, "key": str, "size": int,
     "turns"?: [{"speaker": str, "start": float, "end": float}], "voices"?: {speaker: {"backend", "voice"}},
     "captions"?: str,
     "checks"?: {"passed": bool, "failed": [str], "details"?: {name: ...}}}

A record with ``script.turns`` (a dialogue, when ``script.text`` is voiced) is voiced turn by
turn, each with its speaker's persona (``script.hosts_voice`` carries their settings as
``script.persona_voice`` does for one), and joined (:mod:`ai_content_pipeline.turns`): ``turns``
gives each turn's span in seconds of the file, ``voices`` each host's backend and voice.
``captions`` (``--captions vtt|srt``) is the captions file written beside the audio.

``rtf`` is synthesis seconds / audio seconds. ``checks`` holds the audio's checks, merged
(:func:`~ai_content_pipeline.airtime.add_check`): ``fits`` when the take has a time limit
(``script.max_seconds`` when the voiced text is ``script.text``, the record's
``intro_seconds``: the smaller one), failed when the file is longer (detail
``{"seconds", "max_seconds"}``). A failed audio check counts as a failed check; with
``require_checks`` it is the record's ``error`` and the new file is removed.

Failures that concern one record become its ``error`` object (stage ``voice``); no file is
left for them.

With a *barrier* (:func:`run_voice`, the default) the whole input is spooled to
a temporary file before the model is loaded, so a TTS model never shares the
GPU with the LLM still writing scripts upstream.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..airtime import add_check, fits_detail, record_seconds, time_limit
from ..audio import (
    PEAK_CEILING_DBFS,
    as_mono_float32,
    check_audio,
    chunk_text,
    join_chunks,
    normalize_loudness_measured,
    output_format,
    resample,
    write_audio_atomic,
)
from ..backends.base import TTSBackend, Voice
from ..errors import AicpError, ChecksFailed, InputError, RecordError, SynthesisError
from ..events import Emitter
from ..files import FolderLock, NameClaims, Protected
from ..jsonl import InputLine
from ..ledger import Ledger, request_key
from ..lexicon import Lexicon, RunLexicon
from ..limits import AudioFormat, Bitrate, Loudness, Retries, SampleRate, Seed
from ..records import get_path, record_id, slugify, word_count
from ..templates import Persona, record_voice_file, user_dir
from ..turns import (
    CaptionFormat,
    balance_hosts,
    dialogue_key,
    dialogue_turns,
    join_turns,
    shared_voice,
    speakers,
    turn_gaps,
    turn_labels,
    write_captions,
)
from .common import Stage, refuse_overwrite, with_retries
from .entries import AudioEntry, fits
from .kind import BackendStepConfig, StageKind


@dataclass
class VoiceOptions:
    """Options of a voice stage run.

    :ivar out_dir: folder of the audio files (created on first write).
    :ivar format: ``wav``, ``flac``, ``ogg`` or ``mp3``.
    :ivar sample_rate: resample to this rate in Hz (``None``: the backend's rate).
    :ivar bitrate: mp3 bit rate in kbit/s, constant (``None``: the encoder's default, variable).
    :ivar loudness: integrated loudness target in LUFS; ``None`` keeps the raw level.
    :ivar text_field: dotted path of the text (``None``: ``script.text``, then ``text``).
    :ivar persona: persona for records that name none (``None``: the backend's default voice).
    :ivar seed: seed for every record (``None``: each persona's fixed seed).
    :ivar retries: extra attempts for transient backend errors.
    :ivar resume: serve requests from the ledger when their file still exists unchanged.
    :ivar strict: stop at the first failed record.
    :ivar require_checks: a script whose ``script.checks.passed`` is false is not voiced: its
        record gets an ``error`` (:class:`~ai_content_pipeline.errors.ChecksFailed`). Without
        it such a script is voiced with a warning naming the failed checks. The same for audio
        that fails its checks (``fits``): an ``error``, and the file it wrote is removed.
    :ivar overwrite: replace audio files an earlier run wrote in ``out_dir``; without it (and
        without ``resume``) such a file stops the run (exit 2) before it is replaced.
    :ivar lexicon: pronunciation lexicon files (YAML; one file or several), over the user
        folder's and the persona's entries, later files winning (:mod:`ai_content_pipeline.lexicon`).
    :ivar verify: the listening check (:mod:`ai_content_pipeline.listen`): transcribe each file
        offline and add ``recall``, ``passed`` and ``failed`` to ``audio.checks``. A file that
        fails it is kept with a warning, or with ``require_checks`` removed and its record
        gets an ``error`` (:class:`~ai_content_pipeline.errors.ChecksFailed`).
    :ivar captions: ``vtt`` or ``srt``: write captions beside each audio file (same stem), one
        cue per dialogue turn (:mod:`ai_content_pipeline.turns`), or one for a single speaker's
        take; the path goes in ``audio.captions``. ``None``: no captions.

    Numeric fields and ``format`` carry the ranges and choices of
    :mod:`ai_content_pipeline.limits` (the same as the flags').
    """

    out_dir: str = "aicp-out/audio"
    format: AudioFormat = "wav"
    sample_rate: SampleRate | None = None
    bitrate: Bitrate | None = None
    loudness: Loudness | None = -16.0
    text_field: str | None = None
    persona: str | None = None
    seed: Seed | None = None
    retries: Retries = 0
    resume: bool = False
    strict: bool = False
    require_checks: bool = False
    overwrite: bool = False
    lexicon: tuple[str, ...] | str = ()
    verify: bool = False
    captions: CaptionFormat | None = None


def failed_checks(record: dict[str, Any], text_field: str | None = None) -> list[str] | None:
    """The checks the script to be voiced failed (``script.checks.failed``; ``[]`` if it
    names none), or ``None`` when it passed them, was never checked, or the text voiced is
    not ``script.text`` (``--text-field`` names another field, or the record has only ``text``).
    """
    checks = _voiced_checks(record, text_field)
    if checks is None or checks.get("passed") is not False:
        return None
    failed = checks.get("failed")
    if isinstance(failed, str):
        return [failed]
    return [str(f) for f in failed] if isinstance(failed, list) else []


def _voiced_checks(record: dict[str, Any], text_field: str | None) -> dict[str, Any] | None:
    """``script.checks`` when the text voiced is ``script.text`` (``text_field`` unset or empty:
    :func:`record_text` reads ``script.text`` first) and both are there; else ``None``."""
    if text_field and text_field != "script.text":
        return None
    script = record.get("script")
    if not isinstance(script, dict) or not isinstance(script.get("text"), str) or not script["text"].strip():
        return None
    checks = script.get("checks")
    return checks if isinstance(checks, dict) else None


def voice_time_limit(record: dict[str, Any], text_field: str | None = None) -> float | None:
    """The seconds the voiced take must fit: ``script.max_seconds`` (when the text voiced is
    ``script.text``: see :func:`_voiced_checks`) and the record's ``intro_seconds``, the
    smaller one; ``None`` when neither is there.

    :raises InputError: either is not a number of seconds above 0.
    """
    carried = None
    script = record.get("script")
    if (not text_field or text_field == "script.text") and isinstance(script, dict):
        carried = record_seconds(script, "max_seconds", stage="voice", label="script.max_seconds")
    return time_limit(record, carried, stage="voice")


#: Failed check names a message lists before "and N more".
SHOWN_CHECKS = 5


def _check_names(failed: list[str]) -> str:
    """``mentions, no_echo``; at most :data:`SHOWN_CHECKS` names, then ``… and N more``."""
    if not failed:
        return "see script.checks"
    shown = ", ".join(failed[:SHOWN_CHECKS])
    return shown if len(failed) <= SHOWN_CHECKS else f"{shown} and {len(failed) - SHOWN_CHECKS} more"


def record_text(record: dict[str, Any], text_field: str | None = None) -> str:
    """The text to speak: ``text_field`` (dotted), else ``script.text``, else ``text``.

    :raises InputError: no non-blank string there (stage ``voice``).
    """
    fields = [text_field] if text_field else ["script.text", "text"]
    for field in fields:
        value = get_path(record, field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise InputError(f"no text to voice ({' and '.join(fields)} missing)", stage="voice",
                     hint="pipe records from aicp-script, or name the field with --text-field a.b.c")


#: Record fields that name the voice's persona, first found wins (see
#: :meth:`~ai_content_pipeline.templates.Personas.for_record`).
PERSONA_FIELDS = ("persona", "dj", "script.persona")
#: The persona's voice settings the script stage wrote, used for the persona ``script.persona`` names.
CARRIED_PERSONA = ("script.persona", "script.persona_voice")


def audio_file_stem(rid: str, persona: str | None, take: int | None) -> str:
    """``{id}_{persona}_{take}`` (parts left out when unknown); no path separators."""
    parts = [rid]
    if persona:
        parts.append(slugify(persona) or "persona")
    if take is not None:
        parts.append(str(take))
    return "_".join(parts)


def audio_file_name(rid: str, persona: str | None, take: int | None, ext: str) -> str:
    """``{id}_{persona}_{take}.{ext}``: the name a record's file gets unless an earlier
    record of the run holds it (then :class:`~ai_content_pipeline.files.NameClaims` adds ``-2``…)."""
    return f"{audio_file_stem(rid, persona, take)}.{ext}"


def record_take(record: dict[str, Any]) -> int | None:
    """The take of a script record (``script.take``), or ``None`` when it has none."""
    take = get_path(record, "script.take")
    return take if isinstance(take, int) and not isinstance(take, bool) else None


def record_audio_stem(record: dict[str, Any], persona: str | None) -> str:
    """The stem the voice stage names ``record``'s file by (before
    :class:`~ai_content_pipeline.files.NameClaims`): ``{id}_{persona}_{take}`` from the record's
    id (:func:`~ai_content_pipeline.records.record_id`), the name of the persona that voices it
    and :func:`record_take`."""
    return audio_file_stem(record_id(record), persona, record_take(record))


def remove_stale_parts(folder: Path) -> int:
    """Delete the temporary ``.NAME.<8 hex digits>.part`` files a killed run left in ``folder``
    (see :func:`~ai_content_pipeline.audio.write_audio_atomic`); call it only while holding
    the folder's :class:`~ai_content_pipeline.files.FolderLock`. Returns how many were removed."""
    removed = 0
    if folder.is_dir():
        for stale in folder.glob(".*.part"):
            if _TEMPORARY.fullmatch(stale.name) and stale.is_file() and not stale.is_symlink():
                stale.unlink(missing_ok=True)
                removed += 1
    return removed


#: The temporary names :func:`~ai_content_pipeline.audio.write_audio_atomic` gives files.
_TEMPORARY = re.compile(r"\..+\.[0-9a-z_]{8}\.part")


class VoiceStage(Stage):
    """Voice records with one TTS backend.

    :param backend: a :class:`~ai_content_pipeline.backends.base.TTSBackend`, loaded
        through :class:`BackendSession` on the first synthesis and unloaded when
        :meth:`run` ends.
    :param options: :class:`VoiceOptions`. :param emitter: record/progress/model events.
    :param ledger: checkpoint ledger; every written file is appended to it.
    :raises UsageError: unknown format or default persona (at construction).
    """

    stage = "voice"
    persona_required = False

    def __init__(self, backend: TTSBackend, options: VoiceOptions | None = None,
                 emitter: Emitter | None = None, ledger: Ledger | None = None) -> None:
        options = options or VoiceOptions()
        self.options: VoiceOptions
        self.ext = output_format(options.format)[2]  # unknown format: usage error first
        super().__init__(backend, options, emitter, ledger)
        self.names = NameClaims()
        #: Files no audio file may replace (inputs, ledgers, stdout); callers add to it.
        self.protected = Protected()
        if ledger is not None:
            self.protected.add(ledger.path)
        #: where each audio file is logged (``--log``; :mod:`ai_content_pipeline.takelog`)
        self.takelog: Any = None
        #: the pronunciation lexicon (files read now: a bad one stops the run before the model loads)
        self.lexicon = RunLexicon(options.lexicon, user_dir() / "lexicon",
                                  warn=lambda text: self.emitter.message(text, "warning"))
        #: the listening check's :class:`~ai_content_pipeline.listen.Recogniser` (``verify``;
        #: PocketSphinx, built on first use, when none is set)
        self.recogniser: Any = None

    def load(self) -> None:
        """Load the backend now (``--no-barrier``) instead of on the first synthesis."""
        self.session.ensure()

    # -- one record ------------------------------------------------------------------
    def request_key(self, text: str, voice: Voice, file: str, lexicon: Lexicon | None = None,
                    dialogue: dict[str, Any] | None = None) -> str:
        """Ledger key: text, backend, model, voice settings, seed, format, sample rate,
        loudness target, the file name (two records with the same text get two files) and the
        lexicon entries that change how the text is said (a changed entry voices it again);
        for a dialogue also ``dialogue`` (its turns, each host's voice and lexicon entries,
        the gaps: :func:`~ai_content_pipeline.turns.dialogue_key`)."""
        o = self.options
        extra: dict[str, Any] = {"bitrate": o.bitrate} if o.bitrate is not None and o.format == "mp3" else {}
        used = lexicon.used(text, self.backend.phonemes_for(voice)) if lexicon else []
        if used:
            extra["lexicon"] = used
        if dialogue is not None:
            extra["dialogue"] = dialogue
        return request_key(stage="voice", text=text, backend=voice.backend or self.backend.name,
                           model=voice.model or self.backend.model,
                           voice=voice.name, settings=voice.settings, seed=voice.seed,
                           format=o.format, sample_rate=o.sample_rate, loudness=o.loudness, file=file, **extra)

    def synthesize(self, text: str, voice: Voice, path: Path, key: str,
                   lexicon: Lexicon | None = None) -> dict[str, Any]:
        """Chunk, synthesize (``lexicon`` applied), join, resample, normalize and write ``text``;
        the ``audio`` object.

        :raises SynthesisError: empty/silent/implausible audio or an unwritable file.
        """
        chunks = chunk_text(text, self.backend.chunk_chars(voice))
        if not chunks:
            raise SynthesisError("the text has nothing to speak", stage="voice")
        t0 = time.perf_counter()
        parts = [as_mono_float32(self.lexicon.speak(self.backend, chunk, voice, lexicon)) for chunk in chunks]
        synth_seconds = time.perf_counter() - t0
        rate = self.backend.rate_for(voice)
        return self._write(join_chunks(parts, rate), rate, word_count(text), voice, path, key,
                           len(chunks), synth_seconds)

    def synthesize_turns(self, turns: list[dict[str, str]], voices: dict[str, Voice],
                         lexicons: dict[str, Lexicon | None], gaps: list[float], path: Path,
                         key: str) -> dict[str, Any]:
        """Speak each turn with its speaker's voice (``voices``, ``lexicons``: by persona name),
        bring each host to the loudness target (:func:`~ai_content_pipeline.turns.balance_hosts`),
        join them with ``gaps`` seconds of silence (:func:`~ai_content_pipeline.turns.join_turns`,
        each turn at the highest of the voices' rates), normalize the whole and write it; the
        ``audio`` object, with ``turns`` (``[{"speaker", "start", "end"}]``, seconds) and
        ``voices`` (``{speaker: {"backend", "voice"}}``).

        :raises SynthesisError: a turn with nothing to speak, silent audio, an unwritable file.
        """
        split: list[list[str]] = []
        for n, turn in enumerate(turns, start=1):  # asked first: auto loads each backend here, untimed
            split.append(chunk_text(turn["text"], self.backend.chunk_chars(voices[turn["speaker"]])))
            if not split[-1]:
                raise SynthesisError(f"turn {n} ({turn['speaker']}) has nothing to speak", stage="voice")
        t0 = time.perf_counter()
        spoken: list[tuple[Any, int]] = []
        for turn, pieces in zip(turns, split, strict=True):
            voice = voices[turn["speaker"]]
            parts = [as_mono_float32(self.lexicon.speak(self.backend, p, voice, lexicons[turn["speaker"]]))
                     for p in pieces]
            rate = self.backend.rate_for(voice)
            spoken.append((join_chunks(parts, rate), rate))
        chunks = sum(len(pieces) for pieces in split)
        synth_seconds = time.perf_counter() - t0
        rate = max(r for _, r in spoken)
        parts = [resample(s, r, rate) for s, r in spoken]
        if self.options.loudness is not None:
            parts = balance_hosts(parts, [t["speaker"] for t in turns], rate, self.options.loudness)
        samples, spans = join_turns(parts, rate, gaps)
        opener = voices[turns[0]["speaker"]]
        audio = self._write(samples, rate, sum(word_count(t["text"]) for t in turns), opener, path, key,
                            chunks, synth_seconds)
        audio["turns"] = [{"speaker": t["speaker"], "start": a, "end": b} for t, (a, b) in zip(turns, spans, strict=True)]
        audio["voices"] = {name: {"backend": v.backend or self.backend.name, "voice": v.name}
                           for name, v in voices.items()}
        return audio

    def _write(self, samples: Any, rate: int, words: int, voice: Voice, path: Path, key: str,
               chunks: int, synth_seconds: float) -> dict[str, Any]:
        """Check, resample, normalize and write joined ``samples`` (``rate`` Hz); the ``audio`` object."""
        check_audio(samples, rate, None)  # silent raw output must never be amplified
        if self.options.sample_rate and self.options.sample_rate != rate:
            samples, rate = resample(samples, rate, self.options.sample_rate), self.options.sample_rate
        measured = None
        if self.options.loudness is not None:
            samples, measured = normalize_loudness_measured(samples, rate, self.options.loudness)
        info = write_audio_atomic(path, samples, rate, format=self.options.format, words=words,
                                  loudness_lufs=measured, bitrate=self.options.bitrate,
                                  peak_ceiling_dbfs=None if self.options.loudness is None else PEAK_CEILING_DBFS)
        return {
            "path": info.path, "format": info.format, "sample_rate": info.sample_rate,
            "channels": info.channels, "seconds": info.seconds, "backend": voice.backend or self.backend.name,
            "voice": voice.name, "chunks": chunks,
            "rtf": round(synth_seconds / info.seconds, 4) if info.seconds else None,
            "loudness_lufs": info.loudness_lufs, "key": key, "size": info.size,
        }

    def _reusable(self, key: str, path: Path) -> dict[str, Any] | None:
        if not (self.options.resume and self.ledger is not None):
            return None
        value = self.ledger.get(key)
        if value is None or not fits(AudioEntry, value):
            return None  # not an audio entry (hand-edited, another tool's): voice it again
        if os.path.abspath(value["path"]) != os.path.abspath(path):
            return None
        try:
            size = os.path.getsize(path)
        except OSError:
            return None
        return value if size == value["size"] else None

    def _persona(self, record: dict[str, Any]) -> tuple[str, Persona | None]:
        """The text and persona of ``record``.

        :raises AicpError: no text, an unknown persona, a persona that needs a voice file.
        """
        text = record_text(record, self.options.text_field)
        persona: Persona | None = self.personas.for_record(record, PERSONA_FIELDS, carried=CARRIED_PERSONA)
        self._speakable(persona, "script.persona_voice")
        return text, persona

    def _speakable(self, persona: Persona | None, field: str) -> None:
        """:raises InputError: ``persona``'s voice is a file a record cannot choose (``field``)."""
        router = getattr(self.backend, "backend_for", None)  # auto: each persona its own backend
        speaker = router(persona) if router is not None else self.backend
        needs = record_voice_file(persona, speaker.name)
        if needs is not None and not speaker.explicit_voice:
            assert persona is not None
            raise InputError(
                f"persona '{persona.name}' speaks with a file ({needs}), and a record cannot "
                "choose files", field=field,
                hint=f"give the persona file: aicp-voice -p PATH/{persona.name}.yaml (or --voice FILE)")

    def _hosts(self, record: dict[str, Any], turns: list[dict[str, str]]) -> dict[str, Persona]:
        """The persona of each speaker of ``turns``, rebuilt as :meth:`_persona` rebuilds
        ``script.persona``: a ``-p FILE`` persona of that name, else the settings
        ``script.hosts_voice`` carries for it, else the user folder's or a built-in persona.

        :raises InputError: ``script.hosts_voice`` is not an object, a speaker names no persona,
            its carried settings are invalid, or its voice is a file.
        """
        carried = get_path(record, "script.hosts_voice")
        if carried is not None and not isinstance(carried, dict):
            raise InputError("field 'script.hosts_voice' must be an object {host: voice settings}",
                             field="script.hosts_voice")
        hosts: dict[str, Persona] = {}
        for name in speakers(turns):
            view: dict[str, Any] = {"speaker": name}
            if carried and name in carried:
                view["voice"] = carried[name]
            try:
                persona = self.personas.for_record(view, ("speaker",), carried=("speaker", "voice"))
            except InputError as exc:
                message = exc.message.replace("field 'speaker'", "script.turns's speaker").replace(
                    "'voice'", f"'script.hosts_voice.{name}'")
                raise InputError(f"host '{name}': {message}", hint=exc.hint, field="script.turns") from exc
            assert persona is not None
            self._speakable(persona, "script.hosts_voice")
            hosts[name] = persona
        return hosts

    def _captions_path(self, path: Path) -> Path | None:
        """The captions file beside the audio file ``path`` (``captions``), else ``None``."""
        return path.with_suffix(f".{self.options.captions}") if self.options.captions else None

    def _write_captions(self, record: dict[str, Any], path: Path, audio: dict[str, Any], text: str,
                        persona: Persona | None,
                        turns: list[dict[str, str]] | None, hosts: dict[str, Persona]) -> dict[str, Any]:
        """``audio`` with ``captions`` (the file written beside it), when ``captions`` is set: a
        cue per turn labelled as ``script.text`` labels it (else the host's display name), or one
        cue of ``text`` for a one-voice take.

        :raises SynthesisError: the captions file cannot be written.
        """
        target = self._captions_path(path)
        if target is None:
            return audio

        def label(p: Persona | None) -> str | None:
            if p is None:
                return None
            if p.display_name and p.display_name != p.name:
                return p.display_name
            try:  # rebuilt from carried settings, which hold no display name: the named persona's
                return self.personas.named(p.name).display_name or p.name
            except AicpError:
                return p.name

        spans = audio.get("turns")
        cues: list[tuple[str | None, float, float, str]]
        if turns is not None and isinstance(spans, list) and len(spans) == len(turns):
            labels = turn_labels(get_path(record, "script.text"), turns)
            cues = [(labels.get(t["speaker"]) or label(hosts.get(t["speaker"])) or t["speaker"],
                     span["start"], span["end"], t["text"])
                    for t, span in zip(turns, spans, strict=True)]
        else:
            cues = [(label(persona), 0.0, float(audio["seconds"]), text)]
        try:
            write_captions(str(target), cues, self.options.captions)  # type: ignore[arg-type]
        except OSError as exc:
            raise SynthesisError(f"cannot write the captions file {target}: {exc.strerror or exc}",
                                 stage="voice") from exc
        return {**audio, "captions": str(target)}

    def _path(self, names: NameClaims, record: dict[str, Any], persona: Persona | None) -> Path:
        """The audio file of ``record``, claimed in ``names`` (records in input order)."""
        stem = record_audio_stem(record, persona.name if persona else None)
        return Path(self.options.out_dir) / names.claim(stem, f".{self.ext}")

    def output_folders(self) -> list[str]:
        """``out_dir``: where :meth:`planned_files` are."""
        return [self.options.out_dir]

    def planned_files(self, lines: Iterable[InputLine]) -> Iterator[tuple[str, str]]:
        """The audio files a run over ``lines`` writes, named as :meth:`run` names them."""
        names = NameClaims()
        for line in lines:
            record = line.record
            if record is None or "error" in record:
                continue
            try:
                _, persona = self._persona(record)
            except AicpError:
                continue
            if self.options.require_checks and failed_checks(record, self.options.text_field) is not None:
                continue
            path = self._path(names, record, persona)
            if path not in self.protected:  # that record fails on its own, naming the file
                yield "audio file", str(path)
                captions = self._captions_path(path)
                if captions is not None and captions not in self.protected:
                    yield "captions file", str(captions)

    def _voice_record(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        rid = record_id(record)
        try:
            text, persona = self._persona(record)
            limit = voice_time_limit(record, self.options.text_field)
            turns = dialogue_turns(record, self.options.text_field)
            hosts = self._hosts(record, turns) if turns is not None else {}
        except AicpError as exc:
            err = exc if isinstance(exc, RecordError) else InputError(exc.message, hint=exc.hint, stage="voice")
            return self._fail(index, rid, record, err)
        refused = self._checked(index, rid, record)
        if refused is not None:
            return refused
        seed = self.options.seed if self.options.seed is not None else (persona.seed if persona else None)
        voice = self.backend.default_voice(persona, seed)
        take = record_take(record)
        path = self._path(self.names, record, persona)
        lexicon = self.lexicon.for_persona(persona)
        spoken, dialogue = text, None
        voices: dict[str, Voice] = {}
        lexicons: dict[str, Lexicon | None] = {}
        gaps: list[float] = []
        if turns is not None:
            voices = {name: self.backend.default_voice(
                host, self.options.seed if self.options.seed is not None else host.seed)
                for name, host in hosts.items()}
            lexicons = {name: self.lexicon.for_persona(host) for name, host in hosts.items()}
            gaps = turn_gaps(len(turns), f"{voice.seed}:{take}")
            dialogue = dialogue_key(turns, voices, lexicons, gaps, self.backend)
            spoken = "\n".join(t["text"] for t in turns)
            self._warn_shared(voices)
        key = self.request_key(text, voice, path.name, lexicon, dialogue)

        def synthesize() -> dict[str, Any]:
            if turns is not None:
                return self.synthesize_turns(turns, voices, lexicons, gaps, path, key)
            return self.synthesize(text, voice, path, key, lexicon)
        captions = self._captions_path(path)
        for target, what in ((path, "audio file"), (captions, "captions file")):
            if target is None:
                continue
            if target in self.protected:
                return self._fail(index, rid, record, InputError(
                    f"its {what} {target} is a file this run reads or writes; it was not replaced",
                    stage="voice", hint="give the record another id, or write audio to another --out-dir"))
            if os.path.lexists(target) and not self.may_replace(target):
                raise refuse_overwrite(target, what)

        reused = self._reusable(key, path)
        if reused is not None:
            try:
                reused = self._write_captions(record, path, reused, spoken, persona, turns, hosts)
            except RecordError as exc:
                return self._fail(index, rid, record, exc)
            reused = self._listened(record, spoken, reused)
            audio = self._audio_checked(rid, record, {**reused, "skipped": True}, limit)
            if self._rejected(audio):  # the ledger's file stays: it vouches for it
                return self._fail(index, rid, record, self._audio_failed(audio))
            self.tracker.skipped(index, rid, key=key, path=str(path))
            return {**record, "audio": audio}

        self.tracker.start(index, rid, persona=persona.name if persona else None, take=take)
        self.session.ensure()
        try:
            audio = with_retries(
                synthesize, self.options.retries,
                on_retry=lambda n, e: self.emitter.message(f"record {rid}: retry {n} after: {e.message}", "warning"),
            )
            audio = self._listened(record, spoken, audio)
        except RecordError as exc:
            return self._fail(index, rid, record, exc)
        checked = self._audio_checked(rid, record, dict(audio), limit)
        if self._rejected(checked):
            Path(audio["path"]).unlink(missing_ok=True)  # as for any failed record: no file left
            return self._fail(index, rid, record, self._audio_failed(checked))
        if self.ledger is not None:  # the listening check kept, fits not: a resumed run checks its own limit
            self.ledger.append(key, audio)
        try:
            audio = self._write_captions(record, path, checked, spoken, persona, turns, hosts)
        except RecordError as exc:
            Path(checked["path"]).unlink(missing_ok=True)
            return self._fail(index, rid, record, exc)
        with self.tracker.lock:
            self.stats.audio_seconds += audio["seconds"]
            self.stats.words += word_count(spoken)
        self.tracker.complete(index, rid, audio_seconds=audio["seconds"], rtf=audio["rtf"],
                              chunks=audio["chunks"], path=audio["path"],
                              **({"turns": len(turns)} if turns is not None else {}))
        if self.takelog is not None:
            self.takelog.add_audio(record, audio)
        return {**record, "audio": audio}

    def _warn_shared(self, voices: dict[str, Voice]) -> None:
        """Warn once per run when a dialogue's hosts all get one voice (a backend with a single
        voice, or hosts whose voices fall back to its default)."""
        if not shared_voice(voices) or getattr(self, "_shared_warned", False):
            return
        with self.tracker.lock:
            if getattr(self, "_shared_warned", False):
                return
            self._shared_warned = True
        voice = next(iter(voices.values()))
        self.emitter.message(
            f"hosts share one voice ({voice.backend or self.backend.name} {voice.name}): "
            f"{', '.join(voices)} will sound alike; give each persona a voice of this backend "
            "(voice.<backend> in its persona file)" + ("" if getattr(self.backend, "routes", False)
                                                        else " or use --backend auto"), "warning")

    def _listened(self, record: dict[str, Any], text: str, audio: dict[str, Any]) -> dict[str, Any]:
        """``audio`` with the listening check in ``audio.checks`` (``verify``; one the ledger
        kept is not run again). Without ``verify``: ``audio``."""
        if not self.options.verify:
            return audio
        from ..listen import PocketSphinx, listen_file, merge_checks

        checks = audio.get("checks")
        if not (isinstance(checks, dict) and isinstance(checks.get("details"), dict)
                and "listen" in checks["details"]):
            if self.recogniser is None:
                self.recogniser = PocketSphinx()
            heard = listen_file(audio["path"], text, self.recogniser, names=record)
            audio = {**audio, "checks": merge_checks(checks, heard.as_checks())}
        return audio

    def _rejected(self, audio: dict[str, Any]) -> bool:
        """``require_checks`` and ``audio.checks.passed`` is false."""
        checks = audio.get("checks")
        return self.options.require_checks and isinstance(checks, dict) and checks.get("passed") is False

    def _checked(self, index: int, rid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """Count the script's checks; a script that failed them gets a warning, or with
        ``require_checks`` its record's error (returned: nothing is voiced)."""
        checks = _voiced_checks(record, self.options.text_field)
        failed = failed_checks(record, self.options.text_field)
        with self.tracker.lock:
            if failed is not None:
                self.stats.checks_failed += 1
            elif checks is not None and checks.get("passed") is True:
                self.stats.checks_passed += 1
        if failed is None:
            return None
        names = _check_names(failed)
        if self.options.require_checks:
            return self._fail(index, rid, record, ChecksFailed(
                f"its script failed its checks ({names}); not voiced (--require-checks)", stage="voice",
                hint="regenerate it (aicp-script --best-of 4), or voice it without --require-checks",
                checks=checks))
        self.emitter.message(f"record {rid}: voicing a script that failed its checks ({names})", "warning")
        return None

    def _audio_checked(self, rid: str, record: dict[str, Any], audio: dict[str, Any],
                       limit: float | None) -> dict[str, Any]:
        """``audio`` with its ``fits`` check when the take has a time ``limit`` (the listening
        check is already in it with ``verify``), counted once in ``audio_checks`` when any audio
        check ran; a file that failed them warns unless ``require_checks`` makes it an error."""
        if limit is not None:
            add_check(audio, "fits", float(audio["seconds"]) <= limit, fits_detail(audio["seconds"], limit))
        elif not self.options.verify:
            return audio
        checks = audio.get("checks")
        passed = not (isinstance(checks, dict) and checks.get("passed") is False)
        with self.tracker.lock:
            if passed:
                self.stats.audio_checks_passed += 1
            else:
                self.stats.audio_checks_failed += 1
        if not passed and not self.options.require_checks:
            detail = (checks.get("details") or {}).get("fits") if isinstance(checks, dict) else None
            why = (f"; it lasts {detail['seconds']:.1f} s, longer than the {detail['max_seconds']:g} s it must fit"
                   if isinstance(detail, dict) else "")
            failed = checks.get("failed") if isinstance(checks, dict) else None
            self.emitter.message(f"record {rid}: its audio failed its checks "
                                 f"({_check_names(failed if isinstance(failed, list) else [])}){why}", "warning")
        return audio

    @staticmethod
    def _audio_failed(audio: dict[str, Any]) -> ChecksFailed:
        """The record error of ``audio`` that failed its checks (``require_checks``): ``fits``
        names the file's length and the limit, the listening check its reasons."""
        checks = audio.get("checks") or {}
        failed = [str(f) for f in checks.get("failed") or []]
        detail = (checks.get("details") or {}).get("fits")
        why = (f": it lasts {detail['seconds']:.1f} s, longer than {detail['max_seconds']:g} s"
               if isinstance(detail, dict) else "")
        hint = ("write a shorter take (aicp-script --max-seconds S), or voice it without --require-checks"
                if failed == ["fits"] else
                "voice it again with another voice or seed, or check the script's text")
        return ChecksFailed(f"its audio failed its checks ({_check_names(failed)}){why}; "
                            "no new file kept (--require-checks)", stage="voice", checks=checks, hint=hint)

    def _process(self, index: int, line: InputLine) -> dict[str, Any]:
        return self._each(index, line, lambda record: self._voice_record(index, record))

    # -- a whole run ---------------------------------------------------------------------
    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Generator[dict[str, Any], None, None]:
        """Yield one output record per input line, in input order.

        The backend is loaded on the first synthesis (never, when every record
        is served from the ledger) and always unloaded when the run ends.
        """
        if total is not None:
            self.stats.total = total
        lock = FolderLock(self.options.out_dir, "audio folder").acquire()
        try:
            with self._backend_run():
                removed = remove_stale_parts(Path(self.options.out_dir))
                if removed:
                    self.emitter.message(f"removed {removed} unfinished audio file(s) of an earlier run", "debug")
                for index, line in enumerate(lines):
                    yield self._process(index, line)
        finally:
            lock.release()


class VoiceStepConfig(BackendStepConfig):
    """A ``voice`` step of a chain file: a TTS model speaks each record's script (see ``aicp voice``).

    :ivar persona: the default persona. :ivar backend: ``auto`` or a TTS backend; its
        settings are keys of the step (``voice``, ``device``, ``checkpoint_dir``...:
        :class:`BackendStepConfig`).
    """

    type: Literal["voice"]
    persona: str | None = None


def _check_lexicon(step: VoiceStepConfig) -> None:
    """A chain voice step's lexicon files (``params.lexicon``), read when the chain file is read.

    :raises AicpError: a missing or invalid file; its ``loc`` is ``("params", "lexicon")``.
    """
    try:
        RunLexicon(step.params.get("lexicon") or ())
    except AicpError as exc:
        exc.loc = ("params", "lexicon")  # type: ignore[attr-defined]
        raise


#: The ``voice`` stage kind: audio files in ``output_dir/audio`` (``out_dir``).
VOICE = StageKind(
    name="voice", stage=VoiceStage, options=VoiceOptions, step_model=VoiceStepConfig, backend="tts",
    entry=AudioEntry, record_field="audio", dirs={"out_dir": ("audio", False)}, check_step=_check_lexicon,
    events="`audio_seconds`, `rtf`, `chunks`, `path`, `turns` (a dialogue: the turn count)", command="ai_content_pipeline.cli.voice:voice_command",
)
