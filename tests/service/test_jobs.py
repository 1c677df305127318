"""Jobs and workers on SQLite and on a real PostgreSQL: claims, orphans, restart, shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import update
from sqlalchemy.orm.exc import DetachedInstanceError

from ai_content_pipeline.service.db import Job, WorkerRow
from tests.chain_doubles import FakeFactory, SlowTTS
from tests.service.conftest import SONGS, Service


class Crash(BaseException):
    """Stands for kill -9: not an Exception, so nothing catches it on the way out."""


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _ledger_keys(path: Path) -> list[str]:
    return [orjson.loads(line)["key"] for line in path.read_bytes().splitlines() if line.strip()]


def test_two_workers_never_run_the_same_job(dbsvc: Service) -> None:
    ids = [dbsvc.submit({"records": SONGS[:1]}) for _ in range(8)]
    ran: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        worker = dbsvc.worker(worker_id=name)
        original = worker.execute

        def execute(job: Any) -> None:
            with lock:
                ran.append((name, job.id))
            time.sleep(0.02)
            original(job)
        worker.execute = execute  # type: ignore[method-assign]
        while worker.run_once():
            pass

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(j for _, j in ran) == sorted(ids)  # every job once, none twice
    jobs = [dbsvc.store.get(i) for i in ids]
    assert all(j is not None and j.status == "completed" and j.attempts == 1 for j in jobs)


def test_orphaned_job_is_requeued_and_finishes_every_record_once(dbsvc: Service) -> None:
    jid = dbsvc.submit()  # script + voice over 3 songs
    tts = SlowTTS()
    original = tts.synthesize

    def crash_on_second(text: str, voice: Any) -> Any:
        if len(tts.calls) == 1:
            raise Crash()
        return original(text, voice)
    tts.synthesize = crash_on_second  # type: ignore[method-assign]
    first = dbsvc.worker(worker_id="first", backend_factory=FakeFactory(tts=tts))
    try:
        first.run_once()
    except Crash:
        pass
    job = dbsvc.store.get(jid)
    assert job is not None and job.status == "running" and job.worker_id == "first"
    with dbsvc.store.session.begin() as s:  # its process is gone now
        s.execute(update(WorkerRow).where(WorkerRow.id == "first").values(pid=_dead_pid()))

    second_factory = FakeFactory()
    assert dbsvc.worker(worker_id="second", backend_factory=second_factory).run_once()
    job = dbsvc.store.get(jid)
    assert job is not None and job.status == "completed" and job.attempts == 2
    out = Path(dbsvc.settings.data_dir) / "jobs" / jid / "out"
    for name in ("01-script.ledger.jsonl", "02-voice.ledger.jsonl"):
        keys = _ledger_keys(out / name)
        assert len(keys) == len(set(keys)) == 3, name
    assert second_factory.llm.calls == []  # every script came from the ledger
    assert len(second_factory.tts.calls) == 2  # s1's audio was kept; s2 and s3 were made once
    events = [orjson.loads(d) for _, d in dbsvc.store.events_after(jid, 0, 10_000)]
    done = Counter((e["stage"], e["id"]) for e in events if e["event"] == "record_complete")
    assert set(done.values()) == {1} and len(done) == 6


def test_stale_heartbeat_on_another_host_is_requeued(dbsvc: Service) -> None:
    jid = dbsvc.submit({"records": SONGS[:1]})
    dbsvc.store.register_worker("far", "other-host", 1)
    assert dbsvc.store.claim("far") is not None
    worker = dbsvc.worker(stale_after=1.0)
    assert worker.sweep(force=True) == []  # a fresh heartbeat: left alone
    with dbsvc.store.session.begin() as s:
        s.execute(update(Job).where(Job.id == jid).values(heartbeat_at=time.time() - 5))
    assert worker.sweep(force=True) == [jid]
    assert dbsvc.store.status(jid) == "queued"
    assert worker.run_once() and dbsvc.store.status(jid) == "completed"


def test_orphan_with_a_cancel_request_becomes_cancelled(dbsvc: Service) -> None:
    jid = dbsvc.submit({"records": SONGS[:1]})
    dbsvc.store.register_worker("far", "other-host", 1)
    dbsvc.store.claim("far")
    assert dbsvc.client.delete(f"/api/v1/generate/{jid}").status_code == 202
    with dbsvc.store.session.begin() as s:
        s.execute(update(Job).where(Job.id == jid).values(heartbeat_at=time.time() - 100))
    dbsvc.worker().sweep(force=True)
    assert dbsvc.store.status(jid) == "cancelled"


def test_worker_shutdown_puts_the_job_back_and_a_restart_finishes_it(dbsvc: Service) -> None:
    jid = dbsvc.submit()
    worker = dbsvc.worker(worker_id="stopping")
    tts = dbsvc.factory.tts
    original = tts.synthesize

    def stop_after_first(text: str, voice: Any) -> Any:
        worker.stop.set()  # SIGTERM while record 1 is voiced
        return original(text, voice)
    tts.synthesize = stop_after_first  # type: ignore[method-assign]
    worker.run_once()
    job = dbsvc.store.get(jid)
    assert job is not None and job.status == "queued" and job.worker_id is None
    tts.synthesize = original  # type: ignore[method-assign]
    assert dbsvc.worker().run_once()
    job = dbsvc.store.get(jid)
    assert job is not None and job.status == "completed" and job.records_total == 3
    keys = _ledger_keys(Path(dbsvc.settings.data_dir) / "jobs" / jid / "out/02-voice.ledger.jsonl")
    assert len(keys) == len(set(keys)) == 3


def test_job_runs_the_same_on_both_databases(dbsvc: Service) -> None:
    jid = dbsvc.submit()
    dbsvc.worker().run_once()
    body = dbsvc.client.get(f"/api/v1/generate/{jid}").json()
    assert body["status"] == "completed" and len(body["files"]) == 3
    assert dbsvc.client.get("/api/v1/health/detailed").json()["database"]["dialect"] == dbsvc.store.dialect


def test_a_status_read_opens_no_orm_session_and_leaves_inputs_unread(dbsvc: Service) -> None:
    """Every status poll reads the job: a prepared Core SELECT, no ORM session (which cost
    the server about three times the CPU per poll), the same fields, the inputs unread."""
    job_id = dbsvc.submit({"records": SONGS[:2]})
    full = dbsvc.store.get(job_id)
    assert full is not None

    def no_session() -> None:
        raise AssertionError("a status read opened an ORM session")
    dbsvc.store.session = no_session  # type: ignore[assignment]
    light = dbsvc.store.get(job_id, inputs=False)
    assert light is not None and dbsvc.store.status(job_id) == "queued"
    for column in Job.__table__.c:
        if column.name != "inputs":
            assert getattr(light, column.name) == getattr(full, column.name), column.name
    with pytest.raises(DetachedInstanceError):
        _ = light.inputs
    assert dbsvc.store.get("nope", inputs=False) is None and dbsvc.store.status("nope") is None
