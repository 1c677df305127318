"""Service fixtures: a migrated database (SQLite, or a real PostgreSQL from pgserver), the app
under FastAPI's TestClient, and a worker whose backends are the chain doubles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ai_content_pipeline.service.app import ServiceSettings, create_app
from ai_content_pipeline.service.db import database_url, make_engine, migrate
from ai_content_pipeline.service.store import JobStore
from ai_content_pipeline.service.worker import Worker
from tests.chain_doubles import FakeFactory

SONGS = [{"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975},
         {"id": "s2", "artist": "Fleetwood Mac", "title": "Dreams", "year": 1977},
         {"id": "s3", "artist": "Nirvana", "title": "Smells Like Teen Spirit", "year": 1991}]


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL 16 server for the session (pgserver ships the binaries)."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()


def pg_url(server: Any) -> str:
    """A fresh, empty database on ``server``; its postgresql:// URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name};")
    uri = server.get_uri()
    base, _, query = uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@dataclass
class Service:
    client: TestClient
    store: JobStore
    settings: ServiceSettings
    factory: FakeFactory

    def worker(self, **kw: Any) -> Worker:
        kw.setdefault("backend_factory", self.factory)
        return Worker(self.store, self.settings.data_dir, **kw)

    def submit(self, body: dict[str, Any] | None = None, **kw: Any) -> str:
        body = body if body is not None else {"template": "song-intro", "persona": "julie", "voice": True,
                                              "records": SONGS}
        r = self.client.post("/api/v1/generate", json=body, **kw)
        assert r.status_code == 202, r.text
        return str(r.json()["generation_id"])


def make_service(tmp_path: Path, url: str | None, **settings: Any) -> Iterator[Service]:
    opts: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "worker": False, "max_records": 50,
                            "max_body": 64 * 1024, **settings}
    cfg = ServiceSettings(**opts)
    engine = make_engine(database_url(url, cfg.data_dir))
    migrate(engine)
    store = JobStore(engine)
    with TestClient(create_app(cfg, store)) as client:
        yield Service(client, store, cfg, FakeFactory())
    engine.dispose()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    """The API on SQLite, no background worker (tests run jobs with ``svc.worker().run_once()``)."""
    yield from make_service(tmp_path, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def dbsvc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """Like ``svc``, once on SQLite and once on a real PostgreSQL."""
    url = None if request.param == "sqlite" else pg_url(request.getfixturevalue("pg_server"))
    yield from make_service(tmp_path, url)
