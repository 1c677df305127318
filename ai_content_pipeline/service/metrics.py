"""``GET /metrics``: Prometheus text, computed from the database at scrape time.

Read from the database (not counted in process) so every worker's jobs are included,
whichever host ran them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .db import STATUSES
from .store import JobStore

#: job duration histogram buckets (seconds)
BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class JobCollector:
    """A prometheus-client collector over a :class:`JobStore`."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        """``aicp_jobs{status}``, ``aicp_records_total{outcome}``, ``aicp_tokens_total{kind}``,
        ``aicp_audio_seconds_total``, ``aicp_cost_total``, ``aicp_job_duration_seconds``."""
        counts = self.store.counts_by_status()
        jobs = GaugeMetricFamily("aicp_jobs", "Jobs by status", labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        t = self.store.totals()
        records = CounterMetricFamily("aicp_records", "Output records of finished jobs", labels=["outcome"])
        records.add_metric(["ok"], t["records"] - t["records_failed"])
        records.add_metric(["failed"], t["records_failed"])
        yield records
        tokens = CounterMetricFamily("aicp_tokens", "LLM tokens spent", labels=["kind"])
        tokens.add_metric(["prompt"], t["prompt_tokens"])
        tokens.add_metric(["completion"], t["completion_tokens"])
        yield tokens
        yield CounterMetricFamily("aicp_audio_seconds", "Seconds of audio written", value=t["audio_seconds"])
        yield CounterMetricFamily("aicp_cost", "Cost from the chains' price tables", value=t["cost"])
        durations = self.store.durations()
        buckets = [(str(b), sum(1 for d in durations if d <= b)) for b in BUCKETS]
        buckets.append(("+Inf", len(durations)))
        yield HistogramMetricFamily("aicp_job_duration_seconds", "Seconds from a job's start to its end",
                                    buckets=buckets, sum_value=sum(durations))


def metrics_response(store: JobStore) -> tuple[bytes, str]:
    """The metrics page and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(store))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["BUCKETS", "JobCollector", "metrics_response"]
