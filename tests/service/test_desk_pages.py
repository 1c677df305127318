"""The review desk's pages over the API (TestClient, backend doubles): the jobs list, the submit
form, a job's cards and their filters."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from tests.service.conftest import SONGS, Service


def _finished(svc: Service) -> str:
    jid = svc.submit()
    svc.worker().run_once()
    return jid


def test_jobs_page_lists_jobs_and_offers_the_form(svc: Service) -> None:
    jid = svc.submit()
    r = svc.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert f'href="/jobs/{jid}"' in html and "data-live" in html  # queued: followed live
    assert '<meta name="viewport"' in html and '<main id="main"' in html
    assert '<input type="checkbox" name="voice"' in html  # inside its label
    for field in ("records", "records_file", "template", "persona"):
        assert f'id="{field}"' in html and f'for="{field}"' in html, field
    assert '<option value="station-id"' in html
    assert "script-src 'self'" in r.headers["content-security-policy"] and "<script>" not in html


def test_the_form_submits_a_job_through_the_api_code(svc: Service) -> None:
    lines = "\n".join(orjson.dumps({k: s[k] for k in ("id", "artist", "title")}).decode() for s in SONGS[:2])
    r = svc.client.post("/jobs", data={"records": lines + "\n\n", "template": "song-intro", "persona": "julie",
                                       "voice": "on"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    jid = r.headers["location"].rsplit("/", 1)[-1]
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert job["status"] == "queued" and job["progress"]["total"] == 2
    steps = [s["type"] for s in svc.store.get(jid).chain["steps"]]
    assert steps == ["script", "voice"]


def test_an_uploaded_file_is_read_as_json_lines(svc: Service) -> None:
    body = b'{"id": "a", "station": "KXYZ"}\n{"id": "b", "station": "KXYZ"}\n'
    r = svc.client.post("/jobs", data={"records": "", "template": "station-id"},
                        files={"records_file": ("ids.jsonl", body, "application/jsonl")}, follow_redirects=False)
    assert r.status_code == 303, r.text
    jid = r.headers["location"].rsplit("/", 1)[-1]
    steps = [s["type"] for s in svc.store.get(jid).chain["steps"]]
    assert steps == ["script"]  # voice unticked


def test_a_bad_form_is_answered_with_the_form_and_the_problem(svc: Service) -> None:
    for data, said in ((
            {"records": '{"id": 1}\nnot json', "template": "song-intro"}, "line 2 is not valid JSON"),
            ({"records": "", "template": "song-intro"}, "at least one JSON object"),
            ({"records": '{"id": "x"}', "template": "no-such-template"}, "no-such-template"),
            ({"records": '{"id": "x"}', "template": "song-intro", "persona": "nobody"}, "nobody")):
        r = svc.client.post("/jobs", data=data, follow_redirects=False)
        assert r.status_code == 422 and 'role="alert"' in r.text, data
        assert said in r.text.replace("&#39;", "'"), (data, r.text[:2000])
    assert svc.client.get("/api/v1/generate").json()["total"] == 0


def test_a_job_page_has_one_card_per_take_with_script_checks_and_audio(svc: Service) -> None:
    jid = _finished(svc)
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    r = svc.client.get(f"/jobs/{jid}")
    assert r.status_code == 200
    cards = re.findall(r'<article class="take[^"]*" id="take-(\d+)"', r.text)
    assert cards == [str(i) for i in range(len(job["records"]))]
    for record in job["records"]:
        assert record["artist"] in r.text
    name = job["records"][0]["audio"]["path"].rsplit("/", 1)[-1]
    assert f'<audio class="take-audio" controls preload="metadata" src="/api/v1/generate/{jid}/files/{name}"' in r.text
    assert svc.client.get(f"/api/v1/generate/{jid}/files/{name}").status_code == 200
    for action in ("approve", "reject", "regenerate", "edit"):
        assert f'<button type="button" data-action="{action}"' in r.text
    assert "checks passed" in r.text or "checks failed" in r.text
    one = svc.client.get(f"/jobs/{jid}/takes/1")
    assert one.status_code == 200 and one.text.lstrip().startswith("<article") and 'id="take-1"' in one.text


def test_failed_checks_are_named_on_the_card_and_filtered(svc: Service) -> None:
    jid = _finished(svc)
    record = svc.store.records(jid, 0, 1)[0]
    assert isinstance(record.get("script"), dict)
    from ai_content_pipeline.service.routers.pages import take_view

    record["script"]["checks"] = {"passed": False, "failed": ["grounded"], "details": {"grounded": ["1985", "Berlin"]}}
    view = take_view(jid, 0, record, set())
    assert view["checks"] == {"known": True, "passed": False, "failed": [("grounded", "1985, Berlin")]}
    failed = svc.client.get(f"/jobs/{jid}?show=failed").text
    assert 'aria-current="page">Failed checks' in failed


def test_unknown_job_and_take_are_404(svc: Service) -> None:
    assert svc.client.get("/jobs/nope").status_code == 404
    jid = _finished(svc)
    assert svc.client.get(f"/jobs/{jid}/takes/99").status_code == 404
    assert svc.client.get("/static/desk.js").status_code == 200
    assert svc.client.get("/static/desk.css").status_code == 200


def test_a_card_shows_its_review_and_the_new_take_when_it_lands(svc: Service) -> None:
    jid = _finished(svc)
    api = f"/api/v1/generate/{jid}/records"
    assert svc.client.post(f"{api}/0/review", json={"decision": "approved"}).status_code == 200
    assert svc.client.post(f"{api}/1/review", json={"decision": "rejected", "note": "too <loud>"}).status_code == 200
    page = svc.client.get(f"/jobs/{jid}").text
    assert "Approved" in page and "too &lt;loud&gt;" in page and "too <loud>" not in page
    assert re.findall(r'id="take-(\d+)"', svc.client.get(f"/jobs/{jid}?show=approved").text) == ["0"]
    assert re.findall(r'id="take-(\d+)"', svc.client.get(f"/jobs/{jid}?show=unreviewed").text) == ["2"]
    r = svc.client.post(f"{api}/1/regenerate")
    assert r.status_code == 202, r.text
    take_id = r.json()["generation_id"]
    card = svc.client.get(f"/jobs/{jid}/takes/1").text
    assert "data-pending" in card and "regenerating" in card
    svc.worker().run_once()
    card = svc.client.get(f"/jobs/{jid}/takes/1").text
    assert "data-pending" not in card and "take 2 (regenerated), 2 takes" in card
    # the card's audio and review buttons are the new take's (record 0 of its own job)
    assert f'data-api="/api/v1/generate/{take_id}/records/0"' in card
    assert f'src="/api/v1/generate/{take_id}/files/' in card
    assert "Other takes (1)" in card and "Unreviewed" in card
    jobs = svc.client.get("/").text
    assert f'new take of take 2 in\n        <a href="/jobs/{jid}#take-1">' in jobs


def test_with_a_token_no_page_or_file_without_logging_in(tmp_path: Path) -> None:
    from tests.service.conftest import make_service

    for svc in make_service(tmp_path, None, token="s3cret-token"):
        jid = svc.submit(headers={"Authorization": "Bearer s3cret-token"})
        svc.worker().run_once()
        files = svc.client.get(f"/api/v1/generate/{jid}", headers={"Authorization": "Bearer s3cret-token"}).json()["files"]
        html = {"Accept": "text/html"}
        for path in ("/", f"/jobs/{jid}", f"/jobs/{jid}/takes/0"):
            r = svc.client.get(path, headers=html, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
            assert svc.client.get(path, follow_redirects=False).status_code in (303, 401), path
        assert svc.client.get(files[0]["url"]).status_code == 401
        assert svc.client.post("/jobs", data={"records": '{"id": "x"}', "template": "song-intro"},
                               follow_redirects=False).status_code == 401
        login = svc.client.get("/login?next=/jobs/" + jid)
        assert login.status_code == 200 and 'type="password"' in login.text and "s3cret" not in login.text
        wrong = svc.client.post("/login", data={"token": "nope", "next": f"/jobs/{jid}"}, follow_redirects=False)
        assert wrong.status_code == 303 and "error=token" in wrong.headers["location"]
        assert svc.client.get(wrong.headers["location"]).status_code == 401
        right = svc.client.post("/login", data={"token": "s3cret-token", "next": f"/jobs/{jid}"},
                                follow_redirects=False)
        assert right.status_code == 303 and right.headers["location"] == f"/jobs/{jid}"
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret-token" not in cookie
        page = svc.client.get(f"/jobs/{jid}")
        assert page.status_code == 200 and 'action="/logout"' in page.text
        assert svc.client.get(files[0]["url"]).status_code == 200
        origin = {"Origin": str(svc.client.base_url).rstrip("/")}
        form = {"records": '{"id": "x", "artist": "A", "title": "B"}', "template": "song-intro"}
        assert svc.client.post("/jobs", data=form, follow_redirects=False).status_code == 403  # no Origin
        assert svc.client.post("/jobs", data=form, headers={"Origin": "http://evil.example"},
                               follow_redirects=False).status_code == 403
        assert svc.client.post("/jobs", data=form, headers=origin, follow_redirects=False).status_code == 303


def test_without_a_token_the_login_page_goes_home(svc: Service) -> None:
    r = svc.client.get("/login?next=/jobs/x", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/jobs/x"
    assert 'action="/logout"' not in svc.client.get("/").text


def test_the_pages_templates_and_static_files_ship_in_the_package() -> None:
    import fnmatch

    import pytest

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "ai_content_pipeline"]
    package = root / "ai_content_pipeline"
    for folder in ("service/templates", "service/static"):
        files = [p.relative_to(package).as_posix() for p in (package / folder).rglob("*") if p.is_file()]
        assert files, folder
        for name in files:
            assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_a_new_take_that_never_landed_is_said_on_the_card(svc: Service) -> None:
    from ai_content_pipeline.service.routers.pages import take_view

    record = {"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody", "script": {"text": "Hello."},
              "retakes": [{"generation_id": "t" * 32, "kind": "regenerate", "status": "failed", "record": None,
                           "files": [], "error": {"type": "BackendError", "message": "backend down"}}]}
    view = take_view("j" * 32, 0, record, set())
    assert view["text"] == "Hello." and view["label"] == "original take" and not view["pending"]
    assert view["latest_failed"]["checks"]["failed"] == [("BackendError", "backend down")]
    from ai_content_pipeline.service.routers.pages import templates

    card = templates().env.get_template("_take.html").render(take=view, job={"generation_id": "j" * 32}, API="/api/v1")
    assert "The take 2 failed: BackendError: backend down" in card


def test_a_job_past_the_page_limit_says_where_the_other_takes_are(svc: Service, monkeypatch: object) -> None:
    from ai_content_pipeline.service.routers import pages

    jid = _finished(svc)
    monkeypatch.setattr(pages, "PAGE_TAKES", 2)  # type: ignore[attr-defined]
    html = svc.client.get(f"/jobs/{jid}").text
    assert re.findall(r'id="take-(\d+)"', html) == ["0", "1"]
    assert "This page shows the first 2 takes; 1 more are in the" in html
