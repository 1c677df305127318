"""Job storage: every read and write of jobs, events, output records and workers.

The API and the workers use this one class; each method is one short transaction,
so the same code runs on SQLite and PostgreSQL.

Claiming a job is safe with many workers: on PostgreSQL the candidate row is chosen
with ``SELECT ... FOR UPDATE SKIP LOCKED``; on both databases the claim itself is the
atomic ``UPDATE jobs SET status='running' ... WHERE id=:id AND status='queued'``, so
of two workers racing for one row exactly one sees a row count of 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import make_transient_to_detached, sessionmaker

from ..jsonl import dumps as exact_dumps
from ..jsonl import loads as exact_loads
from .db import FINAL_STATUSES, Job, JobEvent, JobRecord, WorkerRow


def _now() -> float:
    return round(time.time(), 3)


class JobStore:
    """Jobs, events, records and workers in the database behind ``engine``.

    :param engine: from :func:`~ai_content_pipeline.service.db.make_engine`, migrated.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)
        self.dialect = engine.dialect.name
        table = Job.__table__
        # built once: the status polls' statements (a statement's cache key is memoized)
        self._select_job = select(*(c for c in table.c if c.name != "inputs")).where(
            table.c.id == bindparam("job_id"))
        self._select_status = select(table.c.status).where(table.c.id == bindparam("job_id"))

    # -- jobs ------------------------------------------------------------------------------
    def create(self, job_id: str, name: str, chain: dict[str, Any], inputs: list[dict[str, Any]]) -> Job:
        """Insert a ``queued`` job with its validated ``chain`` (dict) and input records."""
        job = Job(id=job_id, name=name, status="queued", chain=chain, inputs=inputs, created_at=_now(),
                  attempts=0, cancel_requested=False,
                  progress={"total": len(inputs), "completed": 0, "failed": 0, "skipped": 0},
                  prompt_tokens=0, completion_tokens=0, audio_seconds=0.0, cost=0.0, files=[],
                  records_total=0, records_failed=0, last_seq=0)
        with self.session.begin() as s:
            s.add(job)
        return job

    def get(self, job_id: str, *, inputs: bool = True) -> Job | None:
        """The job row, or ``None``; ``inputs=False`` leaves the input records unread
        (status polls of big jobs; reading ``job.inputs`` then raises
        ``sqlalchemy.orm.exc.DetachedInstanceError``).

        ``inputs=False`` is the path of every status poll: one prepared Core ``SELECT`` and a
        detached :class:`Job` built from its row, without an ORM session, which cost the
        server about three times the CPU (bench/service_overhead.py).
        """
        if inputs:
            with self.session() as s:
                return s.get(Job, job_id)
        with self.engine.connect() as conn:
            row = conn.execute(self._select_job, {"job_id": job_id}).one_or_none()
        if row is None:
            return None
        job = Job(**row._mapping)
        make_transient_to_detached(job)  # unloaded ``inputs`` raise instead of reading as None
        return job

    def status(self, job_id: str) -> str | None:
        """Just the job's status (``None``: no such job); polled by every live event stream."""
        with self.engine.connect() as conn:
            return conn.execute(self._select_status, {"job_id": job_id}).scalar_one_or_none()

    def list_jobs(self, status: str | None, limit: int, offset: int) -> tuple[list[Job], int]:
        """Jobs newest first (optionally one status): ``(page, total matching)``."""
        with self.session() as s:
            query = select(Job).order_by(Job.created_at.desc(), Job.id)
            count = select(func.count()).select_from(Job)
            if status:
                query, count = query.where(Job.status == status), count.where(Job.status == status)
            total = s.execute(count).scalar_one()
            return list(s.execute(query.limit(limit).offset(offset)).scalars()), int(total)

    def cancel(self, job_id: str) -> str | None:
        """Cancel: a queued job becomes ``cancelled`` now; a running one gets ``cancel_requested``.

        :returns: ``"cancelled"``, ``"requested"``, ``"final"`` (already finished) or ``None`` (no job).
        """
        with self.session.begin() as s:
            done = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                             .values(status="cancelled", finished_at=_now(), cancel_requested=True))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return "cancelled"
            done = s.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                             .values(cancel_requested=True))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return "requested"
            exists = s.execute(select(Job.id).where(Job.id == job_id)).scalar_one_or_none()
            return "final" if exists else None

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel the job (polled by the worker at boundaries)."""
        with self.session() as s:
            return bool(s.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar_one_or_none())

    def claim(self, worker_id: str) -> Job | None:
        """Take the oldest queued job for ``worker_id`` (status ``running``), or ``None``."""
        for _ in range(5):  # another worker may win the row we picked: pick again
            with self.session.begin() as s:
                pick = select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id).limit(1)
                if self.dialect == "postgresql":
                    pick = pick.with_for_update(skip_locked=True)
                job_id = s.execute(pick).scalar_one_or_none()
                if job_id is None:
                    return None
                now = _now()
                won = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
                    status="running", worker_id=worker_id, heartbeat_at=now,
                    started_at=func.coalesce(Job.started_at, now), attempts=Job.attempts + 1))
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=job_id))
                    return s.get(Job, job_id)
        return None

    def finish(self, job_id: str, worker_id: str, status: str, *, result: dict[str, Any] | None,
               error: dict[str, Any] | None, records: Iterable[dict[str, Any]], files: list[dict[str, Any]]) -> bool:
        """Store the outcome of a run (only if ``worker_id`` still holds the job).

        :returns: whether the job was this worker's to finish.
        """
        with self.session.begin() as s:
            job = s.get(Job, job_id, with_for_update=self.dialect == "postgresql")
            if job is None or job.worker_id != worker_id or job.status != "running":
                return False
            s.execute(delete(JobRecord).where(JobRecord.job_id == job_id))
            count = failed = 0
            for count, record in enumerate(records, start=1):
                failed += "error" in record
                s.add(JobRecord(job_id=job_id, idx=count - 1, data=exact_dumps(record).decode()))
            job.status, job.result, job.error, job.files = status, result, error, files
            job.records_total, job.records_failed, job.finished_at = count, failed, _now()
            if result:
                job.prompt_tokens = int(result.get("tokens", {}).get("prompt", job.prompt_tokens))
                job.completion_tokens = int(result.get("tokens", {}).get("completion", job.completion_tokens))
                job.audio_seconds = float(result.get("audio_seconds", job.audio_seconds))
                job.cost = float(result.get("total_cost", job.cost))
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=None))
            return True

    def release(self, job_id: str, worker_id: str) -> None:
        """Give a running job back to the queue (its worker is shutting down)."""
        with self.session.begin() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
                      .values(status="queued", worker_id=None, heartbeat_at=None))
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=None))

    def records(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """Output records ``offset`` ... ``offset + limit - 1``."""
        with self.session() as s:
            rows = s.execute(select(JobRecord.data).where(JobRecord.job_id == job_id, JobRecord.idx >= offset)
                             .order_by(JobRecord.idx).limit(limit)).scalars()
            return [exact_loads(r) for r in rows]  # numbers as the stage wrote them

    # -- events ----------------------------------------------------------------------------
    def add_event(self, job_id: str, data: str, progress: dict[str, Any] | None = None,
                  totals: dict[str, Any] | None = None) -> int:
        """Append one event (JSON text) and update the job's progress/totals; returns its ``seq``."""
        with self.session.begin() as s:
            job = s.get(Job, job_id, with_for_update=self.dialect == "postgresql")
            if job is None:
                return 0
            job.last_seq = seq = job.last_seq + 1
            s.add(JobEvent(job_id=job_id, seq=seq, data=data))
            if progress is not None:
                job.progress = progress
            for key, value in (totals or {}).items():
                setattr(job, key, value)
            return seq

    def events_after(self, job_id: str, seq: int, limit: int = 500) -> list[tuple[int, str]]:
        """Events with ``seq`` greater than ``seq``, oldest first: ``[(seq, json text)]``."""
        with self.session() as s:
            rows = s.execute(select(JobEvent.seq, JobEvent.data)
                             .where(JobEvent.job_id == job_id, JobEvent.seq > seq)
                             .order_by(JobEvent.seq).limit(limit))
            return [(int(a), str(b)) for a, b in rows]

    # -- workers ---------------------------------------------------------------------------
    def register_worker(self, worker_id: str, host: str, pid: int) -> None:
        """Insert (or revive) the ``workers`` row of this process."""
        with self.session.begin() as s:
            now = _now()
            row = s.get(WorkerRow, worker_id)
            if row is None:
                s.add(WorkerRow(id=worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now, stopped=False))
            else:
                row.heartbeat_at, row.stopped = now, False

    def heartbeat(self, worker_id: str, job_id: str | None) -> None:
        """The worker (and the job it runs) is alive now."""
        with self.session.begin() as s:
            now = _now()
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(heartbeat_at=now))
            if job_id:
                s.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id).values(heartbeat_at=now))

    def stop_worker(self, worker_id: str) -> None:
        """Mark a worker row as stopped (clean exit)."""
        with self.session.begin() as s:
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(stopped=True, job_id=None))

    def workers(self) -> list[WorkerRow]:
        """Every worker row, most recent heartbeat first."""
        with self.session() as s:
            return list(s.execute(select(WorkerRow).order_by(WorkerRow.heartbeat_at.desc())).scalars())

    def requeue_orphans(self, stale_after: float, host: str) -> list[str]:
        """Requeue running jobs whose worker is gone; returns their ids.

        Gone means: no heartbeat for ``stale_after`` seconds, or a worker on this ``host``
        whose process no longer exists (after ``kill -9`` and a restart this is seen at
        once; a row with this process's pid that is older than this process is a dead
        predecessor, e.g. PID 1 of a restarted container). A job whose cancel was
        requested becomes ``cancelled`` instead.
        """
        now = _now()
        with self.session.begin() as s:
            rows = s.execute(select(Job.id, Job.worker_id, Job.heartbeat_at, Job.cancel_requested)
                             .where(Job.status == "running")).all()
            workers = {w.id: w for w in s.execute(select(WorkerRow)).scalars()}
            out = []
            for job_id, worker_id, beat, cancel in rows:
                worker = workers.get(worker_id or "")
                dead = beat is None or now - beat > stale_after
                if not dead and worker is not None and worker.host == host \
                        and not _pid_alive(worker.pid, worker.started_at):
                    dead = True
                if not dead:
                    continue
                values: dict[str, Any] = ({"status": "cancelled", "finished_at": now} if cancel
                                          else {"status": "queued"})
                won = s.execute(update(Job).where(Job.id == job_id, Job.status == "running",
                                                  Job.worker_id == worker_id)
                                .values(worker_id=None, heartbeat_at=None, **values))
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    out.append(job_id)
            return out

    # -- aggregates ------------------------------------------------------------------------
    def counts_by_status(self) -> dict[str, int]:
        """``{status: number of jobs}`` (statuses without jobs are absent)."""
        with self.session() as s:
            return {k: int(v) for k, v in s.execute(select(Job.status, func.count()).group_by(Job.status))}

    def totals(self) -> dict[str, float]:
        """Sums over all jobs: records (output, failed), tokens, audio seconds, cost."""
        with self.session() as s:
            row = s.execute(select(func.coalesce(func.sum(Job.records_total), 0),
                                   func.coalesce(func.sum(Job.records_failed), 0),
                                   func.coalesce(func.sum(Job.prompt_tokens), 0),
                                   func.coalesce(func.sum(Job.completion_tokens), 0),
                                   func.coalesce(func.sum(Job.audio_seconds), 0.0),
                                   func.coalesce(func.sum(Job.cost), 0.0))).one()
        keys = ("records", "records_failed", "prompt_tokens", "completion_tokens", "audio_seconds", "cost")
        return {k: float(v) for k, v in zip(keys, row, strict=True)}

    def durations(self) -> list[float]:
        """Seconds from start to finish of every finished job that started."""
        with self.session() as s:
            rows = s.execute(select(Job.finished_at - Job.started_at).where(
                Job.status.in_(FINAL_STATUSES), Job.started_at.is_not(None), Job.finished_at.is_not(None)))
            return [float(v or 0.0) for (v,) in rows]

    def ping(self) -> None:
        """Run ``SELECT 1`` (raises when the database is unreachable)."""
        with self.session() as s:
            s.execute(select(1))


#: when this process started (Unix seconds): worker rows with our pid from before are dead
PROCESS_STARTED = time.time()


def _pid_alive(pid: int, started_at: float) -> bool:
    if pid == os.getpid():
        return started_at >= PROCESS_STARTED - 1.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["JobStore"]
