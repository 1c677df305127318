"""The review desk behind ``aicp serve --token`` in a real browser (Debian's Chromium): no page
or file without the token; the login page asks once and keeps an HttpOnly, SameSite=Strict
cookie that scripts cannot read; the API docs render offline; log out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.browser import axe_violations, chromium_or_skip, launch, screenshot
from tests.service.serve_process import ServeProcess

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.e2e
TOKEN = "desk-token-0f3a9c"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    srv = ServeProcess(tmp_path_factory.mktemp("desk-login") / "data", "--token", TOKEN, "--no-worker")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch(p, CHROMIUM)
        yield chromium
        chromium.close()


def test_no_page_or_file_without_the_token_then_log_in_once(server: ServeProcess, browser: Any,
                                                              tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    job = server.client.post("/api/v1/generate", headers=headers, json={
        "template": "station-id", "records": [{"id": "a", "station": "KXYZ"}]}).json()["generation_id"]
    context = browser.new_context(base_url=server.base)
    page = context.new_page()
    page.set_default_timeout(20_000)
    for path in ("/", f"/jobs/{job}"):
        page.goto(path)
        assert page.url.startswith(f"{server.base}/login?next="), path
        assert page.locator("main").get_by_text("Jobs").count() == 0
    file = page.request.get(f"/api/v1/generate/{job}/files/a_max_0.wav")
    assert file.status == 401
    assert page.request.get(f"/api/v1/generate/{job}").status == 401
    assert not axe_violations(page), axe_violations(page)
    screenshot(page, tmp_path, "login")
    page.get_by_label("Token", exact=True).fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").get_by_text("That token is not right").wait_for()
    page.get_by_label("Token", exact=True).fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/jobs/{job}")
    assert TOKEN not in page.url and page.get_by_role("heading", level=1).inner_text().startswith("station-id")
    cookies = context.cookies()
    assert [c["name"] for c in cookies] == ["aicp_session"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict" and TOKEN not in cookies[0]["value"]
    assert page.evaluate("() => document.cookie") == ""  # scripts cannot read it
    assert page.request.get(f"/api/v1/generate/{job}").status == 200
    page.goto("/")
    assert page.locator(f'li[data-job="{job}"]').count() == 1
    assert not axe_violations(page), axe_violations(page)
    # the API docs render from the server's own assets (nothing else is reachable from here)
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server.base) else None)
    page.get_by_role("link", name="API docs").click()
    page.locator(".swagger-ui .info .title").get_by_text("aicp generation service").wait_for()
    assert not [u for u in outside if u.startswith("http")], outside
    # ReDoc renders too, and its sidebar's Redocly logo (an image from outside) is stopped by
    # the page's Content-Security-Policy before it leaves the browser, and hides itself
    blocked: list[str] = []
    page.on("requestfailed", lambda r: blocked.append(r.url) if r.failure == "csp" else None)
    page.goto("/redoc")
    page.locator("h1", has_text="aicp generation service").first.wait_for()
    page.wait_for_timeout(500)
    assert [u for u in outside if u.startswith("http")] == blocked, (outside, blocked)
    assert page.locator('img[src^="https://"]').count() == 0  # no broken image
    page.goto("/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto("/")
    assert "/login?next=" in page.url
    assert TOKEN not in server.log_text()
    context.close()
