"""The one-stage commands: ``aicp-script`` and ``aicp-voice`` as chains of one step.

:func:`run_step` runs one step through the one :class:`~ai_content_pipeline.stages.driver.Driver`
every front end shares (the resume, path, overwrite, take-log and failure rules, ``run_complete``),
its records going to ``write`` (stdout) instead of ``NN-type.jsonl``. :func:`run_script` and
:func:`run_voice` add only what their stage needs before it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

from ..events import Emitter
from ..files import check_output_dir
from ..templates import file_ref
from .common import StageStats, check_run_paths
from .driver import Driver, StepPlan
from .step import StepInput, Write, open_input

if TYPE_CHECKING:
    from ..backends.base import LLMBackend, TTSBackend
    from ..shards import ShardRun
    from .script import ScriptOptions
    from .voice import VoiceOptions


def run_step(kind: str, sources: Iterable[str], options: Any, *, backend: Any, emitter: Emitter, write: Write,
             program: str, checkpoint: str | None = None, stdin: IO[bytes] | None = None,
             stdout: IO[Any] | None = None, log: str | None = None, shard: ShardRun | None = None,
             reads: dict[str, str | None] | None = None, spool: bool | None = None,
             lock_dirs: dict[str, str] | None = None, protect: Iterable[Any] = (),
             prepare: Callable[[Any], None] | None = None,
             started: Callable[[Any, StepInput], None] | None = None) -> StageStats:
    """Run one step of type ``kind`` over JSON Lines ``sources`` as a command does: a chain of
    one step (:class:`~ai_content_pipeline.stages.driver.Driver`) whose records go to ``write``.

    :param program: the take log's program name (``aicp-script``).
    :param reads: files the run reads besides its input (``{"--persona": path}``), checked
        not to be an output.
    :param spool: as :func:`~ai_content_pipeline.stages.step.open_input`.
    :param lock_dirs: ``{flag: folder}`` the stage writes into: checked, then locked before the
        input is read or a model loads (a second run on the folder stops at once).
    :param protect: files no output of the stage may replace (besides the checkpoint).
    :param prepare: ``prepare(stage)`` once the stage is built, before the input is read.
    :param started: ``started(stage, lines)`` once the input is open, before the first record.
    :raises UsageError: ``resume`` without ``checkpoint``; a path problem; a file an earlier
        run wrote that this run would replace (without ``resume``/``overwrite``).
    """
    sources = list(sources) or ["-"]

    def check() -> None:
        check_run_paths(sources, checkpoint, stdout, reads, {"--log": log})
        for flag, folder in (lock_dirs or {}).items():
            check_output_dir(folder, flag)

    driver = Driver(emitter, chain=False, log=log, program=program, check=check,
                    locks=[(folder, flag) for flag, folder in (lock_dirs or {}).items()])
    plan = StepPlan(kind, options=options, backend=backend, checkpoint=checkpoint, output=write,
                    protect=protect, prepare=prepare, started=started)
    driver.run([plan], lambda: open_input(sources, stdin=stdin, shard=shard, spool=spool), shard=shard)
    assert driver.stats is not None
    return driver.stats


def run_script(sources: Iterable[str], options: ScriptOptions, *, backend: LLMBackend, emitter: Emitter,
               write: Write, checkpoint: str | None = None, stdin: IO[bytes] | None = None,
               stdout: IO[Any] | None = None, log: str | None = None, shard: ShardRun | None = None) -> StageStats:
    """Run the script stage over JSON Lines ``sources`` and ``write`` each output record.

    Reads the input once (:func:`~ai_content_pipeline.stages.step.open_input`: a regular file to
    its end first, for progress ``total``; a pipe record by record), opens the checkpoint
    ledger and streams records through the stage (long-form for a sectioned template), which
    loads the backend on the first request that the ledger cannot serve (``model_load``) and
    always unloads it at the end (``model_unload``), also on errors and Ctrl-C.

    :param sources: JSON Lines files (``-`` or none: ``stdin``).
    :param write: ``write(record)`` for each output record, in input order (e.g. ``RecordWriter.write``).
    :param checkpoint: the ledger file (``None``: no ledger; ``resume`` needs one).
    :param stdin: the binary stream ``-`` reads (default ``sys.stdin.buffer``).
    :param stdout: the stream ``write`` ends in, if any: checked not to be an input or the ledger.
    :param log: a take log (SQLite, :mod:`ai_content_pipeline.takelog`) that gets every take.
    :param shard: a :class:`~ai_content_pipeline.shards.ShardRun` (``--shard K/N``): only its lines
        are processed and each record is tagged with ``_aicp``.
    :returns: the run's :class:`StageStats`.
    :raises UsageError: ``resume`` without ``checkpoint``, unreadable input, an output that is
        also an input, a checkpoint, log or work folder that cannot be written, long-form work
        files of an earlier run without ``resume``/``overwrite`` (before any model call).
    :raises BackendUnavailable: the backend cannot be loaded.
    """

    def prepare(stage: Any) -> None:
        long_form = options.words is not None or options.sections is not None or stage.template.sections
        if long_form and not stage.template.dialogue:  # a long-form dialogue keeps no work files
            check_output_dir(options.work_dir, "--work-dir")  # before the input is read

    return run_step("script", sources, options, backend=backend, emitter=emitter, write=write,
                    program="aicp-script", checkpoint=checkpoint, stdin=stdin, stdout=stdout, log=log,
                    shard=shard, reads={"--persona": file_ref(options.persona),
                                        "--template": file_ref(options.template)}, prepare=prepare)


def run_voice(sources: Iterable[str], options: VoiceOptions, *, backend: TTSBackend, emitter: Emitter,
              write: Write, checkpoint: str | None = None, barrier: bool = True, stdin: IO[bytes] | None = None,
              stdout: IO[Any] | None = None, log: str | None = None, shard: ShardRun | None = None) -> StageStats:
    """Run the voice stage over JSON Lines ``sources`` and ``write`` each output record.

    ``barrier=True``: read all input to EOF first (spooled to a temporary file),
    then load the model on the first synthesis. ``barrier=False``: load the
    model at once and voice each record as it arrives. The backend is always
    unloaded at the end (``model_unload``), also on errors and Ctrl-C.

    :param sources: JSON Lines files (``-`` or none: ``stdin``).
    :param write: ``write(record)`` for each output record, in input order (e.g. ``RecordWriter.write``).
    :param checkpoint: the ledger file (``None``: no ledger; ``resume`` needs one).
    :param stdin: the binary stream ``-`` reads (default ``sys.stdin.buffer``).
    :param stdout: the stream ``write`` ends in, if any: checked not to be an input or the ledger.
    :param log: a take log (:mod:`ai_content_pipeline.takelog`): each audio file is added to the
        take its record came from.
    :param shard: a :class:`~ai_content_pipeline.shards.ShardRun` (``--shard K/N``): only its lines
        are voiced and each record is tagged with ``_aicp``.
    :returns: the run's :class:`StageStats` (``audio_seconds`` filled).
    :raises UsageError: ``resume`` without ``checkpoint``, unreadable input, bad format, an
        output that is also an input, a path that cannot be written, a locked ``out_dir``, an
        audio file of an earlier run without ``resume``/``overwrite`` (all before any model loads;
        with ``barrier=False`` the model loads first and such a file stops the run when reached).
    :raises BackendUnavailable: the backend cannot be loaded.
    """
    sources = list(sources) or ["-"]

    def started(stage: Any, lines: StepInput) -> None:
        if barrier:
            emitter.message(f"read {lines.total} records; loading the voice model", "debug")
            return
        try:
            stage.load()
        except BaseException:
            stage.session.close()
            raise

    return run_step("voice", sources, options, backend=backend, emitter=emitter, write=write,
                    program="aicp-voice", checkpoint=checkpoint, stdin=stdin, stdout=stdout, log=log,
                    shard=shard, reads={"--persona": file_ref(options.persona), **lexicon_reads(options.lexicon)},
                    spool=True if barrier else None, lock_dirs={"--out-dir": options.out_dir},
                    protect=(*sources, stdout, file_ref(options.persona), log), started=started)


def lexicon_reads(files: tuple[str, ...] | str) -> dict[str, str | None]:
    """``{"--lexicon": FILE, "--lexicon (2)": FILE2...}``: the lexicon files a voice run reads,
    labelled for :func:`~ai_content_pipeline.stages.common.check_run_paths`."""
    files = (files,) if isinstance(files, str) else files
    return {"--lexicon" if i == 0 else f"--lexicon ({i + 1})": f for i, f in enumerate(files)}


__all__ = ["run_script", "run_step", "run_voice"]
