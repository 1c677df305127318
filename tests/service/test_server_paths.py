"""What a client gets back names nothing on the server's disk, and a client names models and
voices from the operator's lists only: never a path, never a file relative to the worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ai_content_pipeline.errors import BackendUnavailable
from tests.service.conftest import SONGS, Service, make_service

GENERATE = "/api/v1/generate"


def _everything(svc: Service, job_id: str) -> list[str]:
    """Every response a client can get about one job, as text."""
    c = svc.client
    return [c.get(f"{GENERATE}/{job_id}").text, c.get(f"{GENERATE}/{job_id}/events").text,
            c.get(GENERATE).text, c.get(f"{GENERATE}/{job_id}", params={"records_offset": 1}).text]


def _server_paths(svc: Service, job_id: str, *more: str) -> list[str]:
    data = Path(svc.settings.data_dir)
    return [str(data), str(data.resolve()), str(data / "jobs" / job_id), os.getcwd(), sys.prefix,
            os.environ["AICP_HOME"], f":{os.getpid()}:", *more]


@pytest.fixture
def rosa(tmp_path: Path) -> Path:
    """A persona in the operator's user folder whose voice files sit in the operator's folder."""
    voices = tmp_path / "operator-voices"
    voices.mkdir()
    (voices / "rosa.onnx").write_bytes(b"onnx")
    (voices / "rosa.onnx.json").write_text("{}")
    (voices / "rosa.wav").write_bytes(b"RIFF")
    home = Path(os.environ["AICP_HOME"]) / "personas"
    home.mkdir(parents=True, exist_ok=True)
    (home / "rosa.yaml").write_text(f"display_name: Rosa\nstyle: soft.\nvoice:\n  piper: {{voice: {voices}/rosa.onnx}}\n"
                                    f"  chatterbox: {{audio_prompt: {voices}/rosa.wav}}\n")
    return voices


def test_records_events_status_and_list_name_no_server_path(svc: Service, rosa: Path) -> None:
    job_id = svc.submit({"template": "song-intro", "persona": "rosa", "voice": True, "records": SONGS})
    svc.worker().run_once()
    texts = _everything(svc, job_id)
    job = svc.client.get(f"{GENERATE}/{job_id}").json()
    assert job["status"] == "completed", job
    for text in texts:
        for path in _server_paths(svc, job_id, str(rosa)):
            assert path not in text, path
    # what is left is what the client can use: paths relative to the job's folder, file names
    record = job["records"][0]
    assert record["audio"]["path"] == f"out/audio/{job['files'][0]['name']}"
    assert record["script"]["persona_voice"]["piper"]["model"] == "rosa.onnx"
    assert job["result"]["outputs"]["final"]["path"] == "out/02-voice.jsonl"
    assert job["worker"].startswith("w-") and str(os.getpid()) not in job["worker"]
    assert [r["id"] for r in job["records"]] == ["s1", "s2", "s3"]  # the client's own fields as sent


def test_errors_name_no_server_path(svc: Service) -> None:
    data = Path(svc.settings.data_dir).resolve()

    def broken(step: Any, notice: Any) -> Any:
        raise BackendUnavailable(f"model file {data}/models/x.gguf does not exist (cwd {os.getcwd()})",
                                 hint=f"put it in {sys.prefix}/share or pass --model")
    job_id = svc.submit({"records": SONGS[:1]})
    svc.worker(backend_factory=broken).run_once()
    job = svc.client.get(f"{GENERATE}/{job_id}").json()
    assert job["status"] == "failed" and "x.gguf does not exist" in job["error"]["message"]
    for text in _everything(svc, job_id):
        for path in _server_paths(svc, job_id):
            assert path not in text, path


def test_a_record_keeps_its_own_path_like_values(svc: Service) -> None:
    mine = {"id": "p1", "artist": "A", "title": "T", "where": "/srv/music/a.flac", "url": "http://x/y"}
    job_id = svc.submit({"records": [mine]})
    svc.worker().run_once()
    record = svc.client.get(f"{GENERATE}/{job_id}").json()["records"][0]
    assert {k: record[k] for k in mine} == mine


# -- models and voices: names from the operator's lists -------------------------------------------
@pytest.mark.parametrize(("body", "field"), [
    ({"records": SONGS, "model": "x.gguf"}, "model"),
    ({"records": SONGS, "chain": {"steps": [{"type": "script", "model": "x.gguf"}]}}, "chain.steps.0.model"),
    ({"records": SONGS, "chain": {"steps": [{"type": "script"}, {"type": "voice", "voice": "x.onnx"}]}},
     "chain.steps.1.voice"),
])
def test_a_file_name_is_refused_the_same_whether_or_not_the_file_exists(
        svc: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], field: str) -> None:
    monkeypatch.chdir(tmp_path)  # the worker's folder
    absent = svc.client.post(GENERATE, json=body)
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    (tmp_path / "x.onnx").write_bytes(b"onnx")
    (tmp_path / "x.onnx.json").write_text("{}")
    present = svc.client.post(GENERATE, json=body)
    assert absent.status_code == present.status_code == 422
    assert absent.json() == present.json() and absent.json()["error"]["field"] == field
    assert not list((Path(svc.settings.data_dir) / "jobs").glob("*"))


def test_checkpoint_dir_is_the_operators(svc: Service) -> None:
    body = {"records": SONGS, "chain": {"steps": [{"type": "script"},
                                                  {"type": "voice", "checkpoint_dir": "ckpt"}]}}
    r = svc.client.post(GENERATE, json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "chain.steps.1.checkpoint_dir"


def test_listed_names_become_the_operators_files_and_are_shown_as_names(tmp_path: Path) -> None:
    model, voice = tmp_path / "models" / "small-q4.gguf", tmp_path / "voices" / "anna.onnx"
    for path in (model, voice):
        path.parent.mkdir()
        path.write_bytes(b"x")
    for s in make_service(tmp_path, None, models={"small": str(model), "llama3.2": "llama3.2"},
                          voices={"anna": str(voice)}):
        chain = {"steps": [{"type": "script", "model": "small"}, {"type": "voice", "voice": "anna"}]}
        job_id = s.submit({"records": SONGS[:1], "chain": chain})
        job = s.store.get(job_id)
        assert job is not None
        assert [job.chain["steps"][0]["model"], job.chain["steps"][1]["voice"]] == [str(model), str(voice)]
        assert s.submit({"records": SONGS[:1], "model": "llama3.2"})
        s.worker().run_once()
        events = s.client.get(f"{GENERATE}/{job_id}/events").text
        assert str(tmp_path) not in events and '"model":"small"' in events and '"voice":"anna"' in events
        err = s.client.post(GENERATE, json={"records": SONGS, "model": "big"}).json()["error"]
        assert err["field"] == "model" and "small" in err["hint"] and str(tmp_path) not in str(err)
        by_path = s.client.post(GENERATE, json={"records": SONGS, "model": str(model)}).json()["error"]
        assert by_path["field"] == "model" and by_path["hint"] == err["hint"]  # a path is no name


def test_the_bundled_model_and_voice_are_listed_by_default(svc: Service) -> None:
    from ai_content_pipeline.backends.llamacpp import BUNDLED_NAME, bundled_model_path
    from ai_content_pipeline.backends.piper import BUNDLED_VOICE, bundled_voice_paths

    if bundled_model_path() is None or bundled_voice_paths() is None:
        pytest.skip("the bundled model or voice is not installed")
    chain = {"steps": [{"type": "script", "model": BUNDLED_NAME}, {"type": "voice", "voice": BUNDLED_VOICE}]}
    job = svc.store.get(svc.submit({"records": SONGS[:1], "chain": chain}))
    assert job is not None and job.chain["steps"][0]["model"] == str(bundled_model_path())


def test_serve_options_list_the_models_and_voices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.cli.serve import name_map
    from ai_content_pipeline.errors import UsageError

    (tmp_path / "m.gguf").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert name_map(["small=m.gguf", "llama3.2"], "--allow-model", files=False) == {
        "small": str(tmp_path / "m.gguf"), "llama3.2": "llama3.2"}
    for bad in (["=m.gguf"], ["small="], ["x=missing.gguf"]):
        with pytest.raises(UsageError):
            name_map(bad, "--allow-model", files=False)
    with pytest.raises(UsageError):
        name_map(["anna"], "--allow-voice", files=True)


# -- health and metrics ------------------------------------------------------------------------------
def _service_paths(svc: Service) -> list[str]:
    data = Path(svc.settings.data_dir)
    return [str(data), str(data.resolve()), os.getcwd(), sys.prefix, os.environ["AICP_HOME"],
            os.path.expanduser("~"), f":{os.getpid()}:"]


def test_health_detailed_and_metrics_name_no_server_path_host_or_pid(svc: Service, rosa: Path) -> None:
    import socket

    job_id = svc.submit({"template": "song-intro", "persona": "rosa", "voice": True, "records": SONGS})
    worker = svc.worker()
    worker.run_once()
    worker.register()
    detailed = svc.client.get("/api/v1/health/detailed")
    metrics = svc.client.get("/metrics")
    assert detailed.status_code == metrics.status_code == 200
    for text in (detailed.text, metrics.text):
        for path in _service_paths(svc) + [str(rosa)]:
            assert path not in text, path
    d = detailed.json()
    assert d["disk"]["free_bytes"] > 0 and "path" not in d["disk"]
    (shown,) = d["workers"]
    job = svc.client.get(f"{GENERATE}/{job_id}").json()
    assert shown["id"] == job["worker"] and shown["id"].startswith("w-")  # the label jobs show
    assert not {"host", "pid"} & set(shown) and socket.gethostname() not in str(shown)


def test_a_database_error_in_health_names_no_server_path(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(svc.settings.data_dir).resolve()

    def unreachable() -> None:
        raise OSError(f"unable to open database file {data}/aicp.db (cwd {os.getcwd()})")
    monkeypatch.setattr(svc.store, "ping", unreachable)
    r = svc.client.get("/api/v1/health/detailed")
    assert r.status_code == 503 and "aicp.db" in r.json()["database"]["error"]
    for path in _service_paths(svc):
        assert path not in r.text, path


@pytest.mark.parametrize("error", ["aicp", "request"])
def test_a_refused_job_names_no_server_path(svc: Service, monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    from ai_content_pipeline.errors import ConfigError
    from ai_content_pipeline.service.requests import RequestProblem
    from ai_content_pipeline.service.routers import generate

    data = Path(svc.settings.data_dir).resolve()
    where = f"{os.environ['AICP_HOME']}/templates/x.yaml"

    def refused(*a: Any, **k: Any) -> Any:
        if error == "aicp":
            raise ConfigError(f"template {where} does not render (data {data})", hint=f"fix {where}")
        raise RequestProblem("template", f"template {where} is not valid", hint=f"see {sys.prefix}/share")
    monkeypatch.setattr(generate, "build_chain", refused)
    r = svc.client.post(GENERATE, json={"records": SONGS})
    assert r.status_code in (400, 422) and "x.yaml" in r.json()["error"]["message"]
    for path in _service_paths(svc):
        assert path not in r.text, path
