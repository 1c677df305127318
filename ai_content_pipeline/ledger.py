"""The checkpoint ledger: an append-only JSON Lines file of finished work.

Each line is ``{"key": str, "value": {...}}`` where ``key`` is a request key
(see :func:`request_key`) and ``value`` what the stage produced (a ``script``
or ``audio`` object, a long-form chunk). A line is written with one ``write``
and flushed before the record goes to stdout, so a process killed at any
moment (SIGKILL included) leaves at most one torn last line. That torn line is
ignored on load and cut off before the next append, so it can never glue onto
a new line.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson

from .errors import UsageError
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
        self.torn_lines = 0
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
                entry = orjson.loads(raw)
                self.entries[entry["key"]] = entry["value"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.torn_lines += 1

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value for ``key``, or ``None``."""
        return self.entries.get(key)

    def _open(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+b")
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                # A torn last line from a killed run: cut it off.
                handle.seek(0)
                data = handle.read()
                handle.truncate(data.rfind(b"\n") + 1)
                handle.seek(0, os.SEEK_END)
        return handle

    def append(self, key: str, value: dict[str, Any]) -> None:
        """Record ``value`` under ``key``: one line, written and flushed at once."""
        line = orjson.dumps({"key": key, "value": value}, default=str) + b"\n"
        with self._lock:
            if self._handle is None:
                try:
                    self._handle = self._open()
                except OSError as exc:
                    raise UsageError(f"cannot write checkpoint {self.path}: {exc.strerror}") from exc
            self._handle.write(line)
            self._handle.flush()
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
