"""The service's database: tables (SQLAlchemy 2 ORM), engines for SQLite and PostgreSQL, migrations.

Tables (created and upgraded by the Alembic migrations in ``service/migrations``):

- ``jobs``: one row per generation job: its chain, input records, status, progress
  counters, totals, error, result, files, and which worker holds it (with heartbeat).
- ``job_events``: the job's events, one row each, ``seq`` 1, 2, 3... per job; ``data``
  is the exact JSON text ``--stream`` would print (schema_version ``"1"``).
- ``job_records``: the job's output records (final step), ``idx`` 0-based.
- ``workers``: one row per worker process (``host``, ``pid``, heartbeat, current job).

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
    if not url:
        return f"sqlite:///{Path(data_dir).resolve() / 'aicp.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith(("postgresql+psycopg://", "sqlite:")):
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
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=40, **_EXACT_JSON)


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


__all__ = ["FINAL_STATUSES", "STATUSES", "Base", "Job", "JobEvent", "JobRecord", "WorkerRow",
           "database_url", "make_engine", "migrate"]
