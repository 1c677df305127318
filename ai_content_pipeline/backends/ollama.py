"""Ollama backend through the official ``ollama`` Python client (streaming).

Requests go to ``POST /api/chat`` with ``stream: true``; the last NDJSON object
(``done: true``) carries ``prompt_eval_count``, ``eval_count`` and
``done_reason`` (see ``ollama.ChatResponse``). By default the model is unloaded
when the stage ends (``keep_alive: 0``) and :meth:`OllamaBackend.unload` waits
until ``GET /api/ps`` no longer lists it, so a following TTS stage finds the
GPU memory free.

Failures: nothing listening → ``BackendUnavailable`` ("is `ollama serve`
running?"); HTTP 404 model not found → ``BackendUnavailable`` ("run `ollama
pull …`"); any other failure of ``/api/show`` at load → ``BackendUnavailable``;
HTTP 5xx/429, timeouts, a stream cut mid-reply (also mid-line), an ``{"error"}`` line
inside the stream, a malformed reply → ``TransientBackendError`` (per record, retryable).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import BackendOutOfMemory, BackendUnavailable, RecordError, TransientBackendError
from .base import ChatChunk, GenerationParams, LLMBackend, is_out_of_memory
from .info import BackendInfo
from .ollama_settings import SETTINGS
from .settings import options_model

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"
UNLOAD_WAIT_SECONDS = 30.0


#: The adapter's options model, built from its settings (:mod:`.ollama_settings`).
OllamaOptions = options_model("ollama", SETTINGS)

def host_url(text: str) -> str:
    """A host as the Ollama client reads it, spelled out as one URL: ``gpu1`` →
    ``http://gpu1:11434`` (no scheme: Ollama's port), ``gpu1:8080`` → ``http://gpu1:8080``;
    a URL with a scheme is kept as given, without a trailing ``/`` (``http://gpu1`` is port 80,
    as for the client).

    :raises UsageError: a control character or a space inside it (no URL has one).
    """
    text = text.strip().rstrip("/")
    if not text.isprintable() or any(c.isspace() for c in text):
        from ..errors import UsageError

        raise UsageError(f"Ollama host {text!r} is not a URL: it holds a control character or a space",
                         hint="give --host / OLLAMA_HOST / OLLAMA_HOSTS as http://NAME:PORT")
    if "://" in text:
        return text
    from urllib.parse import urlsplit

    try:
        port = urlsplit("http://" + text).port
    except ValueError:  # not a port number: left for the client to refuse
        port = 0
    return f"http://{text}" if port is not None else f"http://{text}:11434"


def default_host() -> str:
    """``$OLLAMA_HOST`` (see :func:`host_url`), else ``http://127.0.0.1:11434``."""
    host = os.environ.get("OLLAMA_HOST", "").strip()
    return host_url(host) if host else DEFAULT_HOST


def default_model() -> str:
    """``$AICP_OLLAMA_MODEL``, else ``llama3.2``."""
    return os.environ.get("AICP_OLLAMA_MODEL", "").strip() or DEFAULT_MODEL


def parse_hosts(value: str | Iterable[str] | None = None, environ: dict[str, str] | None = None) -> list[str]:
    """Host URLs from ``--host`` values (each may be a comma list), else ``OLLAMA_HOSTS`` (comma or
    space separated), else ``[OLLAMA_HOST or http://127.0.0.1:11434]``; scheme added when missing,
    repeats dropped (first kept).
    """
    env = os.environ if environ is None else environ
    items = [value] if isinstance(value, str) else list(value or [])
    parts = [p for item in items for p in str(item).split(",") if p.strip()]
    if not parts:
        parts = [p for p in env.get("OLLAMA_HOSTS", "").replace(",", " ").split() if p.strip()]
    if not parts:
        return [default_host()]
    seen: list[str] = []
    for part in parts:
        url = host_url(part)
        if url not in seen:
            seen.append(url)
    return seen


def _unavailable(host: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot reach Ollama at {host}",
        hint=f"is `ollama serve` running at {host}? Set --host or OLLAMA_HOST",
    )


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001, S110 - best effort: the connections are going away anyway
        pass


def _close_in_background(client: Any) -> None:
    """Close ``client``'s connections in a daemon thread: a connection busy in another
    thread can never hold up Ctrl-C (the process may exit before the close ends)."""
    threading.Thread(target=_close_quietly, args=(client,), name="aicp-ollama-abort", daemon=True).start()


def _model_names(listing: Any) -> set[str]:
    names: set[str] = set()
    for m in getattr(listing, "models", None) or []:
        name = getattr(m, "model", None) or getattr(m, "name", None)
        if name:
            names.add(name)
            names.add(name.split(":")[0] if name.endswith(":latest") else name)
    return names


def probe(host: str, timeout: float = 1.0) -> set[str] | None:
    """Models Ollama at ``host`` has (``GET /api/tags``), or ``None`` if nothing answers in time."""
    import ollama

    try:
        with ollama.Client(host=host, timeout=timeout) as client:
            return _model_names(client.list())
    except Exception:  # noqa: BLE001 - any failure means "not usable now"
        return None


class OllamaBackend(LLMBackend):
    """A model served by Ollama.

    :param model: Ollama model name (``llama3.2``, ``qwen2.5:7b``...).
    :param host: server URL; default from ``OLLAMA_HOST``.
    :param keep_alive: duration the server keeps the model after the last request
        (``"10m"``, ``"1h"``); ``None`` means unload at the end of the stage.
    :param timeout: seconds to wait for the connection and for each read of a reply
        (``--timeout``); a request silent for longer fails as a transient error.
    """

    name = "ollama"
    supports_concurrency = True
    supports_json_schema = True

    def __init__(self, model: str | None = None, *, host: str | None = None,
                 keep_alive: str | None = None, timeout: float = 300.0, **_: Any) -> None:
        self.model = model or default_model()
        self.host = host or default_host()
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.device = "ollama"
        self._client: Any = None
        self._aborted = False
        self._client_lock = threading.Lock()  # load() and abort() from different threads

    @property
    def _request_keep_alive(self) -> str:
        return self.keep_alive or "5m"

    def _map(self, exc: BaseException) -> Exception:
        import httpx
        import ollama

        if isinstance(exc, ollama.ResponseError):
            status = getattr(exc, "status_code", 0) or 0
            text = str(getattr(exc, "error", exc))
            if status == 404 or "not found" in text.lower():
                return BackendUnavailable(
                    f"Ollama at {self.host} has no model '{self.model}'",
                    hint=f"run `ollama pull {self.model}`",
                )
            if "memory" in text.lower() or is_out_of_memory(RuntimeError(text)):
                return BackendOutOfMemory(
                    f"Ollama ran out of memory for '{self.model}': {text}",
                    hint="use a smaller model or quantization, free (GPU) memory on the server, or fewer --jobs",
                )
            if status >= 500 or status == 429:
                return TransientBackendError(f"Ollama answered HTTP {status}: {text}", stage="script")
            if status == -1:  # an {"error": ...} line inside a 200 stream: the server failed mid-reply
                return TransientBackendError(f"Ollama failed mid-reply: {text}", stage="script")
            return RecordError(f"Ollama answered HTTP {status}: {text}", stage="script")
        if isinstance(exc, ConnectionError | httpx.ConnectError):
            return _unavailable(self.host)
        if isinstance(exc, httpx.TimeoutException):
            return TransientBackendError(f"Ollama did not answer within {self.timeout:g} s", stage="script")
        if isinstance(exc, httpx.HTTPError):
            return TransientBackendError(f"Ollama connection failed mid-reply: {exc}", stage="script")
        if isinstance(exc, ValueError):  # json.JSONDecodeError, pydantic.ValidationError
            return TransientBackendError(f"Ollama sent a malformed reply: {exc}", stage="script")
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))

    def load(self) -> None:
        self._live_client()

    def _live_client(self) -> Any:
        """The client, made and checked (``/api/show``) on first use; never one after :meth:`abort`.

        :raises BackendUnavailable: the run was aborted, or the model cannot be served.
        """
        with self._client_lock:
            if self._aborted:
                raise BackendUnavailable("the Ollama requests were cancelled (interrupted)")
            if self._client is not None:
                return self._client
        import ollama

        client = ollama.Client(host=self.host, timeout=self.timeout)
        try:
            client.show(self.model)
        except Exception as exc:  # noqa: BLE001 - mapped below
            client.close()
            mapped = self._map(exc)
            if isinstance(mapped, BackendUnavailable | BackendOutOfMemory):
                raise mapped from exc
            # a failure before any record ran is not a record's failure: the backend is unusable
            raise BackendUnavailable(
                f"Ollama at {self.host} failed to describe model '{self.model}': {exc}",
                hint=f"check the server log; try `ollama run {self.model}` by hand",
            ) from exc
        with self._client_lock:
            if self._aborted:  # aborted while /api/show ran: this client must not outlive it
                _close_in_background(client)
                raise BackendUnavailable("the Ollama requests were cancelled (interrupted)")
            if self._client is None:
                self._client, self.loaded = client, True
                return client
        client.close()  # another thread made one first
        return self._client

    def chat(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        *,
        json_schema: dict[str, Any] | None = None,
    ) -> Iterator[ChatChunk]:
        client = self._live_client()
        options: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "num_predict": params.max_tokens,
            "repeat_penalty": params.repeat_penalty,
        }
        if params.seed is not None:
            options["seed"] = params.seed
        try:
            stream = client.chat(
                model=self.model,
                messages=messages,
                stream=True,
                options=options,
                format=json_schema,
                keep_alive=self._request_keep_alive,
            )
            for part in stream:
                text = part.message.content if part.message else ""
                if part.done:
                    if text:
                        yield ChatChunk(text=text)
                    yield ChatChunk(done=True, prompt_tokens=part.prompt_eval_count,
                                    completion_tokens=part.eval_count, done_reason=part.done_reason,
                                    host=self.host)
                    return
                if text:
                    yield ChatChunk(text=text)
        except Exception as exc:  # noqa: BLE001 - mapped below
            mapped = self._map(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        raise TransientBackendError("Ollama's reply stream was cut before it was done", stage="script")

    def abort(self) -> None:
        """Cancel the requests in flight: close the client's connections without waiting.

        Ollama stops generating for a request whose connection closes. The close
        runs in a daemon thread, so a connection busy in another thread can never
        hold up Ctrl-C; the process may exit before it ends. The model is left to
        the server's keep-alive (no unload request: the server may be hung).
        """
        with self._client_lock:
            client, self._client, self.loaded, self._aborted = self._client, None, False, True
        if client is not None:
            _close_in_background(client)

    def loaded_models(self) -> set[str]:
        """Names ``GET /api/ps`` lists now (``llama3.2:latest`` also as ``llama3.2``).

        :raises BackendUnavailable: nothing answers at the host.
        """
        import ollama

        try:
            if self._client is not None:
                return _model_names(self._client.ps())
            with ollama.Client(host=self.host, timeout=self.timeout) as client:
                return _model_names(client.ps())
        except Exception as exc:  # noqa: BLE001 - mapped below
            mapped = self._map(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def unload(self) -> None:
        """Unload now (``keep_alive: 0``) and wait until ``/api/ps`` drops the model.

        With an explicit ``keep_alive`` the model is left loaded on purpose.
        """
        with self._client_lock:
            client, self._client, self.loaded = self._client, None, False
        if client is None:  # never loaded, or aborted: nothing to unload or wait for
            return
        with client:  # closes the connection pool
            if self.keep_alive is not None:
                return
            try:
                client.generate(model=self.model, prompt="", keep_alive=0)
                deadline = time.monotonic() + UNLOAD_WAIT_SECONDS
                while self.model in _model_names(client.ps()) and time.monotonic() < deadline:
                    time.sleep(0.1)
            except Exception:  # noqa: BLE001, S110 - best effort: a server that is gone holds no model
                pass


def _check_host(host: str, wanted: str) -> dict[str, Any]:
    """One Ollama host: reachable within a second, its models, the default model there."""
    from .checkup import result

    models = probe(host)
    if models is None:
        return result(False, f"start `ollama serve` at {host}, or point --host / OLLAMA_HOST at a server",
                      host=host, models=[], default_model=wanted)
    listed = sorted(m for m in models if not m.endswith(":latest"))
    out = result(True, "", host=host, models=listed, default_model=wanted,
                 default_model_present=wanted in models)
    if wanted not in models:
        out["hint"] = f"run `ollama pull {wanted}` (or set AICP_OLLAMA_MODEL to one of the models)"
    return out


def check(host: str | Iterable[str] | None = None) -> dict[str, Any]:
    """``aicp doctor``'s ``ollama`` check: Ollama reachable at each host and its models.

    ``host``: one URL, a comma list or several (``--host`` repeated); unset: ``$OLLAMA_HOSTS``,
    else ``$OLLAMA_HOST`` (see :func:`parse_hosts`).
    Every host is probed at once (one second each at most). Shape: one host's check
    (``ok``, ``host``, ``models``, ``default_model``, ``default_model_present``, ``hint``)
    plus ``hosts``, the check of each host. With several hosts ``ok`` is true when one
    answers (a run takes the others out of rotation), ``default_model_present`` when one
    has the model, ``models`` lists the models of any host, and ``hint`` names each host
    that does not answer or lacks the model.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .checkup import result

    urls = parse_hosts(host)
    wanted = default_model()
    with ThreadPoolExecutor(max_workers=min(len(urls), 16), thread_name_prefix="aicp-doctor") as pool:
        hosts = list(pool.map(lambda url: _check_host(url, wanted), urls))
    if len(hosts) == 1:
        return {**hosts[0], "hosts": [dict(hosts[0])]}
    live = [h for h in hosts if h["ok"]]
    present = any(h.get("default_model_present") for h in live)
    out = result(bool(live), "", host=",".join(urls),
                 models=sorted({m for h in live for m in h["models"]}), default_model=wanted,
                 default_model_present=present, hosts=hosts)
    notes = [f"{h['host']} does not answer: start `ollama serve` there or drop it from --host / OLLAMA_HOSTS"
             for h in hosts if not h["ok"]]
    notes += [f"{h['host']} has no {wanted}: run `ollama pull {wanted}` there" for h in live
              if not h.get("default_model_present")]
    if notes:
        out["hint"] = "; ".join(notes) + (" (a run takes such hosts out of rotation)" if present else "")
    return out


def _doctor(host: str | Iterable[str] | None = None, **_: Any) -> dict[str, Any]:
    found = check(host)
    return {"checks": {"ollama": found}, "usable": found["ok"],
            "auto": bool(found["ok"] and found.get("default_model_present"))}


BACKEND = BackendInfo(
    name="ollama", kind="llm", adapter="ai_content_pipeline.backends.ollama_pool:create", settings=SETTINGS, doctor=_doctor, priority=20,
    summary="an Ollama server (official client, streaming /api/chat); --jobs N concurrent requests",
)
