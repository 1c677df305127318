"""``/api/v1/generate``: submit, list, status, cancel, a job's events (SSE) and its files.

What a client gets back names nothing on the server's disk
(:class:`~ai_content_pipeline.service.redact.Redactor`).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ...faults import NO_SPACE
from ...jsonl import dumps as exact_dumps
from ..db import FINAL_STATUSES, Job
from ..deps import (
    API,
    MAX_INDEX,
    ApiError,
    ExactJSONRoute,
    ServiceSettings,
    StreamCounter,
    get_models,
    get_names,
    get_settings,
    get_store,
    get_streams,
    get_voices,
)
from ..redact import Redactor, worker_label
from ..requests import GenerateRequest, RequestProblem, build_chain, validate_chain
from ..store import JobStore

router = APIRouter(route_class=ExactJSONRoute)


def _event_id(value: str | None) -> int:
    """The sequence number of a ``Last-Event-ID`` header (0 when absent or empty).

    :raises RequestProblem: not a whole number from 0 to :data:`MAX_INDEX` (HTTP 422).
    """
    given = (value or "").strip()
    if not given:
        return 0
    if not given.isascii() or not given.isdigit() or len(given) > 19 or int(given) > MAX_INDEX:
        raise RequestProblem("Last-Event-ID", f"must be an event id from 0 to {MAX_INDEX}",
                             hint="send the `id:` of the last event received")
    return int(given)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def job_links(job_id: str) -> dict[str, str]:
    """URLs of a job: self, events, cancel, files."""
    base = f"{API}/generate/{job_id}"
    return {"self": base, "events": f"{base}/events", "cancel": base, "files": f"{base}/files/{{name}}"}


#: what ``GET /api/v1/generate/{id}`` answers (the OpenAPI example)
JOB_EXAMPLE: dict[str, Any] = {
    "generation_id": "3f2c...", "name": "song-intro", "status": "running", "cancel_requested": False,
    "progress": {"total": 4, "completed": 1, "failed": 0, "skipped": 0, "percent": 62.5, "step": 2,
                 "total_steps": 2, "step_type": "voice", "step_percent": 25.0, "record": "song-002",
                 "chunk": None, "chunks": None, "section": None},
    "created_at": "2026-11-28T17:00:00Z", "started_at": "2026-11-28T17:00:01Z", "finished_at": None,
    "attempts": 1, "worker": "w-5e1a93c07b2d", "tokens": {"prompt": 812, "completion": 240},
    "audio_seconds": 9.4, "cost": 0.0, "error": None,
    "links": {"self": "/api/v1/generate/3f2c...", "events": "/api/v1/generate/3f2c.../events",
              "cancel": "/api/v1/generate/3f2c...", "files": "/api/v1/generate/3f2c.../files/{name}"},
    "records_total": None, "records": None, "records_offset": 0, "records_limit": 100,
    "files": [{"name": "song-001_julie_0.wav", "bytes": 412844,
               "url": "/api/v1/generate/3f2c.../files/song-001_julie_0.wav"}],
    "result": None,
}


def job_summary(job: Job, names: dict[str, str] | None = None) -> dict[str, Any]:
    """A job as the list endpoint shows it (no records), naming nothing on the server's disk
    (see :class:`~ai_content_pipeline.service.redact.Redactor`; ``names``: ``{operator's
    file: client's name}`` of the models and voices)."""
    progress = {"total": None, "completed": 0, "failed": 0, "skipped": 0, "percent": 0.0, "step": None,
                "total_steps": len(job.chain.get("steps", [])), "step_type": None, "step_percent": None,
                "record": None, "chunk": None, "chunks": None, "section": None}
    progress.update(job.progress or {})
    if job.status == "completed":
        progress["percent"] = 100.0
    return {
        "generation_id": job.id, "name": job.name, "status": job.status,
        "cancel_requested": job.cancel_requested, "progress": progress,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "attempts": job.attempts, "worker": worker_label(job.worker_id),
        "tokens": {"prompt": job.prompt_tokens, "completion": job.completion_tokens},
        "audio_seconds": round(job.audio_seconds or 0.0, 3), "cost": job.cost,
        "error": Redactor(job.id, names).value(job.error) if job.error else job.error,
        "links": job_links(job.id),
    }


def _job(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id, inputs=False)
    if job is None:
        raise ApiError(404, "NotFound", f"no generation {job_id!r}", "list jobs with GET /api/v1/generate")
    return job


def _no_room() -> ApiError:
    return ApiError(507, "InsufficientStorage", "the server's disk is too full to take a job",
                    "try again later; the operator frees space (or lowers --min-free-mb)")


def _room_for_a_job(settings: ServiceSettings) -> None:
    """Refuse a job (507) while the data folder's disk is below ``settings.min_free_bytes``."""
    from ...faults import free_bytes

    free = free_bytes(settings.data_dir)
    if free is not None and free < settings.min_free_bytes:
        raise _no_room()


@router.post(f"{API}/generate", status_code=202, tags=["generate"],
             summary="Submit a generation job",
             responses={413: {"description": "too many records or too big a body"},
                        507: {"description": "the server's disk is below its free-space floor"},
                        422: {"description": "invalid body, unknown template or persona"}})
def submit(body: GenerateRequest, settings: ServiceSettings = Depends(get_settings),
           store: JobStore = Depends(get_store), names: dict[str, str] = Depends(get_names),
           models: dict[str, str] = Depends(get_models), voices: dict[str, str] = Depends(get_voices)) -> JSONResponse:
    """Queue a job: records (or one topic) through a script step and, with `voice: true`,
    a voice step. Answers 202 with the `generation_id` and links."""
    records = body.records or []
    if len(records) > settings.max_records:
        raise ApiError(413, "TooManyRecords", f"{len(records)} records; the limit is {settings.max_records}",
                       "split the work into several jobs (see --max-records)")
    chain, inputs, where = build_chain(body, models=models, voices=voices)
    _room_for_a_job(settings)
    job_id = uuid.uuid4().hex
    folder = Path(settings.data_dir) / "jobs" / job_id
    try:  # whatever goes wrong (a full disk, a refused field, the database), no folder is left
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / "input.jsonl"
        source.write_bytes(b"".join(exact_dumps(r) + b"\n" for r in inputs))  # numbers as sent
        valid = validate_chain(chain, str(source), str(folder / "out"), where)
        for key in ("input", "output_dir"):
            valid.pop(key, None)
        job = store.create(job_id, str(valid.get("name") or "job")[:200], valid, inputs)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise _no_room() from None
        raise
    return JSONResponse(job_summary(job, names), status_code=202,
                        headers={"Location": job_links(job_id)["self"]})


@router.get(f"{API}/generate", tags=["generate"], summary="List jobs")
def list_jobs(status: Literal["queued", "running", "completed", "partial", "failed", "cancelled"] | None = None,
              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_INDEX),
              store: JobStore = Depends(get_store), names: dict[str, str] = Depends(get_names)) -> dict[str, Any]:
    """Jobs newest first, optionally of one status, paged with `limit`/`offset`."""
    jobs, total = store.list_jobs(status, limit, offset)
    return {"items": [job_summary(j, names) for j in jobs], "total": total, "limit": limit, "offset": offset}


@router.get(f"{API}/generate/{{job_id}}", tags=["generate"], summary="A job's status and output",
            responses={200: {"content": {"application/json": {"example": JOB_EXAMPLE}}},
                       404: {"description": "no such job"}})
def get_job(job_id: str, records_offset: int = Query(0, ge=0, le=MAX_INDEX),
            records_limit: int = Query(100, ge=0, le=1000), store: JobStore = Depends(get_store),
            names: dict[str, str] = Depends(get_names)) -> Response:
    """Status, progress, timestamps, tokens, audio seconds, cost, error; when the job has
    finished, its output records (paged with `records_offset`/`records_limit`) and files.
    Paths in records, `result` and `error` are relative to the job's folder
    (`out/audio/NAME.wav`); nothing names the server's own folders."""
    job = _job(store, job_id)
    out = job_summary(job, names)
    finished = job.status in FINAL_STATUSES
    redactor = Redactor(job_id, names)
    out["records_total"] = job.records_total if finished else None
    out["records"] = ([redactor.record(r) for r in store.records(job_id, records_offset, records_limit)]
                      if finished and records_limit else [] if finished else None)
    out["records_offset"], out["records_limit"] = records_offset, records_limit
    out["files"] = [{**f, "url": f"{API}/generate/{job_id}/files/{f['name']}"} for f in job.files or []]
    out["result"] = redactor.value(job.result)
    # polled often: no re-encoding; numbers in records as the commands write them
    return Response(exact_dumps(out), media_type="application/json")


@router.delete(f"{API}/generate/{{job_id}}", tags=["generate"], summary="Cancel a job",
               responses={200: {"description": "was queued: cancelled now"},
                          202: {"description": "running: stops at the next record or chunk"},
                          404: {"description": "no such job"}, 409: {"description": "already finished"}})
def cancel(job_id: str, store: JobStore = Depends(get_store),
           names: dict[str, str] = Depends(get_names)) -> JSONResponse:
    """Cancel: a queued job is cancelled at once (200); a running job stops at its next
    record or long-form chunk boundary (202), keeping finished records and files."""
    outcome = store.cancel(job_id)
    if outcome is None:
        _job(store, job_id)
    job = _job(store, job_id)
    if outcome == "final":
        raise ApiError(409, "Conflict", f"generation {job_id} already finished ({job.status})")
    return JSONResponse(job_summary(job, names), status_code=200 if outcome == "cancelled" else 202)


@router.get(f"{API}/generate/{{job_id}}/events", tags=["generate"], summary="A job's events (SSE)",
            response_class=Response,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`id: SEQ` and `data: EVENT-JSON` per event"},
                       422: {"description": "a Last-Event-ID or `after` that is not an event id"},
                       429: {"description": "this client holds --max-streams event streams already"}})
async def events(request: Request, job_id: str, last_event_id: str | None = Header(None),
                 after: int | None = Query(None, ge=0, le=MAX_INDEX, description="like Last-Event-ID"),
                 settings: ServiceSettings = Depends(get_settings), store: JobStore = Depends(get_store),
                 names: dict[str, str] = Depends(get_names),
                 streams: StreamCounter = Depends(get_streams)) -> Response:
    """Server-Sent Events: the job's `--stream` JSON events (schema_version 1), replayed from
    the start, then live; each has `id:` = its sequence number, so `Last-Event-ID` resumes
    without loss or repeats. The stream ends when the job has finished. Paths in events
    are relative to the job's folder. One client address holds at most `max_streams`
    streams at once (more: 429 with `Retry-After`)."""
    from sse_starlette.sse import EventSourceResponse, ServerSentEvent
    from starlette.background import BackgroundTask

    await run_in_threadpool(_job, store, job_id)
    start = after if after is not None else _event_id(last_event_id)
    release = streams.acquire(request.client.host if request.client else "-")
    redactor = Redactor(job_id, names)

    def shown(data: str) -> str:
        return data if "/" not in data else orjson.dumps(redactor.value(orjson.loads(data))).decode()

    async def stream() -> AsyncIterator[ServerSentEvent]:
        seen = start
        try:
            yield ServerSentEvent(retry=1000)
            while True:
                rows = await run_in_threadpool(store.events_after, job_id, seen)
                for seq, data in rows:
                    yield ServerSentEvent(data=shown(data), id=str(seq))
                    seen = seq
                if rows:
                    continue
                status = await run_in_threadpool(store.status, job_id)
                if status in FINAL_STATUSES or status is None:
                    if not await run_in_threadpool(store.events_after, job_id, seen, 1):
                        return
                    continue
                await asyncio.sleep(settings.events_poll)
        finally:
            release()

    return EventSourceResponse(stream(), ping=15, sep="\n", background=BackgroundTask(release),
                               ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get(f"{API}/generate/{{job_id}}/files/{{name}}", tags=["generate"], summary="Download a job's file",
            response_class=FileResponse, responses={404: {"description": "no such job or file"}})
def get_file(job_id: str, name: str, settings: ServiceSettings = Depends(get_settings),
             store: JobStore = Depends(get_store)) -> FileResponse:
    """One audio file of the job, by the name listed in its `files`."""
    job = _job(store, job_id)
    if name not in {f["name"] for f in job.files or []}:
        raise ApiError(404, "NotFound", f"generation {job_id} has no file {name!r}",
                       "the job's `files` lists the names")
    folder = (Path(settings.data_dir) / "jobs" / job_id / "out" / "audio").resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        raise ApiError(404, "NotFound", f"file {name!r} is not on this server",
                       "a worker on another host wrote it; share the data dir between hosts")
    media = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg"}
    return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"), filename=name)


__all__ = ["JOB_EXAMPLE", "job_links", "job_summary", "router"]
