"""One step: a stage over a stream of input records, with its ledger, events and cancel check.

Every front end runs a stage through here, by way of the one driver
(:class:`~ai_content_pipeline.stages.driver.Driver`): ``aicp-script`` and ``aicp-voice``
(:func:`~ai_content_pipeline.stages.commands.run_script`,
:func:`~ai_content_pipeline.stages.commands.run_voice`), each step of a chain
(:class:`~ai_content_pipeline.chain.runner.ChainRunner`, which ``aicp serve`` runs) and the
radio API (:mod:`ai_content_pipeline.radio`). A :class:`StageRun` opens the checkpoint ledger,
builds the stage from the registry (:mod:`~ai_content_pipeline.stages.registry`), hands it
the ``cancel`` check it asks between records and long-form chunks, streams records through
it to ``write`` and closes the ledger however the run ends. The stage loads its backend on
first use and unloads it when its run ends (``model_load``/``model_unload``).

A run reads its input once, through :func:`open_input`: regular files (and standard input
redirected from one) are read to their end into a :class:`SpooledLines` temporary file, which
gives the progress ``total`` before the first record is processed; a pipe is read lazily, record
by record, with ``total`` unknown (``None``). :func:`count_input` counts without keeping what it
read, for ``--dry-run`` plans that process nothing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from typing import IO, TYPE_CHECKING, Any

from ..events import Emitter
from ..jsonl import InputLine, count_records, countable, dumps, loads, read_records
from ..ledger import Ledger
from .common import Stage, StageStats
from .registry import build_stage

if TYPE_CHECKING:
    from ..shards import ShardRun

#: ``write(record)``: where a step's output records go (``RecordWriter.write``, ``list.append``).
Write = Callable[[dict[str, Any]], None]


def read_input(sources: Iterable[str | os.PathLike[str]], *, stdin: IO[bytes] | None = None,
               shard: ShardRun | None = None) -> Iterator[InputLine]:
    """The input lines of a step, lazily, in order: every record a step processes comes from here.

    :param sources: JSON Lines files (``-``: ``stdin``, default ``sys.stdin.buffer``).
    :param shard: ``--shard K/N``: only the lines of that shard (others are counted, not parsed).
    :raises UsageError: a source cannot be opened (before the first line).
    """
    if shard is not None:
        return shard.lines([str(s) for s in sources], stdin=stdin)
    return read_records(sources, stdin=stdin)


class SpooledLines:
    """Input lines read to EOF into an anonymous temporary file (not memory), then replayed.

    ``count`` is the number of lines spooled. Iterate to read them back in order;
    :meth:`close` (or the context manager) deletes the file.
    """

    def __init__(self, lines: Iterable[InputLine]) -> None:
        self._file = tempfile.TemporaryFile(prefix="aicp-spool-")
        self.count = 0
        try:
            for line in lines:
                self._file.write(dumps([line.line, line.source, line.record, line.error]) + b"\n")
                self.count += 1
            self._file.flush()
        except BaseException:
            self._file.close()
            raise

    def __iter__(self) -> Iterator[InputLine]:
        self._file.seek(0)
        for raw in self._file:
            number, source, record, error = loads(raw)
            yield InputLine(number, source, record=record, error=error)

    def close(self) -> None:
        """Delete the spool file."""
        self._file.close()

    def __enter__(self) -> SpooledLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StepInput:
    """The input lines of one run, read once (see :func:`open_input`): iterate for the lines.

    :ivar total: how many lines there are, known before the first one when the input was
        spooled (progress ``total``); ``None`` for a pipe read lazily.
    """

    def __init__(self, lines: Iterable[InputLine], total: int | None, spool: SpooledLines | None = None) -> None:
        self._lines = lines
        self.total = total
        self._spool = spool

    def __iter__(self) -> Iterator[InputLine]:
        return iter(self._lines)

    def close(self) -> None:
        """Delete the spool file, if any (idempotent)."""
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> StepInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(sources: Iterable[str | os.PathLike[str]], *, stdin: IO[bytes] | None = None,
               shard: ShardRun | None = None, spool: bool | None = None) -> StepInput:
    """A run's input lines (:func:`read_input`), read once, with their ``total`` when it can be known.

    :param spool: ``None``: spool when every source is a regular file
        (:func:`~ai_content_pipeline.jsonl.countable`), so ``total`` is known up front, and read
        a pipe lazily (``total`` ``None``); ``True``: always read to EOF first (``aicp-voice``'s
        barrier: no model loads before upstream is done); ``False``: never (``total`` ``None``).
        The spool is a temporary file (``SpooledLines``): the input file itself is read once.
    :raises UsageError: a source cannot be opened (when spooling: here, else before the first line).
    """
    sources = list(sources) or ["-"]
    lines = read_input(sources, stdin=stdin, shard=shard)
    if spool is None:
        spool = countable(sources, stdin=stdin)
    if not spool:
        return StepInput(lines, None)
    spooled = SpooledLines(lines)
    return StepInput(spooled, spooled.count, spooled)


def count_input(sources: Iterable[str | os.PathLike[str]], *, stdin: IO[bytes] | None = None,
                shard: ShardRun | None = None) -> int | None:
    """How many lines :func:`read_input` will yield, when every source is a regular file (or
    ``stdin`` redirected from one); ``None`` for a pipe, which cannot be counted without consuming
    it. A run does not call it (:func:`open_input` counts while it reads); ``--dry-run`` plans do."""
    if shard is not None:
        return shard.count([str(s) for s in sources], stdin=stdin)
    return count_records(sources, stdin=stdin)


class StageRun:
    """A stage of type ``kind`` with its ledger, used as a context manager.

    On entry the ledger at ``checkpoint`` is opened (``None``: no ledger) and the stage built
    (:func:`~ai_content_pipeline.stages.registry.build_stage`: the kind, or the refinement of it
    that ``options`` ask for, such as long-form); on exit the ledger is closed,
    also when the stage cannot be built or the run fails. The stage is :attr:`stage` in
    between (callers add what it needs: protected files, an early :meth:`load`).

    :param kind: a registered step type (``script``, ``voice``: see
        :func:`~ai_content_pipeline.stages.registry.stage_types`).
    :param backend: the stage's backend, built but not loaded (``None`` for a kind without one).
    :param options: ``ScriptOptions`` / ``VoiceOptions``.
    :param emitter: the stage's record, progress and model events.
    :param checkpoint: the ledger file, a :class:`~ai_content_pipeline.ledger.Ledger` already open
        (several steps of one batch share it: the file is read once), or ``None``.
    :param cancel: ``cancel() -> bool``, asked between records and long-form chunks.
    :param protect: files no output of the stage may replace (its inputs, stdout, the chain's
        files): added to the stage's ``protected`` set, for stages that write files.
    :param takelog: the take log the stage adds each take or file to (``--log``), or ``None``.
    :raises UsageError: on entry: unknown template, persona or format (the stage's own checks).
    """

    def __init__(self, kind: str, backend: Any, options: Any, *, emitter: Emitter,
                 checkpoint: str | os.PathLike[str] | Ledger | None = None,
                 cancel: Callable[[], bool] | None = None, protect: Iterable[Any] = (),
                 takelog: Any = None) -> None:
        self.kind = kind
        self.backend = backend
        self.options = options
        self.emitter = emitter
        self.checkpoint = checkpoint
        self.cancel = cancel
        self.protect = list(protect)
        self.takelog = takelog
        self.ledger: Ledger | None = None
        self._stage: Stage | None = None

    @property
    def stage(self) -> Any:
        """The stage (inside the ``with`` block)."""
        assert self._stage is not None, "use StageRun as a context manager"
        return self._stage

    @property
    def stats(self) -> StageStats:
        """The stage's counts (final once :meth:`run` returned)."""
        return self.stage.stats

    def __enter__(self) -> StageRun:
        if isinstance(self.checkpoint, Ledger):
            self.ledger = self.checkpoint
        else:
            self.ledger = Ledger(self.checkpoint) if self.checkpoint else None
        try:
            self._stage = build_stage(self.kind, self.backend, self.options, self.emitter, self.ledger)
        except BaseException:
            self.close()
            raise
        self._stage.cancel = self.cancel
        self._stage.takelog = self.takelog
        protected = getattr(self._stage, "protected", None)
        if protected is not None:
            for target in self.protect:
                protected.add(target)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the ledger (idempotent; a shared one reopens on its next append)."""
        if self.ledger is not None:
            self.ledger.close()

    def run(self, lines: Iterable[InputLine], write: Write, total: int | None = None, *,
            shard: ShardRun | None = None) -> int:
        """Stream ``lines`` through the stage and ``write`` each output record; how many were written.

        The stage's run is closed as soon as ``write`` fails (stdout closed by ``| head -1``), so
        the backend unloads and worker threads are let go at once.

        :param total: input lines, if known (progress ``total``).
        :param shard: ``--shard K/N`` (``lines`` from :func:`read_input` with it): each record is
            tagged ``_aicp`` for ``aicp merge``; the last one gets ``end`` when the run finished.
        :raises StrictStop: ``strict`` and a record failed. :raises Cancelled: ``cancel()`` said so.
        :raises BackendUnavailable: the backend cannot be loaded.
        """
        written = 0
        if shard is not None:
            write = shard.wrap(write)
        try:
            with closing(self.records(lines, total)) as records:
                for record in records:
                    write(record)
                    written += 1
            if shard is not None:
                shard.finish()
        finally:
            if shard is not None:
                shard.close()  # a record held back is written without ``end``: the shard is incomplete
        return written

    def records(self, lines: Iterable[InputLine], total: int | None = None) -> Generator[dict[str, Any], None, None]:
        """The stage's output records for ``lines``, lazily (what :meth:`run` writes); close the
        iterator to stop the run early (the backend unloads)."""
        with closing(self.stage.run(lines, total=total)) as records:
            yield from records


__all__ = ["SpooledLines", "StageRun", "StepInput", "Write", "count_input", "countable", "open_input", "read_input"]
