"""The worker: claims queued jobs and runs each as a chain, one at a time.

A job runs through the same :func:`~ai_content_pipeline.chain.runner.run_chain` as
``aicp run-chain``, always with ``resume=True`` over its own folder
``DATA_DIR/jobs/ID/`` (``input.jsonl``, ``out/NN-type.jsonl``, ``out/NN-type.ledger.jsonl``,
``out/audio/``): a job that was interrupted (kill -9, a lost worker) continues from its
ledgers and every record is produced exactly once. The events go to the database
(:class:`JobEmitter`) as the exact JSON that ``--stream`` prints.

Cancellation is asked at every record and long-form chunk boundary; a worker that is
told to stop (SIGTERM, Ctrl-C of ``aicp serve``) stops its job at the next boundary and
puts it back in the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..events import StreamEmitter, event_json
from ..jsonl import dumps, loads
from .db import Job
from .store import JobStore

log = logging.getLogger("aicp.worker")

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")


class JobEmitter(StreamEmitter):
    """Stores every event of a job in the database and keeps the job's progress current.

    The stored text is what :class:`~ai_content_pipeline.events.StreamEmitter` would
    print for the event (same fields, same ``schema_version``). Tokens come from
    ``record_complete`` (script), audio seconds from ``record_complete`` (voice), cost
    from ``step_complete``; they add to what earlier attempts of the job spent.
    """

    def __init__(self, store: JobStore, job: Job) -> None:
        super().__init__(enabled=True)
        self.store = store
        self.job_id = job.id
        self.state: dict[str, Any] = dict(job.progress or {})
        self.totals: dict[str, Any] = {"prompt_tokens": job.prompt_tokens,
                                       "completion_tokens": job.completion_tokens,
                                       "audio_seconds": job.audio_seconds, "cost": job.cost}
        self.steps_seen = 0

    def emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            payload = self.envelope(event, fields)
            changed = self._track(event, payload)
            self.store.add_event(self.job_id, event_json(payload).decode(),
                                 dict(self.state) if changed else None,
                                 dict(self.totals) if changed else None)

    def _track(self, event: str, f: dict[str, Any]) -> bool:
        p = self.state
        if event == "pipeline_start":
            p.update(total_steps=f.get("total_steps"), step=None, step_type=None)
        elif event == "step_start":
            self.steps_seen += 1
            p.update(step=f.get("step"), step_type=f.get("type"), step_percent=0.0, completed=0, failed=0,
                     skipped=0, record=None, chunk=None, chunks=None, section=None)
        elif event == "record_start":
            p.update(record=f.get("id"), chunk=None, chunks=f.get("chunks"), section=None)
        elif event == "chunk_start":
            p.update(chunk=f.get("chunk"), section=f.get("section"))
        elif event == "progress":
            p.update(total=f.get("total"), completed=f.get("completed"), failed=f.get("failed"),
                     skipped=f.get("skipped"), step_percent=f.get("percent"))
        elif event == "record_complete":
            tokens = f.get("tokens")
            if isinstance(tokens, dict):
                self.totals["prompt_tokens"] += int(tokens.get("prompt") or 0)
                self.totals["completion_tokens"] += int(tokens.get("completion") or 0)
            if f.get("audio_seconds"):
                self.totals["audio_seconds"] = round(self.totals["audio_seconds"] + float(f["audio_seconds"]), 3)
            return True
        elif event == "step_complete":
            p["step_percent"] = 100.0
            self.totals["cost"] = round(self.totals["cost"] + float(f.get("cost") or 0.0), 6)
        else:
            return False
        steps = p.get("total_steps") or 1
        done_steps = max(0, self.steps_seen - 1)
        p["percent"] = round(min(100.0, 100.0 * (done_steps + (p.get("step_percent") or 0.0) / 100.0) / steps), 1)
        return True


def _read_records(path: Path) -> list[dict[str, Any]]:
    return [loads(line) for line in path.read_bytes().splitlines() if line.strip()]  # numbers as written


class Worker:
    """Runs queued jobs from ``store``, one at a time, in ``data_dir/jobs/``.

    :param worker_id: unique name (default ``host:pid:random``).
    :param poll_seconds: wait between looks at an empty queue.
    :param heartbeat_seconds: how often the worker row (and its job) is touched.
    :param stale_after: seconds without a heartbeat after which another worker requeues a job.
    :param backend_factory: builds each step's backend (tests pass doubles).
    """

    def __init__(self, store: JobStore, data_dir: str | Path, *, worker_id: str | None = None,
                 poll_seconds: float = 0.5, heartbeat_seconds: float = 2.0, stale_after: float = 30.0,
                 backend_factory: Callable[..., Any] | None = None) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.host = socket.gethostname()
        self.id = worker_id or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self.factory = backend_factory
        self.stop = threading.Event()
        self.current: str | None = None
        self.jobs_run = 0
        self._registered = False
        self._last_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def register(self) -> None:
        """Write this worker's row and requeue jobs of dead workers (once)."""
        if not self._registered:
            self.store.register_worker(self.id, self.host, os.getpid())
            self._registered = True
        self.sweep(force=True)

    def sweep(self, force: bool = False) -> list[str]:
        """Requeue orphaned jobs (at most once per heartbeat interval unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_sweep < self.heartbeat_seconds:
            return []
        self._last_sweep = now
        requeued = self.store.requeue_orphans(self.stale_after, self.host)
        for job_id in requeued:
            log.warning("requeued job %s: its worker stopped", job_id)
        return requeued

    def _beat(self) -> None:
        while not self.stop.wait(self.heartbeat_seconds):
            try:
                self.store.heartbeat(self.id, self.current)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("heartbeat failed: %s", exc)

    def run(self, max_jobs: int | None = None, idle_exit: bool = False) -> int:
        """Claim and run jobs until :attr:`stop` is set (or ``max_jobs`` ran, or the queue is
        empty with ``idle_exit``); returns the number of jobs run.
        """
        self.register()
        beat = threading.Thread(target=self._beat, name="aicp-heartbeat", daemon=True)
        beat.start()
        try:
            while not self.stop.is_set() and (max_jobs is None or self.jobs_run < max_jobs):
                if not self.run_once():
                    if idle_exit:
                        break
                    self.stop.wait(self.poll_seconds)
        finally:
            self.stop.set()
            self.store.stop_worker(self.id)
        return self.jobs_run

    def run_once(self) -> bool:
        """Claim one queued job and run it; ``False`` when the queue was empty."""
        if not self._registered:
            self.register()
        self.sweep()
        job = self.store.claim(self.id)
        if job is None:
            return False
        self.current = job.id
        try:
            self.execute(job)
        finally:
            self.current = None
            self.jobs_run += 1
        return True

    # -- one job ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """``data_dir/jobs/ID``: the job's input, outputs, ledgers and audio."""
        return self.data_dir / "jobs" / job_id

    def execute(self, job: Job) -> None:
        """Run ``job``'s chain (resuming from its ledgers) and store the outcome."""
        from ..chain.runner import run_chain
        from ..chain.spec import ChainSpec
        from ..stages.common import Cancelled

        folder = self.job_dir(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / "input.jsonl"
        if not source.is_file():  # written here, not by the API: the worker may be another host
            part = source.with_name(".input.jsonl.part")
            part.write_bytes(b"".join(dumps(r) + b"\n" for r in job.inputs))
            os.replace(part, source)
        spec = ChainSpec.model_validate({**job.chain, "input": str(source), "output_dir": str(folder / "out")})
        emitter = JobEmitter(self.store, job)

        def cancel() -> bool:
            return self.stop.is_set() or self.store.cancel_requested(job.id)

        error: dict[str, Any] | None = None
        result: dict[str, Any] | None = None
        try:
            outcome = run_chain(spec, emitter=emitter, resume=True, cancel=cancel, backend_factory=self.factory)
        except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
            log.exception("job %s failed", job.id)
            status, error = "failed", {"type": type(exc).__name__, "message": str(exc)}
        else:
            result, error = outcome.result, outcome.result.get("error")
            if isinstance(outcome.error, Cancelled):
                if not self.store.cancel_requested(job.id):  # this worker is stopping: hand it back
                    self.store.release(job.id, self.id)
                    return
                status = "cancelled"
            elif outcome.error is not None:
                status = "failed"
            elif outcome.result["records"]["failed"]:
                status = "partial"
            else:
                status = "completed"
        records: list[dict[str, Any]] = []
        for index in reversed(spec.enabled_steps()):
            if spec.output_path(index).is_file():
                records = _read_records(spec.output_path(index))
                break
        files = []
        if spec.audio_dir.is_dir():
            files = [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(spec.audio_dir.iterdir())
                     if p.is_file() and p.suffix in AUDIO_SUFFIXES and not p.name.startswith(".")]
        self.store.finish(job.id, self.id, status, result=result, error=error, records=records, files=files)


__all__ = ["AUDIO_SUFFIXES", "JobEmitter", "Worker"]
