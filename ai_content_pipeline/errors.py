"""The one error hierarchy of aicp.

Every failure a user can meet is an :class:`AicpError`: a message written for
the user, an optional fix-it ``hint`` and the :class:`~ai_content_pipeline.status.ExitStatus`
the command exits with. Backends translate engine failures (connection
refused, model not found, out of memory) into these classes; the CLI's single
top-level handler prints ``message`` and ``hint`` and exits, with no traceback
unless ``--traceback`` is given.

Errors that concern one record only (:class:`RecordError` and subclasses) do
not abort a batch: the stage turns them into the record's ``error`` object.
"""

from __future__ import annotations

from typing import Any

from .status import ExitStatus


class AicpError(Exception):
    """Base class of every error aicp reports to a user.

    :param message: one sentence for the user, no traceback jargon.
    :param hint: optional fix-it advice ("run `ollama pull llama3.2`").
    """

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def type_name(self) -> str:
        """Short machine-readable name used in ``error.type`` (the class name)."""
        return type(self).__name__

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AicpError):
    """Bad options or arguments (exit 2)."""

    exit_status = ExitStatus.USAGE


class ConfigError(UsageError):
    """An invalid template, persona or chain file (exit 2); names the key path."""


class BackendUnavailable(AicpError):
    """The backend cannot serve at all: nothing listening, model missing (exit 4)."""

    exit_status = ExitStatus.BACKEND_UNAVAILABLE


class BackendOutOfMemory(AicpError):
    """The backend ran out of (GPU) memory while loading or generating (exit 1)."""


class RecordError(AicpError):
    """A failure that concerns one record; the batch goes on (exit 3 at the end).

    :param stage: the stage that failed (``script``, ``voice``, ``input``).
    :param extra: extra JSON-able fields copied into the record's ``error`` object.
    """

    exit_status = ExitStatus.PARTIAL
    transient = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        stage: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message, hint=hint)
        self.stage = stage
        self.extra = extra


class InputError(RecordError):
    """A bad input line: not UTF-8, not JSON, not an object, a missing field."""


class ChecksFailed(RecordError):
    """A script that failed its template's checks where they are required: ``aicp-script
    --require-checks`` rejects the take, ``aicp-voice --require-checks`` does not voice it."""


class TransientBackendError(RecordError):
    """A failure worth retrying (timeout, stream cut mid-reply, HTTP 5xx)."""

    transient = True


class SynthesisError(RecordError):
    """Audio could not be produced or failed its checks (empty, silent, implausible)."""


def error_object(exc: AicpError, *, stage: str, line: int | None = None) -> dict[str, Any]:
    """Build the ``error`` object a failed record carries.

    Shape: ``{"stage": str, "type": str, "message": str, "hint"?: str, "line"?: int, ...}``.
    """
    obj: dict[str, Any] = {
        "stage": getattr(exc, "stage", None) or stage,
        "type": exc.type_name,
        "message": exc.message,
    }
    if exc.hint:
        obj["hint"] = exc.hint
    if line is not None:
        obj["line"] = line
    obj.update(getattr(exc, "extra", {}) or {})
    return obj


#: How the running command tells the user about an error the process cannot survive (a native
#: engine aborting); set by the CLI (:func:`set_fatal_reporter`), else one plain line on stderr.
_fatal_reporter: Any = None


def set_fatal_reporter(reporter: Any) -> None:
    """``reporter(error)`` tells the user about an :class:`AicpError` just before the process
    ends in :func:`report_fatal` (the CLI: its prefixed lines, or an ``error`` event with
    ``--stream``); ``None``: one plain line on stderr."""
    global _fatal_reporter
    _fatal_reporter = reporter


def report_fatal(error: AicpError) -> None:
    """Tell the user about ``error`` (see :func:`set_fatal_reporter`), never raising; for a
    native engine about to abort the process, which no ``except`` can catch."""
    try:
        if _fatal_reporter is not None:
            _fatal_reporter(error)
            return
    except Exception:  # noqa: BLE001, S110 - fall back to the plain line
        pass
    try:
        import os

        line = f"aicp: error: {error.message}" + (f"\naicp: hint: {error.hint}" if error.hint else "")
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
