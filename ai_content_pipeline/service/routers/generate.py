"""``/api/v1/generate``: submit, list, status, cancel, a job's events (SSE) and its files; the
review of its output records (decisions, the JSON Lines export) and their new takes
(regenerate, edit), each a linked job whose ``parent`` names the record.

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
from fastapi import Path as Path_
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
from ..requests import (
    EditRequest,
    GenerateRequest,
    RequestProblem,
    ReviewRequest,
    build_chain,
    validate_chain,
)
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
    "result": None, "parent": None,
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
        "parent": (None if not job.parent_id else
                   {"generation_id": job.parent_id, "index": job.parent_index, "kind": job.parent_kind,
                    "seed": job.seed}),
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
    job = _queue(settings, store, chain, inputs, where)
    return JSONResponse(job_summary(job, names), status_code=202,
                        headers={"Location": job_links(job.id)["self"]})


def _queue(settings: ServiceSettings, store: JobStore, chain: dict[str, Any], inputs: list[dict[str, Any]],
           where: dict[str, str], **create: Any) -> Job:
    """Validate ``chain`` over ``inputs`` and insert a queued job (its folder holds
    ``input.jsonl``); ``create``: :meth:`JobStore.create`'s ``parent``/``seed``.

    :raises RequestProblem: the chain is refused (422). :raises ApiError: 507 on a full disk.
    """
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
        return store.create(job_id, str(valid.get("name") or "job")[:200], valid, inputs, **create)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise _no_room() from None
        raise


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
    (`out/audio/NAME.wav`); nothing names the server's own folders.

    Each record carries `review` (`{decision, note, at}`, or null when nobody reviewed it)
    and `retakes`: the new takes asked for it (regenerate, edit), oldest first, each
    `{generation_id, kind, status, seed, created_at, record, files, error}` where `record`
    (with its own `review`) is null until its job has finished, and `error` says why a take's
    job failed as a whole. A job that makes a new take names its
    original in `parent` (`{generation_id, index, kind, seed}`)."""
    job = _job(store, job_id)
    out = job_summary(job, names)
    finished = job.status in FINAL_STATUSES
    redactor = Redactor(job_id, names)
    out["records_total"] = job.records_total if finished else None
    out["records"] = (_reviewed(store, job, records_offset, records_limit, names)
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


# -- review, export, new takes -------------------------------------------------------------------
def _review_shown(review: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored review as the API shows it (``at`` as an ISO 8601 UTC time)."""
    return None if review is None else {**review, "at": _iso(review["at"])}


def _take_files(take: Job) -> list[dict[str, Any]]:
    return [{**f, "url": f"{API}/generate/{take.id}/files/{f['name']}"} for f in take.files or []]


def _reviewed(store: JobStore, job: Job, offset: int, limit: int,
              names: dict[str, str] | None) -> list[dict[str, Any]]:
    """Output records ``offset`` ... of the finished ``job`` as ``GET /generate/{id}`` shows
    them: redacted, each with its ``review`` and its ``retakes`` (see :func:`get_job`)."""
    rows = store.records(job.id, offset, limit)
    takes = store.takes(job.id)
    landed = store.first_records(t.id for t in takes if t.status in FINAL_STATUSES)
    reviews = store.reviews([job.id, *(t.id for t in takes)])
    redactor = Redactor(job.id, names)
    out = []
    for index, record in enumerate(rows, start=offset):
        shown = redactor.record(record)
        if isinstance(shown, dict):
            shown["review"] = _review_shown(reviews.get((job.id, index)))
            shown["retakes"] = [_retake(t, landed.get(t.id), reviews.get((t.id, 0)), names)
                                for t in takes if t.parent_index == index]
        out.append(shown)
    return out


def _retake(take: Job, record: dict[str, Any] | None, review: dict[str, Any] | None,
            names: dict[str, str] | None) -> dict[str, Any]:
    """One new take of a record: its job, and its record once that job has finished (paths
    relative to the take's own job folder, whose files ``files`` lists with their URLs)."""
    shown = None
    if record is not None:
        shown = Redactor(take.id, names).record(record)
        if isinstance(shown, dict):
            shown["review"] = _review_shown(review)
    return {"generation_id": take.id, "kind": take.parent_kind, "status": take.status, "seed": take.seed,
            "created_at": _iso(take.created_at), "record": shown, "files": _take_files(take),
            "error": Redactor(take.id, names).value(take.error) if take.error else None}


def _finished(store: JobStore, job_id: str) -> Job:
    """The job, which must have finished (its records are then final).

    :raises ApiError: 404 no such job; 409 it has not finished.
    """
    job = _job(store, job_id)
    if job.status not in FINAL_STATUSES:
        raise ApiError(409, "Conflict", f"generation {job_id} has not finished ({job.status})",
                       "its records can be reviewed once it has finished: watch its events")
    return job


def _output_record(store: JobStore, job: Job, index: int) -> dict[str, Any]:
    """Output record ``index`` of the finished ``job``.

    :raises ApiError: 404 when the job has no such record.
    """
    record = store.record(job.id, index)
    if record is None:
        raise ApiError(404, "NotFound", f"generation {job.id} has no record {index}",
                       f"its records are numbered 0 to {job.records_total - 1}" if job.records_total
                       else "it has no records")
    return record


INDEX = Path_(..., ge=0, le=MAX_INDEX, description="the record's position in the job's output (0-based)")


@router.post(f"{API}/generate/{{job_id}}/records/{{index}}/review", tags=["review"],
             summary="Approve or reject one output record",
             responses={404: {"description": "no such job or record"},
                        409: {"description": "the job has not finished"},
                        422: {"description": "a decision other than approved or rejected"}})
def review(job_id: str, body: ReviewRequest, index: int = INDEX,
           store: JobStore = Depends(get_store)) -> dict[str, Any]:
    """Store a person's decision on record `index` of the job's output (`approved` or
    `rejected`, with an optional `note`); sent again, it replaces the earlier one. A new
    take (a job whose `parent` names this one) is reviewed as record 0 of its own job.
    Answers `{generation_id, index, review: {decision, note, at}}`."""
    job = _finished(store, job_id)
    _output_record(store, job, index)
    stored = store.set_review(job_id, index, body.decision, body.note)
    return {"generation_id": job_id, "index": index, "review": _review_shown(stored)}


def _rebased(value: Any, take_id: str, job_id: str) -> Any:
    """A take's record with its job folder's paths named from ``job_id``'s folder
    (``.../jobs/TAKE/x`` → ``.../jobs/JOB/../TAKE/x``), so that :class:`Redactor` for
    ``job_id`` writes them as ``../TAKE/x``; spoken text is left as it is."""
    if isinstance(value, str):
        return value.replace(f"jobs/{take_id}/", f"jobs/{job_id}/../{take_id}/")
    if isinstance(value, dict):
        return {k: (v if k == "text" else _rebased(v, take_id, job_id)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebased(v, take_id, job_id) for v in value]
    return value


REVIEW_FILTER = Literal["approved", "rejected", "unreviewed"]


@router.get(f"{API}/generate/{{job_id}}/records", tags=["review"], summary="Export records as JSON Lines",
            response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "one output record per line, as the commands write them"},
                       404: {"description": "no such job"}, 409: {"description": "the job has not finished"}})
def export_records(job_id: str, review: REVIEW_FILTER | None = Query(
                       None, description="only the records with this decision (unreviewed: none yet)"),
                   store: JobStore = Depends(get_store), names: dict[str, str] = Depends(get_names)) -> Response:
    """The job's output records as JSON Lines, in output order, each followed by its
    finished new takes (regenerate, edit) oldest first; with `review`, only those with that
    decision. Each line is the record as `aicp script`/`aicp voice` write it (what `aicp mix`
    reads), without `review` or `retakes`; paths are relative to the job's folder
    (`out/audio/NAME.wav`; a new take's: `../TAKE_ID/out/audio/NAME.wav`)."""
    job = _finished(store, job_id)
    records = store.records(job_id, 0, max(job.records_total, 0))
    takes = [t for t in store.takes(job_id) if t.status in FINAL_STATUSES]
    landed = store.first_records(t.id for t in takes)
    reviews = store.reviews([job_id, *(t.id for t in takes)])
    redactor = Redactor(job_id, names)

    def wanted(key: tuple[str, int]) -> bool:
        decision = (reviews.get(key) or {}).get("decision")
        return review is None or decision == (None if review == "unreviewed" else review)

    lines = []
    for index, record in enumerate(records):
        if wanted((job_id, index)):
            lines.append(exact_dumps(redactor.record(record)))
        for take in takes:
            if take.parent_index == index and take.id in landed and wanted((take.id, 0)):
                lines.append(exact_dumps(redactor.record(_rebased(landed[take.id], take.id, job_id))))
    return Response(b"".join(line + b"\n" for line in lines), media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{job_id}.jsonl"'})


def _root(store: JobStore, job: Job, index: int) -> tuple[Job, int]:
    """The original job and record a new take is a take of: a take of a take counts as one
    more take of the first job's record."""
    if job.parent_id and job.parent_index is not None:
        parent = store.get(job.parent_id, inputs=False)
        if parent is not None:
            return parent, job.parent_index
    return job, index


def _llm_step(chain: dict[str, Any]) -> int:
    """The index of the chain's step that writes scripts (the first whose stage kind uses an
    LLM backend).

    :raises ApiError: 409 when the chain has none (nothing makes or checks a script).
    """
    from ...stages import registry

    for i, step in enumerate(chain.get("steps") or []):
        kind = registry.find(step.get("type")) if isinstance(step, dict) else None
        if kind is not None and kind.backend == "llm" and step.get("enabled", True) is not False:
            return i
    raise ApiError(409, "Conflict", "this job's chain has no script step",
                   "only a record a script step wrote can be regenerated or edited")


def _given(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it was submitted: without the fields stages add."""
    from ...records import stage_fields

    added = stage_fields()
    return {k: v for k, v in record.items() if k not in added}


def regenerate_seed(job_id: str, index: int, take: int) -> int:
    """The script seed of new take ``take`` (1, 2...) of record ``index`` of job ``job_id``:
    a hash of the three, so the same request makes the same take again, and each take
    differs from the others (0 to 2**31 - 1)."""
    from ...records import content_hash

    return int(content_hash(["regenerate", job_id, index, take], 8), 16) % 2**31


@router.post(f"{API}/generate/{{job_id}}/records/{{index}}/regenerate", status_code=202, tags=["review"],
             summary="Queue a new take of one record",
             responses={404: {"description": "no such job or record"},
                        409: {"description": "the job has not finished, or has no script step"},
                        507: {"description": "the server's disk is below its free-space floor"}})
def regenerate(job_id: str, index: int = INDEX, settings: ServiceSettings = Depends(get_settings),
               store: JobStore = Depends(get_store), names: dict[str, str] = Depends(get_names)) -> JSONResponse:
    """Queue a new take of record `index`: a linked job (its `parent` names this job,
    the record and `kind: "regenerate"`) runs the job's chain on the record as it was
    submitted, its script step with one variant and a new seed derived from the job, the
    record and the take's number (the same take number gets the same seed). The take appears
    in the record's `retakes`; it is reviewed as record 0 of its own job. A take of a take
    is one more take of the original record. Answers 202 with the new job."""
    source = _finished(store, job_id)
    record = _output_record(store, source, index)
    job, index = _root(store, source, index)
    chain = _job_chain(store, job)
    at = _llm_step(chain)
    number = 1 + sum(t.parent_index == index and t.parent_kind == "regenerate" for t in store.takes(job.id))
    seed = regenerate_seed(job.id, index, number)
    steps = [dict(step) for step in chain["steps"]]
    params = {k: v for k, v in (steps[at].get("params") or {}).items() if k not in ("redo_failed", "recheck")}
    steps[at]["params"] = {**params, "seed": seed, "variants": 1}
    take = _queue(settings, store, {**chain, "steps": steps}, [_given(record)], {"": ""},
                  parent=(job.id, index, "regenerate"), seed=seed)
    return JSONResponse(job_summary(take, names), status_code=202, headers={"Location": job_links(take.id)["self"]})


def _one_call(step: dict[str, Any]) -> None:
    """:raises ApiError: 409 when ``step`` writes long-form scripts (sections, written in
    chunks), which ``recheck`` does not check: only a one-call take can be edited."""
    from ...templates.store import load_template

    template = load_template(str(step.get("template") or "song-intro"))
    if template.sections or (step.get("params") or {}).get("sections"):
        raise ApiError(409, "Conflict", f"a take of the long-form template '{template.name}' cannot be edited here",
                       "edit one-call takes (intros, banter, dialogues); regenerate a long-form one")


def _job_chain(store: JobStore, job: Job) -> dict[str, Any]:
    """The job's validated chain, as a dict to submit again."""
    full = store.get(job.id)
    chain = dict((full or job).chain)
    for key in ("input", "output_dir"):
        chain.pop(key, None)
    return chain


@router.post(f"{API}/generate/{{job_id}}/records/{{index}}/edit", status_code=202, tags=["review"],
             summary="Edit one record's script text: check it again and voice it again",
             responses={404: {"description": "no such job or record"},
                        409: {"description": "the job has not finished, has no script step, or writes "
                                              "long-form scripts"},
                        422: {"description": "no text, or a blank one"},
                        507: {"description": "the server's disk is below its free-space floor"}})
def edit(job_id: str, body: EditRequest, index: int = INDEX, settings: ServiceSettings = Depends(get_settings),
         store: JobStore = Depends(get_store), names: dict[str, str] = Depends(get_names)) -> JSONResponse:
    """Queue the record with `text` as its script: a linked job (`parent` with
    `kind: "edit"`) runs the template's checks again on the text (as `aicp script
    --recheck`: `script.edited: true`, new `words`, `checks` and `key`; no model call) and,
    when the job's chain voices its scripts, the later steps (a new audio file). The result
    appears in the record's `retakes` (of this job, or of the original when this job is
    itself a new take). Answers 202 with the new job."""
    source = _finished(store, job_id)
    record = _output_record(store, source, index)
    job, index = _root(store, source, index)
    chain = _job_chain(store, job)
    at = _llm_step(chain)
    steps = [dict(step) for step in chain["steps"]][at:]
    _one_call(steps[0])
    keep = ("template", "persona", "personas", "extra_context", "max_seconds", "require_checks",
            "voice_backend", "song_field", "strict")
    params = {k: v for k, v in (steps[0].get("params") or {}).items() if k in keep}
    steps[0]["params"] = {**params, "recheck": True}
    made = record.get("script")
    script = {k: v for k, v in (made if isinstance(made, dict) else {}).items()
              if k not in ("checks", "skipped", "truncated")}
    given = {**_given(record), "script": {**script, "text": body.text}}
    take = _queue(settings, store, {**chain, "steps": steps}, [given], {"": ""}, parent=(job.id, index, "edit"))
    return JSONResponse(job_summary(take, names), status_code=202, headers={"Location": job_links(take.id)["self"]})


__all__ = ["JOB_EXAMPLE", "job_links", "job_summary", "regenerate_seed", "router"]
