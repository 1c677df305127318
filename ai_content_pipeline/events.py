"""Progress events: the emitter protocol and its three implementations.

Event schema (``schema_version`` ``"1"``): every event is one JSON object with
``schema_version``, ``event``, ``timestamp`` (Unix seconds, float) and
``elapsed_seconds`` (seconds since the emitter was created, millisecond
precision, never decreasing: it comes from :func:`time.monotonic`), plus the
event's own fields.

- :class:`StreamEmitter` writes events as JSON Lines to ``sys.stderr`` as it is
  at call time, flushed per event; only ``pipeline_complete`` goes to stdout.
- :class:`NullEmitter` writes nothing.
- :class:`ProgressBarEmitter` draws a tqdm bar on stderr (for terminals).

Stages receive an emitter as an argument; there is no global emitter. Every
named method funnels into :meth:`Emitter.emit`, so a subclass only overrides
that one method.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

import orjson

SCHEMA_VERSION = "1"

#: Fields every event carries; an event's own fields never replace them.
COMMON_FIELDS = ("schema_version", "event", "timestamp", "elapsed_seconds")


def event_json(obj: dict[str, Any]) -> bytes:
    """The JSON text of one event (:meth:`Emitter.envelope`): compact, numpy numbers as numbers,
    non-string keys and other values (paths...) as strings."""
    return orjson.dumps(
        obj, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    )


class Emitter:
    """Base emitter: named event methods that all call :meth:`emit`.

    The base class drops every event; it is what :class:`NullEmitter` is.
    """

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    # -- the one method implementations override ---------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        """Send one event named ``event`` with ``fields``. The base drops it."""

    def close(self) -> None:
        """Release anything the emitter holds (a progress bar)."""

    @property
    def elapsed(self) -> float:
        """Seconds since the emitter was created (monotonic clock)."""
        return time.monotonic() - self._t0

    def envelope(self, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The whole event object: the common fields (``schema_version``, ``event``,
        ``timestamp``, ``elapsed_seconds`` by this emitter's clock), then ``fields``, which
        never replace a common field."""
        obj: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event": event,
            "timestamp": round(time.time(), 3),
            "elapsed_seconds": round(self.elapsed, 3),
        }
        obj.update((k, v) for k, v in fields.items() if k not in COMMON_FIELDS)
        return obj

    @staticmethod
    def result_fields(result: dict[str, Any]) -> dict[str, Any]:
        """The fields of ``pipeline_complete`` for a chain's ``result``: every key (non-string
        keys as strings) but the common fields."""
        return {str(k): v for k, v in result.items() if str(k) not in COMMON_FIELDS}

    # -- pipeline (chain) events -------------------------------------------------
    def pipeline_start(self, name: str, total_steps: int, config: Any = None) -> None:
        """A chain starts: ``name``, ``total_steps``, ``config`` (the validated chain)."""
        self.emit("pipeline_start", name=name, total_steps=total_steps, config=config)

    def step_start(self, step_index: int, step_type: str, model: str | None = None) -> None:
        """Step ``step_index`` (1-based) of type ``script``/``voice`` starts on ``model``."""
        self.emit("step_start", step=step_index, type=step_type, model=model)

    def step_complete(
        self,
        step_index: int,
        cost: float = 0.0,
        output_path: Any = None,
        duration: float = 0.0,
        **extra: Any,
    ) -> None:
        """A step finished: ``cost`` (price-table units), ``output`` path, ``duration_seconds``."""
        self.emit(
            "step_complete",
            step=step_index,
            cost=cost,
            output=output_path,
            duration_seconds=round(float(duration), 3),
            **extra,
        )

    def step_error(self, step_index: int, error: Any, step_type: str | None = None) -> None:
        """A step failed with ``error`` (a message or an error object)."""
        self.emit("step_error", step=step_index, type=step_type, error=_error_text(error))

    def pipeline_complete(self, result: dict[str, Any]) -> None:
        """The chain's final result; :class:`StreamEmitter` writes it to **stdout**.

        Every key of ``result`` becomes a field (non-string keys as strings),
        except the common fields (``event``, ``schema_version``...), which stay.
        """
        self.emit("pipeline_complete", **self.result_fields(result))

    # -- record events -----------------------------------------------------------
    def record_start(self, index: int, record_id: str, **extra: Any) -> None:
        """Record number ``index`` (0-based, input order) starts."""
        self.emit("record_start", index=index, id=record_id, **extra)

    def record_complete(self, index: int, record_id: str, **extra: Any) -> None:
        """Record ``index`` finished (extra: seconds, tokens, words, audio seconds...)."""
        self.emit("record_complete", index=index, id=record_id, **extra)

    def record_error(self, index: int, record_id: str | None, error: dict[str, Any], **extra: Any) -> None:
        """Record ``index`` failed with ``error`` (the record's ``error`` object)."""
        self.emit("record_error", index=index, id=record_id, error=error, **extra)

    def record_skipped(self, index: int, record_id: str, **extra: Any) -> None:
        """Record ``index`` was taken from the checkpoint ledger (resume)."""
        self.emit("record_skipped", index=index, id=record_id, **extra)

    def progress(
        self, total: int | None, completed: int, failed: int, skipped: int, **extra: Any
    ) -> None:
        """Counts so far; ``total`` is ``None`` while the input size is unknown (a pipe)."""
        done = completed + failed + skipped
        percent = round(100.0 * done / total, 1) if total else (100.0 if total == 0 else None)
        self.emit(
            "progress",
            total=total,
            completed=completed,
            failed=failed,
            skipped=skipped,
            percent=percent,
            **extra,
        )

    # -- model and chunk events --------------------------------------------------
    def model_load(self, backend: str, model: str | None, device: str | None, seconds: float) -> None:
        """A backend loaded ``model`` on ``device`` in ``seconds``."""
        self.emit("model_load", backend=backend, model=model, device=device, seconds=round(seconds, 3))

    def model_unload(self, backend: str, model: str | None, device: str | None, seconds: float) -> None:
        """A backend released ``model`` (memory free when this event is sent)."""
        self.emit("model_unload", backend=backend, model=model, device=device, seconds=round(seconds, 3))

    def chunk_start(self, record_id: str, chunk: int, section: str, target_words: int) -> None:
        """Long-form: chunk ``chunk`` (1-based) of ``record_id`` starts."""
        self.emit("chunk_start", id=record_id, chunk=chunk, section=section, target_words=target_words)

    def chunk_progress(self, record_id: str, chunk: int, chars: int, words: int) -> None:
        """Long-form: characters and words streamed so far (at most one a second)."""
        self.emit("chunk_progress", id=record_id, chunk=chunk, chars=chars, words=words)

    def chunk_complete(self, record_id: str, chunk: int, **extra: Any) -> None:
        """Long-form: chunk finished and checkpointed (words, tokens, seconds...)."""
        self.emit("chunk_complete", id=record_id, chunk=chunk, **extra)

    def message(self, text: str, level: str = "info") -> None:
        """A human note (backend choice, warnings)."""
        self.emit("message", level=level, message=text)

    # -- the end of a command ------------------------------------------------------
    def run_complete(self, stage: str, stats: dict[str, Any]) -> None:
        """A stage command (``aicp-script``, ``aicp-voice``) finished; its last event.

        :param stage: ``script`` or ``voice``.
        :param stats: :meth:`~ai_content_pipeline.stages.common.StageStats.as_dict` (records,
            tokens, words, audio_seconds, seconds, checks?): each key becomes a field.
        """
        self.emit("run_complete", stage=stage, **stats)

    def error(self, message: str, hint: str | None, exit_code: int) -> None:
        """A command stopped with an error: ``message``, ``hint`` (or ``None``) and the
        process exit status it ends with (see :class:`~ai_content_pipeline.status.ExitStatus`)."""
        self.emit("error", message=message, hint=hint, exit_code=int(exit_code))


def _error_text(error: Any) -> Any:
    if isinstance(error, BaseException):
        return str(error)
    return error


class NullEmitter(Emitter):
    """An emitter that prints nothing (``--stream`` off, no terminal)."""


#: Events a stage sends while it runs (what :class:`StepEmitter` numbers).
STEP_EVENT_PREFIXES = ("record_", "model_", "chunk_")


class StepEmitter(Emitter):
    """Numbers the events of one chain step: every ``record_*``, ``model_*``, ``chunk_*``,
    ``progress`` and ``message`` event (a notice of the step, e.g. what ``auto`` chose)
    gets ``step`` (1-based) and goes on to ``inner``.

    Other events pass unchanged; so does a ``step`` the caller set.
    Everything else (``elapsed_seconds``, the stream) is ``inner``'s.
    """

    def __init__(self, inner: Emitter, step: int) -> None:
        super().__init__()
        self.inner = inner
        self.step = step

    def emit(self, event: str, **fields: Any) -> None:
        if event in ("progress", "message") or event.startswith(STEP_EVENT_PREFIXES):
            fields.setdefault("step", self.step)
        self.inner.emit(event, **fields)


class StreamEmitter(Emitter):
    """JSON Lines events on stderr (``pipeline_complete`` on stdout).

    :param enabled: when ``False`` nothing at all is printed.
    :param stream: write here instead of ``sys.stderr`` (read at call time when ``None``).
    :param started: ``time.monotonic()`` value ``elapsed_seconds`` counts from (default: now).

    A reader that went away (EPIPE) raises :class:`~ai_content_pipeline.jsonl.OutputClosed`
    (the CLI exits 141 quietly); another failed write raises the
    :func:`~ai_content_pipeline.faults.os_error` of it.
    """

    def __init__(self, enabled: bool = False, stream: IO[str] | None = None,
                 started: float | None = None) -> None:
        super().__init__()
        if started is not None:
            self._t0 = started
        self.enabled = enabled
        self._stream = stream
        self._lock = threading.Lock()  # stages with --jobs emit from worker threads

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        out = sys.stdout if event == "pipeline_complete" else (self._stream or sys.stderr)
        with self._lock:  # payload made under the lock: elapsed_seconds never goes back
            try:
                out.write(event_json(self.envelope(event, fields)).decode() + "\n")
                out.flush()
            except BrokenPipeError as exc:
                from .jsonl import OutputClosed

                raise OutputClosed("the reader of the events went away") from exc
            except OSError as exc:
                from .faults import os_error

                name = "stdout" if out is sys.stdout else "the events to stderr"
                raise os_error(exc, doing=f"write {name}") from exc


class ConsoleEmitter(Emitter):
    """Plain text for people: ``message`` events as ``prog: text`` lines on stderr.

    Used when ``--stream`` is off and stderr is not a terminal (a log file, CI):
    one line for notices and warnings, nothing per record.

    :param prog: the command name put before each line.
    :param quiet: print warnings and errors only.
    """

    def __init__(self, prog: str = "aicp", stream: IO[str] | None = None, quiet: bool = False) -> None:
        from .report import FailureLines

        super().__init__()
        self.prog = prog
        self.quiet = quiet
        self._stream = stream
        self._failures = FailureLines()

    def _print(self, lines: list[str]) -> None:
        out = self._stream or sys.stderr
        out.write("".join(line + "\n" for line in lines))
        out.flush()

    def _write_line(self, text: str) -> None:
        """``text`` as notice lines (wrapped at 100 columns, each with the prefix)."""
        from .report import notice_lines

        self._print(notice_lines(self.prog, text))

    def close(self) -> None:
        """Print the ``… and N more`` line of failed records left out (see :mod:`.report`)."""
        rest = self._failures.rest()
        if rest:
            self._write_line(rest)

    def emit(self, event: str, **fields: Any) -> None:
        if event == "record_error":  # one line per failed record, capped (report.FAILURE_CAP)
            if self.quiet:  # -q: the exit status (3) and the records' error objects tell
                return
            line = self._failures.add(fields.get("id"), fields.get("error"), fields.get("index"),
                                      upstream=bool(fields.get("upstream")))
            if line:  # one line, cut with … (the record's error object has it all)
                from .report import one_line

                self._print([one_line(self.prog, line)])
        elif event == "message":
            level = fields.get("level", "info")
            if level == "debug" or (self.quiet and level == "info"):
                return
            prefix = "" if level == "info" else f"{level}: "
            self._write_line(prefix + str(fields.get("message")))


class ProgressBarEmitter(ConsoleEmitter):
    """A tqdm progress bar on stderr, driven by ``progress`` events.

    Messages are printed above the bar; every other event is dropped. Meant
    for an interactive terminal only.
    """

    def __init__(self, prog: str = "aicp", stream: IO[str] | None = None) -> None:
        super().__init__(prog, stream)
        self.desc = prog
        self._bar: Any = None

    def _print(self, lines: list[str]) -> None:
        from tqdm import tqdm

        for line in lines:  # above the bar
            tqdm.write(line, file=self._stream or sys.stderr)

    def emit(self, event: str, **fields: Any) -> None:
        import os

        from tqdm import tqdm

        from .report import progress_bar_options

        if event == "progress":
            done = fields["completed"] + fields["failed"] + fields["skipped"]
            if self._bar is None:
                out = self._stream or sys.stderr
                options = progress_bar_options(fields.get("total"), os.environ.get("TERM"),
                                               hasattr(out, "isatty") and out.isatty())
                if options is None:  # total unknown yet, or a terminal that cannot redraw
                    return
                # drawn first at the count it starts from: a bar made at 0 and moved at once
                # would show thousands of records a second
                self._bar = tqdm(desc=self.desc, file=out, initial=done, **options)
            if fields.get("total") is not None:
                self._bar.total = fields["total"]
            self._bar.n = done
            self._bar.set_postfix(failed=fields["failed"], skipped=fields["skipped"], refresh=False)
            self._bar.refresh()
        elif event == "step_start":
            self.close()
            self.desc = f"step {fields.get('step')} {fields.get('type')}"
        else:
            super().emit(event, **fields)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()  # leave=False: the finished bar is erased
            self._bar = None
        super().close()
