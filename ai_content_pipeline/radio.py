"""The AI-radio batch API: DJ song intros, text first (LLM) then audio (TTS).

An adapter over the step primitive (:class:`~ai_content_pipeline.stages.step.StageRun`) that
``aicp-script``, ``aicp-voice`` and ``aicp run-chain`` run on, for code written against the
``GenerationPipeline`` design::

    pipeline = GenerationPipeline(Path("data/generated"))
    for result in generate_batch_intros(pipeline, songs, resume=True):
        print(result.song_id, result.success, result.audio_path)

A batch is a two-step chain held in memory: a script step, whose texts are checkpointed in
``{output_dir}/intros.ledger.jsonl``, then a voice step, which writes the intros to
``{output_dir}/intros/`` and checkpoints them in ``{output_dir}/intros.voice.ledger.jsonl``.
The intro of song ``id`` read by DJ ``dj`` is ``intros/{id}_{dj}_0.wav``: the name the voice
stage gives that record (:func:`~ai_content_pipeline.stages.voice.record_audio_stem`, take 0).
Its events are the chain's, with the documented fields (:mod:`ai_content_pipeline.eventdocs`):
``pipeline_start``, ``step_start``, the stages' events (with ``step``),
``step_complete``/``step_error`` and ``pipeline_complete`` (the chain's result, whose
``outputs.audio_dir`` is the intros folder, plus ``songs``: ``{completed, failed, skipped}``;
a script step's ``output`` is its ledger, as its texts stay in memory). The pipeline owns one LLM
backend and one TTS backend and never holds both models at once: the LLM is unloaded before
the TTS model loads. A batch runs in two phases by default (every text, unload the LLM, then
every audio file), so each model loads once.

The rules are the commands' and the chain's:

- a song's DJ follows the stages' persona rule
  (:meth:`~ai_content_pipeline.templates.Personas.for_record` over its ``dj``; default: the
  batch's ``dj``, else the pipeline's persona, which may be a persona file);
- a failure of one song (its text or audio failed, a bad id or ``dj``: a ``RecordError``)
  fails that song and the batch goes on; a step that cannot run at all (a backend that cannot
  load, a locked folder) ends the batch as it ends a chain: ``step_error``, no later step runs
  and every song that has no intro yet fails with that error;
- ``resume`` serves texts and intros from the two ledgers, as ``--resume`` does (an intro only
  while its file is there with the size the ledger recorded); a song whose request changed is
  made again.

Where the radio API differs from a chain, on purpose (the promises of its seed API):

- a failure never raises: every song gets a :class:`GenerationResult`, ``success=False`` with
  ``error`` when it could not be made;
- ``resume`` also keeps an intro file that no ledger accounts for (made by hand, or by a
  version without the voice ledger): its song is skipped before any model runs; without
  ``resume`` an intro file that is there already is made again (no ``--overwrite`` needed);
- two songs with one intro name (same id and DJ) do not get ``-2`` names: the later one fails,
  so :meth:`GenerationPipeline.intro_path` names each song's one file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends.base import LLMBackend, TTSBackend
from .backends.registry import create_llm, create_tts
from .chain.runner import StepSummary, chain_result
from .errors import AicpError, error_object
from .events import Emitter, NullEmitter, StepEmitter
from .files import NameClaims
from .jsonl import InputLine
from .ledger import Ledger
from .records import slugify, stage_fields
from .stages.script import ScriptOptions
from .stages.step import StageRun
from .stages.voice import VoiceOptions, record_audio_stem
from .templates import DEFAULT_PERSONA, Personas, file_ref

DEFAULT_OUTPUT_DIR = Path("data/generated")
#: File name of the script ledger under ``output_dir`` (lets ``resume`` reuse finished texts).
LEDGER_NAME = "intros.ledger.jsonl"
#: File name of the voice ledger under ``output_dir`` (lets ``resume`` keep finished intros).
VOICE_LEDGER_NAME = "intros.voice.ledger.jsonl"
#: The take the script stage gives a song's one text (``variants`` 1): part of the intro's name.
TAKE = 0


@dataclass
class GenerationResult:
    """The outcome for one song.

    :ivar song_id: the song's ``id`` as a string.
    :ivar dj: the persona that read the intro.
    :ivar text: the intro text (served from the ledger on ``resume``); ``None`` when the text
        step failed or the song was skipped for an intro file no ledger accounts for.
    :ivar audio_path: the WAV file (``None`` when the song failed).
    :ivar error: one line for people when ``success`` is false.
    :ivar skipped: ``resume`` kept the intro file already there; no model made it in this call.
    """

    song_id: str
    dj: str
    text: str | None
    audio_path: Path | None
    success: bool
    error: str | None = None
    skipped: bool = False


@dataclass
class BatchProgress:
    """Where a batch stands, passed to ``progress_callback`` after each song.

    :ivar total: songs in the batch.
    :ivar completed: songs finished so far, whatever the outcome (failed and
        skipped included), so the last update has ``completed == total``.
    :ivar failed: how many of those failed.
    :ivar current_song: the title (or id) of the song just finished.
    """

    total: int
    completed: int
    failed: int
    current_song: str

    @property
    def percent(self) -> float:
        """``completed`` as a percentage of ``total`` (0.0 when ``total`` is 0)."""
        return 100.0 * self.completed / self.total if self.total > 0 else 0.0


ProgressCallback = Callable[[BatchProgress], None]


def _safe_name(value: Any) -> bool:
    text = str(value)
    return bool(text) and slugify(text) == text


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("type") or "failed")
        return f"{message} ({error['hint']})" if error.get("hint") else message
    return str(error)


class GenerationPipeline:
    """One LLM backend and one TTS backend, used one at a time, writing under ``output_dir``.

    Backends are built from names (as in the CLI) unless objects are passed in
    ``llm``/``tts`` (tests pass doubles). Models load on first use and unload
    at the end of each phase.

    :param output_dir: root folder; intros go to ``output_dir/intros`` (default
        ``data/generated``, relative to the working directory).
    :param llm_backend: ``auto``, ``llamacpp`` or ``ollama``.
    :param llm_model: Ollama model name or GGUF path (default: the backend's).
    :param host: Ollama server URL.
    :param tts_backend: ``auto``, ``piper`` or ``chatterbox``.
    :param voice: TTS voice (passed to the TTS backend as ``voice``).
    :param device: TTS device (``cpu``, ``cuda``...), passed to the TTS backend.
    :param llm_options: more keyword arguments for the LLM backend.
    :param tts_options: more keyword arguments for the TTS backend.
    :param emitter: where stage, record and model events go (default: none).
    :param template: script template name or path (default ``song-intro``).
    :param persona: DJ for songs without ``dj`` (default ``julie``): a persona name or file.
    :param seed: base seed for text and speech (``None``: engines choose).
    :param max_tokens: completion token limit per intro (``None``: the template's).
    :param retries: extra attempts on transient backend errors, per song.
    :param best_of: candidates per intro (1-16); the one that passes the template's
        checks closest to its target length is voiced (``aicp-script --best-of``).
    :param batch: llama.cpp decodes the intros of this many songs together (1-64).
    :param require_checks: an intro that fails its checks fails its song (no audio).
    :param loudness: target loudness of each file in LUFS (``None``: unchanged).
    :param sample_rate: resample audio to this many Hz (``None``: the engine's).
    :param two_phase: default batch mode (all texts, then all audio).
    :raises UsageError: unknown backend, template or persona; ``best_of``/``batch`` out of range.
    :raises BackendUnavailable: ``auto`` or an explicit model cannot be served.
    """

    def __init__(
        self,
        output_dir: str | Path | None = None,
        *,
        llm_backend: str = "auto",
        llm_model: str | None = None,
        host: str | None = None,
        tts_backend: str = "auto",
        voice: str | None = None,
        device: str | None = None,
        llm_options: dict[str, Any] | None = None,
        tts_options: dict[str, Any] | None = None,
        emitter: Emitter | None = None,
        llm: LLMBackend | None = None,
        tts: TTSBackend | None = None,
        template: str = "song-intro",
        persona: str | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        retries: int = 0,
        best_of: int = 1,
        batch: int = 1,
        require_checks: bool = False,
        loudness: float | None = -16.0,
        sample_rate: int | None = None,
        two_phase: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
        self.emitter = emitter or NullEmitter()
        self._summaries: list[StepSummary] = []  # the batch's finished steps (pipeline_complete)
        self.template = template
        self.persona = persona or DEFAULT_PERSONA
        self.seed = seed
        self.max_tokens = max_tokens
        self.retries = retries
        self.best_of, self.batch, self.require_checks = best_of, batch, require_checks
        # unknown template or persona, bad values: a usage error now, not per song
        ScriptOptions(template=template, persona=persona, best_of=best_of, batch=batch).validate()
        self.loudness = loudness
        self.sample_rate = sample_rate
        self.two_phase = two_phase
        if llm is None:
            llm = create_llm(llm_backend, model=llm_model, host=host,
                             notice=self.emitter.message, **(llm_options or {}))
        if tts is None:
            extra = {k: v for k, v in (("voice", voice), ("device", device)) if v is not None}
            tts = create_tts(tts_backend, notice=self.emitter.message, **extra, **(tts_options or {}))
        self.llm: LLMBackend = llm
        self.tts: TTSBackend = tts

    # -- state ---------------------------------------------------------------------
    @property
    def _llm_loaded(self) -> bool:
        """True while the LLM is resident (read from the backend, never cached)."""
        return bool(getattr(self.llm, "loaded", False))

    @property
    def _tts_loaded(self) -> bool:
        """True while the TTS model is resident (read from the backend, never cached)."""
        return bool(getattr(self.tts, "loaded", False))

    @property
    def intros_dir(self) -> Path:
        """``output_dir/intros``, where intro WAV files go."""
        return self.output_dir / "intros"

    def intro_path(self, song_id: str, dj: str) -> Path:
        """``output_dir/intros/{song_id}_{dj}_0.wav``: the name the voice stage gives the intro of
        song ``song_id`` read by the persona named ``dj``
        (:func:`~ai_content_pipeline.stages.voice.record_audio_stem`, take 0)."""
        return self.intros_dir / f"{record_audio_stem({'id': song_id, 'script': {'take': TAKE}}, dj)}.wav"

    def unload(self) -> None:
        """Unload both models (they are unloaded after every phase anyway)."""
        self.llm.unload()
        self.tts.unload()

    # -- the two designs' methods ----------------------------------------------------
    def generate_song_intro(self, song_id: str, artist: str, title: str, dj: str) -> GenerationResult:
        """Same as :func:`generate_song_intro` with this pipeline."""
        return generate_song_intro(self, song_id, artist, title, dj)

    def generate_batch_intros(
        self,
        songs: Iterable[dict[str, Any]],
        dj: str | None = None,
        resume: bool = False,
        progress_callback: ProgressCallback | None = None,
        two_phase: bool | None = None,
    ) -> Iterator[GenerationResult]:
        """Same as :func:`generate_batch_intros`; ``dj`` is the default persona of this batch."""
        return generate_batch_intros(self, songs, progress_callback, resume, dj=dj, two_phase=two_phase)

    # -- the batch -------------------------------------------------------------------
    def _options(self, kind: str, persona: str, resume: bool) -> ScriptOptions | VoiceOptions:
        """The stage options of the batch's ``kind`` step (``persona``: the batch's default)."""
        if kind == "script":
            return ScriptOptions(template=self.template, persona=persona, seed=self.seed,
                                 max_tokens=self.max_tokens, retries=self.retries, resume=resume,
                                 best_of=self.best_of, batch=self.batch, require_checks=self.require_checks)
        return VoiceOptions(out_dir=str(self.intros_dir), format="wav", sample_rate=self.sample_rate,
                            loudness=self.loudness, seed=self.seed, retries=self.retries, resume=resume,
                            persona=persona, overwrite=True)  # the batch decides what it keeps

    def _prepare(self, song: Any, personas: Personas, claims: NameClaims,
                 kept: Callable[[Path], bool]) -> dict[str, Any] | GenerationResult:
        """The stage record of ``song``, or its final result (a bad song, or one ``kept`` skips)."""
        default = personas.default.name if personas.default is not None else DEFAULT_PERSONA
        if not isinstance(song, dict):
            return GenerationResult(str(song), default, None, None, False,
                                    f"a song must be a dict with id, artist, title, not {type(song).__name__}")
        sid = "" if song.get("id") is None else str(song["id"])
        named = song.get("dj")
        failed = GenerationResult(sid, default if named is None else str(named), None, None, False)
        if named is not None and (not isinstance(named, str) or not named.strip()):
            failed.dj = default
            failed.error = f"dj must be a persona name (a non-empty string), not {named!r}"
            return failed
        if not _safe_name(sid):
            failed.error = (f"song id {sid!r} cannot be used in a file name"
                            if sid else "song has no id")
            failed.error += " (use letters, digits, '.', '_' and '-' only)"
            return failed
        try:  # the stages' persona rule, as the script stage will apply it to this record
            persona = personas.for_record({} if named is None else {"dj": named}, ("dj",))
        except AicpError as exc:
            failed.error = _error_text(error_object(exc, stage="script"))
            return failed
        assert persona is not None
        record = {k: v for k, v in song.items() if k not in stage_fields() and k != "persona"}
        record.update(id=sid, dj=persona.name)
        stem = record_audio_stem({**record, "script": {"take": TAKE}}, persona.name)  # the voice stage's name
        name = claims.claim(stem, ".wav")
        if name != f"{stem}.wav":  # one intro file per song: a repeated id+dj would take another name
            return GenerationResult(sid, persona.name, None, None, False,
                                    f"song id {sid!r} with dj {persona.name!r} appears earlier in this batch; "
                                    "its intro file would overwrite that song's (give each song its own id)")
        path = self.intros_dir / name
        if kept(path):
            return GenerationResult(sid, persona.name, None, path, True, skipped=True)
        return record

    def _step(self, number: int, kind: str, backend: Any, options: Any, ledger: Ledger,
              records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Run the ``kind`` stage over ``records`` as step ``number`` of the batch; its output
        records, one per input record, in order, the last one after the stage ended (its model
        unloaded).

        :raises AicpError: the step could not run (after ``step_error`` and the records it finished).
        """
        t0 = time.monotonic()
        self.emitter.step_start(number, kind, backend.model)
        lines = [InputLine(n, "radio", record=r) for n, r in enumerate(records, start=1)]
        held: dict[str, Any] | None = None
        try:
            with StageRun(kind, backend, options, emitter=StepEmitter(self.emitter, number), checkpoint=ledger,
                          protect=[file_ref(options.persona)]) as run:
                with closing(run.records(lines, len(lines))) as outs:
                    for out in outs:
                        if held is not None:
                            yield held
                        held = out
        except AicpError as exc:
            self.emitter.step_error(number, str(exc), kind)
            if held is not None:
                yield held
            raise
        summary = StepSummary(number, kind, None, str(self.intros_dir if kind == "voice" else ledger.path),
                              str(ledger.path), 0.0, round(time.monotonic() - t0, 3), run.stats.as_dict(),
                              backend.describe())
        self._summaries.append(summary)
        summary.emit(self.emitter)
        if held is not None:
            yield held

    def _result(self, out: dict[str, Any]) -> GenerationResult:
        script = out.get("script")
        text = script.get("text") if isinstance(script, dict) else None
        sid, who = str(out["id"]), str(out["dj"])
        if "error" in out:
            return GenerationResult(sid, who, text, None, False, _error_text(out["error"]))
        audio = out.get("audio") or {}
        path = Path(audio["path"]) if audio.get("path") else None
        if path is None:
            return GenerationResult(sid, who, text, None, False, "the voice stage wrote no audio")
        return GenerationResult(sid, who, text, path, True, skipped=bool(audio.get("skipped")))

    def _generate(self, pending: list[dict[str, Any]], persona: str, resume: bool, two_phase: bool,
                  ledgers: tuple[Ledger, Ledger],
                  stopped: list[dict[str, Any]]) -> Generator[GenerationResult, None, None]:
        """One result per ``pending`` song, in order: the script step's records through the voice
        step (a song whose text failed passes through it with its error, as in a chain). A step
        that cannot run ends the batch: its error goes to ``stopped`` and fails every song left."""
        groups = [pending] if two_phase else [[record] for record in pending]
        number = 0
        for g, group in enumerate(groups):
            texts: list[dict[str, Any]] = []
            voiced, kind = 0, "script"
            try:
                number += 1
                texts.extend(self._step(number, kind, self.llm, self._options(kind, persona, resume),
                                        ledgers[0], group))
                number, kind = number + 1, "voice"
                for out in self._step(number, kind, self.tts, self._options(kind, persona, resume),
                                      ledgers[1], texts):
                    voiced += 1
                    yield self._result(out)
            except AicpError as exc:  # the step could not run: the batch ends here, as a chain does
                error = error_object(exc, stage=kind)
                stopped.append({**error, "step": number})
                left = texts[voiced:] + group[len(texts):] + [r for later in groups[g + 1:] for r in later]
                for record in left:
                    yield self._result(record if "error" in record else {**record, "error": error})
                return

    def _batch(self, songs: Iterable[dict[str, Any]], *, resume: bool, dj: str | None,
               progress_callback: ProgressCallback | None,
               two_phase: bool | None) -> Iterator[GenerationResult]:
        songs = list(songs)
        two_phase = self.two_phase if two_phase is None else two_phase
        persona = dj or self.persona
        prepared: list[dict[str, Any] | GenerationResult]
        ledgers: tuple[Ledger, Ledger] | None = None
        try:
            personas = Personas(persona)
            texts, intros = Ledger(self.output_dir / LEDGER_NAME), Ledger(self.output_dir / VOICE_LEDGER_NAME)
        except AicpError as exc:  # an unknown batch dj, an unreadable ledger: no song can be made
            message = _error_text(error_object(exc, stage="script"))
            prepared = [GenerationResult(str(s.get("id", "")) if isinstance(s, dict) else str(s), persona,
                                         None, None, False, message) for s in songs]
        else:
            ledgers = (texts, intros)
            claims = NameClaims()
            made = {os.path.abspath(str(v.get("path"))) for v in intros.entries.values()} if resume else set()

            def kept(path: Path) -> bool:  # an intro file no ledger accounts for (the seed's resume)
                return resume and path.is_file() and os.path.abspath(path) not in made

            prepared = [self._prepare(song, personas, claims, kept) for song in songs]
        pending = [item for item in prepared if isinstance(item, dict)]
        steps = 2 * (1 if two_phase else len(pending)) if pending else 0
        t0 = time.monotonic()
        self._summaries = []
        self.emitter.pipeline_start("radio-intros", steps,
                                    {"output_dir": self.output_dir, "two_phase": two_phase,
                                     "songs": len(songs), "llm": self.llm.describe(),
                                     "tts": self.tts.describe()})
        progress = BatchProgress(total=len(songs), completed=0, failed=0, current_song="")
        counts = {"completed": 0, "failed": 0, "skipped": 0}
        stopped: list[dict[str, Any]] = []
        made_now = self._generate(pending, persona, resume, two_phase, ledgers, stopped) if ledgers else None
        try:
            for song, item in zip(songs, prepared, strict=True):  # both in input order: no reordering
                if isinstance(item, GenerationResult):
                    result = item
                else:
                    assert made_now is not None  # a song to make: the ledgers are open
                    result = next(made_now)
                progress.completed += 1
                progress.failed += 0 if result.success else 1
                title = (song.get("title") or song.get("id")) if isinstance(song, dict) else None
                progress.current_song = str(title or result.song_id)
                counts["skipped" if result.skipped else "completed" if result.success else "failed"] += 1
                if progress_callback is not None:
                    progress_callback(BatchProgress(**vars(progress)))
                yield result
        finally:
            if made_now is not None:
                made_now.close()  # a batch left early: the running stage ends and unloads its model
        final = chain_result("radio-intros", self._summaries, steps, t0, stopped[0] if stopped else None,
                             self.intros_dir)
        self.emitter.pipeline_complete({**final, "songs": counts})


def generate_song_intro(pipeline: GenerationPipeline, song_id: str, artist: str, title: str,
                        dj: str) -> GenerationResult:
    """Write one intro: text with the LLM, unload it, then speech with the TTS model.

    The audio goes to ``pipeline.output_dir/intros/{song_id}_{dj}_0.wav``. Both
    models are unloaded when this returns.

    :returns: a :class:`GenerationResult`; failures (an unsafe ``song_id``, an
        unknown persona, a backend error) give ``success=False`` and ``error``.
    """
    song = {"id": song_id, "artist": artist, "title": title, "dj": dj}
    return list(pipeline._batch([song], resume=False, dj=dj, progress_callback=None,
                                two_phase=True))[0]


def generate_batch_intros(
    pipeline: GenerationPipeline,
    songs: Iterable[dict[str, Any]],
    progress_callback: ProgressCallback | None = None,
    resume: bool = False,
    *,
    dj: str | None = None,
    two_phase: bool | None = None,
) -> Iterator[GenerationResult]:
    """Yield one :class:`GenerationResult` per song, in input order.

    :param songs: dicts with ``id``, ``artist``, ``title`` and optionally ``dj``
        (default: ``dj``, else the pipeline's persona) and any field the
        template uses (``year``, ``album``, ``notes``).
    :param progress_callback: called with a :class:`BatchProgress` after each song.
    :param resume: as the commands' ``--resume``: serve texts from the script ledger
        (``output_dir/intros.ledger.jsonl``) and intros from the voice ledger
        (``output_dir/intros.voice.ledger.jsonl``) while their file is unchanged
        (``skipped``, no model runs for them); what changed is made again. An
        ``intros/{id}_{dj}_0.wav`` that no ledger accounts for is kept and its song skipped.
    :param two_phase: ``True``: every text, unload the LLM, then every audio
        file (each model loads once); ``False``: text then audio song by song
        (both models load per song). ``None``: the pipeline's default (two phases).

    A song that fails yields ``success=False`` with ``error`` and the batch goes on;
    a step that cannot run (a backend that cannot load) ends the batch, and every
    song without its intro yet fails with that error. The LLM is never loaded while
    the TTS model is. Lazy: nothing runs until the first result is asked for; a
    result decided before any model runs (a bad song, a kept file) comes as soon as
    it is asked for; in two-phase mode the first made intro comes after all texts
    are written.
    """
    return pipeline._batch(songs, resume=resume, dj=dj, progress_callback=progress_callback,
                           two_phase=two_phase)


__all__ = [
    "BatchProgress",
    "GenerationPipeline",
    "GenerationResult",
    "generate_batch_intros",
    "generate_song_intro",
]
