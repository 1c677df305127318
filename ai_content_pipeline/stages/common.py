"""What every stage shares: run statistics, record events, ordered concurrency, retries."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from ..errors import AicpError, RecordError, UsageError, error_object
from ..events import Emitter, NullEmitter
from ..files import check_output_file, refuse_overlap
from ..jsonl import InputLine, check_sources
from ..ledger import Ledger
from ..records import record_id
from ..status import ExitStatus

T = TypeVar("T")
R = TypeVar("R")


class StrictStop(AicpError):
    """``--strict``: the run stopped at the first failed record (exit 1)."""


class Cancelled(AicpError):
    """The run was cancelled from outside (``aicp serve``: DELETE of a job, a worker
    shutting down) at a record or long-form chunk boundary (exit 130).

    Stages raise it from :meth:`Stage.check_cancel`; records finished before it
    stay in the ledger, and the chain runner keeps the step's records so far.
    """

    exit_status = ExitStatus.INTERRUPTED


class OverwriteRefused(UsageError):
    """A run would replace a file it did not write (an earlier run's output) without
    ``--overwrite`` or ``--resume`` (exit 2, before any model loads where the input can be
    read ahead: see :meth:`Stage.planned_files`)."""


def refuse_overwrite(path: str | os.PathLike[str], what: str = "output file") -> OverwriteRefused:
    """The :class:`OverwriteRefused` error naming ``path`` (raise it)."""
    return OverwriteRefused(f"{what} {path} exists (an earlier run wrote it); not replaced",
                            hint="give --overwrite to replace it, --resume to keep what the ledger vouches "
                                 "for, or write to another folder")


def first_existing(paths: Iterable[str | os.PathLike[str]]) -> str | None:
    """The first of ``paths`` that exists (a file, a folder or a link), or ``None``."""
    for path in paths:
        if os.path.lexists(path):
            return str(path)
    return None


def _holds_anything(folder: str | os.PathLike[str]) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


@dataclass
class StageStats:
    """Counts and totals of one stage run.

    :ivar total: records expected (``None`` while unknown, e.g. reading a pipe).
    :ivar completed/failed/skipped: output records by outcome (takes count separately).
    :ivar prompt_tokens/completion_tokens: LLM tokens spent (0 for skipped records).
    :ivar audio_seconds: seconds of audio written.
    :ivar seconds: wall-clock seconds of the run.
    :ivar checks_passed/checks_failed: script takes that passed / failed their checks
        (served from the ledger and rejected by ``--require-checks`` included).
    :ivar audio_checks_passed/audio_checks_failed: audio files that passed / failed their
        checks (``aicp-voice --verify``; rejected by ``--require-checks`` included).
    :ivar truncated: script takes the model cut at ``--max-tokens`` (``script.truncated``).
    :ivar redone: script takes made again because their checks failed (``--redo-failed``).
    :ivar edited: script takes edited by hand and checked again (``--recheck``).
    """

    total: int | None = None
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    words: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    checks_passed: int = 0
    checks_failed: int = 0
    audio_checks_passed: int = 0
    audio_checks_failed: int = 0
    truncated: int = 0
    redone: int = 0
    edited: int = 0
    _t0: float = field(default_factory=time.monotonic, repr=False)

    @property
    def exit_status(self) -> ExitStatus:
        """``PARTIAL`` (3) when any record failed, else ``SUCCESS`` (0)."""
        return ExitStatus.PARTIAL if self.failed else ExitStatus.SUCCESS

    def finish(self) -> None:
        """Fix ``seconds`` to the wall-clock time since the run started."""
        self.seconds = round(time.monotonic() - self._t0, 3)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able counts (``records``, ``tokens``, ``audio_seconds``, ``seconds``,
        ``checks: {passed, failed}`` once any take was checked, ``redone`` and ``edited`` once
        any take was, ``audio_checks`` likewise once any audio file was)."""
        d = asdict(self)
        d.pop("_t0", None)
        d.pop("truncated", None)
        out: dict[str, Any] = {
            "records": {k: d[k] for k in ("total", "completed", "failed", "skipped")},
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "words": self.words,
            "audio_seconds": round(self.audio_seconds, 3),
            "seconds": self.seconds,
        }
        if self.checks_passed or self.checks_failed:
            out["checks"] = {"passed": self.checks_passed, "failed": self.checks_failed}
        for key in ("redone", "edited"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.audio_checks_passed or self.audio_checks_failed:
            out["audio_checks"] = {"passed": self.audio_checks_passed, "failed": self.audio_checks_failed}
        return out

    def summary(self) -> str:
        """One human line for stderr: counts, checks, tokens, audio seconds, wall time."""
        text = f"{self.completed} ok, {self.failed} failed, {self.skipped} skipped"
        if self.checks_passed or self.checks_failed:
            text += f"; checks: {self.checks_passed} passed, {self.checks_failed} failed"
        if self.redone:
            text += f"; {self.redone} redone"
        if self.edited:
            text += f"; {self.edited} edited"
        if self.prompt_tokens or self.completion_tokens:
            text += f"; {self.prompt_tokens + self.completion_tokens} tokens"
        if self.audio_seconds:
            text += f"; {self.audio_seconds:.1f} s of audio"
        return text + f"; {self.seconds:.1f} s"


class RecordTracker:
    """Updates :class:`StageStats` and sends the matching record and progress events.

    Safe to call from the worker threads of ``--jobs``: counts change under :attr:`lock`
    (which stages also take for their own totals), and the ``progress`` event of a change
    carries the counts as they were right after it.
    """

    def __init__(self, emitter: Emitter, stats: StageStats, stage: str) -> None:
        self.emitter = emitter
        self.stats = stats
        self.stage = stage
        #: Guards every change of :attr:`stats` (re-entrant: a stage may hold it around a call here).
        self.lock = threading.RLock()

    def _count(self, outcome: str, change: int = 1) -> tuple[int | None, int, int, int]:
        with self.lock:
            s = self.stats
            setattr(s, outcome, getattr(s, outcome) + change)
            return s.total, s.completed, s.failed, s.skipped

    def _progress(self, counts: tuple[int | None, int, int, int]) -> None:
        self.emitter.progress(*counts, stage=self.stage)

    def start(self, index: int, record_id: str, **extra: Any) -> None:
        """A record (or take) starts."""
        self.emitter.record_start(index, record_id, stage=self.stage, **extra)

    def complete(self, index: int, record_id: str, **extra: Any) -> None:
        """A record (or take) succeeded."""
        counts = self._count("completed")
        self.emitter.record_complete(index, record_id, stage=self.stage, **extra)
        self._progress(counts)

    def report_error(self, index: int, record_id: str | None, error: dict[str, Any], **extra: Any) -> None:
        """Count a record that failed (or arrived failed) with the error object ``error`` and
        send ``record_error``."""
        counts = self._count("failed")
        self.emitter.record_error(index, record_id, error, stage=self.stage, **extra)
        self._progress(counts)

    def uncount_skipped(self) -> None:
        """Take back one :meth:`skipped` (a take served from the ledger that failed after all)."""
        self._count("skipped", -1)

    def fail(self, index: int, rid: str | None, record: dict[str, Any], exc: RecordError, *,
             strict: bool, **error_fields: Any) -> dict[str, Any]:
        """Record ``exc`` as the failure of ``record``; return the record with its ``error``.

        ``error_fields`` (e.g. ``take``) are added to the error object.
        :raises StrictStop: when ``strict`` (``--strict``, ``on_error: stop``).
        """
        error = {**error_object(exc, stage=self.stage), **error_fields}
        self.report_error(index, rid, error, **error_fields)
        if strict:
            raise StrictStop(f"stopped at record {index + 1} (--strict): {exc.message}", hint=exc.hint)
        return {**record, "error": error}

    def unprocessable(self, index: int, line: InputLine, *, strict: bool) -> dict[str, Any] | None:
        """The output for a line no stage processes, or ``None`` for a record to process.

        A bad input line becomes its ``error`` record; a record that arrives with
        an ``error`` (failed upstream) passes through untouched. Both count as failed.
        :raises StrictStop: for a bad input line when ``strict``.
        """
        if line.record is None:
            error = dict(line.error or {})
            self.report_error(index, None, error)
            if strict:
                raise StrictStop(f"stopped at line {line.line} (--strict): {error.get('message')}")
            return {"error": error}
        if "error" in line.record:
            self.report_error(index, record_id(line.record), line.record["error"], upstream=True)
            return line.record
        return None

    def skipped(self, index: int, record_id: str, **extra: Any) -> None:
        """A record was served from the checkpoint ledger."""
        counts = self._count("skipped")
        self.emitter.record_skipped(index, record_id, stage=self.stage, **extra)
        self._progress(counts)


def check_run_paths(sources: list[str], checkpoint: str | None, stdout: Any = None,
                    also_read: dict[str, str | None] | None = None,
                    also_write: dict[str, str | None] | None = None) -> None:
    """Before any work of a command: every input readable, the checkpoint creatable, and no
    output (stdout, the checkpoint, ``also_write``) the same file as an input or as each other.

    :param sources: input files (``-``: standard input).
    :param stdout: the stream records are written to, if it is a file the run should check.
    :param also_read: other files the run reads (``{"--persona": path}``; ``None`` values skipped).
    :param also_write: other files the run writes (``{"--log": path}``; ``None`` values skipped).
    :raises UsageError: (exit 2) naming the path and the problem.
    """
    check_sources(sources)
    if checkpoint is not None:
        check_output_file(checkpoint, "--checkpoint")
    for what, path in (also_write or {}).items():
        if path:
            check_output_file(path, what)
    reads: dict[str, Any] = {("standard input" if s == "-" else f"input {s}"): s for s in sources}
    reads.update({f"{k} {v}": v for k, v in (also_read or {}).items() if v})
    writes: dict[str, Any] = {f"--checkpoint {checkpoint}": checkpoint or None, "stdout": stdout}
    writes.update({f"{k} {v}": v for k, v in (also_write or {}).items() if v})
    refuse_overlap(reads, writes)


def with_retries(fn: Callable[[], R], retries: int, *, delay: float = 1.0,
                 on_retry: Callable[[int, RecordError], None] | None = None) -> R:
    """Call ``fn``; on a *transient* :class:`RecordError` try again up to ``retries`` times
    (``tenacity``).

    Back-off doubles from ``delay`` seconds (``delay``, ``2 * delay``...). Non-transient errors
    are raised at once; after the last attempt the last error is raised.
    :param on_retry: ``on_retry(attempt, error)`` before each wait (``attempt`` 1-based).
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    def before_sleep(state: Any) -> None:
        if on_retry is not None:
            on_retry(state.attempt_number, state.outcome.exception())

    retrying = Retrying(stop=stop_after_attempt(max(0, retries) + 1),
                        wait=wait_exponential(multiplier=delay, exp_base=2, min=0),
                        retry=retry_if_exception(lambda exc: isinstance(exc, RecordError) and exc.transient),
                        before_sleep=before_sleep, reraise=True)
    return retrying(fn)


class _DaemonPool:
    """``jobs`` worker threads that never keep the process alive.

    ``concurrent.futures.ThreadPoolExecutor`` joins its workers at interpreter
    exit, so a worker blocked in a request to a hung server held Ctrl-C and
    ``| head -1`` for as long as the request took. These workers are daemon
    threads: an abandoned pool (:meth:`shutdown` with ``wait=False``) lets the
    process exit at once, and whatever they were waiting for is dropped with it.
    """

    def __init__(self, jobs: int) -> None:
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[Any], Any], Any] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"aicp-{i}", daemon=True)
                         for i in range(jobs)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, fn, item = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(item))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                future.set_exception(exc)

    def submit(self, fn: Callable[[T], R], item: T) -> Future[R]:
        """Queue ``fn(item)``; its :class:`Future`."""
        future: Future[R] = Future()
        self._tasks.put((future, fn, item))
        return future

    def shutdown(self, wait: bool) -> None:
        """Stop the workers once their current task ends; ``wait`` for that or not."""
        for _ in self._threads:
            self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], jobs: int = 1, *,
                on_abort: Callable[[], None] | None = None) -> Iterator[R]:
    """``map(fn, items)`` with up to ``jobs`` calls at once, results in input order.

    At most ``2 * jobs`` items are in flight, so input is still read lazily.
    With ``jobs <= 1`` it is a plain lazy ``map``.

    Interrupted (``KeyboardInterrupt``) or closed early by its consumer
    (``GeneratorExit``: stdout closed by ``| head -1``), it calls ``on_abort``
    (which should cancel the backend's requests in flight) and returns at once,
    without waiting for calls still running in worker threads. After an
    ordinary exception from ``fn`` (e.g. ``--strict``) the calls in flight are
    waited for, as on a normal end.
    """
    if jobs <= 1:
        try:
            for item in items:
                yield fn(item)
        except (GeneratorExit, KeyboardInterrupt):
            if on_abort is not None:
                on_abort()
            raise
        return
    window: deque[Future[R]] = deque()
    pool = _DaemonPool(jobs)
    wait = True
    try:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 2 * jobs:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    except (GeneratorExit, KeyboardInterrupt):
        wait = False
        if on_abort is not None:
            on_abort()
        raise
    finally:
        for fut in window:
            fut.cancel()
        pool.shutdown(wait=wait)


class BackendSession:
    """Loads a backend on first use and always unloads it at the end, with model events.

    ``model_load`` / ``model_unload`` carry backend, model, device and seconds. A
    run served entirely from the checkpoint ledger never loads the model. Use as
    a context manager; :meth:`ensure` is thread-safe. A stage kind without a model has
    ``backend`` ``None``: nothing loads, unloads or is sent.
    """

    def __init__(self, backend: Any, emitter: Emitter) -> None:
        self.backend = backend
        self.emitter = emitter
        self._lock = threading.Lock()
        #: a backend that routes to others (``--backend auto`` per persona) reports each one it
        #: loads and unloads instead of itself
        self._routes = bool(getattr(backend, "routes", False))
        if self._routes:
            backend.on_child_event = self._child_event

    def _child_event(self, what: str, info: dict[str, Any], seconds: float) -> None:
        event = self.emitter.model_load if what == "load" else self.emitter.model_unload
        event(info["backend"], info["model"], info["device"], seconds)

    def ensure(self) -> Any:
        """Load the backend now if it is not loaded yet (``model_load``); return it.

        Thread-safe: of the worker threads that ask at once, one loads and the others wait.

        :returns: the backend (an ``LLMBackend`` or ``TTSBackend``), loaded.
        :raises BackendUnavailable: the model cannot be loaded (missing file, server down).
        :raises UsageError: the backend's settings cannot work (e.g. an unknown device).
        """
        if self.backend is not None and not getattr(self.backend, "loaded", False):
            with self._lock:
                if not getattr(self.backend, "loaded", False):
                    t0 = time.perf_counter()
                    self.backend.load()
                    if self._routes:
                        return self.backend
                    info = self.backend.describe()
                    self.emitter.model_load(info["backend"], info["model"], info["device"],
                                            time.perf_counter() - t0)
        return self.backend

    def __enter__(self) -> BackendSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def abort(self) -> None:
        """Cancel the backend's requests in flight (Ctrl-C, a closed stdout), without waiting.

        Calls the backend's ``abort()`` when it has one (Ollama closes its
        connections, so the server stops generating); a later :meth:`close` then
        has nothing to wait for.
        """
        abort = getattr(self.backend, "abort", None)
        if abort is not None:
            abort()

    def close(self) -> None:
        """Unload the backend (memory free on return) and send ``model_unload``."""
        if self.backend is None:
            return
        was_loaded = bool(getattr(self.backend, "loaded", False))
        t0 = time.perf_counter()
        self.backend.unload()
        if was_loaded and not self._routes:
            info = self.backend.describe()
            self.emitter.model_unload(info["backend"], info["model"], info["device"],
                                      time.perf_counter() - t0)


class Stage:
    """What a stage holds while it maps records: options, events, ledger, counts, backend.

    Subclasses set ``stage`` (``script``/``voice``) and add their own work. The
    backend loads through :attr:`session` on first use and unloads when the run
    ends. The default persona (``options.persona``) is loaded here, once per run
    (:attr:`personas`): an unknown one is a usage error at construction, not per record.

    :raises UsageError: unknown default persona.
    """

    stage = "stage"
    #: A record that names no persona, in a run without a default, gets ``julie`` (script) or
    #: none (voice: the backend's default voice).
    persona_required = True
    #: ``cancel() -> bool``, asked between records and long-form chunks (``None``: never
    #: cancelled). The chain runner sets it; a stage never knows who asks.
    cancel: Callable[[], bool] | None = None
    #: where each finished take or file is logged (``--log``: :mod:`ai_content_pipeline.takelog`)
    takelog: Any = None

    def __init__(self, backend: Any, options: Any, emitter: Emitter | None, ledger: Ledger | None) -> None:
        from ..templates import Personas

        self.backend = backend
        self.options = options
        self.emitter = emitter or NullEmitter()
        self.ledger = ledger
        #: the run's personas: the default loaded here, once; each name records use, once
        self.personas = Personas(getattr(options, "persona", None) or None, required=self.persona_required)
        self.stats = StageStats()
        self.tracker = RecordTracker(self.emitter, self.stats, self.stage)
        self.session = BackendSession(backend, self.emitter)

    def planned_files(self, lines: Iterable[InputLine]) -> Iterator[tuple[str, str]]:
        """``(what, path)`` of every file a run over ``lines`` would write that an earlier run
        may have left (the driver refuses the first that exists, before any model loads, unless
        ``overwrite`` or ``resume``). Reads only the records: loads nothing. Default: none."""
        return iter(())

    def output_folders(self) -> list[str]:
        """The folders :meth:`planned_files` names files in (none: nothing to check)."""
        return []

    def refuse_replacing(self, lines: Callable[[], Iterable[InputLine]]) -> None:
        """The overwrite rule, before the model loads: without ``resume`` or ``overwrite``, the
        first file of :meth:`planned_files` over ``lines()`` that exists stops the run. The
        input is read again only when one of :meth:`output_folders` holds anything.

        :raises OverwriteRefused: (exit 2) naming the file.
        """
        if self.may_replace(""):
            return
        if not any(_holds_anything(folder) for folder in self.output_folders()):
            return
        for what, path in self.planned_files(lines()):
            if os.path.lexists(path):
                raise refuse_overwrite(path, what)

    def may_replace(self, path: str | os.PathLike[str]) -> bool:
        """Whether this run may write ``path`` although it exists: ``resume`` (the ledger says
        what is kept) or ``overwrite`` options."""
        return bool(getattr(self.options, "resume", False) or getattr(self.options, "overwrite", False))

    def check_cancel(self) -> None:
        """Stop here if :attr:`cancel` says so (called at record and chunk boundaries).

        :raises Cancelled: ``cancel()`` returned true.
        """
        if self.cancel is not None and self.cancel():
            raise Cancelled(f"{self.stage} stage cancelled", hint="finished records are kept in the ledger")

    def _abort(self) -> None:
        """The run was interrupted or its reader went away: cancel the backend's requests
        and send no more events (worker threads may still be finishing)."""
        self.emitter = self.tracker.emitter = self.session.emitter = NullEmitter()
        self.session.abort()

    @contextmanager
    def _backend_run(self) -> Iterator[None]:
        """Around a whole run: the backend always unloads at the end and the stats finish;
        an interrupted or abandoned run (``KeyboardInterrupt``, ``GeneratorExit``) first
        cancels the requests in flight (:meth:`_abort`), so the unload never waits on them.

        Where the interrupt lands does not matter: in the record loop, in the run's own
        generator frame or in its consumer, the run aborts before it unloads. (An unload
        request to a hung Ollama server would otherwise hold ``| head -1`` for a minute.)
        """
        try:
            yield
        except (GeneratorExit, KeyboardInterrupt):
            self._abort()
            raise
        finally:
            self.session.close()
            self.stats.finish()

    def _fail(self, index: int, rid: str | None, record: dict[str, Any], exc: RecordError,
              **error_fields: Any) -> dict[str, Any]:
        """``record`` with the ``error`` of ``exc`` (see :meth:`RecordTracker.fail`)."""
        return self.tracker.fail(index, rid, record, exc, strict=self.options.strict, **error_fields)

    def _unprocessable(self, index: int, line: InputLine) -> dict[str, Any] | None:
        """Output for a bad line or an upstream failure, ``None`` for a record to process."""
        return self.tracker.unprocessable(index, line, strict=self.options.strict)

    def _each(self, index: int, line: InputLine, work: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """The output of one input line: stop here if cancelled, pass a bad line or an upstream
        failure through, else ``work(record)``.

        :raises Cancelled: :attr:`cancel` says so. :raises StrictStop: a bad line with ``strict``.
        """
        self.check_cancel()
        passed = self._unprocessable(index, line)
        if passed is not None or line.record is None:
            return passed or {}
        return work(line.record)
