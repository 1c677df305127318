"""The HTTP API of ``aicp serve`` (FastAPI): jobs, events, files, catalog, health, metrics.

Every error is JSON ``{"error": {"type", "message", "hint"}}`` (plus ``field`` for a
bad request field); no traceback ever reaches a client. See :func:`create_app`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import AicpError
from ..faults import NO_SPACE
from ..jsonl import dumps as exact_dumps
from .db import FINAL_STATUSES, STATUSES, Job
from .redact import Redactor, worker_label
from .requests import GenerateRequest, RequestProblem, build_chain, validate_chain
from .store import JobStore

log = logging.getLogger("aicp.serve")
API = "/api/v1"
PUBLIC_PATHS = frozenset({f"{API}/health"})
#: the largest offset, sequence number or count a query parameter or header may carry
#: (a 64-bit signed integer: what the databases' INTEGER holds)
MAX_INDEX = 2**63 - 1


@dataclass
class ServiceSettings:
    """What ``aicp serve`` configures.

    :ivar data_dir: jobs' folders (and the SQLite file when no ``database_url``).
    :ivar database_url: PostgreSQL URL, or ``None`` for SQLite in ``data_dir``.
    :ivar token: bearer token required on every endpoint but ``/api/v1/health``.
    :ivar max_records: most records one job may carry (more: 413).
    :ivar max_body: most bytes a request body may have (more: 413).
    :ivar worker: run one worker beside the API: a child process running ``worker_command``
        when that is set (``aicp serve`` does this), else a thread of this process.
    :ivar worker_command: argv of the worker child process (``aicp worker ...``), restarted
        with back-off when it dies (:class:`~ai_content_pipeline.service.worker.WorkerProcess`).
    :ivar worker_env: the child's environment (``None``: this process's).
    :ivar min_free_bytes: new jobs are refused (507) while the data folder's disk has less free.
    :ivar heartbeat_seconds/stale_after: worker heartbeat interval; silence after which
        a running job is requeued (seconds).
    :ivar events_poll: seconds between database looks of a live event stream.
    :ivar max_streams: most event streams (SSE) one client address may hold open at once
        (more: 429 with ``Retry-After``).
    :ivar models: the LLM models clients may name: ``{name: .gguf path or Ollama model}``;
        ``None``: the bundled model only.
    :ivar voices: the voices clients may name: ``{name: voice file}``; ``None``: the bundled
        Piper voice only.
    """

    data_dir: str = "aicp-data"
    database_url: str | None = None
    token: str | None = None
    max_records: int = 1000
    max_body: int = 10 * 1024 * 1024
    worker: bool = True
    worker_command: list[str] | None = None
    worker_env: dict[str, str] | None = None
    min_free_bytes: int = 512 * 1024 * 1024
    heartbeat_seconds: float = 2.0
    stale_after: float = 30.0
    events_poll: float = 0.2
    max_streams: int = 8
    models: dict[str, str] | None = None
    voices: dict[str, str] | None = None


class ApiError(Exception):
    """An HTTP error with the JSON error body (``status``, ``type``, ``message``, ``hint``)."""

    def __init__(self, status: int, type_: str, message: str, hint: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.hint, self.headers = status, type_, message, hint, headers


def error_body(type_: str, message: str, hint: str | None = None, **extra: Any) -> dict[str, Any]:
    """``{"error": {"type", "message", "hint", ...extra}}``."""
    return {"error": {"type": type_, "message": message, "hint": hint, **extra}}


def _json_error(status: int, type_: str, message: str, hint: str | None = None,
                headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(type_, message, hint, **extra), status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered with 413 unread."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_big(scope, receive, send)
            return
        if length is not None or scope.get("method") in ("GET", "HEAD", "DELETE"):
            await self.app(scope, receive, send)  # the server stops at Content-Length
            return
        chunks, seen, more = [], 0, True  # no Content-Length (chunked): read it all, counting
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = bool(message.get("more_body"))
            if seen > self.limit:
                await self._too_big(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _json_error(413, "PayloadTooLarge", f"the request body is over {self.limit} bytes",
                          "send fewer records per job (see --max-body)")(scope, receive, send)


class BearerAuth:
    """ASGI middleware: every HTTP request but ``public`` paths needs ``Authorization: Bearer TOKEN``
    (else 401 with ``WWW-Authenticate: Bearer``).

    Plain ASGI, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs every
    request through an extra task and memory streams, which cost each status poll about
    a millisecond of CPU (see bench/service_overhead.py).
    """

    def __init__(self, app: ASGIApp, token: str, public: frozenset[str] = PUBLIC_PATHS) -> None:
        self.app, self.token, self.public = app, token.encode(), public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.public:
            await self.app(scope, receive, send)
            return
        header = b""
        for key, value in scope.get("headers") or []:
            if key == b"authorization":
                header = value
                break
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            await _json_error(401, "Unauthorized", "a valid bearer token is required",
                              "send `Authorization: Bearer $AICP_API_TOKEN`",
                              headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _ExactJSONRequest(Request):
    """A request whose JSON body is read by :func:`~ai_content_pipeline.service.body.parse_body`."""

    async def json(self) -> Any:
        if not hasattr(self, "_exact_json"):
            from .body import parse_body

            self._exact_json = parse_body(await self.body())
        return self._exact_json


class ExactJSONRoute(APIRoute):
    """A route whose JSON body is read as the commands read records (:mod:`.body`): every value
    kept as sent (numbers byte-exact) or refused with a 422 naming the field, before FastAPI
    validates it against the endpoint's model."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                request = _ExactJSONRequest(request.scope, request.receive)
                if await request.body():
                    await request.json()  # a RequestProblem here is answered 422
            return await handler(request)  # type: ignore[no-any-return]

        return exact


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
    "attempts": 1, "worker": "gpu-1:4242:a1b2c3", "tokens": {"prompt": 812, "completion": 240},
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


def create_app(settings: ServiceSettings, store: JobStore | None = None,
               worker_factory: Callable[[JobStore], Any] | None = None) -> FastAPI:
    """The FastAPI application.

    :param store: an open :class:`JobStore` (default: from ``settings``, migrated at startup).
    :param worker_factory: ``factory(store) -> Worker`` run in a thread when
        ``settings.worker`` (default: a :class:`~ai_content_pipeline.service.worker.Worker`
        over ``settings.data_dir``).
    """
    from .metrics import metrics_response
    from .requests import default_models, default_voices

    state: dict[str, Any] = {"store": store}
    models = settings.models if settings.models is not None else default_models()
    voices = settings.voices if settings.voices is not None else default_voices()
    #: the operator's files as clients name them, for what a client is shown
    names = {**{v: k for k, v in voices.items()}, **{v: k for k, v in models.items()}}
    #: open event streams per client address
    streams: dict[str, int] = {}

    def get_store() -> JobStore:
        if state["store"] is None:
            raise ApiError(503, "Starting", "the service is starting", "try again in a moment")
        return state["store"]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state["store"] is None:
            from .db import database_url, make_engine, migrate

            engine = make_engine(database_url(settings.database_url, settings.data_dir))
            await run_in_threadpool(migrate, engine)
            state["store"] = JobStore(engine)
        worker = thread = child = None
        if settings.worker and settings.worker_command:
            from .worker import WorkerProcess

            # a process of its own: the models' Python loops never hold this process's GIL,
            # and a crash in an engine does not take the API down (it is started again)
            child = WorkerProcess(settings.worker_command, settings.worker_env)
            child.start()
        elif settings.worker:
            from .worker import Worker

            worker = (worker_factory(state["store"]) if worker_factory else
                      Worker(state["store"], settings.data_dir, heartbeat_seconds=settings.heartbeat_seconds,
                             stale_after=settings.stale_after, min_free_bytes=settings.min_free_bytes))
            thread = threading.Thread(target=worker.run, name="aicp-worker", daemon=True)
            thread.start()
        state["worker"] = worker
        state["child"] = child
        try:
            yield
        finally:
            if child is not None:
                await run_in_threadpool(child.stop, 600)  # its running job stops at the next boundary
            if worker is not None and thread is not None:
                worker.stop.set()  # the running job stops at its next boundary and is requeued
                await run_in_threadpool(thread.join, 600)

    app = FastAPI(title="aicp generation service", version=__version__, lifespan=lifespan,
                  description="Submit records or a topic, get scripts and audio from the local LLM "
                              "and TTS models. Jobs run through the same chain runner as "
                              "`aicp run-chain`; events are its `--stream` JSON events.")
    app.router.route_class = ExactJSONRoute
    app.add_middleware(BodyLimit, limit=settings.max_body)
    if settings.token:  # added last, so it runs first: an unauthenticated body is never read
        app.add_middleware(BearerAuth, token=settings.token)

    # -- errors ----------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json_error(exc.status, exc.type, exc.message, exc.hint, exc.headers)

    @app.exception_handler(RequestProblem)
    async def _problem(_: Request, exc: RequestProblem) -> JSONResponse:
        return _json_error(422, "InvalidRequest", exc.message, exc.hint, field=exc.field)

    @app.exception_handler(AicpError)
    async def _aicp(_: Request, exc: AicpError) -> JSONResponse:
        return _json_error(400, exc.type_name, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        return _json_error(422, "InvalidRequest", f"{field}: {first.get('msg')}",
                           "see /docs for the request schema", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return _json_error(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # no log line here: the server logs the exception once (with aicp serve's prefix)
        # after this answer, as Starlette hands it on
        return _json_error(500, "InternalError", f"unexpected {type(exc).__name__}",
                           "the server log has the details")

    def _job(job_id: str) -> Job:
        job = get_store().get(job_id, inputs=False)
        if job is None:
            raise ApiError(404, "NotFound", f"no generation {job_id!r}", "list jobs with GET /api/v1/generate")
        return job

    def _no_room() -> ApiError:
        return ApiError(507, "InsufficientStorage", "the server's disk is too full to take a job",
                        "try again later; the operator frees space (or lowers --min-free-mb)")

    def _room_for_a_job() -> None:
        """Refuse a job (507) while the data folder's disk is below ``settings.min_free_bytes``."""
        from .worker import free_space

        free = free_space(settings.data_dir)
        if free is not None and free < settings.min_free_bytes:
            raise _no_room()

    # -- jobs ------------------------------------------------------------------------------
    @app.post(f"{API}/generate", status_code=202, tags=["generate"],
              summary="Submit a generation job",
              responses={413: {"description": "too many records or too big a body"},
                         507: {"description": "the server's disk is below its free-space floor"},
                         422: {"description": "invalid body, unknown template or persona"}})
    def submit(body: GenerateRequest) -> JSONResponse:
        """Queue a job: records (or one topic) through a script step and, with `voice: true`,
        a voice step. Answers 202 with the `generation_id` and links."""
        records = body.records or []
        if len(records) > settings.max_records:
            raise ApiError(413, "TooManyRecords", f"{len(records)} records; the limit is {settings.max_records}",
                           "split the work into several jobs (see --max-records)")
        chain, inputs, where = build_chain(body, models=models, voices=voices)
        _room_for_a_job()
        job_id = uuid.uuid4().hex
        folder = Path(settings.data_dir) / "jobs" / job_id
        try:  # whatever goes wrong (a full disk, a refused field, the database), no folder is left
            folder.mkdir(parents=True, exist_ok=True)
            source = folder / "input.jsonl"
            source.write_bytes(b"".join(exact_dumps(r) + b"\n" for r in inputs))  # numbers as sent
            valid = validate_chain(chain, str(source), str(folder / "out"), where)
            for key in ("input", "output_dir"):
                valid.pop(key, None)
            job = get_store().create(job_id, str(valid.get("name") or "job")[:200], valid, inputs)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                raise _no_room() from None
            raise
        return JSONResponse(job_summary(job, names), status_code=202,
                            headers={"Location": job_links(job_id)["self"]})

    @app.get(f"{API}/generate", tags=["generate"], summary="List jobs")
    def list_jobs(status: Literal["queued", "running", "completed", "partial", "failed", "cancelled"] | None = None,
                  limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_INDEX)) -> dict[str, Any]:
        """Jobs newest first, optionally of one status, paged with `limit`/`offset`."""
        jobs, total = get_store().list_jobs(status, limit, offset)
        return {"items": [job_summary(j, names) for j in jobs], "total": total, "limit": limit, "offset": offset}

    @app.get(f"{API}/generate/{{job_id}}", tags=["generate"], summary="A job's status and output",
             responses={200: {"content": {"application/json": {"example": JOB_EXAMPLE}}},
                        404: {"description": "no such job"}})
    def get_job(job_id: str, records_offset: int = Query(0, ge=0, le=MAX_INDEX),
                records_limit: int = Query(100, ge=0, le=1000)) -> Response:
        """Status, progress, timestamps, tokens, audio seconds, cost, error; when the job has
        finished, its output records (paged with `records_offset`/`records_limit`) and files.
        Paths in records, `result` and `error` are relative to the job's folder
        (`out/audio/NAME.wav`); nothing names the server's own folders."""
        job = _job(job_id)
        out = job_summary(job, names)
        finished = job.status in FINAL_STATUSES
        redactor = Redactor(job_id, names)
        out["records_total"] = job.records_total if finished else None
        out["records"] = ([redactor.record(r) for r in get_store().records(job_id, records_offset, records_limit)]
                          if finished and records_limit else [] if finished else None)
        out["records_offset"], out["records_limit"] = records_offset, records_limit
        out["files"] = [{**f, "url": f"{API}/generate/{job_id}/files/{f['name']}"} for f in job.files or []]
        out["result"] = redactor.value(job.result)
        # polled often: no re-encoding; numbers in records as the commands write them
        return Response(exact_dumps(out), media_type="application/json")

    @app.delete(f"{API}/generate/{{job_id}}", tags=["generate"], summary="Cancel a job",
                responses={200: {"description": "was queued: cancelled now"},
                           202: {"description": "running: stops at the next record or chunk"},
                           404: {"description": "no such job"}, 409: {"description": "already finished"}})
    def cancel(job_id: str) -> JSONResponse:
        """Cancel: a queued job is cancelled at once (200); a running job stops at its next
        record or long-form chunk boundary (202), keeping finished records and files."""
        outcome = get_store().cancel(job_id)
        if outcome is None:
            _job(job_id)
        job = _job(job_id)
        if outcome == "final":
            raise ApiError(409, "Conflict", f"generation {job_id} already finished ({job.status})")
        return JSONResponse(job_summary(job, names), status_code=200 if outcome == "cancelled" else 202)

    @app.get(f"{API}/generate/{{job_id}}/events", tags=["generate"], summary="A job's events (SSE)",
             response_class=Response,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`id: SEQ` and `data: EVENT-JSON` per event"},
                        422: {"description": "a Last-Event-ID or `after` that is not an event id"},
                        429: {"description": "this client holds --max-streams event streams already"}})
    async def events(request: Request, job_id: str, last_event_id: str | None = Header(None),
                     after: int | None = Query(None, ge=0, le=MAX_INDEX, description="like Last-Event-ID")) -> Response:
        """Server-Sent Events: the job's `--stream` JSON events (schema_version 1), replayed from
        the start, then live; each has `id:` = its sequence number, so `Last-Event-ID` resumes
        without loss or repeats. The stream ends when the job has finished. Paths in events
        are relative to the job's folder. One client address holds at most `max_streams`
        streams at once (more: 429 with `Retry-After`)."""
        from sse_starlette.sse import EventSourceResponse, ServerSentEvent
        from starlette.background import BackgroundTask

        store = get_store()
        await run_in_threadpool(_job, job_id)
        start = after if after is not None else _event_id(last_event_id)
        client = request.client.host if request.client else "-"
        if streams.get(client, 0) >= settings.max_streams:
            raise ApiError(429, "TooManyStreams",
                           f"this client has {settings.max_streams} event streams open, the most it may",
                           "close a stream first, or poll GET /api/v1/generate/ID",
                           headers={"Retry-After": "5"})
        streams[client] = streams.get(client, 0) + 1
        held = [True]

        def release() -> None:  # once, whether the stream ended, failed or never started
            if held:
                held.clear()
                streams[client] -= 1
                if streams[client] <= 0:
                    del streams[client]

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

    @app.get(f"{API}/generate/{{job_id}}/files/{{name}}", tags=["generate"], summary="Download a job's file",
             response_class=FileResponse, responses={404: {"description": "no such job or file"}})
    def get_file(job_id: str, name: str) -> FileResponse:
        """One audio file of the job, by the name listed in its `files`."""
        job = _job(job_id)
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

    # -- catalog ---------------------------------------------------------------------------
    def _no_path(item: dict[str, Any]) -> dict[str, Any]:
        """A catalog item without its file ``path``: the server's folders are not a client's business."""
        return {k: v for k, v in item.items() if k != "path"}

    @app.get(f"{API}/templates", tags=["catalog"], summary="Templates")
    def templates() -> dict[str, Any]:
        """Name, version, description, target words, required fields, sections and source
        (``builtin``, or ``user``: the operator's user folder) of each template."""
        from ..templates import list_templates

        return {"items": [_no_path(t) for t in list_templates()]}

    @app.get(f"{API}/templates/{{name}}", tags=["catalog"], summary="One template",
             responses={404: {"description": "no such template"}})
    def template(name: str) -> dict[str, Any]:
        """The whole template: prompts, parameters, sections."""
        from ..templates import list_templates, load_template

        if name not in {t["name"] for t in list_templates()}:
            raise ApiError(404, "NotFound", f"no template {name!r}", "GET /api/v1/templates lists them")
        return load_template(name).model_dump(exclude={"source"})

    @app.get(f"{API}/personas", tags=["catalog"], summary="Personas")
    def personas() -> dict[str, Any]:
        """Name, display name, station, style and source of each persona."""
        from ..templates import list_personas

        return {"items": [_no_path(p) for p in list_personas()]}

    # -- health and metrics ----------------------------------------------------------------
    @app.get(f"{API}/health", tags=["health"], summary="Liveness (no dependencies, no token)")
    def health() -> dict[str, Any]:
        """`{"status": "ok"}` while the process serves HTTP."""
        return {"status": "ok", "version": __version__}

    @app.get(f"{API}/health/detailed", tags=["health"], summary="Database, backends, disk, queue, workers")
    def health_detailed() -> JSONResponse:
        """Each part with `ok`; `status` is `degraded` when a part is not ok (no worker
        heartbeats, the server's worker process is down, the disk is below the floor...);
        the HTTP status is 503 when the database is unreachable."""
        from ..doctor import run_doctor

        out: dict[str, Any] = {"version": __version__}
        store = get_store()
        try:
            store.ping()
            out["database"] = {"ok": True, "dialect": store.dialect}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            out["database"] = {"ok": False, "dialect": store.dialect, "error": f"{type(exc).__name__}: {exc}"}
        out["backends"] = run_doctor()
        from .worker import free_space

        usage = shutil.disk_usage(Path(settings.data_dir) if Path(settings.data_dir).exists() else ".")
        free = free_space(settings.data_dir)
        free = usage.free if free is None else free
        out["disk"] = {"path": str(Path(settings.data_dir).resolve()), "free_bytes": free,
                       "total_bytes": usage.total, "min_free_bytes": settings.min_free_bytes,
                       "ok": free >= settings.min_free_bytes}
        child = state.get("child")
        alive = 0
        if out["database"]["ok"]:
            counts = store.counts_by_status()
            out["queue"] = {"queued": counts.get("queued", 0), "running": counts.get("running", 0)}
            now = time.time()
            out["workers"] = [{"id": w.id, "host": w.host, "pid": w.pid, "job": w.job_id, "stopped": w.stopped,
                               "heartbeat_age_seconds": round(now - w.heartbeat_at, 3),
                               "alive": not w.stopped and now - w.heartbeat_at < settings.stale_after}
                              for w in store.workers()]
            alive = sum(1 for w in out["workers"] if w["alive"])
        # jobs run only while some worker heartbeats (and the server's own worker process runs)
        worker_ok = alive > 0 and (child is None or child.running)
        out["worker"] = {"ok": worker_ok, "alive": alive,
                         "process": child.state() if child is not None else None}
        ok = out["database"]["ok"] and out["backends"]["ok"] and out["disk"]["ok"] and worker_ok
        out["status"] = "ok" if ok else "degraded"
        return JSONResponse(out, status_code=200 if out["database"]["ok"] else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        """Jobs by status, records, tokens, audio seconds, cost, job duration histogram."""
        body, content_type = metrics_response(get_store())
        return Response(body, media_type=content_type)

    app.state.settings = settings
    app.state.service = state
    return app


__all__ = ["API", "ApiError", "ServiceSettings", "create_app", "error_body", "job_summary", "STATUSES"]
