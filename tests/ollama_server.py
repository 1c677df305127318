"""A local test double of an Ollama server: the REST API the official ``ollama`` client speaks.

Runs a threaded stdlib HTTP server on ``127.0.0.1`` (random free port) so the production code
path (``ollama.Client(host=...)``) runs unchanged. Endpoints:

- ``POST /api/chat`` and ``POST /api/generate``: NDJSON stream (``stream`` true or absent) of
  objects, the last with ``done: true``, ``done_reason``, token counts and durations in
  nanoseconds; one object when ``stream: false``. ``generate`` with an empty prompt loads the
  model, or unloads it with ``keep_alive: 0`` (``done_reason: "unload"``).
- ``GET /api/tags``, ``GET /api/ps`` (models loaded now), ``POST /api/show``, ``GET /api/version``.
- Unknown models answer 404 ``{"error": "model 'x' not found"}``.

Faults are scripted per request with :class:`Reply` (HTTP status, a stream cut mid-reply,
delays). Every request is recorded (:attr:`OllamaServer.requests`) with its JSON body, and the
largest number of generation requests in flight at once is kept (:attr:`OllamaServer.max_in_flight`).

Usage::

    with OllamaServer(models=["llama3.2"]) as srv:
        backend = OllamaBackend("llama3.2", host=srv.url)
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

DIGEST = "sha256:" + "0" * 64
DETAILS = {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
           "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}
SIZE = 2_019_393_189


@dataclass
class Reply:
    """How the server answers one ``chat``/``generate`` request.

    :ivar text: reply text (``None``: the server's default, an echo of the prompt).
    :ivar status: HTTP status; not 200 answers ``{"error": error}`` and nothing else.
    :ivar error: error text for a non-200 status.
    :ivar cut_after: send this many NDJSON lines, then close the connection without ``done``
        (chunked encoding left incomplete, as when the server dies).
    :ivar cut_partial: with ``cut_after``: end the body by closing the connection (no chunked
        encoding) right after half of the next line.
    :ivar delay: seconds to wait before the response starts.
    :ivar chunk_delay: seconds to wait between streamed lines.
    :ivar done_reason: ``stop`` or ``length``.
    :ivar stream_error: after ``cut_after`` (or 0) lines send ``{"error": stream_error}`` and end
        the stream (how Ollama reports a failure once the 200 header is out).
    """

    text: str | None = None
    status: int = 200
    error: str = "internal server error"
    cut_after: int | None = None
    cut_partial: bool = False
    delay: float = 0.0
    chunk_delay: float = 0.0
    done_reason: str = "stop"
    stream_error: str | None = None


@dataclass
class Request:
    """One request the server received: method, path, JSON body (``None`` for GET), times."""

    method: str
    path: str
    body: Any
    started: float = field(default_factory=time.monotonic)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _full(name: str) -> str:
    return name if ":" in name else name + ":latest"


def _seconds(keep_alive: Any) -> float | None:
    """Seconds of a keep_alive value (``"5m"``, ``"1h"``, ``300``, ``"0"``); negative → ``None`` (forever)."""
    if keep_alive is None:
        return 300.0
    if isinstance(keep_alive, int | float):
        value = float(keep_alive)
    else:
        m = re.fullmatch(r"\s*(-?[\d.]+)\s*(ms|s|m|h)?\s*", str(keep_alive))
        if not m:
            return 300.0
        value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return None if value < 0 else value


class OllamaServer:
    """The fake Ollama server; a context manager that starts and stops it.

    :param models: model names the server has (``/api/tags``); ``name`` means ``name:latest``.
    :param replies: replies for the next ``chat``/``generate`` requests, in order.
    :param reply_for: ``fn(body) -> Reply | None`` deciding replies from the request (after the queue).
    :param unload_delay: seconds a model stays in ``/api/ps`` after it was told to unload.
    :param fail_paths: path → HTTP status every request to that path answers (``{"error": ...}``).
    :param tokens_per_second: pace generation like one GPU: each streamed piece (a word) of any
        request takes ``1 / tokens_per_second`` s of a host-wide clock, so the host's total
        rate stays at that figure however many requests it serves at once (a sleep: no CPU).
    """

    def __init__(self, models: list[str] | tuple[str, ...] = ("llama3.2",), *,
                 replies: list[Reply] | None = None,
                 reply_for: Callable[[dict[str, Any]], Reply | None] | None = None,
                 unload_delay: float = 0.0, fail_paths: dict[str, int] | None = None,
                 tokens_per_second: float | None = None) -> None:
        self.models = {_full(m) for m in models}
        self.queue: deque[Reply] = deque(replies or [])
        self.reply_for = reply_for
        self.unload_delay = unload_delay
        self.fail_paths = dict(fail_paths or {})
        self.requests: list[Request] = []
        self.loaded: dict[str, float | None] = {}  # full name → expiry (monotonic) or None (forever)
        self.unloading: dict[str, float] = {}  # full name → time it leaves /api/ps
        self.in_flight = 0
        self.max_in_flight = 0
        self.errors: list[BaseException] = []  # exceptions in handlers (a client that hung up...)
        self.tokens_per_second = tokens_per_second
        self.dead = False
        self.connections: set[socket.socket] = set()
        self._gpu = threading.Lock()  # the host-wide clock of tokens_per_second
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> OllamaServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.fake = self
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    def kill(self) -> None:
        """Die as a crashed server does: stop listening (new connections are refused) and
        cut every open connection, replies in flight included."""
        self.dead = True
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- scripting and inspection ----------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Queue replies for the next generation requests."""
        with self._lock:
            self.queue.extend(replies)

    def requests_to(self, path: str) -> list[Request]:
        """Recorded requests to ``path`` (``/api/chat``...), in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def unload_requests(self) -> list[Request]:
        """Recorded ``generate`` requests of the unload form (empty prompt, ``keep_alive`` 0)."""
        return [r for r in self.requests_to("/api/generate")
                if not r.body.get("prompt") and _seconds(r.body.get("keep_alive")) == 0]

    def loaded_now(self) -> list[str]:
        """Full names of the models ``/api/ps`` lists now."""
        now = time.monotonic()
        with self._lock:
            for name, gone_at in list(self.unloading.items()):
                if now >= gone_at:
                    self.loaded.pop(name, None)
                    del self.unloading[name]
            for name, expiry in list(self.loaded.items()):
                if expiry is not None and now >= expiry and name not in self.unloading:
                    del self.loaded[name]
            return sorted(self.loaded)

    # -- model state -------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and _full(name) in self.models

    def touch(self, name: str, keep_alive: Any) -> None:
        """Load ``name`` (or refresh it); ``keep_alive`` 0 unloads it (after ``unload_delay``)."""
        seconds = _seconds(keep_alive)
        full = _full(name)
        now = time.monotonic()
        with self._lock:
            if seconds == 0:
                if full in self.loaded:
                    self.unloading[full] = now + self.unload_delay
            else:
                self.unloading.pop(full, None)
                self.loaded[full] = None if seconds is None else now + seconds

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.queue:
                return self.queue.popleft()
        reply = self.reply_for(body) if self.reply_for else None
        return reply or Reply()

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def default_text(body: dict[str, Any]) -> str:
    """The default reply: an echo of the last user message (or the prompt)."""
    if "messages" in body:
        users = [m.get("content", "") for m in body["messages"] if m.get("role") == "user"]
        prompt = users[-1] if users else ""
    else:
        prompt = body.get("prompt", "")
    return f"Echo: {prompt}".strip()


class _Server(ThreadingHTTPServer):
    fake: OllamaServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep the exception for tests instead of printing a traceback on stderr."""
        import sys

        exc = sys.exc_info()[1]
        if exc is not None:
            with self.fake._lock:
                self.fake.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    fake: OllamaServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake.connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:  # a killed server's connection
            pass

    # -- plumbing ---------------------------------------------------------------------------
    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return orjson.loads(raw) if raw else None

    def _json(self, status: int, obj: Any) -> None:
        data = orjson.dumps(obj)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, name: str) -> None:
        self._json(404, {"error": f"model '{name}' not found"})

    def _record(self, body: Any) -> None:
        with self.fake._lock:
            self.fake.requests.append(Request(self.command, self.path, body))

    # -- routes -----------------------------------------------------------------------------
    def _failed(self) -> bool:
        status = self.fake.fail_paths.get(self.path)
        if status:
            self._json(status, {"error": f"scripted failure of {self.path}"})
        return bool(status)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._record(None)
        if self._failed():
            return
        if self.path == "/api/version":
            self._json(200, {"version": "0.6.3-fake"})
        elif self.path == "/api/tags":
            self._json(200, {"models": [
                {"name": m, "model": m, "modified_at": _now(), "size": SIZE, "digest": DIGEST,
                 "details": DETAILS} for m in sorted(self.fake.models)]})
        elif self.path == "/api/ps":
            expires = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
            self._json(200, {"models": [
                {"name": m, "model": m, "size": SIZE, "digest": DIGEST, "details": DETAILS,
                 "expires_at": expires, "size_vram": SIZE, "context_length": 4096}
                for m in self.fake.loaded_now()]})
        else:
            self._json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = self._body() or {}
        self._record(body)
        if self._failed():
            return
        name = body.get("model", "")
        if self.path == "/api/show":
            if not self.fake.has(name):
                return self._not_found(name)
            return self._json(200, {
                "modelfile": f"FROM {name}\n", "parameters": "stop \"<|eot_id|>\"",
                "template": "{{ .Prompt }}", "details": DETAILS, "modified_at": _now(),
                "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                "capabilities": ["completion", "tools"]})
        if self.path not in ("/api/chat", "/api/generate"):
            return self._json(404, {"error": "404 page not found"})
        if not self.fake.has(name):
            return self._not_found(name)
        chat = self.path == "/api/chat"
        if not chat and not body.get("prompt"):  # load / unload form
            self.fake.touch(name, body.get("keep_alive"))
            reason = "unload" if _seconds(body.get("keep_alive")) == 0 else "load"
            return self._json(200, {"model": name, "created_at": _now(), "response": "",
                                    "done": True, "done_reason": reason})
        self.fake._enter()
        self._left = False
        try:
            self._generate(body, chat)
        finally:
            self._leave_once()

    def _leave_once(self) -> None:
        """Count this request out of ``in_flight`` once: before its final chunk is sent (a client
        that got ``done`` may send its next request at once), else when the handler ends."""
        if not self._left:
            self._left = True
            self.fake._leave()

    def _generate(self, body: dict[str, Any], chat: bool) -> None:
        reply = self.fake.next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            return self._json(reply.status, {"error": reply.error})
        keep_alive = body.get("keep_alive")
        self.fake.touch(body["model"], "5m" if _seconds(keep_alive) == 0 else keep_alive)  # loaded while busy
        text = default_text(body) if reply.text is None else reply.text
        pieces = re.findall(r"\S+\s*|\s+", text)
        name = body["model"]
        t0 = time.monotonic_ns()

        def part(piece: str, done: bool = False) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": _now()}
            if chat:
                obj["message"] = {"role": "assistant", "content": piece}
            else:
                obj["response"] = piece
            obj["done"] = done
            if done:  # the keep_alive of the request applies from here (before the client sees done)
                self.fake.touch(name, keep_alive)
                self._leave_once()
                prompt = " ".join(m.get("content", "") for m in body.get("messages", [])) or body.get("prompt", "")
                total = time.monotonic_ns() - t0 + 1
                obj.update(done_reason=reply.done_reason, total_duration=total, load_duration=1000,
                           prompt_eval_count=len(prompt.split()), prompt_eval_duration=total // 3,
                           eval_count=len(pieces), eval_duration=total // 2)
            return obj

        if body.get("stream") is False:
            self._json(200, part(text, done=True))
        else:
            self._stream(reply, [part(p) for p in pieces], lambda: part("", done=True))

    def _stream(self, reply: Reply, parts: list[dict[str, Any]], final: Callable[[], dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        if reply.cut_after is not None and reply.cut_partial:
            self.send_header("Connection", "close")
            self.end_headers()
            for obj in parts[:reply.cut_after]:
                self.wfile.write(orjson.dumps(obj) + b"\n")
            line = orjson.dumps(parts[reply.cut_after] if reply.cut_after < len(parts) else final())
            self.wfile.write(line[: len(line) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if reply.stream_error is not None:
            for obj in parts[:reply.cut_after or 0]:
                self._chunk(orjson.dumps(obj) + b"\n")
            self._chunk(orjson.dumps({"error": reply.stream_error}) + b"\n")
            self._chunk(b"")
            return
        for i, obj in enumerate([*parts, None]):
            if self.fake.tokens_per_second and obj is not None:
                with self.fake._gpu:
                    time.sleep(1.0 / self.fake.tokens_per_second)
            if self.fake.dead:
                return
            if reply.cut_after is not None and i >= reply.cut_after:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._chunk(orjson.dumps(obj if obj is not None else final()) + b"\n")
            if reply.chunk_delay and obj is not None:
                time.sleep(reply.chunk_delay)
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def silent_listener() -> Iterator[str]:
    """A socket that accepts connections (kernel backlog) but never answers: yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
