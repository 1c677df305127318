"""The take log: every take a run makes, in SQLite, like ``llm logs`` (off by default).

``aicp-script --log PATH.db`` (or ``AICP_LOG_DB``) records each take: time,
template@version, persona, backend, model, parameters, messages, text, tokens,
seconds, checks, request key, error; ``aicp-voice --log PATH.db`` adds the audio
file's path, seconds and backend to the take its record came from (matched by
``script.key``), or adds a voice-only row. ``aicp-script --recheck --log PATH.db`` adds an
``edit`` row for each take a person edited (the new text, words, checks and key; ``params``
holds ``edited_from``, the key of the take it replaces). ``aicp logs`` reads them back.

Tables (plain SQLite, JSON in TEXT columns, so ``sqlite-utils`` and ``datasette``
read them as they are)::

    runs(id TEXT PRIMARY KEY, datetime_utc, command, version, pid)
    takes(id INTEGER PRIMARY KEY, run_id → runs.id, datetime_utc, stage (script, edit or voice),
          record_id, take,
          template, persona, backend, model, params JSON, messages JSON, text, words,
          prompt_tokens, completion_tokens, seconds, checks JSON, passed, key, error JSON,
          audio_path, audio_seconds, audio_backend)

Writes are cheap for the run: :meth:`TakeLog.add_script` and
:meth:`TakeLog.add_audio` only put a tuple on a queue (safe from any number of
``--jobs`` threads); one writer thread opens and owns the connection (WAL journal,
``synchronous=NORMAL``), wakes once a second (or at 512 queued takes), and stores
what has queued up in one transaction. :meth:`TakeLog.close` writes what is left
and waits for it. ``bench/takelog_overhead.py`` measures the cost.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import AicpError, UsageError
from .jsonl import dumps
from .report import printable

SCHEMA_VERSION = 1
#: Environment variable naming the log when ``--log`` is not given.
ENV = "AICP_LOG_DB"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    datetime_utc TEXT NOT NULL,
    command TEXT,
    version TEXT,
    pid INTEGER
);
CREATE TABLE IF NOT EXISTS takes (
    id INTEGER PRIMARY KEY,
    run_id TEXT REFERENCES runs(id),
    datetime_utc TEXT NOT NULL,
    stage TEXT NOT NULL,
    record_id TEXT,
    take INTEGER,
    template TEXT,
    persona TEXT,
    backend TEXT,
    model TEXT,
    params TEXT,
    messages TEXT,
    text TEXT,
    words INTEGER,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    seconds REAL,
    checks TEXT,
    passed INTEGER,
    key TEXT,
    error TEXT,
    audio_path TEXT,
    audio_seconds REAL,
    audio_backend TEXT
);
CREATE INDEX IF NOT EXISTS takes_key ON takes(key);
CREATE INDEX IF NOT EXISTS takes_run ON takes(run_id);
"""

_SCRIPT_COLUMNS = ("run_id", "datetime_utc", "stage", "record_id", "take", "template", "persona", "backend",
                   "model", "params", "messages", "text", "words", "prompt_tokens", "completion_tokens",
                   "seconds", "checks", "passed", "key", "error")
_INSERT = f"INSERT INTO takes ({', '.join(_SCRIPT_COLUMNS)}) VALUES ({', '.join('?' * len(_SCRIPT_COLUMNS))})"
_UPDATE_AUDIO = ("UPDATE takes SET audio_path = ?, audio_seconds = ?, audio_backend = ? "
                 "WHERE id = (SELECT max(id) FROM takes WHERE key = ? AND stage IN ('script', 'edit'))")
_INSERT_AUDIO = ("INSERT INTO takes (run_id, datetime_utc, stage, record_id, take, persona, text, key, "
                 "audio_path, audio_seconds, audio_backend) VALUES (?, ?, 'voice', ?, ?, ?, ?, ?, ?, ?, ?)")
_STOP = object()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value).decode()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _is_take_log(path: str) -> bool:
    """Whether the SQLite file ``path`` is an empty database or a take log (its tables and
    ``user_version``): aicp adds its tables, and WAL mode, to nobody else's database."""
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return not tables or ({"runs", "takes"} <= tables and version == SCHEMA_VERSION)


#: The writer thread stores what has queued up at least this often (seconds) ...
FLUSH_SECONDS = 1.0
#: ... or as soon as this many takes wait.
FLUSH_ROWS = 512
_HEADER = b"SQLite format 3\x00"


class TakeLog:
    """An open take log (see the module docstring).

    The database is opened, and its tables made, by the writer thread while the run
    starts; takes are stored every :data:`FLUSH_SECONDS` or :data:`FLUSH_ROWS` takes, in one
    transaction (a run killed with SIGKILL loses at most that much of its log).

    :param path: the SQLite file (created with its tables when missing).
    :param command: the command that runs (``aicp-script``), stored in ``runs``.
    :raises UsageError: the file exists and is not an SQLite database (exit 2).
    """

    def __init__(self, path: str | os.PathLike[str], command: str = "aicp") -> None:
        self.path = str(path)
        self.command = command
        self.run_id = uuid.uuid4().hex
        self.started = _now()
        try:
            with open(self.path, "rb") as fh:
                header = fh.read(len(_HEADER))
        except FileNotFoundError:
            header = b""
        except OSError as exc:
            raise UsageError(f"--log {self.path}: cannot read it: {exc.strerror}") from exc
        if header and header != _HEADER:
            raise UsageError(f"--log {self.path} is not a take log (not an SQLite database); it was left as it is",
                             hint="give a new file name ending in .db, or an earlier aicp take log")
        if header and not _is_take_log(self.path):
            raise UsageError(f"--log {self.path} is an SQLite database of another program, not a take log; "
                             "it was left as it is",
                             hint="give a new file name ending in .db, or an earlier aicp take log")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pending = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="aicp-takelog", daemon=True)
        self._thread.start()

    # -- producers (any thread) ------------------------------------------------------------
    def _put(self, item: Any) -> None:
        self._queue.put(item)
        self._pending += 1  # a racy count is fine: it only decides when to wake the writer early
        if self._pending >= FLUSH_ROWS:
            self._pending = 0
            self._wake.set()

    def add_script(self, record_id: str | None, take: int | None, script: dict[str, Any] | None, *,
                   messages: list[dict[str, str]] | None = None, params: dict[str, Any] | None = None,
                   error: dict[str, Any] | None = None, template: str | None = None,
                   persona: str | None = None, backend: str | None = None, model: str | None = None,
                   stage: str = "script") -> None:
        """Queue one script take: its ``script`` object (or ``error``), the messages and the
        parameters it was asked with. Returns at once; the writer thread stores it.

        :param stage: ``script`` (a take a model made) or ``edit`` (a take a person edited,
            checked again by ``--recheck``)."""
        self._put((0, _now(), record_id, take, script, messages, params, error,
                   (template, persona, backend, model), stage))

    def add_audio(self, record: dict[str, Any], audio: dict[str, Any]) -> None:
        """Queue the audio file of a voiced record: it fills ``audio_*`` of the latest take with
        the record's ``script.key``, or becomes a ``stage = 'voice'`` row of its own."""
        found = record.get("script")
        script: dict[str, Any] = found if isinstance(found, dict) else {}
        key = script.get("key") if isinstance(script.get("key"), str) else None
        take = script.get("take") if isinstance(script.get("take"), int) else None
        persona = script.get("persona") if isinstance(script.get("persona"), str) else None
        rid = record.get("id")
        self._put((1, _now(), key, None if rid is None else str(rid), take, persona, script.get("text"),
                   audio.get("path"), audio.get("seconds"), audio.get("backend")))

    # -- the writer thread ----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        from . import __version__

        # its folder is made like every output's (checked at the start: it can be made)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = _connect(self.path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("INSERT INTO runs (id, datetime_utc, command, version, pid) VALUES (?, ?, ?, ?, ?)",
                     (self.run_id, self.started, self.command, __version__, os.getpid()))
        return conn

    def _write(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._error = exc
        stop = False
        while not stop:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            batch = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            batch = [item for item in batch if item is not _STOP]
            if not batch or conn is None or self._error is not None:
                continue
            try:
                self._store(conn, batch)
            except (sqlite3.Error, OSError) as exc:
                self._error = exc
        if conn is not None:
            conn.close()

    def _script_row(self, item: tuple[Any, ...]) -> tuple[Any, ...]:
        _, when, rid, take, script, messages, params, error, (template, persona, backend, model), stage = item
        s = script or {}
        checks = s.get("checks") or (error or {}).get("checks")
        made = stage != "edit"  # an edit spent no tokens or seconds: its take's stay in that take's row
        tokens = (s.get("tokens") or {}) if made else {}
        return (self.run_id, when, stage, rid, take, s.get("template", template), s.get("persona", persona),
                s.get("backend", backend), s.get("model", model), _json(params), _json(messages), s.get("text"),
                s.get("words"), tokens.get("prompt"), tokens.get("completion"), s.get("seconds") if made else None,
                _json(checks),
                None if not isinstance(checks, dict) else int(bool(checks.get("passed"))), s.get("key"),
                _json(error))

    def _store(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows: list[tuple[Any, ...]] = []
            for item in batch:
                if item[0] == 0:
                    rows.append(self._script_row(item))
                    continue
                if rows:  # in order: an audio row may point at a take of this batch
                    conn.executemany(_INSERT, rows)
                    rows = []
                _, when, key, rid, take, persona, text, path, seconds, backend = item
                updated = 0
                if key is not None:
                    updated = conn.execute(_UPDATE_AUDIO, (path, seconds, backend, key)).rowcount
                if not updated:
                    conn.execute(_INSERT_AUDIO, (self.run_id, when, rid, take, persona, text, key,
                                                 path, seconds, backend))
            if rows:
                conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self, timeout: float = 60.0) -> None:
        """Store what is queued, then close. :raises UsageError: the file could not be used as
        a take log (exit 2). :raises AicpError: a write failed (exit 1; the run's records are
        written, only the log is short)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join(timeout)
        if self._error is not None:
            raise AicpError(f"--log {self.path}: the take log could not be written: {self._error}",
                            hint="the records on stdout are complete; only the log misses takes")


def read_takes(path: str | os.PathLike[str], limit: int | None = 10) -> list[dict[str, Any]]:
    """The last ``limit`` takes of the log at ``path`` (``None`` or 0: all), oldest first, as a
    list (:func:`iter_takes` one at a time). :raises UsageError: as :func:`iter_takes`."""
    return list(iter_takes(path, limit))


def _cell(value: bytes) -> str:
    """A TEXT cell as text: bytes that are not UTF-8 (a foreign or damaged log) shown as
    ``\\xNN`` escapes, so one bad cell never hides the rest of the log."""
    return value.decode("utf-8", "backslashreplace")


def _take(row: sqlite3.Row) -> dict[str, Any]:
    from .jsonl import loads

    item = dict(row)
    for column, value in item.items():
        if isinstance(value, bytes):  # a BLOB cell: shown as text, as a TEXT one
            item[column] = _cell(value)
    for column in ("params", "messages", "checks", "error"):
        if isinstance(item.get(column), str):
            try:
                item[column] = loads(item[column])
            except ValueError:
                pass
    if item.get("passed") is not None:
        item["passed"] = bool(item["passed"])
    return item


def iter_takes(path: str | os.PathLike[str], limit: int | None = 10) -> Iterator[dict[str, Any]]:
    """The last ``limit`` takes of the log at ``path`` (``None`` or 0: all), oldest first, one
    at a time (memory: one take, however long the log); JSON columns decoded, a cell that is
    not UTF-8 shown with ``\\xNN`` escapes.

    The file is checked when the first take is asked for.
    :raises UsageError: no such file, or not a take log (exit 2).
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no take log at {file}",
                         hint="runs write one with --log PATH.db (or AICP_LOG_DB=PATH.db)")
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise UsageError(f"{file} is not a take log: {exc}") from exc
    conn.row_factory = sqlite3.Row
    conn.text_factory = _cell
    try:
        try:
            rows = conn.execute("SELECT * FROM takes ORDER BY id")
            if limit:  # from the id of the limit-th newest take (a limit past SQLite's integers: all)
                first = conn.execute("SELECT id FROM takes ORDER BY id DESC LIMIT 1 OFFSET ?",
                                     (min(limit, 2**63 - 1) - 1,)).fetchone()
                if first is not None:
                    rows = conn.execute("SELECT * FROM takes WHERE id >= ? ORDER BY id", (first[0],))
            for row in rows:
                yield _take(row)
        except sqlite3.Error as exc:
            raise UsageError(f"{file} is not a take log: {exc}") from exc
    finally:
        conn.close()


#: Longest value :func:`format_take` prints (characters: the text, params, an error...);
#: ``aicp logs --json`` gives every value whole.
MAX_SHOWN_CHARS = 1024 * 1024


def _text(value: Any, lines: bool = False) -> str:
    """``value`` as printable text: a log is data another program may have written, so a
    column of any type prints, and what a terminal would act on (escapes, bidi controls)
    prints in Python's escape forms (:func:`~ai_content_pipeline.report.printable`).

    :param lines: keep newlines as line breaks (the take's text); else the value is one line
        (a newline prints as ``\\n``). A value past :data:`MAX_SHOWN_CHARS` is cut there.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else dumps(value).decode() if isinstance(value, (dict, list)) \
        else value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(text) > MAX_SHOWN_CHARS:  # params, an error, a path of hundreds of MB: cut, said so
        text = f"{text[:MAX_SHOWN_CHARS]}… ({len(text) - MAX_SHOWN_CHARS:,} more characters)"
    return "\n".join(printable(line) for line in text.split("\n")) if lines else printable(text)


def format_take(take: dict[str, Any]) -> str:
    """One take as readable text: a heading line, the parameters, the text (its first
    :data:`MAX_SHOWN_CHARS` characters, then how many more), the audio file.
    Columns of unexpected types (a hand-edited or foreign log) print as text, never fail."""
    head = [_text(take.get("datetime_utc")), _text(take.get("template") or take.get("stage")),
            _text(take.get("persona"))]
    engine = "/".join(_text(x) for x in (take.get("backend"), take.get("model")) if x)
    if engine:
        head.append(engine)
    facts = ["edited by hand"] if take.get("stage") == "edit" else []
    if take.get("prompt_tokens") is not None or take.get("completion_tokens") is not None:
        facts.append(f"{_text(take.get('prompt_tokens') or 0)}+{_text(take.get('completion_tokens') or 0)} tokens")
    seconds = take.get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        facts.append(f"{seconds:.2f} s")
    elif seconds is not None:
        facts.append(f"{_text(seconds)} s")
    checks = take.get("checks")
    if isinstance(checks, dict):
        failed = checks.get("failed") or []
        failed = failed if isinstance(failed, list) else [failed]
        facts.append("checks passed" if checks.get("passed")
                     else f"checks failed: {', '.join(_text(f) for f in failed)}")
    lines = [f"## {'  '.join(h for h in head if h)}"
             + (f"  ({', '.join(facts)})" if facts else ""),
             f"record {_text(str(take.get('record_id')))} take {_text(str(take.get('take')))}  "
             f"key {_text(str(take.get('key')))}"]
    if take.get("params"):
        lines.append("params: " + _text(take["params"]))
    error = take.get("error")
    if error:
        lines.append("error: " + _text(error.get("message", error) if isinstance(error, dict) else error))
    text = take.get("text")
    if text:
        more = len(text) - MAX_SHOWN_CHARS if isinstance(text, str) else 0
        if more > 0:  # a log another program wrote: one cell of hundreds of MB stays readable
            text = text[:MAX_SHOWN_CHARS]
        lines += ["", _text(text, lines=True)]
        if more > 0:
            lines.append(f"… ({more:,} more characters; --json shows the whole text)")
    if take.get("audio_path"):
        lines += ["", f"audio: {_text(take['audio_path'])} ({_text(str(take.get('audio_seconds')))} s, "
                      f"{_text(str(take.get('audio_backend')))})"]
    return "\n".join(lines) + "\n"


def open_log(path: str | None, command: str) -> TakeLog | None:
    """A :class:`TakeLog` at ``path``, or ``None`` when ``path`` is empty (logging off)."""
    return TakeLog(path, command) if path else None


__all__ = ["ENV", "SCHEMA_VERSION", "TakeLog", "format_take", "iter_takes", "open_log", "read_takes"]
