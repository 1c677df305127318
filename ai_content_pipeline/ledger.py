"""The checkpoint ledger: an append-only JSON Lines file of finished work.

Each line is ``{"key": str, "value": {...}}`` where ``key`` is a request key
(see :func:`request_key`) and ``value`` what the stage produced (a ``script``
or ``audio`` object, a long-form chunk). A line is written with one ``write``
and flushed before the record goes to stdout, so a process killed at any
moment (SIGKILL included) leaves at most one torn last line. That torn line is
ignored on load and cut off before the next append, so it can never glue onto
a new line.

Every append holds an exclusive ``flock`` on the ledger file while it repairs a
torn tail and writes its line, so several processes may append to one ledger:
none ever cuts off a line another is still writing. A line that is not a
``{"key": str, "value": object}`` is skipped on load (its work is done again);
stages check a value's fields before they reuse it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

from .errors import UsageError
from .jsonl import dumps, iter_lines, loads
from .records import content_hash

#: Longest ledger line read (bytes); a longer one is skipped (its work is done again).
MAX_ENTRY_BYTES = 64 * 1024 * 1024


def request_key(**parts: Any) -> str:
    """Stable key of a request: SHA-256 (32 hex) of its parts as canonical JSON.

    Callers pass everything that changes the output (rendered messages,
    backend, model, generation parameters, seed, take...).
    """
    return content_hash(parts, 32)


class Ledger:
    """Append-only checkpoint file, loaded into a ``key → value`` map.

    :param path: the ledger file; created (with its folder) on first append.
    :raises UsageError: when the file exists but cannot be read or written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0  # lines skipped on load: torn by a kill, or not a ledger entry
        self._handle: Any = None
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise UsageError(f"checkpoint {self.path} is not a regular file")
        try:
            with open(self.path, "rb") as handle:
                for raw in iter_lines(handle, MAX_ENTRY_BYTES):  # an overlong line is never held whole
                    if raw is None:
                        self.torn_lines += 1
                    elif raw.strip():
                        self._take(raw)
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        if not self.entries and self.torn_lines and self._ends_a_line():
            # whole lines and not one entry: another file (notes, records), never a ledger a
            # run wrote (a run killed in its first line leaves that line torn, unfinished)
            raise UsageError(f"checkpoint {self.path} is not a checkpoint ledger: none of its lines is an entry",
                             hint="give --checkpoint a new file, or a ledger an earlier run wrote; "
                                  "a run appends to it, so another file would be changed")

    def _ends_a_line(self) -> bool:
        """Whether the file's last byte ends a line (no line was torn at its end)."""
        with open(self.path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def _take(self, raw: bytes) -> None:
        try:
            entry = loads(raw)
        except (ValueError, RecursionError):
            entry = None
        if (isinstance(entry, dict) and isinstance(entry.get("key"), str)
                and isinstance(entry.get("value"), dict)):
            self.entries[entry["key"]] = entry["value"]
        else:
            self.torn_lines += 1

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value (an object) for ``key``, or ``None``."""
        return self.entries.get(key)

    def _open(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a+b")

    @staticmethod
    def _repair_tail(handle: Any) -> None:
        """Cut off a torn last line (a writer killed mid-line). Called under the file lock,
        so no live writer can be in the middle of that line. Reads backwards in blocks:
        never more than the torn line itself."""
        size = handle.seek(0, os.SEEK_END)
        if not size:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        end = size
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            block = handle.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            end = start
        handle.truncate(0)

    def append(self, key: str, value: dict[str, Any]) -> None:
        """Record ``value`` under ``key``: one line, written and flushed at once, under an
        exclusive lock on the file (safe beside other processes appending to it).

        :raises UsageError: the ledger file cannot be created or written.
        """
        line = dumps({"key": key, "value": value}) + b"\n"
        with self._lock:
            try:
                if self._handle is None:
                    self._handle = self._open()
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
                try:
                    self._repair_tail(self._handle)
                    self._handle.seek(0, os.SEEK_END)
                    self._handle.write(line)
                    self._handle.flush()
                finally:
                    fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            except OSError as exc:  # a full disk (exit 1, with the free space), a read-only folder...
                from .faults import os_error

                raise os_error(exc, self.path, doing="write checkpoint") from exc
            self.entries[key] = value

    def close(self) -> None:
        """Flush to disk (fsync) and close the file."""
        with self._lock:
            if self._handle is not None:
                handle, self._handle = self._handle, None
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError as exc:
                    from .faults import os_error

                    raise os_error(exc, self.path, doing="write checkpoint") from exc
                finally:
                    try:
                        handle.close()
                    except OSError:
                        pass

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
