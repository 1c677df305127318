"""Through the API, a script's ``params.extra_context`` may add template variables, but not one
the prompt context sets itself: that is a 422 naming the field, and nothing is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.conftest import SONGS, Service


@pytest.mark.parametrize("key", ["take", "record", "persona", "catchphrase", "target_words"])
def test_a_reserved_extra_context_key_is_a_422(svc: Service, key: str) -> None:
    r = svc.client.post("/api/v1/generate", json={"records": SONGS, "params": {"extra_context": {key: 1}}})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "params.extra_context" and f"extra_context key '{key}'" in error["message"]
    assert not list((Path(svc.settings.data_dir) / "jobs").glob("*"))


def test_an_own_extra_context_key_is_accepted_and_rendered(svc: Service) -> None:
    jid = svc.submit({"records": SONGS[:1], "params": {"extra_context": {"slogan": "all hits"}}})
    svc.worker().run_once()
    job = svc.client.get(f"/api/v1/generate/{jid}").json()
    assert job["status"] == "completed", job
