"""The service's database: tables (SQLAlchemy 2 ORM), engines for SQLite and PostgreSQL, migrations.

Tables (created and upgraded by the Alembic migrations in ``service/migrations``):

- ``jobs``: one row per generation job: its chain, input records, status, progress
  counters, totals, error, result, files, and which worker holds it (with heartbeat).
  ``claim_token`` is the fencing token of the current claim: every claim (and every
  re-claim of a job handed back) raises it by one, and a worker's writes to the job
  (events, heartbeats, its outcome) count only while the token it got is still the job's.
- ``job_events``: the job's events, one row each, ``seq`` 1, 2, 3... per job; ``data``
  is the exact JSON text ``--stream`` would print (schema_version ``"1"``).
- ``job_records``: the job's output records (final step), ``idx`` 0-based.
- ``workers``: one row per worker process (``host``, ``pid``, heartbeat, current job).
- ``record_reviews``: a person's decision on one output record (``job_id``, ``idx``):
  ``decision`` (``approved``/``rejected``), an optional ``note``, when (``at``).

A job made to give one record of another job a new take (``regenerate``, ``edit``) names it:
``parent_id``, ``parent_index`` (the record's ``idx``), ``parent_kind``; ``seed`` is the
script seed a regenerated take was asked with.

Times are Unix seconds (float) so both databases store them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..errors import UsageError

#: job statuses; the last four are final.
STATUSES = ("queued", "running", "completed", "partial", "failed", "cancelled")
FINAL_STATUSES = frozenset({"completed", "partial", "failed", "cancelled"})
#: a person's decisions on an output record
DECISIONS = ("approved", "rejected")

_BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class Base(DeclarativeBase):
    """Declarative base of the service tables."""


class Job(Base):
    """A generation job (see the module docstring)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    chain: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    records_total: Mapped[int] = mapped_column(Integer, default=0)
    records_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[str | None] = mapped_column(String(32), index=True)
    parent_index: Mapped[int | None] = mapped_column(Integer)
    parent_kind: Mapped[str | None] = mapped_column(String(16))
    seed: Mapped[int | None] = mapped_column(BigInteger)


class JobEvent(Base):
    """One event of a job: ``seq`` (1-based per job, the SSE id) and the JSON text."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)


class JobRecord(Base):
    """One output record of a job (JSON text), in output order."""

    __tablename__ = "job_records"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[str] = mapped_column(Text)


class RecordReview(Base):
    """A person's decision on one output record of a job."""

    __tablename__ = "record_reviews"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class WorkerRow(Base):
    """A worker process and its last heartbeat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    job_id: Mapped[str | None] = mapped_column(String(32))
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)


def database_url(url: str | None, data_dir: str | Path) -> str:
    """The SQLAlchemy URL: ``url`` (``postgresql://`` becomes ``postgresql+psycopg://``),
    else SQLite at ``data_dir/aicp.db``.

    :raises UsageError: a URL of another database kind.
    """
    if url is not None and not url.strip():
        raise UsageError("--database-url is empty",
                         hint="give a postgresql:// URL, or leave it out for SQLite in --data-dir")
    if not url:
        return f"sqlite:///{Path(data_dir).resolve() / 'aicp.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("sqlite:"):
        try:
            database = make_url(url).database
        except Exception:  # noqa: BLE001 - reported as a file-less URL below
            database = None
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            raise UsageError("--database-url sqlite:// names no file (the server and its workers share the database)",
                             hint="give sqlite:////path/to/aicp.db, or leave --database-url out for SQLite in --data-dir")
        return url
    if url.startswith("postgresql+psycopg://"):
        return url
    raise UsageError(f"unsupported --database-url {url.split(':', 1)[0]}:...",
                     hint="use postgresql://user:pass@host/db, or leave it out for SQLite in --data-dir")


def _json_text(value: Any) -> str:
    from ..jsonl import dumps

    return dumps(value).decode()


def _json_value(text: str | bytes) -> Any:
    from ..jsonl import loads

    return loads(text)


#: JSON columns (a job's input records...) keep numbers as sent: ``1e400``, integers past
#: 64 bits (the standard json module would write ``Infinity`` or round them)
_EXACT_JSON: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": _json_value}


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (from :func:`database_url`). SQLite runs in WAL mode with a
    30 s busy timeout so the API and the worker threads can share it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=40, **_EXACT_JSON)

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A server that does not answer fails in seconds, not after the system's TCP timeout; a
    # transaction left open by a paused process (SIGSTOP, a suspended VM, a stalled link) is
    # ended by the server after 10 s, so its row locks do not stop every other worker
    # (aicp's transactions are milliseconds long).
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=40,
                         connect_args={"connect_timeout": 10,
                                       "options": "-c idle_in_transaction_session_timeout=10000"},
                         **_EXACT_JSON)


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is named by its scheme only
        return url.split(":", 1)[0] + ":..."


def open_database(url: str | None, data_dir: str | Path) -> Engine:
    """An engine on the service's database, migrated to the newest revision and checked
    writable: what ``aicp serve`` and ``aicp worker`` do before anything else.

    :param url: ``--database-url`` (``None``: SQLite in ``data_dir``).
    :raises UsageError: (exit 2, one line naming the database without its password) an
        unsupported or malformed URL, an unreachable server, a file that is not a database
        (corrupt, a folder), a read-only database file or folder.
    """
    from sqlalchemy.exc import SQLAlchemyError

    target = database_url(url, data_dir)
    where = shown_url(url or target)
    hint = ("check the URL, that the server runs and that the user may create tables"
            if url else "move the file aside (or fix its permissions), or give --data-dir another folder")
    try:
        engine = make_engine(target)
    except ImportError as exc:  # the database's driver (psycopg) is not installed
        raise UsageError(f"--database-url {where} needs {exc.name or 'its driver'}, which is not installed",
                         hint="pip install 'ai_content_pipeline[serve]'") from None
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot use --database-url {where}: {_first_line(exc)}",
                         hint="use postgresql://user:pass@host/db, or leave it out for SQLite in --data-dir") from exc
    except OSError as exc:
        raise UsageError(f"cannot use the database {where}: {exc.strerror or exc}", hint=hint) from exc
    try:
        migrate(engine)
        with engine.begin() as conn:  # a database that opens read-only fails here, not on the first job
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise UsageError(f"cannot use the database {where}: {_first_line(exc)}", hint=hint) from exc
    return engine


def _first_line(exc: BaseException) -> str:
    """The database's own words for ``exc``: its first line, without SQLAlchemy's ``(Type)``
    prefix and background links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0].strip() if text else type(orig).__name__


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest Alembic revision; return that revision id.

    On PostgreSQL an advisory lock makes processes that start together migrate one
    after the other.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7411)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        return str(MigrationContext.configure(conn).get_current_revision())


__all__ = ["DECISIONS", "FINAL_STATUSES", "STATUSES", "Base", "Job", "JobEvent", "JobRecord", "RecordReview",
           "WorkerRow", "database_url", "make_engine", "migrate", "open_database", "shown_url"]
