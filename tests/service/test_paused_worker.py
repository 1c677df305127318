"""A worker paused past another worker's --stale-after (SIGSTOP/SIGCONT of real `aicp worker`
processes): the job ends `completed` with every record once, whichever worker finishes it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import update

from ai_content_pipeline.service.db import Job
from tests.service.conftest import SONGS, Service, make_service, pg_url

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = [sys.executable, "-m", "tests.chain_doubles"]  # the aicp group with backend doubles


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Service, list[str]]]:
    """The service's store, and the database options of a worker process sharing it."""
    url = None if request.param == "sqlite" else pg_url(request.getfixturevalue("pg_server"))
    for svc in make_service(tmp_path, url):
        yield svc, (["--database-url", url] if url else [])


def _worker(svc: Service, db: list[str], *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AICP_FAKE_DELAY": "0.4", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*DOUBLES, "worker", *db, "--data-dir", svc.settings.data_dir, "--once",
                             "--poll", "0.05", "--heartbeat", "0.2", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _until(what: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _pause(svc: Service, proc: subprocess.Popen[bytes]) -> None:
    """SIGSTOP ``proc`` outside a write transaction of SQLite: a process paused inside one
    holds SQLite's only write lock until it runs again, so no other worker could requeue
    its job meanwhile (PostgreSQL ends such a transaction after 10 s by itself)."""
    for _ in range(50):
        proc.send_signal(signal.SIGSTOP)
        if svc.store.dialect != "sqlite":
            return
        db = sqlite3.connect(Path(svc.settings.data_dir) / "aicp.db", timeout=0.5)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.rollback()
            return
        except sqlite3.OperationalError:  # paused while writing: let it finish, pause again
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            db.close()
    raise AssertionError("the worker never left its write transaction")


def _stale(svc: Service, job_id: str) -> None:
    """Wait until the job's heartbeat is older than the second worker's --stale-after (1 s)."""
    _until(lambda: (j := svc.store.get(job_id)) is not None and j.heartbeat_at is not None
           and time.time() - j.heartbeat_at > 1.5)


def _voiced(svc: Service, job_id: str) -> int:
    events = [orjson.loads(d) for _, d in svc.store.events_after(job_id, 0, 10_000)]
    return sum(1 for e in events if e["event"] == "record_complete" and e.get("stage") == "voice")


def _check_completed_once(svc: Service, job_id: str) -> Any:
    job = svc.store.get(job_id)
    assert job is not None and job.status == "completed", (job.status if job else None, job and job.error)
    records = svc.store.records(job_id, 0, 100)
    assert job.records_total == len(records) == 3
    assert sorted(r["id"] for r in records) == ["s1", "s2", "s3"]  # every record once
    assert all("error" not in r for r in records)
    out = Path(svc.settings.data_dir) / "jobs" / job_id / "out"
    for name in ("01-script.ledger.jsonl", "02-voice.ledger.jsonl"):
        keys = [orjson.loads(line)["key"] for line in (out / name).read_bytes().splitlines() if line.strip()]
        assert len(keys) == len(set(keys)) == 3, name
    assert len(job.files) == 3 and len(list((out / "audio").glob("*.wav"))) == 3
    events = [orjson.loads(d) for _, d in svc.store.events_after(job_id, 0, 10_000)]
    seqs = [s for s, _ in svc.store.events_after(job_id, 0, 10_000)]
    assert seqs == list(range(1, len(seqs) + 1))
    done = Counter(e["id"] for e in events if e["event"] == "record_complete" and e.get("stage") == "voice")
    assert all(n == 1 for n in done.values())  # no record reported twice
    return job


def _finish(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-3000:]
        assert b"Traceback" not in err, err.decode()[-3000:]


def test_second_worker_finishes_the_job_of_a_paused_worker(shared: tuple[Service, list[str]]) -> None:
    """The second claimant waits for the folder the paused worker holds; the paused worker,
    woken, finds its claim taken, stops at the next record and leaves the folder to it."""
    svc, db = shared
    job_id = svc.submit({"records": SONGS, "voice": True})
    first = _worker(svc, db, "--stale-after", "600")
    second = None
    try:
        _until(lambda: _voiced(svc, job_id) >= 1)
        _pause(svc, first)
        _stale(svc, job_id)
        second = _worker(svc, db, "--stale-after", "1", "--lock-wait", "120")
        _until(lambda: (j := svc.store.get(job_id)) is not None and j.worker_id is not None
               and f":{second.pid}:" in j.worker_id)
        time.sleep(0.5)  # the second worker waits on the job's folder
        first.send_signal(signal.SIGCONT)
        _finish(first, second)
    finally:
        first.send_signal(signal.SIGCONT)
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    job = _check_completed_once(svc, job_id)
    assert f":{second.pid}:" in str(job.worker_id) and job.attempts == 2


def test_paused_worker_takes_its_job_back_when_the_second_hands_it_back(
        shared: tuple[Service, list[str]]) -> None:
    """The second claimant gives the job back after --lock-wait (not failed); the paused
    worker, woken, takes it back and finishes it."""
    svc, db = shared
    job_id = svc.submit({"records": SONGS, "voice": True})
    first = _worker(svc, db, "--stale-after", "600")
    second = None
    try:
        _until(lambda: _voiced(svc, job_id) >= 1)
        _pause(svc, first)
        _stale(svc, job_id)
        second = _worker(svc, db, "--stale-after", "1", "--lock-wait", "0.5")
        _, err = second.communicate(timeout=120)  # --once: it exits once the queue holds nothing for it
        assert second.returncode == 0, err.decode()[-3000:]
        assert b"handing it back" in err and b"Traceback" not in err
        assert svc.store.status(job_id) == "queued"
        first.send_signal(signal.SIGCONT)
        _finish(first)
    finally:
        first.send_signal(signal.SIGCONT)
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    job = _check_completed_once(svc, job_id)
    assert f":{first.pid}:" in str(job.worker_id) and job.attempts == 1


def test_writes_of_a_superseded_claim_are_refused(dbsvc: Service) -> None:
    """In one process: a claim requeued and claimed again can neither beat, add events nor
    finish; taken back when it is queued again, it can."""
    job_id = dbsvc.submit({"records": SONGS[:1]})
    store = dbsvc.store
    first = store.claim("w1")
    assert first is not None and first.claim_token == 1
    with store.session.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=time.time() - 100))
    assert store.requeue_orphans(1.0, "this-host") == [job_id]
    second = store.claim("w2")
    assert second is not None and second.claim_token == 2
    assert store.heartbeat("w1", job_id, 1) is False
    assert store.add_event(job_id, "{}", worker_id="w1", token=1) == 0
    assert not store.finish(job_id, "w1", "failed", result=None, error=None, records=[], files=[], token=1)
    assert store.check_claim(job_id, "w1", 1) == (None, False)  # w2 holds it: not taken back
    assert store.release(job_id, "w2", 2, started=False)
    job = store.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 1
    assert store.check_claim(job_id, "w1", 1) == (3, False)  # queued again: w1 takes it back
    assert store.heartbeat("w2", job_id, 2) is False and store.heartbeat("w1", job_id, 3)
    assert store.add_event(job_id, "{}", worker_id="w1", token=3) == 1
    assert store.finish(job_id, "w1", "completed", result=None, error=None, records=[{"id": "s1"}], files=[],
                        token=3)
    assert store.status(job_id) == "completed"


def test_a_database_of_the_first_schema_is_upgraded(dbsvc: Service) -> None:
    from alembic import command
    from alembic.config import Config

    from ai_content_pipeline.service import db

    engine = dbsvc.store.engine
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.begin() as conn:
        assert "claim_token" not in {c["name"] for c in sa_inspect(conn).get_columns("jobs")}
    assert db.migrate(engine) == "0003"
    job_id = dbsvc.submit({"records": SONGS[:1]})
    assert dbsvc.worker().run_once() and dbsvc.store.status(job_id) == "completed"


def test_a_resumed_job_keeps_what_every_attempt_spent(dbsvc: Service) -> None:
    """Tokens and audio seconds count every attempt: the attempt that finishes the job from
    the ledgers (no new tokens) does not write its own smaller totals over them."""
    job_id = dbsvc.submit()
    worker = dbsvc.worker(worker_id="stopping")
    tts = dbsvc.factory.tts
    original = tts.synthesize

    def stop_after_first(text: str, voice: Any) -> Any:
        worker.stop.set()  # SIGTERM while record 1 is voiced
        return original(text, voice)
    tts.synthesize = stop_after_first  # type: ignore[method-assign]
    worker.run_once()
    spent = dbsvc.store.get(job_id)
    assert spent is not None and spent.status == "queued" and spent.completion_tokens > 0
    tts.synthesize = original  # type: ignore[method-assign]
    assert dbsvc.worker().run_once()
    job = dbsvc.store.get(job_id)
    assert job is not None and job.status == "completed"
    assert job.completion_tokens == spent.completion_tokens and job.prompt_tokens == spent.prompt_tokens
    assert job.audio_seconds >= spent.audio_seconds > 0
