"""The AI-radio batch API: DJ song intros, text first (LLM) then audio (TTS).

An adapter over the step primitive (:class:`~ai_content_pipeline.stages.step.Step`) that
``aicp-script``, ``aicp-voice`` and ``aicp run-chain`` run on, for code written against the
``GenerationPipeline`` design::

    pipeline = GenerationPipeline(Path("data/generated"))
    for result in generate_batch_intros(pipeline, songs, resume=True):
        print(result.song_id, result.success, result.audio_path)

A batch is a two-step chain held in memory: a script step (the songs' texts, checkpointed
in ``{output_dir}/intros.ledger.jsonl``) and a voice step that writes the intro for song
``id`` read by DJ ``dj`` to ``{output_dir}/intros/{id}_{dj}_0.wav`` (the voice stage's own
file name, :func:`~ai_content_pipeline.stages.voice.audio_file_name`). Its events are the
chain's: ``pipeline_start``, ``step_start``, the stages' events (with ``step``),
``step_complete``/``step_error``, ``pipeline_complete``. The pipeline owns one LLM backend
and one TTS backend and never holds both models at once: the LLM is unloaded before the
TTS model loads. A batch runs in two phases by default (every text, unload the LLM, then
every audio file), so each model loads once.

The DJ of a song is chosen by the stages' one persona rule
(:func:`~ai_content_pipeline.templates.persona_for_record` over the song's ``dj``, with the
pipeline's persona as the default). Where the radio API differs from a chain, on purpose:

- a failure never raises: a song that cannot be made (a bad id, an unknown persona, a
  backend error on that song) becomes a result with ``success=False`` and ``error``, and
  when a backend fails as a whole (it cannot load) every song still in that step fails
  with its error while the batch goes on (a chain would stop at ``step_error``);
- ``resume`` also skips a song whose intro file is already there, before any model runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends.base import LLMBackend, TTSBackend
from .backends.registry import create_llm, create_tts
from .errors import AicpError, error_object
from .events import Emitter, NullEmitter, StepEmitter
from .jsonl import InputLine
from .records import STAGE_FIELDS, slugify
from .stages.script import ScriptOptions
from .stages.step import Step
from .stages.voice import VoiceOptions, audio_file_name
from .templates import DEFAULT_PERSONA, load_persona, load_template, persona_for_record

DEFAULT_OUTPUT_DIR = Path("data/generated")
#: File name of the script ledger under ``output_dir`` (lets ``resume`` reuse finished texts).
LEDGER_NAME = "intros.ledger.jsonl"


@dataclass
class GenerationResult:
    """The outcome for one song.

    :ivar song_id: the song's ``id`` as a string.
    :ivar dj: the persona that read the intro.
    :ivar text: the intro text; ``None`` when none was made in this call
        (skipped on resume, or the text step failed).
    :ivar audio_path: the WAV file (``None`` when the song failed).
    :ivar error: one line for people when ``success`` is false.
    :ivar skipped: ``resume`` found the audio file already there; no model ran.
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
    :param persona: DJ for songs without ``dj`` (default ``julie``).
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
    :raises UsageError: unknown backend or template name.
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
        load_template(template)  # unknown template or persona: a usage error now, not per song
        if persona:
            load_persona(persona)
        self.template = template
        self.persona = persona or DEFAULT_PERSONA
        self.seed = seed
        self.max_tokens = max_tokens
        self.retries = retries
        self.best_of, self.batch, self.require_checks = best_of, batch, require_checks
        ScriptOptions(template=template, best_of=best_of, batch=batch).validate()  # bad values: usage error now
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
        """``output_dir/intros/{song_id}_{dj}_0.wav``: the name the voice stage gives the file
        (:func:`~ai_content_pipeline.stages.voice.audio_file_name`, take 0)."""
        return self.intros_dir / audio_file_name(song_id, dj, 0, "wav")

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
    def _prepare(self, song: Any, dj: str | None, resume: bool) -> dict[str, Any] | GenerationResult:
        """The stage record of ``song``, or its final result (bad song, or skipped)."""
        if not isinstance(song, dict):
            return GenerationResult(str(song), dj or self.persona, None, None, False,
                                    f"a song must be a dict with id, artist, title, not {type(song).__name__}")
        sid = "" if song.get("id") is None else str(song["id"])
        named = song.get("dj")
        who = named if named is not None else (dj or self.persona)
        failed = GenerationResult(sid, str(who), None, None, False)
        if named is not None and (not isinstance(named, str) or not named.strip()):
            failed.dj = dj or self.persona
            failed.error = f"dj must be a persona name (a non-empty string), not {named!r}"
            return failed
        if not _safe_name(sid):
            failed.error = (f"song id {sid!r} cannot be used in a file name"
                            if sid else "song has no id")
            failed.error += " (use letters, digits, '.', '_' and '-' only)"
            return failed
        try:  # the stages' persona rule, as the script stage will apply it to this record
            persona_for_record({"dj": who}, self.persona)
        except AicpError as exc:
            failed.error = _error_text(error_object(exc, stage="script"))
            return failed
        path = self.intro_path(sid, who)
        if resume and path.is_file():
            return GenerationResult(sid, who, None, path, True, skipped=True)
        record = {k: v for k, v in song.items() if k not in STAGE_FIELDS and k != "persona"}
        record.update(id=sid, dj=who)
        return record

    def _texts(self, step: int, records: list[dict[str, Any]], resume: bool) -> list[dict[str, Any]]:
        """Phase 1: one script-stage output record per input record; the LLM is unloaded after."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        options = ScriptOptions(template=self.template, persona=self.persona, seed=self.seed,
                                max_tokens=self.max_tokens, retries=self.retries, resume=resume,
                                best_of=self.best_of, batch=self.batch, require_checks=self.require_checks)
        outs: list[dict[str, Any]] = []
        t0 = time.monotonic()
        self.emitter.step_start(step, "script", self.llm.model)
        with Step("script", self.llm, options, emitter=StepEmitter(self.emitter, step),
                  checkpoint=self.output_dir / LEDGER_NAME) as run:
            lines = [InputLine(n, "radio", record=r) for n, r in enumerate(records, start=1)]
            try:
                run.run(lines, outs.append, len(lines))
            except AicpError as exc:  # the backend failed as a whole: the rest fail with it
                self.emitter.step_error(step, exc, "script")
                error = error_object(exc, stage="script")
                outs += [{**r, "error": error} for r in records[len(outs):]]
            finally:
                self.llm.unload()  # the stage unloads it too; a no-op then
        self.emitter.step_complete(step, duration=time.monotonic() - t0, **run.stats.as_dict())
        return outs

    def _audio(self, step: int, records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Phase 2: one voice-stage output record per input record, lazily.

        The last record is yielded only after the stage ended (TTS unloaded).
        """
        options = VoiceOptions(out_dir=str(self.intros_dir), format="wav", sample_rate=self.sample_rate,
                               loudness=self.loudness, seed=self.seed, retries=self.retries)
        self.intros_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.emitter.step_start(step, "voice", self.tts.model)
        lines = [InputLine(n, "radio", record=r) for n, r in enumerate(records, start=1)]
        held: dict[str, Any] | None = None
        done = 0
        with Step("voice", self.tts, options, emitter=StepEmitter(self.emitter, step)) as run:
            outs = run.records(lines, len(lines))
            try:
                for out in outs:
                    if held is not None:
                        yield held
                    held, done = out, done + 1
            except AicpError as exc:  # the TTS backend failed as a whole: the rest fail with it
                self.emitter.step_error(step, exc, "voice")
                if held is not None:
                    yield held
                    held = None
                error = error_object(exc, stage="voice")
                for r in records[done:]:
                    yield {**r, "error": error}
            finally:
                outs.close()  # ends the stage's run, which unloads the TTS
                self.tts.unload()
        self.emitter.step_complete(step, output_path=self.intros_dir,
                                   duration=time.monotonic() - t0, **run.stats.as_dict())
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
        return GenerationResult(sid, who, text, path, True)

    def _generate(self, pending: list[tuple[int, dict[str, Any]]], resume: bool,
                  two_phase: bool) -> Iterator[tuple[int, GenerationResult]]:
        """Run the phases; yields ``(song index, result)`` for every pending song."""
        groups = [pending] if two_phase else [[p] for p in pending]
        step = 0
        for group in groups:
            if not group:
                continue
            indices = [i for i, _ in group]
            texts = self._texts(step + 1, [r for _, r in group], resume)
            step += 2
            voiced: list[int] = []
            for index, out in zip(indices, texts, strict=True):
                if "error" in out:
                    yield index, self._result(out)
                else:
                    voiced.append(index)
            to_voice = [out for out in texts if "error" not in out]
            if to_voice:
                for n, out in enumerate(self._audio(step, to_voice)):
                    yield voiced[n], self._result(out)

    def _batch(self, songs: Iterable[dict[str, Any]], *, resume: bool, dj: str | None,
               progress_callback: ProgressCallback | None,
               two_phase: bool | None) -> Iterator[GenerationResult]:
        songs = list(songs)
        two_phase = self.two_phase if two_phase is None else two_phase
        prepared = [self._prepare(song, dj, resume) for song in songs]
        claimed: set[str] = set()
        for i, item in enumerate(prepared):  # one intro file per song: a repeated id+dj would overwrite
            if isinstance(item, GenerationResult) and not item.skipped:
                continue
            sid, who = (item.song_id, item.dj) if isinstance(item, GenerationResult) else (item["id"], item["dj"])
            name = self.intro_path(sid, who).name.casefold()
            if name in claimed:
                prepared[i] = GenerationResult(sid, who, None, None, False,
                                               f"song id {sid!r} with dj {who!r} appears earlier in this batch; "
                                               "its intro file would overwrite that song's (give each song its own id)")
            claimed.add(name)
        ready = {i: r for i, r in enumerate(prepared) if isinstance(r, GenerationResult)}
        pending = [(i, r) for i, r in enumerate(prepared) if isinstance(r, dict)]
        steps = 2 * (1 if two_phase else len(pending)) if pending else 0
        self.emitter.pipeline_start("radio-intros", steps,
                                    {"output_dir": self.output_dir, "two_phase": two_phase,
                                     "songs": len(songs), "llm": self.llm.describe(),
                                     "tts": self.tts.describe()})
        progress = BatchProgress(total=len(songs), completed=0, failed=0, current_song="")
        counts = {"completed": 0, "failed": 0, "skipped": 0}

        def report(index: int) -> GenerationResult:
            result = ready.pop(index)
            song = songs[index] if isinstance(songs[index], dict) else {}
            progress.completed += 1
            progress.failed += 0 if result.success else 1
            progress.current_song = str(song.get("title") or song.get("id") or result.song_id)
            counts["skipped" if result.skipped else "completed" if result.success else "failed"] += 1
            if progress_callback is not None:
                progress_callback(BatchProgress(**vars(progress)))
            return result

        cursor = 0
        for index, result in self._generate(pending, resume, two_phase):
            ready[index] = result
            while cursor in ready:
                yield report(cursor)
                cursor += 1
        while cursor < len(songs):
            yield report(cursor)
            cursor += 1
        self.emitter.pipeline_complete({"songs": counts, "output_dir": self.intros_dir})


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
    :param resume: skip songs whose ``intros/{id}_{dj}_0.wav`` exists (no model
        runs for them) and reuse texts of the script ledger
        (``output_dir/intros.ledger.jsonl``) from an earlier, unfinished run.
    :param two_phase: ``True``: every text, unload the LLM, then every audio
        file (each model loads once); ``False``: text then audio song by song
        (both models load per song). ``None``: the pipeline's default (two phases).

    A failed song yields ``success=False`` with ``error`` and the batch goes on.
    The LLM is never loaded while the TTS model is. Lazy: nothing runs until
    the first result is asked for; in two-phase mode the first result comes
    after all texts are written.
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
