"""``/metrics`` reads a finite ``aicp_cost_total`` even when a stored job holds ``inf`` (from a
price table of before prices were bounded); a chain object with a price out of range is a 422."""

from __future__ import annotations

from sqlalchemy import update

from ai_content_pipeline.service.db import Job
from tests.service.conftest import SONGS, Service


def test_a_job_stored_with_an_infinite_cost_does_not_make_the_counter_inf(svc: Service) -> None:
    first, second = svc.submit(), svc.submit()
    svc.worker().run_once()
    svc.worker().run_once()
    with svc.store.session.begin() as s:
        s.execute(update(Job).where(Job.id == first).values(cost=float("inf")))
        s.execute(update(Job).where(Job.id == second).values(cost=2.5))
    text = svc.client.get("/metrics").text
    assert "aicp_cost_total 2.5" in text and "Inf" not in text.split("aicp_cost_total", 1)[1].split("\n")[0]


def test_a_chain_with_a_huge_price_is_refused(svc: Service) -> None:
    chain = {"prices": {"per_1k_tokens": 1e308}, "steps": [{"type": "script"}]}
    r = svc.client.post("/api/v1/generate", json={"chain": chain, "records": SONGS})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "chain.prices.per_1k_tokens"
