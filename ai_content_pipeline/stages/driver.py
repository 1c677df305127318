"""One driver: every front end runs its steps here, as a chain.

``aicp-script`` and ``aicp-voice`` run a chain of one step whose records go to stdout
(:mod:`~ai_content_pipeline.stages.commands`); ``aicp run-chain`` and a service job run a
chain whose step ``NN`` writes ``NN-type.jsonl`` (:mod:`~ai_content_pipeline.chain.runner`);
the radio API runs a chain of two steps held in memory (:mod:`ai_content_pipeline.radio`).
:class:`Driver` holds what they share:

- the checks before any step: the front end's path check, ``resume`` needs a ledger and
  ``redo_failed`` needs ``resume``, the
  folders locked for the run, the step records of an earlier run refused without
  ``resume``/``overwrite`` (the overwrite rule; each stage refuses its own files before its
  model loads, :meth:`~ai_content_pipeline.stages.common.Stage.refuse_replacing`);
- the steps, one after the other: each reads the previous step's records (the first one the
  run's input, read once; a step may name its own), runs its stage
  (:class:`~ai_content_pipeline.stages.step.StageRun`: its ledger is the resume rule, its
  ``protect`` files the protected-file rule) and sends its records where the step says: a file
  written atomically, a list, a ``write`` callable, or the caller (yielded, the last one after
  the stage ended and its model unloaded);
- one take log for the run (``--log``), opened once the input is open;
- one set of events, the documented table (:mod:`~ai_content_pipeline.eventdocs`): a chain
  sends ``pipeline_start``, ``step_start``, ``step_complete`` (with the step's ``cost``),
  ``step_error`` and ``pipeline_complete``; a command sends ``run_complete`` instead;
- one failure rule: a record that fails carries its ``error`` on (exit 3); ``strict``
  (``--strict``, ``on_error: stop``) stops at the first one (exit 1); a step that cannot run
  ends the run: a chain reports it in its result (``step_error``, no later step runs), a
  command raises it;
- one cost sum (:func:`step_cost` per step, ``total_cost`` in :func:`chain_result`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from ..errors import AicpError, UsageError, error_object
from ..events import Emitter, NullEmitter, StepEmitter
from ..faults import os_error
from ..files import FolderLock, write_atomic
from ..jsonl import InputLine, RecordWriter
from ..ledger import Ledger
from ..status import ExitStatus
from . import registry
from .common import Cancelled, StageStats, first_existing, refuse_overwrite
from .step import StageRun, StepInput, Write, read_input

GPU_DEVICES = ("cuda", "gpu", "mps")
#: Highest cost one step may have: a larger one comes from a usage count that is not real, and
#: sums of such costs could pass what a float holds (``inf``, written as JSON ``null``).
MAX_STEP_COST = 1e15


def step_cost(prices: Any, tokens: int, audio_seconds: float, seconds: float, device: str | None) -> float:
    """Cost of one step from a price table (``per_1k_tokens``, ``per_audio_minute``,
    ``per_gpu_second``): tokens/1000, audio minutes, GPU seconds.

    :raises AicpError: the cost is past :data:`MAX_STEP_COST` (never ``inf`` or ``null``).
    """
    on_gpu = bool(device) and str(device).lower().startswith(GPU_DEVICES)
    try:
        cost = (tokens / 1000.0 * prices.per_1k_tokens + audio_seconds / 60.0 * prices.per_audio_minute
                + (seconds * prices.per_gpu_second if on_gpu else 0.0))
    except OverflowError:  # an integer token count past what a float holds
        cost = float("inf")
    if not 0 <= cost <= MAX_STEP_COST:  # NaN too
        raise AicpError(f"the step's cost is past {MAX_STEP_COST:g} at the chain's prices: its token, audio "
                        "or GPU-second counts are not real ones; no cost was added to total_cost",
                        hint="check the backend's token counts and the chain's prices:")
    return round(cost, 6)


def step_label(number: int, kind: str) -> str:
    """``NN-type``: the stem of step ``number``'s files (``01-script``)."""
    return f"{number:02d}-{kind}"


@dataclass
class StepSummary:
    """What one finished step produced (an item of ``outputs.steps``)."""

    step: int
    type: str
    name: str | None
    path: str
    ledger: str
    cost: float
    duration_seconds: float
    stats: dict[str, Any]
    backend: dict[str, Any] = field(default_factory=dict)

    def emit(self, emitter: Emitter) -> None:
        """Send this step's ``step_complete`` (the documented fields, :mod:`~ai_content_pipeline.eventdocs`)."""
        extra = {k: self.stats[k] for k in ("checks", "audio_checks") if k in self.stats}
        emitter.step_complete(self.step, self.cost, self.path, self.duration_seconds, type=self.type,
                              records=self.stats["records"], tokens=self.stats["tokens"],
                              audio_seconds=self.stats["audio_seconds"], **extra)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: step, type, name, path, ledger, cost, duration_seconds, backend, records, tokens..."""
        return {"step": self.step, "type": self.type, "name": self.name, "path": self.path, "ledger": self.ledger,
                "cost": self.cost, "duration_seconds": self.duration_seconds,
                "backend": self.backend, **self.stats}


@dataclass
class ChainResult:
    """The outcome of a run of steps (:meth:`Driver.run`, :func:`~ai_content_pipeline.chain.runner.run_chain`).

    :ivar result: the ``pipeline_complete`` fields (:func:`chain_result`).
    :ivar exit_status: 0 ok, 3 some records failed, or the step error's status (1, 2, 4, 130).
    :ivar error: the error that ended the run early, else ``None``.
    """

    result: dict[str, Any]
    exit_status: ExitStatus
    error: AicpError | None = None


def chain_result(name: str, steps: list[StepSummary], total_steps: int, t0: float,
                 error: dict[str, Any] | None, audio_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The ``pipeline_complete`` fields of a run of ``total_steps`` steps that finished ``steps``.

    Shape: ``name``, ``success`` (every step finished, no error), ``steps_completed``,
    ``total_steps``, ``total_cost``, ``total_time`` (seconds since ``t0``, monotonic),
    ``outputs`` (``final``: the last step's ``{path, step, type}``; ``steps``: one summary per
    finished step; ``audio_dir``: ``audio_dir`` when a finished step wrote audio, else ``null``),
    ``error`` (object or ``null``), ``records`` (the last step's ``{total, completed, failed,
    skipped}``), ``tokens`` (``{prompt, completion}`` over all steps) and ``audio_seconds``.
    """
    last = steps[-1] if steps else None
    has_audio = any(folder == "audio" for s in steps for folder, _ in registry.get(s.type).dirs.values())
    return {
        "name": name,
        "success": error is None and len(steps) == total_steps,
        "steps_completed": len(steps),
        "total_steps": total_steps,
        "total_cost": round(sum(s.cost for s in steps), 6),
        "total_time": round(time.monotonic() - t0, 3),
        "outputs": {
            "final": {"path": last.path, "step": last.step, "type": last.type} if last else None,
            "steps": [s.as_dict() for s in steps],
            "audio_dir": str(audio_dir) if has_audio and audio_dir is not None else None,
        },
        "error": error,
        "records": last.stats["records"] if last else {"total": None, "completed": 0, "failed": 0, "skipped": 0},
        "tokens": {k: sum(s.stats["tokens"][k] for s in steps) for k in ("prompt", "completion")},
        "audio_seconds": round(sum(s.stats["audio_seconds"] for s in steps), 3),
    }


#: Where a step's records go: a records file (path, written atomically: the next step reads it),
#: a ``list`` (kept in memory: the next step reads it), a ``write(record)`` callable (stdout),
#: or ``None`` (yielded to the caller of :meth:`Driver.stream`).
Output = str | os.PathLike[str] | list[dict[str, Any]] | Write | None


def _is_file(output: Output) -> bool:
    return isinstance(output, (str, os.PathLike))


@dataclass
class StepPlan:
    """One step of a run.

    :ivar kind: its step type (a registered kind: ``script``, ``voice``).
    :ivar number: its 1-based position (``step`` of its events, ``NN`` of its files).
    :ivar name: its label (``outputs.steps[].name``).
    :ivar enabled: ``False``: skipped, with a message (its input goes to the next step).
    :ivar options: the stage options (``ScriptOptions``...), unless :attr:`setup` builds them.
    :ivar backend: the stage's backend, built not loaded (``None``: the kind uses none).
    :ivar setup: ``setup() -> (backend, options)``, called when the step starts (a chain builds
        each step's backend then, so an unavailable one is that step's error).
    :ivar checkpoint: its ledger (a path, or a :class:`~ai_content_pipeline.ledger.Ledger`
        several steps share), or ``None``; ``resume`` needs one.
    :ivar output: where its records go (:data:`Output`).
    :ivar shown: what ``step_complete``'s ``output`` names when :attr:`output` is no file.
    :ivar records: records this step reads instead of the previous step's (``None``: those).
    :ivar protect: files no output of its stage may replace.
    :ivar prepare: ``prepare(stage)`` once the stage is built, before the run's input is read.
    :ivar started: ``started(stage, lines)`` once its input is open, before the first record.
    """

    kind: str
    number: int = 1
    name: str | None = None
    enabled: bool = True
    options: Any = None
    backend: Any = None
    setup: Callable[[], tuple[Any, Any]] | None = None
    checkpoint: str | os.PathLike[str] | Ledger | None = None
    output: Output = None
    shown: str | None = None
    records: Sequence[dict[str, Any]] | None = None
    protect: Iterable[Any] = ()
    prepare: Callable[[Any], None] | None = None
    started: Callable[[Any, StepInput], None] | None = None


def _memory(records: Sequence[dict[str, Any]]) -> list[InputLine]:
    return [InputLine(n, "memory", record=r) for n, r in enumerate(records, start=1)]


class Driver:
    """Runs a list of :class:`StepPlan` (see the module docstring).

    :param emitter: receives every event of the run.
    :param chain: ``True``: a chain's events (``pipeline_*``, ``step_*``) and its failure rule (a
        step that cannot run ends the run in its result); ``False``: a command's (the stage's
        events, then ``run_complete``; a step that cannot run raises).
    :param name: the chain's name (``pipeline_start``/``pipeline_complete``).
    :param config: ``pipeline_start``'s ``config``.
    :param prices: the price table of :func:`step_cost` (``None``: every step costs 0).
    :param resume: serve finished records from the ledgers (with the stages' ``resume`` option).
    :param overwrite: replace the files an earlier run wrote.
    :param cancel: ``cancel() -> bool``, asked before each step, record and long-form chunk:
        true ends the run with :class:`~ai_content_pipeline.stages.common.Cancelled` (130),
        keeping the records finished.
    :param log: the take log (``--log``) every stage adds its takes to; ``program`` names the run.
    :param check: ``check()`` before anything runs: the front end's path checks.
    :param locks: ``(folder, what)`` locked for the run (a second run on one stops at once).
    :param audio_dir: ``outputs.audio_dir`` of the result.
    :param extra: ``extra() -> dict``: fields ``pipeline_complete`` adds (the radio's ``songs``).
    """

    def __init__(self, emitter: Emitter | None = None, *, chain: bool = True, name: str = "chain",
                 config: dict[str, Any] | None = None, prices: Any = None, resume: bool = False,
                 overwrite: bool = False, cancel: Callable[[], bool] | None = None, log: str | None = None,
                 program: str = "aicp", check: Callable[[], None] | None = None,
                 locks: Iterable[tuple[str | os.PathLike[str], str]] = (),
                 audio_dir: str | os.PathLike[str] | None = None,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.emitter = emitter or NullEmitter()
        self.chain = chain
        self.name, self.config = name, config or {}
        self.prices = prices
        self.resume, self.overwrite = resume, overwrite
        self.cancel = cancel
        self.log, self.program = log, program
        self.check = check
        self.locks = list(locks)
        self.audio_dir = audio_dir
        self.extra = extra
        self.takelog: Any = None
        #: the finished steps' summaries, in order
        self.steps: list[StepSummary] = []
        #: the counts of the last step that finished (a command's)
        self.stats: StageStats | None = None
        #: the ``pipeline_complete`` fields once sent (also when the run raises)
        self.completed: dict[str, Any] | None = None
        self._inputs: list[StepInput] = []
        self._enabled: list[StepPlan] = []

    def run(self, plans: Sequence[StepPlan], source: Callable[[], StepInput], **kwargs: Any) -> ChainResult:
        """Run ``plans`` to the end (:meth:`stream`, records sent nowhere) and return the outcome."""
        steps = self.stream(plans, source, **kwargs)
        try:
            while True:
                next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def stream(self, plans: Sequence[StepPlan], source: Callable[[], StepInput], *, read_first: bool = False,
               shard: Any = None) -> Generator[dict[str, Any], None, ChainResult]:
        """Run ``plans`` in order; yield the records of the steps whose ``output`` is ``None``;
        return the :class:`ChainResult`.

        :param source: ``source() -> StepInput``: the run's input, opened once, read by the first
            step (a pipe lazily, a file spooled: its total known first).
        :param read_first: open the input before the first step starts (a chain: an unreadable
            input is the chain's error); else once the first stage is built (a command: a bad
            persona or template stops it before a pipe is read).
        :param shard: ``--shard K/N`` (:class:`~ai_content_pipeline.shards.ShardRun`) the input
            was opened with: the first step tags its records.
        :raises AicpError: a command's step that cannot run (a chain's goes in its result).
        :raises KeyboardInterrupt: after ``step_error``. :raises Exception: an unexpected error,
            after ``step_error`` and ``pipeline_complete``.
        """
        t0 = time.monotonic()
        enabled = self._enabled = [p for p in plans if p.enabled]
        if self.chain:
            self.emitter.pipeline_start(self.name, len(enabled), self.config)
        locks: list[FolderLock] = []
        try:
            try:
                for plan in enabled:  # the resume rule: the ledger says what is kept
                    if getattr(plan.options, "resume", False) and plan.checkpoint is None:
                        raise UsageError("--resume needs --checkpoint PATH (the ledger of finished records)")
                    if getattr(plan.options, "redo_failed", False) and not getattr(plan.options, "resume", False):
                        raise UsageError("--redo-failed needs --resume: it makes again the takes of the ledger "
                                         "whose checks failed, and serves the others from it")
                if self.check is not None:
                    self.check()
                for folder, what in self.locks:
                    locks.append(FolderLock(folder, what).acquire())
                if not (self.resume or self.overwrite):  # the overwrite rule, for step records
                    found = first_existing(p.output for p in enabled if _is_file(p.output))  # type: ignore[misc]
                    if found is not None:
                        raise refuse_overwrite(found, "step records")
                first: StepInput | None = None
                if read_first and enabled:
                    first = self._open(source)
                    self._open_log()
            except AicpError as exc:
                if not self.chain:
                    raise
                return self._stopped(t0, exc)
            return (yield from self._steps(plans, t0, source, first, shard))
        finally:
            for opened in self._inputs:
                opened.close()
            for lock in reversed(locks):
                lock.release()
            if self.takelog is not None:
                self.takelog.close()

    def _open(self, source: Callable[[], StepInput]) -> StepInput:
        opened = source()
        self._inputs.append(opened)
        return opened

    def _open_log(self) -> Any:
        """The run's take log, opened the first time it is asked for (``None`` without ``log``)."""
        if self.log and self.takelog is None:
            from ..takelog import TakeLog

            self.takelog = TakeLog(self.log, self.program)
        return self.takelog

    def _steps(self, plans: Sequence[StepPlan], t0: float, source: Callable[[], StepInput],
               first: StepInput | None, shard: Any) -> Generator[dict[str, Any], None, ChainResult]:
        emitter = self.emitter
        error: AicpError | None = None
        error_obj: dict[str, Any] | None = None
        lines: Iterable[InputLine] | None = first
        total = first.total if first is not None else None
        replay: Callable[[], Iterable[InputLine]] | None = \
            (lambda: first) if first is not None and total is not None else None
        for plan in plans:
            if not plan.enabled:
                if error is None:
                    emitter.message(f"step {plan.number} ({plan.kind}) is disabled; skipped")
                continue
            if error is not None:
                break
            try:
                if self.cancel is not None and self.cancel():
                    raise Cancelled(f"chain cancelled before step {plan.number}")
                if plan.records is not None:
                    given = _memory(plan.records)
                    lines, total, replay, shard = given, len(given), (lambda g=given: g), None
                summary, written = yield from self._step(plan, lines, total, shard, replay, source)
            except (AicpError, OSError) as exc:
                if not self.chain:
                    raise
                error = exc if isinstance(exc, AicpError) else os_error(exc)
                error_obj = {**error_object(error, stage=plan.kind), "step": plan.number}
                emitter.step_error(plan.number, str(error), plan.kind)
                break
            except GeneratorExit:
                raise
            except BaseException as exc:
                if self.chain:
                    interrupted = isinstance(exc, KeyboardInterrupt)
                    emitter.step_error(plan.number, (str(exc) or "interrupted") if interrupted
                                       else f"{type(exc).__name__}: {exc}", plan.kind)
                    if not interrupted:
                        self.completed = self._result(t0, {"stage": plan.kind, "step": plan.number,
                                                           "type": type(exc).__name__, "message": str(exc)})
                        emitter.pipeline_complete(self.completed)
                raise
            self.steps.append(summary)
            shard = None
            lines, total, replay = self._next_input(plan.output, written)
        result = self._result(t0, error_obj)
        if self.chain:
            self.completed = result
            emitter.pipeline_complete(result)
        if error is not None:
            status = error.exit_status
        elif any(s.stats["records"]["failed"] for s in self.steps):
            status = ExitStatus.PARTIAL
        else:
            status = ExitStatus.SUCCESS
        return ChainResult(result, status, error)

    @staticmethod
    def _next_input(output: Output, written: int) -> tuple[Iterable[InputLine] | None, int | None,
                                                             Callable[[], Iterable[InputLine]] | None]:
        """The next step's input: the records this step wrote (``None`` when they went away)."""
        if _is_file(output):
            return read_input([output]), written, functools.partial(read_input, [output])  # type: ignore[list-item]
        if isinstance(output, list):
            kept = _memory(output)
            return kept, len(kept), lambda: kept
        return [], 0, None

    def _step(self, plan: StepPlan, lines: Iterable[InputLine] | None, total: int | None, shard: Any,
              replay: Callable[[], Iterable[InputLine]] | None,
              source: Callable[[], StepInput]) -> Generator[dict[str, Any], None, tuple[StepSummary, int]]:
        """Run one step; yield its records when its ``output`` is ``None``; its summary and how many
        records it wrote (the next step's ``total``: its input is not counted again)."""
        emitter = self.emitter
        backend, options = (plan.setup() if plan.setup is not None else (plan.backend, plan.options))
        info = backend.describe() if backend is not None else {}
        if self.chain:
            emitter.step_start(plan.number, plan.kind, info.get("model"))
        t0 = time.monotonic()
        held: dict[str, Any] | None = None
        failure: BaseException | None = None
        written = 0
        with StageRun(plan.kind, backend, options, emitter=StepEmitter(emitter, plan.number) if self.chain else emitter,
                      checkpoint=plan.checkpoint, cancel=self.cancel, protect=plan.protect,
                      takelog=self.takelog) as run:
            if plan.prepare is not None:
                plan.prepare(run.stage)
            if lines is None:  # the run's input, once the first stage is built
                opened = self._open(source)
                lines, total = opened, opened.total
                replay = (lambda: opened) if total is not None else None
                run.stage.takelog = self._open_log()
            if replay is not None:  # the overwrite rule, before this step's model loads
                run.stage.refuse_replacing(replay)
            if plan.started is not None:
                plan.started(run.stage, lines)  # type: ignore[arg-type]
            output = plan.output
            if _is_file(output):
                cancelled: list[Cancelled] = []

                def fill(handle: Any) -> None:
                    nonlocal written
                    try:
                        written = run.run(lines, RecordWriter(handle).write, total, shard=shard)  # type: ignore[arg-type]
                    except Cancelled as exc:  # keep the records finished before the cancel
                        cancelled.append(exc)

                try:
                    write_atomic(output, fill)  # type: ignore[arg-type]
                except OSError as exc:
                    raise os_error(exc, output) from exc  # type: ignore[arg-type]
                if cancelled:
                    raise cancelled[0]
            elif output is None:  # to the caller, the last one once the stage ended (model unloaded)
                try:
                    with closing(run.records(lines, total)) as outs:  # type: ignore[arg-type]
                        for out in outs:
                            if held is not None:
                                yield held
                            held, written = out, written + 1
                except (AicpError, OSError) as exc:
                    failure = exc
            else:
                write = output.append if isinstance(output, list) else output
                written = run.run(lines, write, total, shard=shard)  # type: ignore[arg-type]
        if failure is not None:
            if held is not None:
                yield held
            raise failure
        self.stats = run.stats
        duration = round(time.monotonic() - t0, 3)
        stats = run.stats.as_dict()
        tokens = stats["tokens"]["prompt"] + stats["tokens"]["completion"]
        cost = (step_cost(self.prices, tokens, stats["audio_seconds"], duration, info.get("device"))
                if self.prices is not None else 0.0)
        ledger = plan.checkpoint.path if isinstance(plan.checkpoint, Ledger) else plan.checkpoint
        shown = str(output) if _is_file(output) else (plan.shown or "")
        summary = StepSummary(plan.number, plan.kind, plan.name, shown, str(ledger or ""), cost, duration, stats, info)
        if self.chain:
            summary.emit(emitter)
        else:
            emitter.run_complete(plan.kind, stats)
        if held is not None:
            yield held
        return summary, written

    def _result(self, t0: float, error: dict[str, Any] | None) -> dict[str, Any]:
        result = chain_result(self.name, self.steps, len(self._enabled), t0, error, self.audio_dir)
        return {**result, **self.extra()} if self.extra is not None else result

    def _stopped(self, t0: float, exc: AicpError) -> ChainResult:
        """End before the first step: ``pipeline_complete`` with ``exc`` as its error (the
        caller reports ``exc``, once: the command's one error handler)."""
        result = self.completed = self._result(t0, {**error_object(exc, stage="chain"), "step": None})
        self.emitter.pipeline_complete(result)
        return ChainResult(result, exc.exit_status, exc)


__all__ = ["GPU_DEVICES", "MAX_STEP_COST", "ChainResult", "Driver", "Output", "StepPlan", "StepSummary",
           "chain_result", "step_cost", "step_label"]
