"""The HTTP API of ``aicp serve`` (FastAPI): jobs, events, files, catalog, health, metrics.

Every error is JSON ``{"error": {"type", "message", "hint"}}`` (plus ``field`` for a
bad request field); no traceback ever reaches a client. See :func:`create_app`, which wires
the routers of :mod:`.routers` to the job store, the settings and the other shared parts
through ``app.state`` (read by the dependencies of :mod:`.deps`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import AicpError
from . import auth
from .auth import BearerAuth, LoginRequired, login_redirect
from .deps import (
    API,
    ApiError,
    ExactJSONRoute,
    ServiceSettings,
    StreamCounter,
    json_error,
)
from .docs import add_offline_docs
from .redact import Redactor
from .requests import RequestProblem
from .routers import catalog, generate, health, pages
from .store import JobStore


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
        await json_error(413, "PayloadTooLarge", f"the request body is over {self.limit} bytes",
                         "send fewer records per job (see --max-body)")(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    """Answer every error with the JSON error body; never a traceback."""

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc.next_path)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return json_error(exc.status, exc.type, exc.message, exc.hint, exc.headers)

    def shown(request: Request, text: str | None) -> str | None:
        """A message as a client sees it: the operator's files by their listed names, any other
        server path by its last part (the library's messages name files for the operator)."""
        return Redactor(None, request.app.state.names).text(text) if text else text

    @app.exception_handler(RequestProblem)
    async def _problem(request: Request, exc: RequestProblem) -> JSONResponse:
        return json_error(422, "InvalidRequest", shown(request, exc.message) or "", shown(request, exc.hint),
                          field=exc.field)

    @app.exception_handler(AicpError)
    async def _aicp(request: Request, exc: AicpError) -> JSONResponse:
        return json_error(400, exc.type_name, shown(request, exc.message) or "", shown(request, exc.hint))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        return json_error(422, "InvalidRequest", f"{field}: {first.get('msg')}",
                          "see /docs for the request schema", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return json_error(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # no log line here: the server logs the exception once (with aicp serve's prefix)
        # after this answer, as Starlette hands it on
        return json_error(500, "InternalError", f"unexpected {type(exc).__name__}",
                          "the server log has the details")


def create_app(settings: ServiceSettings, store: JobStore | None = None,
               worker_factory: Callable[[JobStore], Any] | None = None) -> FastAPI:
    """The FastAPI application.

    ``app.state`` holds what the routers' dependencies read: ``settings``, ``store`` (``None``
    until start-up opened it), ``models`` and ``voices`` (the names clients may use),
    ``names`` (the operator's files as clients name them), ``streams`` (open event streams per
    client), and once started ``worker`` (a thread's worker) and ``child`` (the worker process).

    :param store: an open :class:`JobStore` (default: from ``settings``, migrated at startup).
    :param worker_factory: ``factory(store) -> Worker`` run in a thread when
        ``settings.worker`` (default: a :class:`~ai_content_pipeline.service.worker.Worker`
        over ``settings.data_dir``).
    """
    from .requests import default_models, default_voices

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        if state.store is None:
            from .db import database_url, make_engine, migrate

            engine = make_engine(database_url(settings.database_url, settings.data_dir))
            await run_in_threadpool(migrate, engine)
            state.store = JobStore(engine)
        worker = thread = child = None
        if settings.worker and settings.worker_command:
            from .worker import WorkerProcess

            # a process of its own: the models' Python loops never hold this process's GIL,
            # and a crash in an engine does not take the API down (it is started again)
            child = WorkerProcess(settings.worker_command, settings.worker_env)
            child.start()
        elif settings.worker:
            from .worker import Worker

            worker = (worker_factory(state.store) if worker_factory else
                      Worker(state.store, settings.data_dir, heartbeat_seconds=settings.heartbeat_seconds,
                             stale_after=settings.stale_after, min_free_bytes=settings.min_free_bytes))
            thread = threading.Thread(target=worker.run, name="aicp-worker", daemon=True)
            thread.start()
        state.worker = worker
        state.child = child
        try:
            yield
        finally:
            if child is not None:
                await run_in_threadpool(child.stop, 600)  # its running job stops at the next boundary
            if worker is not None and thread is not None:
                worker.stop.set()  # the running job stops at its next boundary and is requeued
                await run_in_threadpool(thread.join, 600)

    app = FastAPI(title="aicp generation service", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # served from the package: add_offline_docs below
                  description="Submit records or a topic, get scripts and audio from the local LLM "
                              "and TTS models. Jobs run through the same chain runner as "
                              "`aicp run-chain`; events are its `--stream` JSON events.")
    app.router.route_class = ExactJSONRoute
    app.add_middleware(BodyLimit, limit=settings.max_body)
    # added last, so it runs first: an unauthenticated (or cross-site) body is never read
    app.add_middleware(BearerAuth, token=settings.token)
    _add_error_handlers(app)
    for module in (generate, catalog, health, auth, pages):
        app.include_router(module.router)
    add_offline_docs(app)
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")  # the review desk's

    models = settings.models if settings.models is not None else default_models()
    voices = settings.voices if settings.voices is not None else default_voices()
    app.state.settings = settings
    app.state.store = store
    app.state.models, app.state.voices = models, voices
    #: the operator's files as clients name them, for what a client is shown
    app.state.names = {**{v: k for k, v in voices.items()}, **{v: k for k, v in models.items()}}
    app.state.streams = StreamCounter(settings.max_streams)
    app.state.worker = app.state.child = None
    return app


__all__ = ["API", "ApiError", "BearerAuth", "BodyLimit", "ServiceSettings", "create_app"]
