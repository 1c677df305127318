"""JSON Lines input and output.

Input is read lazily, one line at a time, from files or stdin (``-``). Every
non-blank line becomes an :class:`InputLine`: either a parsed ``record`` or an
``error`` object (not UTF-8, not JSON, not an object) that the stage writes out
in place of the record, so one bad line never stops a batch.

Output is one compact JSON object per line, written with one ``write`` call and
flushed per record (orjson; non-JSON values such as paths become strings).
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import InputError, UsageError, error_object


@dataclass
class InputLine:
    """One input line: ``record`` or ``error`` is set (never both).

    :ivar line: 1-based line number within ``source``.
    :ivar source: the file name, or ``-`` for stdin.
    """

    line: int
    source: str
    record: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def parse_line(raw: bytes, line: int, source: str = "-") -> InputLine:
    """Parse one raw line (without its newline) into an :class:`InputLine`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
            message = f"line {line} is not valid JSON: {exc}"
        except UnicodeDecodeError:
            message = f"line {line} is not valid UTF-8"
        return InputLine(line, source, error=error_object(InputError(message), stage="input", line=line))
    if not isinstance(value, dict):
        message = f"line {line} is a JSON {type(value).__name__}, not an object"
        return InputLine(line, source, error=error_object(InputError(message), stage="input", line=line))
    return InputLine(line, source, record=value)


def _open_source(source: str | os.PathLike[str], stdin: IO[bytes] | None) -> IO[bytes]:
    if str(source) == "-":
        return stdin if stdin is not None else sys.stdin.buffer
    try:
        return open(source, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc


def read_records(
    sources: Iterable[str | os.PathLike[str]] = ("-",), *, stdin: IO[bytes] | None = None
) -> Iterator[InputLine]:
    """Yield :class:`InputLine` objects lazily from each source in turn.

    Blank lines are skipped (but counted in line numbers). Raises
    :class:`~ai_content_pipeline.errors.UsageError` when a file cannot be opened.
    """
    for source in list(sources) or ["-"]:
        handle = _open_source(source, stdin)
        name = str(source)
        try:
            for number, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                yield parse_line(raw, number, name)
        finally:
            if name != "-":
                handle.close()


def count_records(sources: Iterable[str | os.PathLike[str]], *, stdin: IO[bytes] | None = None) -> int | None:
    """Count non-blank lines when every source is a regular file, else ``None``.

    Stdin counts when it is redirected from a regular file (``< file``); it is
    read and rewound. A pipe cannot be counted without consuming it.
    """
    total = 0
    for source in list(sources) or ["-"]:
        if str(source) == "-":
            handle = stdin if stdin is not None else sys.stdin.buffer
            try:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None
                pos = handle.tell()
                total += sum(1 for raw in handle if raw.strip())
                handle.seek(pos)
            except (OSError, io.UnsupportedOperation, AttributeError, ValueError):
                return None
        else:
            path = Path(source)
            if not path.is_file():
                return None
            with open(path, "rb") as fh:
                total += sum(1 for raw in fh if raw.strip())
    return total


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes for one output line (paths and other objects as strings)."""
    return orjson.dumps(obj, default=str)


class OutputClosed(Exception):
    """The reader of stdout went away (``| head -1``): stop quietly.

    Not an ``OSError`` on purpose: click turns an EPIPE ``OSError`` into exit 1
    before the CLI's own handler could see it.
    """


class RecordWriter:
    """Writes records as JSON Lines, one ``write`` and one ``flush`` per record.

    A closed downstream pipe raises :class:`OutputClosed`; the CLI's top-level
    handler turns that into a quiet exit (141). Any other failed write (a full
    disk, ``>/dev/full``) raises the :func:`~ai_content_pipeline.faults.os_error`
    of it, naming the file (exit 1, or 2 for a path that cannot be written).
    """

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        """Write one record as a compact JSON line and flush it."""
        try:
            self.stream.write(dumps(record) + b"\n")
            self.stream.flush()
        except BrokenPipeError as exc:
            raise OutputClosed("stdout was closed by its reader") from exc
        except OSError as exc:
            from .faults import os_error

            name = getattr(self.stream, "name", None)
            real = isinstance(name, str) and not name.startswith("<")
            raise os_error(exc, name if real else None,
                           doing="write" if real else "write the records to stdout") from exc
        self.count += 1
