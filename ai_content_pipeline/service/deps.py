"""What the API's routers share: the path prefix, the service's settings, the error type, the
route class that reads bodies exactly, and the dependencies ``create_app`` wires through
``app.state`` (the job store, the settings, the names clients use for the operator's files,
the event streams open per client).

Every error is JSON ``{"error": {"type", "message", "hint"}}`` (plus ``field`` for a bad
request field): :class:`ApiError` raised by an endpoint is answered so by the handler
:func:`~ai_content_pipeline.service.app.create_app` installs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from .store import JobStore
from .worker import DEFAULT_MIN_FREE

API = "/api/v1"
#: what needs no token: the health check, and the login page and its form (``GET``/``POST
#: /login``), ``POST /logout``
PUBLIC_PATHS = frozenset({f"{API}/health", "/login", "/logout"})
#: folders of static files that need no token (the pages' scripts and styles, the offline
#: ``/docs`` and ``/redoc`` assets): nothing in them is secret, and the login page uses them
PUBLIC_PREFIXES = ("/static/", "/assets/")
#: the largest offset, sequence number or count a query parameter or header may carry
#: (a 64-bit signed integer: what the databases' INTEGER holds)
MAX_INDEX = 2**63 - 1


@dataclass
class ServiceSettings:
    """What ``aicp serve`` configures.

    :ivar data_dir: jobs' folders (and the SQLite file when no ``database_url``).
    :ivar database_url: PostgreSQL URL, or ``None`` for SQLite in ``data_dir``.
    :ivar token: bearer token required on every endpoint but ``/api/v1/health`` and the
        login page (a browser logs in once: :mod:`~ai_content_pipeline.service.auth`).
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
    min_free_bytes: int = DEFAULT_MIN_FREE
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


def json_error(status: int, type_: str, message: str, hint: str | None = None,
               headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The error body (:func:`error_body`) as a response of HTTP ``status``."""
    return JSONResponse(error_body(type_, message, hint, **extra), status_code=status, headers=headers)


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


class StreamCounter:
    """The event streams each client address holds open, at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def acquire(self, client: str) -> Callable[[], None]:
        """Count one more stream of ``client``; returns the release, which counts it off once
        however often it is called.

        :raises ApiError: 429 with ``Retry-After`` when ``client`` holds ``limit`` streams.
        """
        if self.open.get(client, 0) >= self.limit:
            raise ApiError(429, "TooManyStreams",
                           f"this client has {self.limit} event streams open, the most it may",
                           "close a stream first, or poll GET /api/v1/generate/ID",
                           headers={"Retry-After": "5"})
        self.open[client] = self.open.get(client, 0) + 1
        held = [True]

        def release() -> None:  # once, whether the stream ended, failed or never started
            if held:
                held.clear()
                self.open[client] -= 1
                if self.open[client] <= 0:
                    del self.open[client]

        return release


# -- dependencies (async: read in the event loop, no thread hop per request) ----------------------
async def get_settings(request: Request) -> ServiceSettings:
    """The service's settings (``app.state.settings``)."""
    settings: ServiceSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> JobStore:
    """The open job store (``app.state.store``).

    :raises ApiError: 503 while the service is starting (no store yet).
    """
    store: JobStore | None = request.app.state.store
    if store is None:
        raise ApiError(503, "Starting", "the service is starting", "try again in a moment")
    return store


async def get_names(request: Request) -> dict[str, str]:
    """``{operator's file or model: the name clients use}`` for a
    :class:`~ai_content_pipeline.service.redact.Redactor` (``app.state.names``)."""
    names: dict[str, str] = request.app.state.names
    return names


async def get_models(request: Request) -> dict[str, str]:
    """The models clients may name: ``{name: .gguf path or Ollama model}`` (``app.state.models``)."""
    models: dict[str, str] = request.app.state.models
    return models


async def get_voices(request: Request) -> dict[str, str]:
    """The voices clients may name: ``{name: voice file}`` (``app.state.voices``)."""
    voices: dict[str, str] = request.app.state.voices
    return voices


async def get_streams(request: Request) -> StreamCounter:
    """The open event streams per client (``app.state.streams``)."""
    streams: StreamCounter = request.app.state.streams
    return streams


async def get_worker_process(request: Request) -> Any:
    """The server's own worker process
    (:class:`~ai_content_pipeline.service.worker.WorkerProcess`), or ``None`` when it runs none."""
    return getattr(request.app.state, "child", None)


__all__ = ["API", "ApiError", "ExactJSONRoute", "MAX_INDEX", "PUBLIC_PATHS", "PUBLIC_PREFIXES", "ServiceSettings",
           "StreamCounter", "error_body", "get_models", "get_names", "get_settings", "get_store", "get_streams",
           "get_voices", "get_worker_process", "json_error"]
