"""The service under faults: a dead worker process, a full disk, big jobs in the list, start-up
errors, log lines, the database URL's environment variable, the server packages missing."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update

from ai_content_pipeline.service.db import Job
from tests.cli_helpers import BIN
from tests.service.conftest import SONGS, Service, make_service
from tests.service.serve_process import ServeProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = [sys.executable, "-m", "tests.chain_doubles"]  # the aicp group with backend doubles
AICP = os.path.join(BIN, "aicp")


def _until(what: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


# -- a worker process that dies -----------------------------------------------------------------
def test_serve_starts_its_worker_again_after_it_is_killed(tmp_path: Path) -> None:
    srv = ServeProcess(tmp_path / "data", argv=DOUBLES, env={"PYTHONPATH": str(ROOT)})
    try:
        first = _until(lambda: _children(srv.proc.pid))[0]
        _until(lambda: srv.client.get("/api/v1/health/detailed").json()["worker"]["ok"])
        os.kill(first, 9)
        seen_down = False

        def back() -> bool:
            nonlocal seen_down
            w = srv.client.get("/api/v1/health/detailed").json()["worker"]
            seen_down = seen_down or not w["ok"]
            return bool(w["ok"] and w["process"]["restarts"] == 1)
        _until(back)
        assert seen_down  # degraded while no worker ran
        assert first not in _children(srv.proc.pid)
        job = srv.wait(srv.submit({"records": SONGS[:1], "voice": True}), 120)
        assert job["status"] == "completed"
        assert "the worker process was killed by signal 9; starting it again in 1 s" in srv.log_text()
    finally:
        srv.stop()


def test_health_is_degraded_while_no_worker_heartbeats(svc: Service) -> None:
    d = svc.client.get("/api/v1/health/detailed").json()
    assert d["worker"] == {"ok": False, "alive": 0, "process": None} and d["status"] == "degraded"
    worker = svc.worker()
    worker.register()
    d = svc.client.get("/api/v1/health/detailed").json()
    assert d["worker"]["ok"] and d["worker"]["alive"] == 1


# -- a full disk --------------------------------------------------------------------------------
def _job_dirs(svc: Service) -> list[Path]:
    jobs = Path(svc.settings.data_dir) / "jobs"
    return list(jobs.iterdir()) if jobs.exists() else []


def test_new_jobs_are_refused_with_507_below_the_free_space_floor(tmp_path: Path) -> None:
    for svc in make_service(tmp_path, None, min_free_bytes=1 << 62):
        r = svc.client.post("/api/v1/generate", json={"records": SONGS})
        assert r.status_code == 507 and r.json()["error"]["type"] == "InsufficientStorage"
        assert str(tmp_path) not in r.text
        assert _job_dirs(svc) == [] and svc.store.list_jobs(None, 10, 0)[1] == 0
        disk = svc.client.get("/api/v1/health/detailed").json()["disk"]
        assert disk["ok"] is False and disk["min_free_bytes"] == 1 << 62


def test_a_full_disk_while_a_job_is_stored_answers_507_and_leaves_no_folder(
        svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.service.routers import generate

    def full(*a: Any, **k: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(generate, "validate_chain", full)
    r = svc.client.post("/api/v1/generate", json={"records": SONGS})
    assert r.status_code == 507 and _job_dirs(svc) == []
    monkeypatch.undo()

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("database gone")
    monkeypatch.setattr(svc.store, "create", broken)
    from fastapi.testclient import TestClient

    with TestClient(svc.client.app, raise_server_exceptions=False) as client:
        assert client.post("/api/v1/generate", json={"records": SONGS}).status_code == 500
    assert _job_dirs(svc) == []


def test_a_worker_below_the_floor_waits_and_then_runs_the_job(svc: Service) -> None:
    job_id = svc.submit({"records": SONGS[:1]})
    worker = svc.worker(min_free_bytes=1 << 62, poll_seconds=0.05)
    worker.MAX_BACKOFF = 0.05
    assert worker.run_once() is False and svc.store.status(job_id) == "queued"
    worker.min_free_bytes = 0
    assert worker.run_once() and svc.store.status(job_id) == "completed"


def test_a_job_that_fills_the_disk_goes_back_to_the_queue_and_the_worker_goes_on(
        svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile

    job_id = svc.submit()
    real = soundfile.write

    def full(*a: Any, **k: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(soundfile, "write", full)
    worker = svc.worker()
    assert worker.run_once()  # no exception: the worker lives on
    job = svc.store.get(job_id)
    assert job is not None and job.status == "queued" and job.error is None
    monkeypatch.setattr(soundfile, "write", real)
    worker._skip.clear()
    assert worker.run_once()
    job = svc.store.get(job_id)
    assert job is not None and job.status == "completed" and job.records_total == 3


def test_the_worker_loop_outlives_database_errors(svc: Service) -> None:
    job_id = svc.submit({"records": SONGS[:1]})
    worker = svc.worker(poll_seconds=0.01)
    real, calls = svc.store.claim, []

    def flaky(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE jobs", {}, Exception("database or disk is full"))
        return real(*a, **k)
    svc.store.claim = flaky  # type: ignore[method-assign]
    assert worker.run(max_jobs=1) == 1
    assert svc.store.status(job_id) == "completed"


# -- the job list reads what it shows -------------------------------------------------------------
def test_the_job_list_reads_no_inputs(svc: Service) -> None:
    big = [{"id": f"r{i}", "text": "x" * 1000} for i in range(1000)]  # about 1 MB a job
    for _ in range(20):
        svc.store.create(uuid.uuid4().hex, "big", {"steps": [{"type": "script"}]}, big)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        statements.append(statement)
    event.listen(svc.store.engine, "before_cursor_execute", seen)
    tracemalloc.start()
    try:
        r = svc.client.get("/api/v1/generate?limit=50")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        event.remove(svc.store.engine, "before_cursor_execute", seen)
    assert r.status_code == 200 and len(r.json()["items"]) == 20
    assert statements and not any("inputs" in s for s in statements), statements
    assert peak < 5_000_000, peak  # the inputs are 20 MB


# -- start-up errors ----------------------------------------------------------------------------
def _refused(proc: subprocess.CompletedProcess[str], prefix: str = "aicp serve") -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert 1 <= len(lines) <= 2 and lines[0].startswith(f"{prefix}: error: "), lines
    assert all(line.startswith(f"{prefix}: ") for line in lines), lines
    return lines[0]


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AICP, "serve", "--no-worker", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_serve_and_worker_start_up_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "aicp.db").write_bytes(b"not a database " * 500)
    assert "file is not a database" in _refused(_serve("--data-dir", str(corrupt)))
    folder = tmp_path / "folder"
    (folder / "aicp.db").mkdir(parents=True)
    assert "unable to open database file" in _refused(_serve("--data-dir", str(folder)))
    assert "unsupported --database-url mysql" in _refused(
        _serve("--data-dir", str(tmp_path / "d"), "--database-url", "mysql://u:pw@db/x"))
    line = _refused(_serve("--data-dir", str(tmp_path / "d"), "--database-url", "postgresql://u:pw@127.0.0.1:1/x"))
    assert "Connection refused" in line and "pw" not in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "Address already in use" in _refused(_serve("--data-dir", str(tmp_path / "d"), "--port", str(port)))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _refused(_serve("--data-dir", str(a_file)))
    for args in (["--data-dir", str(corrupt)], ["--data-dir", str(tmp_path / "d"), "--database-url", "mysql://x"]):
        proc = subprocess.run([AICP, "worker", "--once", *args], capture_output=True, text=True, timeout=60)
        _refused(proc, "aicp worker")


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_serve_listens_on_an_ipv6_literal(tmp_path: Path, host: str) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    proc = subprocess.Popen([AICP, "serve", "--no-worker", "--host", host, "--port", str(port),
                             "--data-dir", str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.communicate()[1].decode()
            try:
                return httpx.get(f"http://[::1]:{port}/api/v1/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False
        _until(up)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert f"aicp serve: Uvicorn running on http://[::1]:{port}" in err.decode()


# -- log lines ----------------------------------------------------------------------------------
def test_worker_lines_carry_the_prefix(svc: Service) -> None:
    job_id = svc.submit({"records": SONGS[:1]})
    svc.store.register_worker("far", "other-host", 1)
    svc.store.claim("far")
    with svc.store.session.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=time.time() - 100))
    proc = subprocess.run([*DOUBLES, "worker", "--once", "--data-dir", svc.settings.data_dir, "--stale-after", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(f"requeued job {job_id}" in line for line in lines), lines
    assert all(line.startswith("aicp worker: ") for line in lines), lines
    assert svc.store.status(job_id) == "completed"


def test_a_server_error_is_logged_once_with_the_prefix(tmp_path: Path) -> None:
    srv = ServeProcess(tmp_path / "data", "--no-worker", argv=DOUBLES, env={"PYTHONPATH": str(ROOT)})
    try:
        with sqlite3.connect(tmp_path / "data" / "aicp.db") as db:
            db.execute("DROP TABLE job_records")
            db.execute("DROP TABLE job_events")
            db.execute("DROP TABLE jobs")
        r = srv.client.get("/api/v1/generate")
        assert r.status_code == 500 and "Traceback" not in r.text
        time.sleep(0.5)
    finally:
        srv.stop()
    lines = [line for line in Path(srv.log.name).read_text().splitlines() if line]
    assert sum("Exception in ASGI application" in line for line in lines) == 1, lines  # one report
    assert not any("unexpected error" in line for line in lines), lines
    assert all(line.startswith("aicp serve: ") for line in lines), lines


# -- the database URL ---------------------------------------------------------------------------
def test_the_generic_database_url_variable_is_not_read(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://someone:pw@127.0.0.1:1/theirs", "PYTHONPATH": str(ROOT)}
    srv = ServeProcess(tmp_path / "data", "--no-worker", env=env)
    try:
        d = srv.client.get("/api/v1/health/detailed").json()
        assert d["database"] == {"ok": True, "dialect": "sqlite"}
    finally:
        srv.stop()
    assert (tmp_path / "data" / "aicp.db").is_file()
    proc = subprocess.run([AICP, "worker", "--once", "--data-dir", str(tmp_path / "data")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    bad = subprocess.run([AICP, "worker", "--once", "--data-dir", str(tmp_path / "data")], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "AICP_DATABASE_URL": "mysql://x"})
    assert bad.returncode == 2 and "mysql" in bad.stderr


# -- the server packages ------------------------------------------------------------------------
@pytest.mark.parametrize(("command", "module"), [("serve", "fastapi"), ("serve", "uvicorn"),
                                                 ("serve", "sse_starlette"), ("worker", "sqlalchemy")])
def test_serve_and_worker_without_the_server_packages_say_how_to_get_them(
        tmp_path: Path, command: str, module: str) -> None:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from ai_content_pipeline.cli.errors import run_cli\n"
            "from ai_content_pipeline.cli.main import cli\n"
            f"sys.exit(run_cli(cli, 'aicp', [{command!r}, '--data-dir', {str(tmp_path / 'd')!r}, '--once']"
            f" if {command!r} == 'worker' else [{command!r}, '--data-dir', {str(tmp_path / 'd')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"aicp {command}: error: aicp {command} needs the server packages ({module} is not installed): "
        "pip install 'ai_content_pipeline[serve]'"]
    assert not (tmp_path / "d").exists()


def test_a_postgresql_url_without_its_driver_says_how_to_get_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from ai_content_pipeline.cli.errors import run_cli\n"
            "from ai_content_pipeline.cli.main import cli\n"
            "sys.exit(run_cli(cli, 'aicp', ['worker', '--once', '--data-dir', sys.argv[1], "
            "'--database-url', 'postgresql://u:pw@127.0.0.1:1/x']))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    line = _refused(proc, "aicp worker")
    assert "needs psycopg" in line and "pw" not in proc.stderr
    assert "pip install 'ai_content_pipeline[serve]'" in proc.stderr
