"""Logging in from a browser: ``POST /login`` sets an HttpOnly, SameSite=Strict cookie that
counts like the bearer token; state-changing requests from other sites are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from ai_content_pipeline.service.auth import COOKIE, Login, require_login, safe_next, session_value
from tests.service.conftest import SONGS, Service, make_service

TOKEN = "s3cret-t0ken"
HTML = {"Accept": "text/html,application/xhtml+xml"}
HERE = {"Origin": "http://testserver"}


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Service]:
    """The API with ``--token``; ``GET /probe`` is a page route behind :func:`require_login`."""
    for s in make_service(tmp_path, None, token=TOKEN):
        app = s.client.app
        assert isinstance(app, FastAPI)

        @app.get("/probe")
        async def probe(login: Login = Depends(require_login)) -> dict[str, Any]:
            return {"via": login.via, "required": login.required}

        yield s


def _login(client: TestClient, token: str = TOKEN, **form: str) -> Any:
    return client.post("/login", data={"token": token, **form}, headers=HERE, follow_redirects=False)


def test_the_right_token_sets_an_httponly_strict_cookie_that_is_not_the_token(guarded: Service) -> None:
    r = _login(guarded.client, next="/jobs/abc")
    assert r.status_code == 303 and r.headers["location"] == "/jobs/abc"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={session_value(TOKEN)};")
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert TOKEN not in cookie and TOKEN not in r.headers["location"]
    assert guarded.client.get("/api/v1/templates").status_code == 200  # the cookie counts like the header
    assert guarded.client.get("/probe").json() == {"via": "cookie", "required": True}


def test_a_wrong_token_sets_no_cookie_and_goes_back_to_the_login_page(guarded: Service) -> None:
    for token in ("wrong", "", TOKEN + "x"):
        r = _login(guarded.client, token, next="/jobs/abc")
        assert r.status_code == 303 and "set-cookie" not in r.headers
        assert r.headers["location"] == "/login?error=token&next=/jobs/abc"
        assert token not in r.headers["location"] or not token
    assert guarded.client.get("/api/v1/templates").status_code == 401
    forged = {"Cookie": f"{COOKIE}={TOKEN}"}  # the token itself is not the cookie's value
    assert guarded.client.get("/api/v1/templates", headers=forged).status_code == 401


@pytest.mark.parametrize("given", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil", "",
                                   "/ok\r\nSet-Cookie: x=1"])
def test_after_login_the_browser_stays_on_this_server(given: str) -> None:
    assert safe_next(given) == "/"
    assert safe_next("/jobs/abc?show=approved") == "/jobs/abc?show=approved"


def test_a_cookie_request_that_changes_state_needs_this_servers_origin(guarded: Service) -> None:
    client = guarded.client
    _login(client)
    body = {"records": SONGS[:1]}
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Referer": "http://evil.example/page"}, {"Origin": "http://testserver.evil.example"}):
        r = client.post("/api/v1/generate", json=body, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["type"] == "CrossSiteRequest", (headers, r.text)
    assert client.get("/api/v1/generate").json()["total"] == 0
    assert client.post("/api/v1/generate", json=body, headers=HERE).status_code == 202
    assert client.post("/api/v1/generate", json=body,
                       headers={"Referer": "http://testserver/jobs/x"}).status_code == 202
    job_id = client.get("/api/v1/generate").json()["items"][0]["generation_id"]
    assert client.delete(f"/api/v1/generate/{job_id}").status_code == 403
    assert client.delete(f"/api/v1/generate/{job_id}", headers=HERE).status_code == 200


def test_the_bearer_header_needs_no_origin_but_another_sites_origin_is_refused(guarded: Service) -> None:
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.client.post("/api/v1/generate", json={"records": SONGS[:1]}, headers=ok).status_code == 202
    r = guarded.client.post("/api/v1/generate", json={"records": SONGS[:1]},
                            headers={**ok, "Origin": "http://evil.example"})
    assert r.status_code == 403


def test_without_a_token_only_other_sites_are_refused(svc: Service) -> None:
    assert svc.client.post("/api/v1/generate", json={"records": SONGS[:1]}).status_code == 202
    assert svc.client.post("/api/v1/generate", json={"records": SONGS[:1]}, headers=HERE).status_code == 202
    r = svc.client.post("/api/v1/generate", json={"records": SONGS[:1]}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "CrossSiteRequest"
    login = svc.client.post("/login", data={"token": "x", "next": "/jobs/a"}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/jobs/a" and "set-cookie" not in login.headers


def test_a_page_without_a_login_goes_to_the_login_page_and_the_api_says_401(guarded: Service) -> None:
    client = guarded.client
    r = client.get("/probe", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/probe"
    r = client.get("/jobs/abc", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/jobs/abc"
    r = client.get("/api/v1/generate", headers=HTML, follow_redirects=False)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics", follow_redirects=False).status_code == 401  # scrapers get the API's answer
    assert client.get("/probe", headers={"Authorization": f"Bearer {TOKEN}"}).json()["via"] == "header"


def test_require_login_redirects_by_itself(guarded: Service) -> None:
    """The dependency refuses a request without a login even where no middleware did."""
    import asyncio

    from starlette.requests import Request

    from ai_content_pipeline.service.auth import LoginRequired

    scope = {"type": "http", "method": "GET", "path": "/jobs/x", "headers": [], "query_string": b"",
             "app": guarded.client.app}
    with pytest.raises(LoginRequired) as caught:
        asyncio.run(require_login(Request(scope)))
    assert caught.value.next_path == "/jobs/x"


def test_logout_clears_the_cookie(guarded: Service) -> None:
    client = guarded.client
    _login(client)
    assert client.get("/api/v1/templates").status_code == 200
    r = client.post("/logout", headers=HERE, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=") and "max-age=0" in cookie
    assert client.get("/api/v1/templates").status_code == 401


def test_a_real_server_logs_a_browser_in_and_its_log_never_shows_the_token(tmp_path: Path) -> None:
    from tests.service.serve_process import ServeProcess

    server = ServeProcess(tmp_path / "data", "--token", TOKEN, "--no-worker", "--log-level", "info")
    try:
        client = server.client
        here = {"Origin": server.base}
        page = client.get("/docs", headers=HTML)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/docs"
        r = client.post("/login", data={"token": TOKEN, "next": "/docs"}, headers=here)
        assert r.status_code == 303 and r.headers["location"] == "/docs"
        assert client.get("/docs").status_code == 200  # httpx keeps the cookie, as a browser does
        assert client.get("/assets/redoc/redoc.standalone.js").status_code == 200
        assert client.post("/api/v1/generate", json={"records": SONGS[:1]}).status_code == 403
        assert client.post("/api/v1/generate", json={"records": SONGS[:1]}, headers=here).status_code == 202
        client.post("/login", data={"token": "wrong-" + TOKEN}, headers=here)
        assert client.post("/logout", headers=here).status_code == 303
        assert client.get("/api/v1/generate").status_code == 401
    finally:
        server.stop()
    log = Path(server.log.name).read_text(errors="replace")
    assert "POST /login" in log and "GET /docs" in log  # the access log ran
    assert TOKEN not in log and session_value(TOKEN) not in log
