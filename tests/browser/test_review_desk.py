"""The review desk in a real browser: Debian's Chromium (headless, Playwright) against a real
``aicp serve`` on loopback with the embedded models. One server and one browser for the module;
the tests run in order, each going on from the job the first one submitted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.browser.browser import axe_violations, chromium_or_skip, launch, screenshot
from tests.service.serve_process import ServeProcess

CHROMIUM = chromium_or_skip()
pytestmark = pytest.mark.e2e
#: script errors and console errors (a blocked script or style, a failed request) of any page
PAGE_ERRORS: list[str] = []
RECORDS = ['{"id": "id-1", "station": "Night Owl FM", "slogan": "music after midnight"}',
           '{"id": "id-2", "station": "Deep Cuts Radio", "time_of_day": "morning"}']


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    srv = ServeProcess(tmp_path_factory.mktemp("desk") / "data")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def page(server: ServeProcess) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, CHROMIUM)
        context = browser.new_context(base_url=server.base, viewport={"width": 900, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(20_000)
        tab.on("pageerror", lambda exc: PAGE_ERRORS.append(f"{tab.url}: {exc}"))
        tab.on("console", lambda m: PAGE_ERRORS.append(f"{tab.url}: {m.text}") if m.type == "error" else None)
        yield tab
        browser.close()


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


def _job(server: ServeProcess, job_id: str) -> dict[str, Any]:
    return dict(server.client.get(f"/api/v1/generate/{job_id}").json())


def _no_serious_violation(page: Any, name: str) -> None:
    found = axe_violations(page)
    assert not found, f"{name}: {orjson.dumps(found, option=orjson.OPT_INDENT_2).decode()}"


def test_submit_a_job_from_the_form_and_watch_it_finish(server: ServeProcess, page: Any, shots: Path,
                                                        state: dict[str, Any]) -> None:
    page.goto("/")
    _no_serious_violation(page, "jobs page (empty)")
    page.get_by_label("Records (JSON Lines").fill("\n".join(RECORDS))
    page.get_by_label("Template").select_option("station-id")
    page.get_by_label("Persona").select_option("max")
    page.get_by_label("Most tokens per take").fill("40")
    page.get_by_label("Voice the scripts").check()
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url("**/jobs/*")
    job_id = page.url.rsplit("/", 1)[-1]
    state["job"] = job_id
    assert page.locator("[data-status]").first.inner_text() in ("queued", "running", "completed")
    # the jobs list in another tab follows the job's events without reloading
    jobs = page.context.new_page()
    jobs.goto("/")
    jobs.evaluate("() => { window.notReloaded = true; }")
    # the job's page follows the job's events and reloads with the takes when it has finished
    page.locator("article.take").first.wait_for(timeout=300_000)
    assert page.locator("article.take").count() == 2
    jobs.locator(f'li[data-job="{job_id}"] [data-status]', has_text="completed").wait_for(timeout=10_000)
    assert jobs.locator(f'li[data-job="{job_id}"] [data-percent]').inner_text() == "100"
    assert jobs.evaluate("() => window.notReloaded === true")
    jobs.close()
    job = _job(server, job_id)
    assert job["status"] == "completed", job
    assert "Night Owl FM" in page.locator("#take-0").inner_text()
    _no_serious_violation(page, "job page")
    screenshot(page, shots, "job")
    page.goto("/")
    assert page.locator(f'li[data-job="{job_id}"] [data-status]').inner_text() == "completed"
    _no_serious_violation(page, "jobs page")
    screenshot(page, shots, "jobs")


def test_a_take_reports_its_duration_seeks_and_plays_to_the_end(page: Any, state: dict[str, Any]) -> None:
    page.goto(f"/jobs/{state['job']}")
    audio = page.locator("#take-0 audio.take-audio")
    duration = audio.evaluate("""a => new Promise((ok, no) => {
        if (a.readyState >= 1) { ok(a.duration); return; }
        a.addEventListener('loadedmetadata', () => ok(a.duration)); a.addEventListener('error', () => no('error'));
        a.load(); })""")
    assert 0.5 < duration < 60
    # seeking asks the file endpoint for a byte range
    assert audio.evaluate("a => a.seekable.length > 0 && a.seekable.end(0) > 0")
    # the player's controls are reached with Tab from the card
    page.locator("#take-0").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.matches('#take-0 audio.take-audio')")
    # Space on the focused card plays it (the page's keyboard), and it plays to the end
    page.locator("#take-0").focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => !document.querySelector('#take-0 audio.take-audio').paused")
    ended = audio.evaluate("""a => new Promise(ok => {
        a.playbackRate = 4;
        if (a.ended) { ok(true); return; }
        a.addEventListener('ended', () => ok(a.currentTime)); })""")
    assert ended and ended >= duration * 0.95


def test_approve_one_and_reject_one_with_a_reason(server: ServeProcess, page: Any, shots: Path,
                                                  state: dict[str, Any]) -> None:
    job_id = state["job"]
    page.goto(f"/jobs/{job_id}")
    page.locator("#take-0").focus()
    page.keyboard.press("a")  # approve with the keyboard
    page.locator("#take-0 .review").get_by_text("Approved").wait_for()
    page.keyboard.press("j")
    assert page.evaluate("() => document.activeElement.id") == "take-1"
    page.keyboard.press("r")  # reject: the reason field takes focus, Enter sends
    page.keyboard.type("says the wrong station")
    page.keyboard.press("Enter")
    page.locator("#take-1 .review").get_by_text("Rejected").wait_for()
    assert "says the wrong station" in page.locator("#take-1 .review").inner_text()
    records = _job(server, job_id)["records"]
    assert records[0]["review"]["decision"] == "approved"
    assert records[1]["review"] == {**records[1]["review"], "decision": "rejected", "note": "says the wrong station"}
    page.goto(f"/jobs/{job_id}?show=approved")
    assert page.locator("article.take").count() == 1 and page.locator("#take-0").count() == 1
    page.goto(f"/jobs/{job_id}?show=unreviewed")
    assert page.locator("article.take").count() == 0
    page.goto(f"/jobs/{job_id}")
    screenshot(page, shots, "job-reviewed")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider
    try:
        for path in ("/", f"/jobs/{job_id}"):
            page.goto(path)
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), path
        screenshot(page, shots, "job-phone")
    finally:
        page.set_viewport_size({"width": 900, "height": 1000})


def test_regenerate_a_take_and_see_the_new_one(server: ServeProcess, page: Any, state: dict[str, Any]) -> None:
    job_id = state["job"]
    page.goto(f"/jobs/{job_id}")
    card = page.locator("#take-1")
    old = {"text": card.locator("[data-text]").inner_text(), "audio": card.locator("audio.take-audio").get_attribute("src")}
    card.get_by_role("button", name="Regenerate").click()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        card = page.locator("#take-1")
        if card.count() and card.get_attribute("data-pending") is None and card.locator("audio.take-audio").count() \
                and card.locator("audio.take-audio").get_attribute("src") != old["audio"]:
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"no new take landed: {server.log_text()}")
    new_src = card.locator("audio.take-audio").get_attribute("src")
    assert new_src and new_src != old["audio"] and page.request.get(new_src).status == 200
    assert "take 2 (regenerated)" in card.locator(".meta").inner_text()
    assert card.locator(".review").inner_text().strip().startswith("Unreviewed")  # the new take's own review
    card.locator("summary", has_text="Other takes").click()  # the original stays listed
    assert old["text"] in card.locator("details.history").inner_text()
    _no_serious_violation(page, "job page with a new take")


def test_edit_a_take_and_hear_it_voiced_again(server: ServeProcess, page: Any, state: dict[str, Any]) -> None:
    job_id = state["job"]
    page.goto(f"/jobs/{job_id}")
    card = page.locator("#take-0")
    old_src = card.locator("audio.take-audio").get_attribute("src")
    card.locator("summary", has_text="Edit text and re-voice").click()
    text = "You are listening to Night Owl FM, music after midnight."
    card.get_by_label("Script text").fill(text)
    card.get_by_role("button", name="Save and re-voice").click()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        card = page.locator("#take-0")
        if card.count() and card.get_attribute("data-pending") is None and "take 2 (edited)" in card.locator(".meta").inner_text():
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"the edited take did not land: {server.log_text()}")
    assert card.locator("[data-text]").inner_text() == text
    new_src = card.locator("audio.take-audio").get_attribute("src")
    assert new_src != old_src and page.request.get(new_src).status == 200


def test_export_the_approved_takes_as_json_lines(server: ServeProcess, page: Any, state: dict[str, Any]) -> None:
    job_id = state["job"]
    page.goto(f"/jobs/{job_id}")
    # the new take of record 2 is approved on its card (its own job's record 0)
    page.locator("#take-1").get_by_role("button", name="Approve").click()
    page.locator("#take-1 .review").get_by_text("Approved").wait_for()
    link = page.get_by_role("link", name="Export approved takes (JSON Lines)")
    answer = page.request.get(link.get_attribute("href"))
    assert answer.status == 200
    lines = [orjson.loads(line) for line in answer.body().splitlines() if line.strip()]
    assert [r["id"] for r in lines] == ["id-1", "id-2"]  # the rejected original of id-2 is not there
    assert all(r["script"]["text"] and r["audio"]["path"].endswith(".wav") for r in lines)
    assert lines[1]["audio"]["path"].startswith("../")  # the new take's own job folder


def test_no_page_had_a_script_error_or_a_blocked_resource() -> None:
    assert not PAGE_ERRORS, PAGE_ERRORS
