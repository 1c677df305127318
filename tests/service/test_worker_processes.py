"""`aicp worker` as real processes on one real PostgreSQL database (backend doubles), and the
`aicp serve` command line: refuses a public address without a token, fast --help."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cli_helpers import BIN
from tests.service.conftest import SONGS, Service, make_service, pg_url
from tests.service.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = [sys.executable, "-m", "tests.chain_doubles"]  # the aicp group with backend doubles


@pytest.fixture
def pgsvc(tmp_path: Path, pg_server: Any) -> Iterator[tuple[Service, str]]:
    url = pg_url(pg_server)
    for svc in make_service(tmp_path, url):
        yield svc, url


def test_two_worker_processes_never_run_the_same_job(pgsvc: tuple[Service, str], tmp_path: Path) -> None:
    svc, url = pgsvc
    ids = [svc.submit({"records": SONGS[:1], "voice": True}) for _ in range(6)]
    env = {**os.environ, "AICP_FAKE_DELAY": "0.2", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([*DOUBLES, "worker", "--database-url", url, "--data-dir", svc.settings.data_dir,
                               "--once", "--poll", "0.05"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    jobs = [svc.store.get(i) for i in ids]
    assert all(j is not None and j.status == "completed" and j.attempts == 1 for j in jobs)
    for jid in ids:  # one run per job: one pipeline_start, each record once
        events = [orjson.loads(d) for _, d in svc.store.events_after(jid, 0, 10_000)]
        assert Counter(e["event"] for e in events)["pipeline_start"] == 1
    workers = {j.worker_id for j in jobs if j is not None}
    assert len(workers) <= 2 and all(w and w.count(":") == 2 for w in workers)
    rows = svc.store.workers()
    assert len(rows) == 2 and all(r.stopped for r in rows)


def test_serve_with_no_worker_and_a_worker_process_on_postgresql(pg_server: Any, tmp_path: Path) -> None:
    url = pg_url(pg_server)
    env = {"PYTHONPATH": str(ROOT), "AICP_API_TOKEN": "tok"}
    srv = ServeProcess(tmp_path / "data", "--database-url", url, "--no-worker", argv=DOUBLES, env=env)
    srv.client.headers["Authorization"] = "Bearer tok"
    worker = subprocess.Popen([*DOUBLES, "worker", "--database-url", url, "--data-dir", str(tmp_path / "data"),
                               "--poll", "0.05"], cwd=ROOT, env={**os.environ, **env})
    try:
        jid = srv.submit({"records": SONGS, "voice": True})
        names = [e["event"] for _, e in srv.events(jid)]
        assert names[0] == "pipeline_start" and names[-1] == "pipeline_complete"
        job = srv.wait(jid, 120)
        assert job["status"] == "completed" and len(job["files"]) == 3
        wav = srv.client.get(job["files"][0]["url"])
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    finally:
        worker.terminate()
        worker.wait(60)
        srv.stop()
    assert worker.returncode == 0


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    aicp = os.path.join(BIN, "aicp")
    proc = subprocess.run([aicp, "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "AICP_API_TOKEN": ""})
    assert proc.returncode == 2 and "without a token" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([aicp, "serve", "--max-records", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2


def test_serve_and_worker_help_do_not_import_the_web_stack() -> None:
    code = ("import sys; from ai_content_pipeline.cli.main import cli; from ai_content_pipeline.cli.errors import run_cli;"
            "run_cli(cli, 'aicp', ['serve', '--help']); run_cli(cli, 'aicp', ['worker', '--help']);"
            "bad = [m for m in ('fastapi', 'uvicorn', 'sqlalchemy', 'alembic', 'prometheus_client') if m in sys.modules];"
            "print('LOADED', bad)")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr
    assert "--database-url" in proc.stdout and "--no-worker" in proc.stdout
    assert time.monotonic() - t0 < 10


def test_example_client_and_the_readme_curl_body(tmp_path: Path) -> None:
    srv = ServeProcess(tmp_path / "data", argv=DOUBLES, env={"PYTHONPATH": str(ROOT)})
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "examples/service_client.py"), "--url", srv.base,
                               "--out", str(tmp_path / "got")], capture_output=True, text=True, timeout=120)
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished: success=True" in proc.stdout
    assert len(list((tmp_path / "got").glob("*/*.wav"))) == 4  # examples/songs-demo.jsonl, voiced
