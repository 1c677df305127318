"""The HTTP API under FastAPI's TestClient: every endpoint and its errors (SQLite)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import soundfile as sf

from ai_content_pipeline.service.app import ServiceSettings, create_app
from tests.service.conftest import SONGS, Service, make_service


def _error(r: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"type", "message", "hint"} <= set(body["error"])
    assert "Traceback" not in r.text
    if type_:
        assert body["error"]["type"] == type_
    return dict(body["error"])


# -- submit ----------------------------------------------------------------------------------
def test_submit_answers_202_with_id_status_and_links(svc: Service) -> None:
    r = svc.client.post("/api/v1/generate", json={"template": "song-intro", "records": SONGS})
    assert r.status_code == 202
    body = r.json()
    jid = body["generation_id"]
    assert body["status"] == "queued" and body["links"]["self"] == f"/api/v1/generate/{jid}"
    assert body["links"]["events"].endswith("/events") and r.headers["location"] == body["links"]["self"]
    got = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert got["status"] == "queued" and got["records"] is None and got["progress"]["total"] == 3
    assert got["created_at"].endswith("Z") and got["started_at"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"records": "nope"}, "records"),
    ({"records": [1, 2]}, "records.0"),
    ({}, "body"),
    ({"records": SONGS, "title": "x"}, "body"),
    ({"records": SONGS, "colour": "red"}, "colour"),
    ({"title": "x", "length_target": 5}, "length_target"),
    ({"records": SONGS, "backend": "gpt"}, "backend"),
])
def test_bad_bodies_are_422_naming_the_field(svc: Service, body: dict[str, Any], field: str) -> None:
    err = _error(svc.client.post("/api/v1/generate", json=body), 422, "InvalidRequest")
    assert err["field"] == field and field.split(".")[0] in err["message"] or field == "body"


@pytest.mark.parametrize(("body", "field"), [
    ({"template": "nope", "records": SONGS}, "template"),
    ({"script_type": "../../etc/passwd", "records": SONGS}, "script_type"),
    ({"persona": "bob", "records": SONGS}, "persona"),
    ({"records": [{"id": "a", "title": "T", "persona": "/etc/x.yaml"}]}, "records.0.persona"),
    ({"records": SONGS, "params": {"temperature": "hot"}}, "params.temperature"),
    ({"records": SONGS, "params": {"flavour": 1}}, "params.flavour"),
    ({"records": SONGS, "params": {"work_dir": "/tmp"}}, "params.work_dir"),
    ({"records": SONGS, "model": "/root/model.gguf"}, "model"),
    ({"records": SONGS, "voice": True, "voice_params": {"speed": 2}}, "voice_params.speed"),
    ({"records": SONGS, "voice": True, "voice_params": {"lexicon": ["/etc/x.yaml"]}}, "voice_params.lexicon"),
    ({"records": SONGS, "chain": {"steps": [{"type": "voice", "params": {"lexicon": ["/etc/x.yaml"]}}]}},
     "chain.steps.0.params.lexicon"),
    ({"records": SONGS, "chain": {"input": "/etc/passwd", "steps": [{"type": "script"}]}}, "chain.input"),
    ({"records": SONGS, "chain": {"steps": [{"type": "script", "template": "x"}]}}, "chain.steps.0.template"),
    ({"records": SONGS, "chain": {"steps": [{"type": "script", "host": "http://evil"}]}}, "chain.steps.0.host"),
    ({"records": SONGS, "chain": {"steps": [{"type": "dance"}]}}, "chain.steps.0"),
])
def test_unknown_names_paths_and_bad_params_are_422(svc: Service, body: dict[str, Any], field: str) -> None:
    err = _error(svc.client.post("/api/v1/generate", json=body), 422, "InvalidRequest")
    assert err["field"] == field, err
    assert not list((Path(svc.settings.data_dir) / "jobs").glob("*"))  # nothing left behind


def test_too_many_records_and_too_big_a_body_are_413(tmp_path: Path) -> None:
    for s in make_service(tmp_path, None, max_records=2, max_body=4096):
        _error(s.client.post("/api/v1/generate", json={"records": SONGS}), 413, "TooManyRecords")
        big = {"records": [{"id": "a", "title": "x" * 5000}]}
        _error(s.client.post("/api/v1/generate", json=big), 413, "PayloadTooLarge")

        def chunks(payload: bytes) -> Any:  # no Content-Length: counted while read
            yield payload
        _error(s.client.post("/api/v1/generate", content=chunks(orjson.dumps(big)),
                             headers={"content-type": "application/json"}), 413, "PayloadTooLarge")


def test_topic_becomes_a_long_form_record(svc: Service) -> None:
    jid = svc.submit({"title": "How vinyl came back", "description": "sales grew", "length_target": 300})
    job = svc.store.get(jid)
    assert job is not None and job.inputs == [{"id": "how-vinyl-came-back", "topic": "How vinyl came back",
                                               "title": "How vinyl came back", "notes": "sales grew"}]
    step = job.chain["steps"][0]
    assert step["template"] == "podcast-longform" and step["params"]["words"] == 300


def test_chain_object_is_accepted_without_input(svc: Service) -> None:
    chain = {"name": "mine", "steps": [{"type": "script", "template": "station-id", "persona": "max"},
                                       {"type": "voice", "params": {"format": "wav"}}]}
    jid = svc.submit({"chain": chain, "records": SONGS[:1]})
    job = svc.store.get(jid)
    assert job is not None and job.name == "mine" and [s["type"] for s in job.chain["steps"]] == ["script", "voice"]
    _error(svc.client.post("/api/v1/generate", json={"chain": chain, "records": SONGS, "persona": "max"}), 422)


# -- running, records, files ---------------------------------------------------------------------
def test_job_runs_to_completed_with_records_files_and_totals(svc: Service) -> None:
    jid = svc.submit()
    assert svc.worker().run_once()
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert job["status"] == "completed" and job["error"] is None
    assert job["progress"]["percent"] == 100.0 and job["progress"]["completed"] == 3
    assert job["records_total"] == 3 and [r["id"] for r in job["records"]] == ["s1", "s2", "s3"]
    assert all("script" in r and "audio" in r for r in job["records"])
    assert job["tokens"]["completion"] > 0 and job["audio_seconds"] > 0
    assert job["started_at"] and job["finished_at"] and job["attempts"] == 1
    page = svc.client.get(f"/api/v1/generate/{jid}", params={"records_offset": 1, "records_limit": 1}).json()
    assert [r["id"] for r in page["records"]] == ["s2"] and page["records_total"] == 3
    names = sorted(f["name"] for f in job["files"])
    assert len(names) == 3 and all(n.endswith(".wav") for n in names)
    wav = svc.client.get(job["files"][0]["url"])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    data, rate = sf.read(io.BytesIO(wav.content))
    assert rate > 8000 and len(data) > rate  # more than a second of audio


def test_files_of_another_job_or_outside_are_404(svc: Service) -> None:
    a = svc.submit()
    svc.worker().run_once()
    b = svc.submit({"records": SONGS[:1]})
    svc.worker().run_once()
    name = svc.client.get(f"/api/v1/generate/{a}").json()["files"][0]["name"]
    _error(svc.client.get(f"/api/v1/generate/{b}/files/{name}"), 404, "NotFound")
    (Path(svc.settings.data_dir) / "secret.wav").write_bytes(b"RIFF")
    for bad in ("..%2F..%2Fsecret.wav", "%2E%2E%2Fsecret.wav", "input.jsonl", "01-script.jsonl", "..%2Finput.jsonl"):
        r = svc.client.get(f"/api/v1/generate/{a}/files/{bad}")
        assert r.status_code == 404 and "RIFF" not in r.text, bad


def test_unknown_id_is_404_json(svc: Service) -> None:
    for method, path in (("GET", "/api/v1/generate/nope"), ("DELETE", "/api/v1/generate/nope"),
                         ("GET", "/api/v1/generate/nope/events"), ("GET", "/api/v1/generate/nope/files/x.wav"),
                         ("GET", "/api/v1/nothing-here")):
        _error(svc.client.request(method, path), 404, "NotFound")


def test_failed_record_makes_partial_and_step_error_makes_failed(svc: Service) -> None:
    svc.factory.llm.fail_on = ("Dreams",)
    jid = svc.submit()
    svc.worker().run_once()
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert job["status"] == "partial" and sum("error" in r for r in job["records"]) == 1

    from ai_content_pipeline.errors import BackendUnavailable

    def broken(step: Any, notice: Any) -> Any:
        raise BackendUnavailable("no TTS here", hint="install one")
    jid = svc.submit({"records": SONGS})
    svc.worker(backend_factory=broken).run_once()
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert job["status"] == "failed" and job["error"]["type"] == "BackendUnavailable"
    assert job["error"]["hint"] == "install one"


def test_list_filters_by_status_and_pages(svc: Service) -> None:
    ids = [svc.submit({"records": SONGS[:1]}) for _ in range(3)]
    svc.worker().run_once()  # the oldest runs
    listed = svc.client.get("/api/v1/generate").json()
    assert listed["total"] == 3 and [j["generation_id"] for j in listed["items"]] == ids[::-1]
    queued = svc.client.get("/api/v1/generate", params={"status": "queued"}).json()
    assert queued["total"] == 2 and {j["generation_id"] for j in queued["items"]} == set(ids[1:])
    page = svc.client.get("/api/v1/generate", params={"limit": 1, "offset": 1}).json()
    assert [j["generation_id"] for j in page["items"]] == [ids[1]] and page["limit"] == 1
    _error(svc.client.get("/api/v1/generate", params={"status": "bogus"}), 422)
    _error(svc.client.get("/api/v1/generate", params={"limit": 0}), 422)


# -- cancel ---------------------------------------------------------------------------------------
def test_cancel_queued_is_immediate_and_finished_is_409(svc: Service) -> None:
    jid = svc.submit()
    r = svc.client.delete(f"/api/v1/generate/{jid}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert not svc.worker().run_once()  # nothing left to run
    _error(svc.client.delete(f"/api/v1/generate/{jid}"), 409, "Conflict")
    done = svc.submit({"records": SONGS[:1]})
    svc.worker().run_once()
    _error(svc.client.delete(f"/api/v1/generate/{done}"), 409, "Conflict")


def test_cancel_running_stops_at_a_record_and_keeps_finished_ones(svc: Service) -> None:
    jid = svc.submit()
    worker = svc.worker()
    tts = svc.factory.tts
    original = tts.synthesize

    def synthesize(text: str, voice: Any) -> Any:  # the client cancels while record 1 is voiced
        if len(tts.calls) == 0:
            r = svc.client.delete(f"/api/v1/generate/{jid}")
            assert r.status_code == 202 and r.json()["cancel_requested"] is True
        return original(text, voice)
    tts.synthesize = synthesize  # type: ignore[method-assign]
    worker.run_once()
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert job["status"] == "cancelled" and job["error"]["type"] == "Cancelled"
    assert [r["id"] for r in job["records"]] == ["s1"] and len(job["files"]) == 1
    assert not tts.loaded  # the model was unloaded
    events = [orjson.loads(line.removeprefix("data: ")) for line in
              svc.client.get(f"/api/v1/generate/{jid}/events").text.splitlines() if line.startswith("data: ")]
    names = [e["event"] for e in events]
    assert "model_unload" in names[names.index("step_start", 2):] and names[-1] == "pipeline_complete"


# -- events ----------------------------------------------------------------------------------------
def _sse(text: str) -> list[tuple[int, dict[str, Any]]]:
    out, seq = [], None
    for line in text.splitlines():
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("data: "):
            out.append((seq, orjson.loads(line[6:])))
    return out


def test_events_replay_the_stream_events_and_resume_with_last_event_id(svc: Service, tmp_path: Path) -> None:
    jid = svc.submit()
    svc.worker().run_once()
    r = svc.client.get(f"/api/v1/generate/{jid}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _sse(r.text)
    assert [s for s, _ in events] == list(range(1, len(events) + 1))
    names = [e["event"] for _, e in events]
    assert names[0] == "pipeline_start" and names[-1] == "pipeline_complete"
    assert all(e["schema_version"] == "1" and {"timestamp", "elapsed_seconds"} <= set(e) for _, e in events)

    # the same chain through run_chain with the --stream emitter: the same events, in the same order
    from ai_content_pipeline.chain.runner import run_chain
    from ai_content_pipeline.chain.spec import ChainSpec
    from ai_content_pipeline.events import StreamEmitter
    from tests.chain_doubles import FakeFactory

    job = svc.store.get(jid)
    assert job is not None
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in SONGS))
    spec = ChainSpec.model_validate({**job.chain, "input": str(tmp_path / "in.jsonl"),
                                     "output_dir": str(tmp_path / "cli")})
    err, out = io.StringIO(), io.StringIO()
    import contextlib
    with contextlib.redirect_stdout(out):
        run_chain(spec, emitter=StreamEmitter(enabled=True, stream=err), backend_factory=FakeFactory())
    cli = [orjson.loads(line) for line in (err.getvalue() + out.getvalue()).splitlines()]
    assert [e["event"] for e in cli] == names
    assert [sorted(e) for e in cli] == [sorted(e) for _, e in events]

    tail = svc.client.get(f"/api/v1/generate/{jid}/events", headers={"Last-Event-ID": "5"})
    assert [s for s, _ in _sse(tail.text)] == list(range(6, len(events) + 1))
    assert _sse(svc.client.get(f"/api/v1/generate/{jid}/events", params={"after": len(events)}).text) == []


# -- catalog, health, metrics, docs ------------------------------------------------------------------
def test_templates_and_personas(svc: Service) -> None:
    items = svc.client.get("/api/v1/templates").json()["items"]
    assert {"song-intro", "podcast-longform"} <= {t["name"] for t in items}
    one = svc.client.get("/api/v1/templates/song-intro").json()
    assert one["name"] == "song-intro" and "system" in one and "source" not in one
    _error(svc.client.get("/api/v1/templates/nope"), 404, "NotFound")
    _error(svc.client.get("/api/v1/templates/..%2Fpersonas%2Fjulie"), 404)
    personas = svc.client.get("/api/v1/personas").json()["items"]
    assert "julie" in {p["name"] for p in personas}


def test_health_detailed_and_metrics(svc: Service) -> None:
    assert svc.client.get("/api/v1/health").json()["status"] == "ok"
    svc.submit()
    svc.worker().run_once()
    svc.submit()
    d = svc.client.get("/api/v1/health/detailed").json()
    assert d["database"] == {"ok": True, "dialect": "sqlite"} and d["queue"] == {"queued": 1, "running": 0}
    assert {"llamacpp", "piper", "ollama"} <= set(d["backends"]["checks"]) and d["disk"]["free_bytes"] > 0
    assert len(d["workers"]) == 1 and d["workers"][0]["heartbeat_age_seconds"] >= 0
    text = svc.client.get("/metrics").text
    assert 'aicp_jobs{status="completed"} 1.0' in text and 'aicp_jobs{status="queued"} 1.0' in text
    assert 'aicp_records_total{outcome="ok"} 3.0' in text and "aicp_job_duration_seconds_count 1.0" in text
    assert 'aicp_tokens_total{kind="completion"}' in text and "aicp_audio_seconds_total" in text


def test_openapi_docs_and_redoc(svc: Service) -> None:
    spec = svc.client.get("/openapi.json").json()
    for path in ("/api/v1/generate", "/api/v1/generate/{job_id}", "/api/v1/generate/{job_id}/events",
                 "/api/v1/generate/{job_id}/files/{name}", "/api/v1/templates", "/api/v1/personas",
                 "/api/v1/health", "/api/v1/health/detailed", "/metrics"):
        assert path in spec["paths"], path
    assert "GenerateRequest" in spec["components"]["schemas"]
    assert svc.client.get("/docs").status_code == 200 and svc.client.get("/redoc").status_code == 200


def test_unexpected_errors_are_json_500_without_traceback(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("secret internals")
    monkeypatch.setattr(svc.store, "list_jobs", boom)
    from fastapi.testclient import TestClient

    with TestClient(svc.client.app, raise_server_exceptions=False) as client:
        err = _error(client.get("/api/v1/generate"), 500, "InternalError")
    assert "secret internals" not in err["message"]


# -- auth --------------------------------------------------------------------------------------------
def test_token_guards_everything_but_health(tmp_path: Path) -> None:
    for s in make_service(tmp_path, None, token="s3cret"):
        assert s.client.get("/api/v1/health").status_code == 200
        for path in ("/api/v1/generate", "/api/v1/templates", "/api/v1/personas", "/api/v1/health/detailed",
                     "/metrics", "/openapi.json", "/docs", "/api/v1/generate/x/events"):
            err = _error(s.client.get(path), 401, "Unauthorized")
            assert "Bearer" in (err["hint"] or "")
            _error(s.client.get(path, headers={"Authorization": "Bearer wrong"}), 401)
            _error(s.client.get(path, headers={"Authorization": "Basic s3cret"}), 401)
        _error(s.client.post("/api/v1/generate", json={"records": SONGS}), 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert s.client.get("/api/v1/templates", headers=ok).status_code == 200
        assert s.client.post("/api/v1/generate", json={"records": SONGS}, headers=ok).status_code == 202


def test_app_builds_its_own_store_from_settings(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(ServiceSettings(data_dir=str(tmp_path / "d"), worker=False))
    with TestClient(app) as client:
        assert client.post("/api/v1/generate", json={"records": SONGS}).status_code == 202
    assert (tmp_path / "d/aicp.db").is_file()


def test_the_catalog_lists_the_operators_own_items_without_paths(svc: Service) -> None:
    home = Path(os.environ["AICP_HOME"]) / "personas"
    home.mkdir(parents=True)
    (home / "rosa.yaml").write_text("display_name: Rosa\nstyle: soft.\n")
    personas = {p["name"]: p for p in svc.client.get("/api/v1/personas").json()["items"]}
    assert personas["rosa"]["source"] == "user" and personas["julie"]["source"] == "builtin"
    items = svc.client.get("/api/v1/templates").json()["items"] + list(personas.values())
    assert all("path" not in item for item in items)


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_requests_pass_no_base_http_middleware(tmp_path: Path, token: str | None) -> None:
    """Status polls are the hot path: Starlette's BaseHTTPMiddleware (``@app.middleware``)
    ran each through an extra task and memory streams, about 1 ms of server CPU a poll."""
    from starlette.middleware.base import BaseHTTPMiddleware

    app = create_app(ServiceSettings(data_dir=str(tmp_path / "d"), worker=False, token=token))
    assert [m.cls for m in app.user_middleware if m.cls is BaseHTTPMiddleware] == []


def test_serve_runs_on_the_c_http_parser_and_loop(tmp_path: Path) -> None:
    """uvicorn's "auto" picks httptools and uvloop, dependencies of aicp: pure-Python h11 and
    asyncio cost each status poll about twice the server CPU (bench/service_overhead.py)."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = uvicorn.Config(create_app(ServiceSettings(data_dir=str(tmp_path / "d"), worker=False)))
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    assert config.loop in ("auto", "uvloop")
    import uvloop  # noqa: F401 - "auto" uses it when it imports
