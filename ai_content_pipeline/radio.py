"""The AI-radio batch API: DJ song intros, text first (LLM) then audio (TTS).

A chain of two steps on the one driver (:class:`~ai_content_pipeline.stages.driver.Driver`)
that ``aicp-script``, ``aicp-voice``, ``aicp run-chain`` and service jobs run on, for code
written against the ``GenerationPipeline`` design::

    pipeline = GenerationPipeline(Path("data/generated"))
    for result in generate_batch_intros(pipeline, songs, resume=True):
        print(result.song_id, result.success, result.audio_path)

Step 1 (script) keeps its texts in memory and checkpoints them in
``{output_dir}/01-script.ledger.jsonl``; step 2 (voice) writes the intros to
``{output_dir}/intros/`` and checkpoints them in ``{output_dir}/02-voice.ledger.jsonl``: the
ledgers a chain of those two steps keeps in its ``output_dir``. The intro of song ``id`` read by
DJ ``dj`` is ``intros/{id}_{dj}_0.wav``: the name the voice stage gives that record
(:func:`~ai_content_pipeline.stages.voice.record_audio_stem`, take 0). Its events are the
chain's, with the documented fields (:mod:`ai_content_pipeline.eventdocs`): ``pipeline_start``,
``step_start``, the stages' events (with ``step``), ``step_complete``/``step_error`` and
``pipeline_complete`` (the chain's result, whose ``outputs.audio_dir`` is the intros folder,
plus ``songs``: ``{completed, failed, skipped, checks_failed}``, the last counting the songs
whose intro failed its template's checks, voiced or not; a script step's ``output`` is its ledger, as
its texts stay in memory). The pipeline owns one LLM backend and one TTS backend and never
holds both models at once: the LLM is unloaded before the TTS model loads. A batch runs in two
phases by default (every text, unload the LLM, then every audio file), so each model loads
once; song by song it is a chain of two steps per song (``total_steps`` twice the songs).

The rules are the commands' and the chain's:

- a song's DJ follows the stages' persona rule
  (:meth:`~ai_content_pipeline.templates.Personas.for_record` over its ``dj``; default: the
  batch's ``dj``, else the pipeline's persona, which may be a persona file);
- a failure of one song (its text or audio failed, a bad id or ``dj``: a ``RecordError``)
  fails that song and the batch goes on; a step that cannot run at all (a backend that cannot
  load, a locked folder) ends the batch as it ends a chain: ``step_error``, no later step runs
  and every song that has no intro yet fails with that error;
- ``resume`` serves texts and intros from the two ledgers, as ``--resume`` does (an intro only
  while its file is there with the size the ledger recorded); a song whose request changed, or
  whose intro file no ledger accounts for, is made again.

Where the radio API differs from a chain, on purpose (the promises of its seed API):

- a failure never raises: every song gets a :class:`GenerationResult`, ``success=False`` with
  ``error`` when it could not be made;
- an intro file that is there already is made again without ``resume`` (no ``--overwrite``
  needed);
- two songs with one intro name (same id and DJ) do not get ``-2`` names: the later one fails,
  so :meth:`GenerationPipeline.intro_path` names each song's one file.

Banter: ``GenerationPipeline(banter=["max", "julie"])`` has two DJs introduce each song
together, in the ``radio-banter`` dialogue template (unless ``template`` names another
dialogue template): the first host opens, a song's ``dj`` opens its own banter, each host
speaks in their own voice, and the result's ``hosts`` and ``turns`` say who spoke how often.
The intro file is named after the host who opens.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.base import LLMBackend, TTSBackend
from .backends.registry import create_llm, create_tts
from .errors import AicpError, UsageError, error_object
from .events import Emitter, NullEmitter
from .files import NameClaims
from .ledger import Ledger
from .records import slugify, stage_fields
from .stages.driver import Driver, StepPlan, step_label
from .stages.script import ScriptOptions
from .stages.step import StepInput
from .stages.voice import VoiceOptions, record_audio_stem
from .templates import DEFAULT_PERSONA, Personas, file_ref, load_template

DEFAULT_OUTPUT_DIR = Path("data/generated")
#: File name of the script ledger under ``output_dir`` (lets ``resume`` reuse finished texts):
#: step 1's ledger, as a chain names it.
LEDGER_NAME = f"{step_label(1, 'script')}.ledger.jsonl"
#: File name of the voice ledger under ``output_dir`` (lets ``resume`` keep finished intros).
VOICE_LEDGER_NAME = f"{step_label(2, 'voice')}.ledger.jsonl"
#: The template of a banter batch (``banter``) that names no dialogue template of its own.
BANTER_TEMPLATE = "radio-banter"
#: The take the script stage gives a song's one text (``variants`` 1): part of the intro's name.
TAKE = 0


@dataclass
class GenerationResult:
    """The outcome for one song.

    :ivar song_id: the song's ``id`` as a string.
    :ivar dj: the persona that read the intro.
    :ivar text: the intro text (served from the ledger on ``resume``); ``None`` when the text
        step failed.
    :ivar audio_path: the WAV file (``None`` when the song failed).
    :ivar error: one line for people when ``success`` is false.
    :ivar skipped: ``resume`` served the intro from the ledgers; no model made it in this call.
    :ivar checks_passed: whether the intro text passed its template's checks (``script.checks``;
        ``require_checks`` fails a song whose intro did not); ``None`` when no text was checked.
    :ivar checks_failed: the names of the checks it failed (``["grounded", "length"]``).
    :ivar checks_details: what each failed check found (``{"grounded": ["Berlin"]}``).
    :ivar hosts: a banter's hosts (persona names, first the opener); ``[]`` for one DJ.
    :ivar turns: the banter's turns (``[{"speaker", "text"}]``, ``script.turns``); ``[]`` for one DJ.
    """

    song_id: str
    dj: str
    text: str | None
    audio_path: Path | None
    success: bool
    error: str | None = None
    skipped: bool = False
    checks_passed: bool | None = None
    checks_failed: list[str] = field(default_factory=list)
    checks_details: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    turns: list[dict[str, str]] = field(default_factory=list)


@dataclass
class BatchProgress:
    """Where a batch stands, passed to ``progress_callback`` after each song.

    :ivar total: songs in the batch.
    :ivar completed: songs finished so far, whatever the outcome (failed and
        skipped included), so the last update has ``completed == total``.
    :ivar failed: how many of those failed.
    :ivar current_song: the title (or id) of the song just finished.
    :ivar checks_failed: how many of those had an intro that failed its checks (voiced or not).
    """

    total: int
    completed: int
    failed: int
    current_song: str
    checks_failed: int = 0

    @property
    def percent(self) -> float:
        """``completed`` as a percentage of ``total`` (0.0 when ``total`` is 0)."""
        return 100.0 * self.completed / self.total if self.total > 0 else 0.0


ProgressCallback = Callable[[BatchProgress], None]


def _safe_name(value: Any) -> bool:
    text = str(value)
    return bool(text) and slugify(text) == text


def _count(counts: dict[str, int], result: GenerationResult) -> None:
    counts["skipped" if result.skipped else "completed" if result.success else "failed"] += 1
    if result.checks_passed is False:
        counts["checks_failed"] += 1


def _with_checks(result: GenerationResult, out: dict[str, Any]) -> GenerationResult:
    """``result`` with the checks of the record ``out``: ``script.checks``, else those of an
    ``error`` that rejected the text (``require_checks``)."""
    script, error = out.get("script"), out.get("error")
    checks = script.get("checks") if isinstance(script, dict) else None
    if not isinstance(checks, dict) and isinstance(error, dict):
        checks = error.get("checks")
    if isinstance(checks, dict) and isinstance(checks.get("passed"), bool):
        failed, details = checks.get("failed"), checks.get("details")
        result.checks_passed = checks["passed"]
        result.checks_failed = [str(f) for f in failed] if isinstance(failed, list) else []
        result.checks_details = dict(details) if isinstance(details, dict) else {}
    if isinstance(script, dict) and isinstance(script.get("turns"), list):  # a banter
        result.hosts = [str(h) for h in script.get("hosts") or []]
        result.turns = [dict(t) for t in script["turns"] if isinstance(t, dict)]
    return result


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
    :param banter: two hosts (persona names or files, the first opens) who introduce each song
        together (template ``radio-banter`` unless ``template`` names another dialogue
        template); ``None``: one DJ reads each intro.
    :raises UsageError: unknown backend, template or persona; ``best_of``/``batch`` out of range;
        ``banter`` that is not two different personas, or a one-voice ``template`` with it.
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
        banter: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
        self.emitter = emitter or NullEmitter()
        self.banter = list(banter) if banter is not None else None
        if self.banter is not None and (len(self.banter) != 2 or not all(isinstance(h, str) and h.strip()
                                                                        for h in self.banter)):
            raise UsageError(f"banter takes two hosts (persona names or files), not {banter!r}",
                             hint='banter=["max", "julie"]: the first opens')
        if self.banter is not None and template == "song-intro":
            template = BANTER_TEMPLATE
        self.template = template
        self.persona = (self.banter[0] if self.banter else persona) or DEFAULT_PERSONA
        self.seed = seed
        self.max_tokens = max_tokens
        self.retries = retries
        self.best_of, self.batch, self.require_checks = best_of, batch, require_checks
        # unknown template or persona, bad values: a usage error now, not per song
        ScriptOptions(template=template, persona=None if self.banter else persona, personas=self.banter,
                      best_of=best_of, batch=batch).validate()
        if self.banter is not None and not load_template(template).dialogue:
            raise UsageError(f"banter needs a dialogue template; '{template}' has one speaker",
                             hint=f"leave template out (banter uses {BANTER_TEMPLATE})")
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
            return ScriptOptions(template=self.template, persona=persona, seed=self.seed, personas=self.banter,
                                 max_tokens=self.max_tokens, retries=self.retries, resume=resume,
                                 best_of=self.best_of, batch=self.batch, require_checks=self.require_checks)
        return VoiceOptions(out_dir=str(self.intros_dir), format="wav", sample_rate=self.sample_rate,
                            loudness=self.loudness, seed=self.seed, retries=self.retries, resume=resume,
                            persona=persona, overwrite=True)  # the batch decides what it keeps

    def _prepare(self, song: Any, personas: Personas, claims: NameClaims) -> dict[str, Any] | GenerationResult:
        """The stage record of ``song``, or its final result (a bad song)."""
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
        return record

    def _result(self, out: dict[str, Any]) -> GenerationResult:
        script = out.get("script")
        text = script.get("text") if isinstance(script, dict) else None
        sid, who = str(out["id"]), str(out["dj"])
        if "error" in out:
            return _with_checks(GenerationResult(sid, who, text, None, False, _error_text(out["error"])), out)
        audio = out.get("audio") or {}
        path = Path(audio["path"]) if audio.get("path") else None
        if path is None:
            return _with_checks(GenerationResult(sid, who, text, None, False, "the voice stage wrote no audio"), out)
        return _with_checks(GenerationResult(sid, who, text, path, True, skipped=bool(audio.get("skipped"))), out)

    def _plans_protect(self, persona: str) -> list[str | None]:
        """The persona files a batch must not overwrite: its default DJ's and its hosts'."""
        return [file_ref(p) for p in [persona, *(self.banter or [])]]

    def _plans(self, groups: list[list[dict[str, Any]]], persona: str, resume: bool,
               ledgers: tuple[Ledger, Ledger]) -> tuple[list[StepPlan], list[list[dict[str, Any]]]]:
        """Two steps per group of songs (one group: two phases; one per song: song by song), and
        the lists the script steps keep their texts in."""
        protect = self._plans_protect(persona)
        plans: list[StepPlan] = []
        texts: list[list[dict[str, Any]]] = []
        for group in groups:
            kept: list[dict[str, Any]] = []
            texts.append(kept)
            plans.append(StepPlan("script", len(plans) + 1, options=self._options("script", persona, resume),
                                  backend=self.llm, checkpoint=ledgers[0], output=kept, records=group,
                                  shown=str(ledgers[0].path), protect=protect))
            plans.append(StepPlan("voice", len(plans) + 1, options=self._options("voice", persona, resume),
                                  backend=self.tts, checkpoint=ledgers[1], shown=str(self.intros_dir),
                                  protect=protect))
        return plans, texts

    def _generate(self, driver: Driver, plans: list[StepPlan], texts: list[list[dict[str, Any]]],
                  groups: list[list[dict[str, Any]]],
                  made: list[int], counts: dict[str, int]) -> Generator[GenerationResult, None, None]:
        """One result per song of ``groups``, in order: the voice steps' records (a song whose text
        failed passes through with its error, as in a chain). A step that cannot run ends the
        batch (the driver's failure rule): every song left fails with its error. ``made[0]``
        counts the results given, ``counts`` them by outcome."""
        with closing(driver.stream(plans, lambda: StepInput((), None))) as steps:
            try:
                while True:
                    result = self._result(next(steps))
                    made[0] += 1
                    _count(counts, result)
                    yield result
            except StopIteration as stop:
                outcome = stop.value
        if outcome.error is None:
            return
        error = outcome.result["error"]
        done = made[0]
        for group, kept in zip(groups, texts, strict=True):
            for position, record in enumerate(group):
                if done > 0:
                    done -= 1
                    continue
                record = kept[position] if position < len(kept) else record
                result = self._result(record if "error" in record else {**record, "error": error})
                made[0] += 1
                _count(counts, result)
                yield result

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
            ledgers = Ledger(self.output_dir / LEDGER_NAME), Ledger(self.output_dir / VOICE_LEDGER_NAME)
        except AicpError as exc:  # an unknown batch dj, an unreadable ledger: no song can be made
            message = _error_text(error_object(exc, stage="script"))
            prepared = [GenerationResult(str(s.get("id", "")) if isinstance(s, dict) else str(s), persona,
                                         None, None, False, message) for s in songs]
        else:
            claims = NameClaims()
            prepared = [self._prepare(song, personas, claims) for song in songs]
        pending = [item for item in prepared if isinstance(item, dict)]
        groups = ([pending] if two_phase else [[record] for record in pending]) if pending else []
        decided = [item for item in prepared if isinstance(item, GenerationResult)]
        made = [0]  # results of pending songs given so far

        counts = {"completed": 0, "failed": 0, "skipped": 0, "checks_failed": 0}
        for result in decided:
            _count(counts, result)

        def songs_done() -> dict[str, Any]:  # pipeline_complete's ``songs``: every song left fails
            return {"songs": {**counts, "failed": counts["failed"] + len(pending) - made[0]}}

        plans, texts = self._plans(groups, persona, resume, ledgers) if ledgers else ([], [])
        driver = Driver(self.emitter, name="radio-intros", audio_dir=self.intros_dir, extra=songs_done,
                        config={"output_dir": self.output_dir, "two_phase": two_phase, "songs": len(songs),
                                "llm": self.llm.describe(), "tts": self.tts.describe()})
        made_now = self._generate(driver, plans, texts, groups, made, counts)
        progress = BatchProgress(total=len(songs), completed=0, failed=0, current_song="")
        try:
            for song, item in zip(songs, prepared, strict=True):  # both in input order: no reordering
                result = item if isinstance(item, GenerationResult) else next(made_now)
                progress.completed += 1
                progress.failed += 0 if result.success else 1
                progress.checks_failed += 1 if result.checks_passed is False else 0
                title = (song.get("title") or song.get("id")) if isinstance(song, dict) else None
                progress.current_song = str(title or result.song_id)
                if progress_callback is not None:
                    progress_callback(BatchProgress(**vars(progress)))
                yield result
            for _ in made_now:  # the driver ends: pipeline_complete
                pass
        finally:
            made_now.close()  # a batch left early: the running stage ends and unloads its model


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
