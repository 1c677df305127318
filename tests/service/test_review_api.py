"""Reviewing a job's takes through the API: decisions stored in the database (SQLite and
PostgreSQL), shown in the job's records, exported as JSON Lines; new takes (regenerate) and
edited takes (checked again, voiced again) as linked jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ai_content_pipeline.service.routers.generate import regenerate_seed
from tests.service.conftest import SONGS, Service


def _finished_job(svc: Service, body: dict[str, Any] | None = None) -> str:
    job_id = svc.submit(body)
    assert svc.worker().run_once()
    assert svc.client.get(f"/api/v1/generate/{job_id}").json()["status"] == "completed"
    return job_id


def _records(svc: Service, job_id: str) -> list[dict[str, Any]]:
    records = svc.client.get(f"/api/v1/generate/{job_id}").json()["records"]
    assert isinstance(records, list)
    return records


def _lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def _error(r: Any, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["type"] == type_ and "Traceback" not in r.text
    return dict(body["error"])


# -- decisions ----------------------------------------------------------------------------------
def test_a_decision_is_stored_and_shown_in_the_job_records(dbsvc: Service) -> None:
    job_id = _finished_job(dbsvc)
    assert [r["review"] for r in _records(dbsvc, job_id)] == [None, None, None]
    r = dbsvc.client.post(f"/api/v1/generate/{job_id}/records/1/review",
                          json={"decision": "rejected", "note": "says the year twice"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["generation_id"] == job_id and body["index"] == 1
    assert body["review"]["decision"] == "rejected" and body["review"]["note"] == "says the year twice"
    assert body["review"]["at"].endswith("Z")
    records = _records(dbsvc, job_id)
    assert records[0]["review"] is None and records[2]["review"] is None
    assert records[1]["review"] == body["review"] and records[1]["id"] == "s2"
    # sent again, the decision replaces the earlier one
    again = dbsvc.client.post(f"/api/v1/generate/{job_id}/records/1/review", json={"decision": "approved"})
    assert again.status_code == 200
    assert _records(dbsvc, job_id)[1]["review"]["decision"] == "approved"
    assert _records(dbsvc, job_id)[1]["review"]["note"] is None


@pytest.mark.parametrize("body", [{"decision": "maybe"}, {"decision": None}, {}, {"decision": "approved", "x": 1},
                                  {"decision": "approved", "note": "n" * 2001}, {"decision": ["approved"]}])
def test_a_bad_decision_is_422(svc: Service, body: dict[str, Any]) -> None:
    job_id = _finished_job(svc)
    err = _error(svc.client.post(f"/api/v1/generate/{job_id}/records/0/review", json=body), 422, "InvalidRequest")
    assert err["field"] in ("decision", "note", "x", "body")
    assert all(r["review"] is None for r in _records(svc, job_id))


@pytest.mark.parametrize("path", ["records/3/review", "records/99999999999/review", "records/-1/review",
                                  "records/x/review", "records/9223372036854775808/review"])
def test_a_record_the_job_does_not_have_is_refused(svc: Service, path: str) -> None:
    job_id = _finished_job(svc)
    r = svc.client.post(f"/api/v1/generate/{job_id}/{path}", json={"decision": "approved"})
    assert r.status_code in (404, 422), r.text
    if path.startswith("records/3/") or path.startswith("records/99999999999/"):
        assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"


def test_an_unknown_job_is_404_and_an_unfinished_one_409(svc: Service) -> None:
    for action, body in (("review", {"decision": "approved"}), ("regenerate", None), ("edit", {"text": "Hi."})):
        _error(svc.client.post(f"/api/v1/generate/nope/records/0/{action}", json=body), 404, "NotFound")
    queued = svc.submit()
    for action, body in (("review", {"decision": "approved"}), ("regenerate", None), ("edit", {"text": "Hi."})):
        _error(svc.client.post(f"/api/v1/generate/{queued}/records/0/{action}", json=body), 409, "Conflict")
    _error(svc.client.get(f"/api/v1/generate/{queued}/records"), 409, "Conflict")
    _error(svc.client.get("/api/v1/generate/nope/records"), 404, "NotFound")


# -- export ---------------------------------------------------------------------------------------
def test_export_gives_the_records_of_one_decision_as_json_lines(dbsvc: Service) -> None:
    job_id = _finished_job(dbsvc)
    client = dbsvc.client
    client.post(f"/api/v1/generate/{job_id}/records/0/review", json={"decision": "approved"})
    client.post(f"/api/v1/generate/{job_id}/records/2/review", json={"decision": "rejected", "note": "flat"})
    r = client.get(f"/api/v1/generate/{job_id}/records", params={"review": "approved"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    approved = _lines(r.text)
    assert [rec["id"] for rec in approved] == ["s1"]
    assert "review" not in approved[0] and "retakes" not in approved[0]
    assert approved[0]["audio"]["path"].startswith("out/audio/") and approved[0]["script"]["text"]
    assert [x["id"] for x in _lines(client.get(f"/api/v1/generate/{job_id}/records?review=rejected").text)] == ["s3"]
    assert [x["id"] for x in _lines(client.get(f"/api/v1/generate/{job_id}/records?review=unreviewed").text)] == ["s2"]
    assert [x["id"] for x in _lines(client.get(f"/api/v1/generate/{job_id}/records").text)] == ["s1", "s2", "s3"]
    _error(client.get(f"/api/v1/generate/{job_id}/records?review=maybe"), 422, "InvalidRequest")
    # the lines are the records the commands write: the job's own output file, line for line
    out = Path(dbsvc.settings.data_dir) / "jobs" / job_id / "out"
    written = _lines((out / "02-voice.jsonl").read_text())
    assert approved[0]["script"] == written[0]["script"] and approved[0]["title"] == written[0]["title"]


def test_aicp_mix_reads_the_export(svc: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from ai_content_pipeline.cli.main import cli

    job_id = _finished_job(svc)
    svc.client.post(f"/api/v1/generate/{job_id}/records/1/review", json={"decision": "approved"})
    export = svc.client.get(f"/api/v1/generate/{job_id}/records?review=approved").content
    folder = Path(svc.settings.data_dir) / "jobs" / job_id
    (folder / "approved.jsonl").write_bytes(export)
    monkeypatch.chdir(folder)  # paths in the export are relative to the job's folder
    result = CliRunner().invoke(cli, ["mix", "approved.jsonl", "--show", str(tmp_path / "show.wav")])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert (tmp_path / "show.wav").stat().st_size > 1000


# -- regenerate ------------------------------------------------------------------------------------
def test_regenerate_queues_a_linked_take_with_a_derived_seed(dbsvc: Service) -> None:
    job_id = _finished_job(dbsvc)
    r = dbsvc.client.post(f"/api/v1/generate/{job_id}/records/1/regenerate")
    assert r.status_code == 202, r.text
    take = r.json()
    assert take["status"] == "queued" and r.headers["location"] == f"/api/v1/generate/{take['generation_id']}"
    seed = regenerate_seed(job_id, 1, 1)
    assert take["parent"] == {"generation_id": job_id, "index": 1, "kind": "regenerate", "seed": seed}
    shown = _records(dbsvc, job_id)[1]["retakes"]
    assert shown == [{"generation_id": take["generation_id"], "kind": "regenerate", "status": "queued",
                      "seed": seed, "created_at": shown[0]["created_at"], "record": None, "files": [],
                      "error": None}]
    assert dbsvc.worker().run_once()
    retake = _records(dbsvc, job_id)[1]["retakes"][0]
    assert retake["status"] == "completed" and retake["record"]["id"] == "s2"
    assert retake["record"]["script"]["text"] and retake["record"]["review"] is None
    assert retake["record"]["audio"]["path"].startswith("out/audio/")
    assert retake["files"] and retake["files"][0]["url"].startswith(f"/api/v1/generate/{take['generation_id']}/files/")
    assert dbsvc.client.get(retake["files"][0]["url"]).status_code == 200
    # the take was asked with its seed: the job's script step and the model's request say so
    job = dbsvc.store.get(take["generation_id"])
    assert job is not None and job.chain["steps"][0]["params"]["seed"] == seed
    assert dbsvc.factory.llm.calls[-1]["params"].seed == seed
    # a second take gets the next seed; a take of a take is one more take of the record
    second = dbsvc.client.post(f"/api/v1/generate/{take['generation_id']}/records/0/regenerate").json()
    assert second["parent"] == {"generation_id": job_id, "index": 1, "kind": "regenerate",
                                "seed": regenerate_seed(job_id, 1, 2)}
    assert regenerate_seed(job_id, 1, 2) != seed
    assert [t["generation_id"] for t in _records(dbsvc, job_id)[1]["retakes"]] == [take["generation_id"],
                                                                                   second["generation_id"]]
    assert [r["retakes"] for r in _records(dbsvc, job_id)][0] == []


def test_a_new_take_is_reviewed_and_exported_after_its_record(svc: Service) -> None:
    job_id = _finished_job(svc)
    take = svc.client.post(f"/api/v1/generate/{job_id}/records/0/regenerate").json()["generation_id"]
    assert svc.worker().run_once()
    svc.client.post(f"/api/v1/generate/{job_id}/records/0/review", json={"decision": "rejected"})
    svc.client.post(f"/api/v1/generate/{job_id}/records/1/review", json={"decision": "approved"})
    r = svc.client.post(f"/api/v1/generate/{take}/records/0/review", json={"decision": "approved"})
    assert r.status_code == 200
    assert _records(svc, job_id)[0]["retakes"][0]["record"]["review"]["decision"] == "approved"
    approved = _lines(svc.client.get(f"/api/v1/generate/{job_id}/records?review=approved").text)
    assert [x["id"] for x in approved] == ["s1", "s2"]
    assert approved[0]["audio"]["path"].startswith(f"../{take}/out/audio/")
    folder = Path(svc.settings.data_dir) / "jobs" / job_id
    assert (folder / approved[0]["audio"]["path"]).is_file() and (folder / approved[1]["audio"]["path"]).is_file()


# -- edit -----------------------------------------------------------------------------------------
def test_edit_checks_the_text_again_and_voices_it_again(dbsvc: Service) -> None:
    job_id = _finished_job(dbsvc)
    text = "That was Queen with Bohemian Rhapsody, six minutes that changed rock for good."
    calls = len(dbsvc.factory.llm.calls)
    r = dbsvc.client.post(f"/api/v1/generate/{job_id}/records/0/edit", json={"text": text})
    assert r.status_code == 202, r.text
    take = r.json()
    assert take["parent"]["kind"] == "edit" and take["parent"]["index"] == 0
    assert dbsvc.worker().run_once()
    retake = _records(dbsvc, job_id)[0]["retakes"][0]
    assert retake["kind"] == "edit" and retake["status"] == "completed"
    script = retake["record"]["script"]
    assert script["text"] == text and script["edited"] is True and script["words"] == len(text.split())
    assert isinstance(script["checks"]["passed"], bool)
    assert retake["record"]["audio"]["path"].startswith("out/audio/") and retake["files"]
    assert len(dbsvc.factory.llm.calls) == calls  # checked again, not written again
    assert dbsvc.factory.tts.calls[-1][0] == text


def test_edit_without_voice_only_checks(svc: Service) -> None:
    job_id = _finished_job(svc, {"template": "song-intro", "persona": "julie", "records": SONGS[:1]})
    take = svc.client.post(f"/api/v1/generate/{job_id}/records/0/edit", json={"text": "Short."}).json()
    assert svc.worker().run_once()
    retake = _records(svc, job_id)[0]["retakes"][0]
    assert retake["generation_id"] == take["generation_id"] and retake["files"] == []
    assert retake["record"]["script"]["edited"] is True and "audio" not in retake["record"]
    assert retake["record"]["script"]["checks"]["passed"] is False  # one word is too short for an intro


@pytest.mark.parametrize("body", [{"text": ""}, {"text": "   "}, {}, {"text": 5}, {"text": "x", "voice": True}])
def test_a_bad_edit_is_422(svc: Service, body: dict[str, Any]) -> None:
    job_id = _finished_job(svc)
    _error(svc.client.post(f"/api/v1/generate/{job_id}/records/0/edit", json=body), 422, "InvalidRequest")
    assert _records(svc, job_id)[0]["retakes"] == []


def test_a_long_form_take_is_regenerated_but_not_edited(svc: Service) -> None:
    job_id = svc.submit({"title": "How vinyl made a comeback", "length_target": 200, "persona": "sam"})
    assert svc.worker().run_once()
    err = _error(svc.client.post(f"/api/v1/generate/{job_id}/records/0/edit", json={"text": "New words."}),
                 409, "Conflict")
    assert "long-form" in err["message"]
    assert svc.client.post(f"/api/v1/generate/{job_id}/records/0/regenerate").status_code == 202
    assert [t["kind"] for t in _records(svc, job_id)[0]["retakes"]] == ["regenerate"]


def test_reviewers_deciding_at_once_leave_one_decision(dbsvc: Service) -> None:
    from concurrent.futures import ThreadPoolExecutor

    job_id = _finished_job(dbsvc)
    decisions = ["approved", "rejected"] * 8
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda d: dbsvc.store.set_review(job_id, 0, d, None), decisions))
    reviews = dbsvc.store.reviews([job_id])
    assert list(reviews) == [(job_id, 0)] and reviews[(job_id, 0)]["decision"] in ("approved", "rejected")


def test_a_take_whose_job_fails_says_why(svc: Service) -> None:
    from tests.chain_doubles import FakeFactory
    from tests.doubles import FakeLLM

    job_id = _finished_job(svc)
    svc.client.post(f"/api/v1/generate/{job_id}/records/2/regenerate")
    assert svc.worker(backend_factory=FakeFactory(FakeLLM(unavailable=True))).run_once()
    retake = _records(svc, job_id)[2]["retakes"][0]
    assert retake["status"] == "failed" and retake["record"] is None
    assert "fake backend down" in retake["error"]["message"]
