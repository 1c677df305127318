"""JSON Lines input and output.

Input is read lazily, one line at a time, from files or stdin (``-``). Every
non-blank line becomes an :class:`InputLine`: either a parsed ``record`` or an
``error`` object (not UTF-8, not JSON, not an object) that the stage writes out
in place of the record, so one bad line never stops a batch.

Output is one compact JSON object per line, written with one ``write`` call and
flushed per record (orjson; non-JSON values such as paths become strings).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import InputError, UsageError, error_object

#: Longest input line read, in bytes (newline excluded). A longer line becomes an
#: ``error`` record without being held in memory; ``AICP_MAX_LINE_BYTES`` changes it.
MAX_LINE_BYTES = 1024 * 1024
MAX_LINE_BYTES_CEILING = 1 << 30
#: Deepest nesting of arrays and objects a record may have: orjson writes at most 254
#: levels, so a deeper record could be read but not written back.
MAX_DEPTH = 200

#: Longest integer orjson keeps exactly; past it (or a float that a double cannot hold
#: as written) the line is parsed again so that every number is written back as read.
_MAYBE_INEXACT = re.compile(rb"[0-9][0-9.]{15,}|[eE][+-]?[0-9]{3,}")
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
_BOM = b"\xef\xbb\xbf"
_JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
               list: "array"}


def max_line_bytes() -> int:
    """The line-length cap in bytes: ``AICP_MAX_LINE_BYTES`` if set to a positive integer, else
    :data:`MAX_LINE_BYTES` (1 MiB).

    :raises UsageError: ``AICP_MAX_LINE_BYTES`` is set to something else.
    """
    raw = os.environ.get("AICP_MAX_LINE_BYTES")
    if not raw:
        return MAX_LINE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value <= MAX_LINE_BYTES_CEILING:
        raise UsageError(f"AICP_MAX_LINE_BYTES must be a number of bytes from 1 to "
                         f"{MAX_LINE_BYTES_CEILING} (1 GiB), not {raw!r}")
    return value


class ExactFloat(float):
    """A JSON number that a double does not hold as written (``1e400``, 25 digits after the
    point...): behaves as the nearest float, is written back as its original ``text``."""

    text: str

    def __new__(cls, text: str) -> ExactFloat:
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj


def _parse_float(text: str) -> float:
    import decimal  # only lines with long numbers get here

    value = float(text)
    if math.isfinite(value) and decimal.Decimal(text) == decimal.Decimal(repr(value)):
        return value
    return ExactFloat(text)


def _parse_int(text: str) -> int | float:
    # Python refuses to convert integers of more than 4300 digits (int_max_str_digits):
    # those are kept as their text, like floats a double cannot hold.
    return int(text) if len(text) <= 4000 else ExactFloat(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str) -> Any:
    """Parse one JSON document so that every number survives a round trip through :func:`dumps`.

    orjson parses (fast); when the text holds a number orjson cannot keep exactly (an
    integer past 64 bits, a float with more digits than a double holds, an exponent
    that overflows), it is parsed again with :mod:`json` keeping big integers as ``int``
    and such floats as :class:`ExactFloat`.

    :raises orjson.JSONDecodeError: not JSON (a ``ValueError``).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise
    else:
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        if not _MAYBE_INEXACT.search(data):
            return value
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    value = json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_no_constant)
    try:
        dumps(value)  # what orjson would have refused beside the number (a lone surrogate...)
    except orjson.JSONEncodeError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _exact(obj: Any) -> Any:
    """``obj`` with big integers and :class:`ExactFloat` as ``orjson.Fragment`` (their JSON text)."""
    if isinstance(obj, dict):
        return {k: _exact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_exact(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and not _INT_MIN <= obj <= _UINT_MAX:
        return orjson.Fragment(str(obj))
    return obj


def _default(obj: Any) -> Any:
    if isinstance(obj, ExactFloat):
        return orjson.Fragment(obj.text)
    return str(obj)


def dumps(obj: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON bytes for one output line; numbers as read (see :func:`loads`), other
    non-JSON values (paths...) as strings."""
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return orjson.dumps(obj, default=_default, option=option)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return orjson.dumps(_exact(obj), default=_default, option=option)


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


def _input_error(message: str, line: int, source: str) -> InputLine:
    return InputLine(line, source, error=error_object(InputError(message), stage="input", line=line))


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects in ``value`` (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_line(raw: bytes, line: int, source: str = "-") -> InputLine:
    """Parse one raw line (without its newline) into an :class:`InputLine`."""
    try:
        value = loads(raw)
    except UnicodeDecodeError:
        return _input_error(f"line {line} is not valid UTF-8", line, source)
    except ValueError as exc:  # orjson.JSONDecodeError and json.JSONDecodeError
        try:
            raw.decode("utf-8")
            message = f"line {line} is not valid JSON: {exc}"
        except UnicodeDecodeError:
            message = f"line {line} is not valid UTF-8"
        return _input_error(message, line, source)
    except RecursionError:
        return _input_error(f"line {line} is not valid JSON: nested too deeply", line, source)
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        return _input_error(f"line {line} is nested more than {MAX_DEPTH} levels deep", line, source)
    if not isinstance(value, dict):
        kind = _JSON_TYPES.get(type(value), "number")
        return _input_error(f"line {line} is a JSON {kind}, not an object", line, source)
    return InputLine(line, source, record=value)


def stdin_stream(stdin: IO[bytes] | None = None) -> IO[bytes]:
    """The binary stream a source ``-`` reads: ``stdin`` when given, else ``sys.stdin.buffer``."""
    return stdin if stdin is not None else sys.stdin.buffer


def _open_source(source: str | os.PathLike[str], stdin: IO[bytes] | None) -> IO[bytes]:
    if str(source) == "-":
        return stdin_stream(stdin)
    if os.path.isdir(source):
        raise UsageError(f"cannot read {source}: it is a folder, not a JSON Lines file")
    try:
        return open(source, "rb")
    except FileNotFoundError as exc:
        from .faults import missing_hint

        raise UsageError(f"cannot read {source}: no such file",
                         hint=missing_hint(source, "- or no FILE reads standard input")) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc


def check_sources(sources: Iterable[str | os.PathLike[str]]) -> None:
    """Check that every input file exists and is readable, before any work starts.

    :raises UsageError: the first source that cannot be read (names it and why).
    """
    for source in sources:
        if str(source) != "-":
            _open_source(source, None).close()


def iter_lines(handle: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """Raw lines without their newline; ``None`` for a line longer than ``limit`` bytes,
    which is skipped in pieces, never held in memory whole."""
    if not hasattr(handle, "readline"):  # a plain iterable of lines (a test's or caller's stream)
        for raw in handle:
            yield None if len(raw.rstrip(b"\r\n")) > limit else raw.rstrip(b"\r\n")
        return
    while True:
        raw = handle.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(1 << 20)
            yield None
            continue
        yield raw.rstrip(b"\r\n")


def read_records(
    sources: Iterable[str | os.PathLike[str]] = ("-",), *, stdin: IO[bytes] | None = None
) -> Iterator[InputLine]:
    """Yield :class:`InputLine` objects lazily from each source in turn.

    Blank lines are skipped (but counted in line numbers); a UTF-8 byte order mark
    at the start of a source is ignored. A line longer than :func:`max_line_bytes`
    becomes an error line; memory stays bounded by that cap whatever the input.

    :raises UsageError: a file cannot be opened (checked for every file before the
        first line is yielded), or ``AICP_MAX_LINE_BYTES`` is invalid.
    """
    sources = list(sources) or ["-"]
    check_sources(sources)
    for raw, number, name in raw_lines(sources, stdin):
        if not is_blank(raw):
            yield input_line(raw, number, name)


def raw_lines(sources: list[str | os.PathLike[str]] | list[str],
              stdin: IO[bytes] | None = None) -> Iterator[tuple[bytes | None, int, str]]:
    """``(raw line, its 1-based number in its source, the source's name)`` for every line of each
    source in turn, blank ones included: the raw line without its newline (and without the
    UTF-8 byte order mark that may start a source), ``None`` when it is longer than
    :func:`max_line_bytes`. A file is closed once read; ``-`` (``stdin``) is left open.

    :raises UsageError: a source cannot be opened (when its turn comes).
    """
    limit = max_line_bytes()
    for source in sources:
        handle = _open_source(source, stdin)
        name = str(source)
        try:
            lines = enumerate(iter_lines(handle, limit), start=1)
            while True:
                try:
                    number, raw = next(lines)
                except StopIteration:
                    break
                except OSError as exc:  # a read fails: said as a read of that source
                    raise _read_error(exc, name) from exc
                if number == 1 and raw is not None and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                yield raw, number, name
        finally:
            if name != "-":
                handle.close()


def _read_error(exc: OSError, name: str) -> Exception:
    """The user error of a failed read of source ``name`` (``-``: stdin): a stdin not open for
    reading (``0>file``) is a usage error (exit 2); others as :func:`~ai_content_pipeline.faults.os_error`
    says, for a read."""
    from .faults import os_error

    if name == "-" and exc.errno == errno.EBADF:
        return UsageError("cannot read stdin: it is not open for reading",
                          hint="redirect stdin from a file (< records.jsonl), or give the file as an argument")
    return os_error(exc, "stdin" if name == "-" else name, doing="read")


def is_blank(raw: bytes | None) -> bool:
    """Whether a line of :func:`raw_lines` is blank (no record; an overlong line is an error one)."""
    return raw is not None and not raw.strip()


def input_line(raw: bytes | None, number: int, name: str) -> InputLine:
    """The :class:`InputLine` of a non-blank line of :func:`raw_lines`: parsed, or an error line
    for one longer than :func:`max_line_bytes` (``None``)."""
    if raw is None:
        return _input_error(f"line {number} is longer than {max_line_bytes()} bytes; skipped", number, name)
    return parse_line(raw, number, name)


def countable(sources: Iterable[str | os.PathLike[str]], *, stdin: IO[bytes] | None = None) -> bool:
    """Whether every source is a regular file (``-``: ``stdin`` redirected from one, ``< file``),
    so it can be read to its end and counted before a run; a pipe, a terminal or a FIFO cannot
    be without consuming it. Reads nothing."""
    for source in list(sources) or ["-"]:
        if str(source) == "-":
            handle = stdin_stream(stdin)
            try:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return False
            except (OSError, io.UnsupportedOperation, AttributeError, ValueError):
                return False
        elif not Path(source).is_file():
            return False
    return True


def count_records(sources: Iterable[str | os.PathLike[str]], *, stdin: IO[bytes] | None = None,
                  positions: Callable[[int], bool] | None = None) -> int | None:
    """Count the lines :func:`read_records` yields when every source is a regular file
    (:func:`countable`), else ``None``: a pipe cannot be counted without consuming it.

    Stdin counts when it is redirected from a regular file (``< file``); it is read and
    rewound to where it was. ``positions``: count only the lines whose 0-based position in
    the whole input (blank lines included) it accepts (a shard's, :mod:`~ai_content_pipeline.shards`).

    :raises UsageError: a file cannot be opened.
    """
    sources = list(sources) or ["-"]
    if not countable(sources, stdin=stdin):
        return None
    handle = stdin_stream(stdin) if any(str(s) == "-" for s in sources) else None
    try:
        start = handle.tell() if handle is not None else 0
        counted = sum(1 for position, (raw, _, _) in enumerate(raw_lines(sources, handle))
                      if not is_blank(raw) and (positions is None or positions(position)))
        if handle is not None:
            handle.seek(start)
    except (OSError, io.UnsupportedOperation, ValueError):
        return None
    return counted


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

    def __init__(self, stream: IO[bytes] | None = None,
                 encode: Callable[[dict[str, Any]], bytes] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        #: ``encode(record) -> bytes``: :func:`dumps` unless given (events: ``events.event_json``).
        self.encode = encode or dumps
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        """Write one record as a compact JSON line and flush it."""
        self.write_raw(self.encode(record) + b"\n")

    def write_raw(self, data: bytes) -> None:
        """Write ``data`` as it is (e.g. YAML text) and flush; errors as :meth:`write`."""
        try:
            self.stream.write(data)
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
