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
from .jsonl import dumps, loads
from .records import content_hash


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
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
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
            except OSError as exc:
                raise UsageError(f"cannot write checkpoint {self.path}: {exc.strerror}") from exc
            self.entries[key] = value

    def close(self) -> None:
        """Flush to disk (fsync) and close the file."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
