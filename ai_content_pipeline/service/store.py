"""Job storage: every read and write of jobs, events, output records and workers.

The API and the workers use this one class; each method is one short transaction,
so the same code runs on SQLite and PostgreSQL.

Claiming a job is safe with many workers: on PostgreSQL the candidate row is chosen
with ``SELECT ... FOR UPDATE SKIP LOCKED``; on both databases the claim itself is the
atomic ``UPDATE jobs SET status='running' ... WHERE id=:id AND status='queued'``, so
of two workers racing for one row exactly one sees a row count of 1.

Every claim raises the job's ``claim_token`` (a fencing token) and hands it to the worker;
a worker's heartbeats, events and outcome are stored only while its token is still the
job's. A worker paused past ``--stale-after`` (SIGSTOP, a VM pause, a stalled database
link) whose job was requeued and claimed again therefore writes nothing into the newer
claim's job; when it finds its job queued again (handed back) it takes it back
(:meth:`JobStore.check_claim`) and goes on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import make_transient_to_detached, sessionmaker

from ..jsonl import dumps as exact_dumps
from ..jsonl import loads as exact_loads
from .db import FINAL_STATUSES, Job, JobEvent, JobRecord, RecordReview, WorkerRow


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
    def create(self, job_id: str, name: str, chain: dict[str, Any], inputs: list[dict[str, Any]], *,
               parent: tuple[str, int, str] | None = None, seed: int | None = None) -> Job:
        """Insert a ``queued`` job with its validated ``chain`` (dict) and input records.

        :param parent: ``(job id, record index, kind)`` when the job makes a new take of
            another job's output record (kind ``regenerate`` or ``edit``).
        :param seed: the script seed a regenerated take is asked with.
        """
        parent_id, parent_index, parent_kind = parent if parent is not None else (None, None, None)
        job = Job(id=job_id, name=name, status="queued", chain=chain, inputs=inputs, created_at=_now(),
                  attempts=0, cancel_requested=False,
                  progress={"total": len(inputs), "completed": 0, "failed": 0, "skipped": 0},
                  prompt_tokens=0, completion_tokens=0, audio_seconds=0.0, cost=0.0, files=[],
                  records_total=0, records_failed=0, last_seq=0, parent_id=parent_id,
                  parent_index=parent_index, parent_kind=parent_kind, seed=seed)
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

    #: the columns a job list shows (:func:`~ai_content_pipeline.service.routers.generate.job_summary`):
    #: never a job's input records, result or file list, which may be megabytes each
    LIST_COLUMNS = ("id", "name", "status", "chain", "created_at", "started_at", "finished_at",
                    "worker_id", "attempts", "cancel_requested", "progress", "prompt_tokens",
                    "completion_tokens", "audio_seconds", "cost", "error", "parent_id", "parent_index",
                    "parent_kind", "seed")

    def list_jobs(self, status: str | None, limit: int, offset: int) -> tuple[list[Job], int]:
        """Jobs newest first (optionally one status): ``(page, total matching)``.

        Only :attr:`LIST_COLUMNS` are read (one Core ``SELECT``); the jobs are detached, and
        reading another attribute (``inputs``, ``result``, ``files``) raises
        ``sqlalchemy.orm.exc.DetachedInstanceError`` instead of loading it.
        """
        table = Job.__table__
        query = select(*(table.c[name] for name in self.LIST_COLUMNS)).order_by(
            table.c.created_at.desc(), table.c.id)
        count = select(func.count()).select_from(table)
        if status:
            query, count = query.where(table.c.status == status), count.where(table.c.status == status)
        with self.engine.connect() as conn:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        jobs = []
        for row in rows:
            job = Job(**row._mapping)
            make_transient_to_detached(job)
            jobs.append(job)
        return jobs, int(total)

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

    def claim(self, worker_id: str, exclude: Iterable[str] = ()) -> Job | None:
        """Take the oldest queued job for ``worker_id`` (status ``running``), or ``None``.

        :param exclude: job ids not to take now (jobs this worker just handed back).
        :returns: the job with its new ``claim_token`` (pass it to the fenced writes).
        """
        skip = list(exclude)
        for _ in range(5):  # another worker may win the row we picked: pick again
            with self.session.begin() as s:
                pick = select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id).limit(1)
                if skip:
                    pick = pick.where(Job.id.not_in(skip))
                if self.dialect == "postgresql":
                    pick = pick.with_for_update(skip_locked=True)
                job_id = s.execute(pick).scalar_one_or_none()
                if job_id is None:
                    return None
                now = _now()
                won = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
                    status="running", worker_id=worker_id, heartbeat_at=now,
                    started_at=func.coalesce(Job.started_at, now), attempts=Job.attempts + 1,
                    claim_token=Job.claim_token + 1))
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=job_id))
                    return s.get(Job, job_id)
        return None

    def _held(self, job_id: str, worker_id: str, token: int | None) -> Any:
        """The WHERE clause of a write that only the job's current claim may make."""
        where = [Job.id == job_id, Job.worker_id == worker_id, Job.status == "running"]
        if token is not None:
            where.append(Job.claim_token == token)
        return where

    def check_claim(self, job_id: str, worker_id: str, token: int) -> tuple[int | None, bool]:
        """Whether ``worker_id`` still holds the job with ``token``, and whether a cancel was asked.

        A job of this worker that was requeued meanwhile (this worker was paused past another
        worker's ``--stale-after``) and is still ``queued`` (nobody took it, or its next
        claimant handed it back) is claimed again here, with a new token.

        :returns: ``(token, cancel_requested)``; ``token`` is the one to use from now on,
            or ``None`` when another claim (or a final status) has superseded this one.
        """
        with self.session.begin() as s:
            row = s.execute(select(Job.status, Job.worker_id, Job.claim_token, Job.cancel_requested)
                            .where(Job.id == job_id)).one_or_none()
            if row is None:
                return None, False
            status, holder, current, cancel = row
            if status == "running" and holder == worker_id and current == token:
                return token, bool(cancel)
            if status != "queued":
                return None, bool(cancel)
            won = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued",
                                              Job.claim_token == current).values(
                status="running", worker_id=worker_id, heartbeat_at=_now(), claim_token=current + 1))
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None, bool(cancel)
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=job_id))
            return current + 1, bool(cancel)

    def finish(self, job_id: str, worker_id: str, status: str, *, result: dict[str, Any] | None,
               error: dict[str, Any] | None, records: Iterable[dict[str, Any]], files: list[dict[str, Any]],
               token: int | None = None) -> bool:
        """Store the outcome of a run (only if ``worker_id`` still holds the job, with ``token``
        when given).

        :returns: whether the job was this worker's to finish.
        """
        with self.session.begin() as s:
            job = s.get(Job, job_id, with_for_update=self.dialect == "postgresql")
            if job is None or job.worker_id != worker_id or job.status != "running" \
                    or (token is not None and job.claim_token != token):
                return False
            s.execute(delete(JobRecord).where(JobRecord.job_id == job_id))
            count = failed = 0
            for count, record in enumerate(records, start=1):
                failed += "error" in record
                s.add(JobRecord(job_id=job_id, idx=count - 1, data=exact_dumps(record).decode()))
            job.status, job.result, job.error, job.files = status, result, error, files
            job.records_total, job.records_failed, job.finished_at = count, failed, _now()
            if result:  # the job's totals count every attempt (kept current by its events); the
                # result counts this attempt only, so it never lowers them (a resumed attempt
                # serves earlier records from the ledgers without spending tokens)
                tokens = result.get("tokens") or {}
                job.prompt_tokens = max(job.prompt_tokens, int(tokens.get("prompt") or 0))
                job.completion_tokens = max(job.completion_tokens, int(tokens.get("completion") or 0))
                job.audio_seconds = max(job.audio_seconds, float(result.get("audio_seconds") or 0.0))
                job.cost = max(job.cost, float(result.get("total_cost") or 0.0))
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=None))
            return True

    def release(self, job_id: str, worker_id: str, token: int | None = None, *, started: bool = True) -> bool:
        """Give a running job back to the queue (its worker is shutting down, or another
        worker process still holds the job's folder).

        :param token: the claim's fencing token (``None``: any claim of ``worker_id``).
        :param started: ``False`` when the job did not run under this claim: its ``attempts``
            is taken back.
        :returns: whether the job was this worker's to give back.
        """
        with self.session.begin() as s:
            values: dict[str, Any] = {"status": "queued", "worker_id": None, "heartbeat_at": None}
            if not started:
                values["attempts"] = Job.attempts - 1
            done = s.execute(update(Job).where(*self._held(job_id, worker_id, token)).values(**values))
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(job_id=None))
            return done.rowcount == 1  # type: ignore[attr-defined]

    def records(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """Output records ``offset`` ... ``offset + limit - 1``."""
        with self.session() as s:
            rows = s.execute(select(JobRecord.data).where(JobRecord.job_id == job_id, JobRecord.idx >= offset)
                             .order_by(JobRecord.idx).limit(limit)).scalars()
            return [exact_loads(r) for r in rows]  # numbers as the stage wrote them

    def record(self, job_id: str, index: int) -> dict[str, Any] | None:
        """Output record ``index`` of the job (``None``: no such record)."""
        with self.session() as s:
            data = s.execute(select(JobRecord.data).where(JobRecord.job_id == job_id, JobRecord.idx == index)
                             ).scalar_one_or_none()
        return None if data is None else exact_loads(data)

    # -- reviews and new takes -------------------------------------------------------------
    def set_review(self, job_id: str, index: int, decision: str, note: str | None) -> dict[str, Any]:
        """Store (or replace) a person's decision on output record ``index`` of the job.

        :param decision: ``approved`` or ``rejected`` (checked by the caller).
        :returns: the review as the API shows it: ``{"decision", "note", "at"}`` (``at`` in
            Unix seconds).
        """
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        at = _now()
        values = {"decision": decision, "note": note, "at": at}
        # one statement (an upsert): two reviewers deciding at once never collide on the key
        statement = insert(RecordReview).values(job_id=job_id, idx=index, **values)
        with self.engine.begin() as conn:
            conn.execute(statement.on_conflict_do_update(index_elements=["job_id", "idx"], set_=values))
        return values

    def reviews(self, job_ids: Iterable[str]) -> dict[tuple[str, int], dict[str, Any]]:
        """The decisions on the records of ``job_ids``: ``{(job id, index): {"decision",
        "note", "at"}}`` (records without a decision are absent)."""
        ids = list(job_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(RecordReview.job_id, RecordReview.idx, RecordReview.decision,
                                       RecordReview.note, RecordReview.at).where(RecordReview.job_id.in_(ids)))
            return {(j, int(i)): {"decision": d, "note": n, "at": float(a)} for j, i, d, n, a in rows}

    def takes(self, job_id: str) -> list[Job]:
        """The jobs that make new takes of the job's records (``parent_id`` = ``job_id``),
        oldest first; detached, without their input records."""
        table = Job.__table__
        query = select(*(table.c[name] for name in (*self.LIST_COLUMNS, "records_total", "files"))).where(
            table.c.parent_id == job_id).order_by(table.c.created_at, table.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        jobs = []
        for row in rows:
            job = Job(**row._mapping)
            make_transient_to_detached(job)
            jobs.append(job)
        return jobs

    def first_records(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Output record 0 of each of ``job_ids`` that has one: ``{job id: record}`` (a new
        take's job makes one record)."""
        ids = list(job_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(JobRecord.job_id, JobRecord.data).where(
                JobRecord.job_id.in_(ids), JobRecord.idx == 0))
            return {j: exact_loads(d) for j, d in rows}

    # -- events ----------------------------------------------------------------------------
    def add_event(self, job_id: str, data: str, progress: dict[str, Any] | None = None,
                  totals: dict[str, Any] | None = None, *, worker_id: str | None = None,
                  token: int | None = None) -> int:
        """Append one event (JSON text) and update the job's progress/totals; returns its ``seq``.

        With ``worker_id`` and ``token`` the event is stored only while that claim holds the
        running job; otherwise nothing is written and 0 is returned.
        """
        with self.session.begin() as s:
            job = s.get(Job, job_id, with_for_update=self.dialect == "postgresql")
            if job is None:
                return 0
            if worker_id is not None and (job.worker_id != worker_id or job.status != "running"
                                          or (token is not None and job.claim_token != token)):
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

    def heartbeat(self, worker_id: str, job_id: str | None, token: int | None = None) -> bool:
        """The worker (and the job it runs under the claim ``token``) is alive now.

        :returns: ``False`` when the worker no longer holds ``job_id`` (its heartbeat went
            to nobody's job); ``True`` otherwise.
        """
        with self.session.begin() as s:
            now = _now()
            s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(heartbeat_at=now))
            if job_id:
                done = s.execute(update(Job).where(*self._held(job_id, worker_id, token)).values(heartbeat_at=now))
                return done.rowcount == 1  # type: ignore[attr-defined]
            return True

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
        """Sums over all jobs: records (output, failed), tokens, audio seconds, cost. The cost
        sums the costs that are finite numbers: a row holding ``inf`` (a price table without
        bounds, a hand edit) is left out, else every later sum would be ``inf``."""
        with self.session() as s:
            row = s.execute(select(func.coalesce(func.sum(Job.records_total), 0),
                                   func.coalesce(func.sum(Job.records_failed), 0),
                                   func.coalesce(func.sum(Job.prompt_tokens), 0),
                                   func.coalesce(func.sum(Job.completion_tokens), 0),
                                   func.coalesce(func.sum(Job.audio_seconds), 0.0),
                                   func.coalesce(func.sum(case((Job.cost.between(0.0, sys.float_info.max),
                                                                Job.cost), else_=0.0)), 0.0))).one()
        keys = ("records", "records_failed", "prompt_tokens", "completion_tokens", "audio_seconds", "cost")
        sums = {k: float(v) for k, v in zip(keys, row, strict=True)}
        sums["cost"] = min(sums["cost"], sys.float_info.max)  # finite costs may still add up past it
        return sums

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
