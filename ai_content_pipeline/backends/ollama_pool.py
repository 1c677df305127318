"""Several Ollama hosts as one LLM backend: requests spread over the hosts, failover.

``--host`` repeated (or a comma list, or ``OLLAMA_HOSTS``) names the hosts. Each host is an
:class:`~ai_content_pipeline.backends.ollama.OllamaBackend` of its own; the pool

- sends each request to the live host with the fewest requests in flight (ties: the next
  in turn), never more than ``--jobs`` at once to one host; the stage keeps ``--jobs``
  times the number of hosts in flight (:meth:`OllamaPool.max_in_flight`), and writes
  records in input order as always;
- takes a host out of rotation, with a ``message`` event naming it, when it refuses
  connections, lacks the model, stops answering (a failed request after which
  ``GET /api/version`` gets no answer within 2 s), or fails ``FAIL_LIMIT`` requests in a
  row; a host out for :data:`REJOIN_SECONDS` is tried again (by the next request) and comes
  back, with a ``message`` event, when it answers and serves the model (a request that
  failed on it before may use it again);
- sends a request that failed on a host (taken out or not) to another live host it has
  not tried, so it is not a record error; only a request that failed on every live host
  is (a transient error, which ``--retries`` repeats), and so is one that had already
  streamed text to a long-form chunk file;
- fails with :class:`~ai_content_pipeline.errors.BackendUnavailable` (exit 4) only when
  every host is out, naming each and why;
- unloads the model on every host at the end (``keep_alive: 0`` and the ``/api/ps``
  wait, hosts in parallel), also on a host taken out that still answers.

Each completion names the host that served it (``Completion.host`` → ``script.host``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import AicpError, BackendUnavailable, RecordError, TransientBackendError
from .base import ChatChunk, Completion, GenerationParams, LLMBackend, complete
from .ollama import OllamaBackend, default_model, parse_hosts, probe

#: Failed requests in a row after which a host that still answers is taken out.
FAIL_LIMIT = 3
#: Seconds a host stays out of rotation before it is tried again.
REJOIN_SECONDS = 30.0
#: Seconds the liveness probe (``GET /api/version``) of a host that just failed may take.
PROBE_SECONDS = 2.0


class _Host:
    def __init__(self, url: str, backend: OllamaBackend) -> None:
        self.url = url
        self.backend = backend
        self.in_flight = 0
        self.failures = 0
        self.served = 0
        self.down: str | None = None
        self.error: AicpError | None = None
        self.down_at = 0.0  # time.monotonic() when taken out (or last tried again)
        self.probing = False  # being tried again by one thread
        self.generation = 0  # times it came back: a request that failed on it may try it again


class OllamaPool(LLMBackend):
    """One model served by several Ollama hosts (see the module docstring).

    :param model: the Ollama model (every host must have it).
    :param hosts: two or more server URLs.
    :param keep_alive/timeout: as :class:`~ai_content_pipeline.backends.ollama.OllamaBackend`.
    :param notice: ``notice(text, level)`` for ``message`` events (a host taken out).
    """

    name = "ollama"
    supports_concurrency = True
    supports_json_schema = True

    def __init__(self, model: str | None = None, *, hosts: list[str], keep_alive: str | None = None,
                 timeout: float = 300.0, notice: Callable[..., None] | None = None, **_: Any) -> None:
        if not hosts:
            raise ValueError("OllamaPool needs at least one host")
        self.model = model or default_model()
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.device = "ollama"
        self.host = ",".join(hosts)
        self.hosts = [_Host(url, OllamaBackend(self.model, host=url, keep_alive=keep_alive, timeout=timeout))
                      for url in hosts]
        self.per_host = 1
        self.notice = notice
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()
        self._turn = 0

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "device": self.device,
                "hosts": [h.url for h in self.hosts]}

    def max_in_flight(self, jobs: int) -> int:
        """Requests the stage may keep in flight: ``jobs`` per host (and the pool's per-host cap)."""
        self.per_host = max(1, int(jobs))
        return self.per_host * len(self.hosts)

    # -- rotation -------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.notice is not None:
            try:
                self.notice(text, "warning")
            except TypeError:
                self.notice(text)

    def _take_out(self, host: _Host, reason: str, error: AicpError | None = None) -> None:
        with self._cond:
            if host.down is not None:
                return
            host.down, host.error, host.down_at = reason, error, time.monotonic()
            left = sum(1 for h in self.hosts if h.down is None)
            self._cond.notify_all()
        tail = f"its requests go to the other {left} host(s)" if left else "no host is left"
        self._say(f"Ollama host {host.url} taken out of rotation: {reason}; {tail}")

    def _all_down(self) -> BackendUnavailable:
        why = "; ".join(f"{h.url} ({h.down})" for h in self.hosts)
        first = next((h.error for h in self.hosts if h.error is not None), None)
        return BackendUnavailable(f"every Ollama host is down: {why}",
                                  hint=(first.hint if first is not None and first.hint else
                                        "is `ollama serve` running on the hosts? Check --host / OLLAMA_HOSTS"))

    def _rejoin(self) -> None:
        """Try the hosts out of rotation for :data:`REJOIN_SECONDS` again: one whose
        ``GET /api/tags`` answers with the model comes back (else it waits as long again)."""
        now = time.monotonic()
        with self._cond:
            due = [h for h in self.hosts if h.down is not None and not h.probing
                   and now - h.down_at >= REJOIN_SECONDS]
            for host in due:
                host.probing = True
        for host in due:
            back = False
            try:
                models = probe(host.url, timeout=PROBE_SECONDS)
                if models is not None and self.model in models:
                    host.backend.load()
                    back = True
            except AicpError:
                pass
            with self._cond:
                host.probing = False
                if back:
                    host.down, host.error, host.failures = None, None, 0
                    host.generation += 1
                else:
                    host.down_at = time.monotonic()
                self._cond.notify_all()
            if back:
                self._say(f"Ollama host {host.url} back in rotation: it answers again")

    def _acquire(self, avoid: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()) -> _Host | None:
        """A live host with a free slot (waits for one), not one of ``avoid``; ``None`` when
        every live host is in ``avoid`` (``(url, generation)``: a host that came back since is
        not avoided). Hosts due to be tried again are tried first.

        :raises BackendUnavailable: every host is down (none due to be tried again answers).
        """
        self._rejoin()
        with self._cond:
            while True:
                live = [h for h in self.hosts if h.down is None]
                if not live:
                    if any(h.probing for h in self.hosts):  # another request is trying one again
                        self._cond.wait(0.5)
                        continue
                    raise self._all_down()
                live = [h for h in live if (h.url, h.generation) not in avoid]
                if not live:
                    return None
                free = [h for h in live if h.in_flight < self.per_host]
                if free:
                    n = len(self.hosts)
                    host = min(free, key=lambda h: (h.in_flight, (self.hosts.index(h) - self._turn) % n))
                    self._turn = (self.hosts.index(host) + 1) % n
                    host.in_flight += 1
                    return host
                self._cond.wait(0.5)

    def _release(self, host: _Host) -> None:
        with self._cond:
            host.in_flight -= 1
            self._cond.notify_all()

    def _alive(self, host: _Host) -> bool:
        import httpx

        try:
            return httpx.get(f"{host.url}/api/version", timeout=PROBE_SECONDS).status_code < 500
        except Exception:  # noqa: BLE001 - any failure: not answering
            return False

    def _failed(self, host: _Host, exc: RecordError) -> None:
        """Book ``exc``, a transient failure on ``host``: take the host out when it no longer
        answers or has failed :data:`FAIL_LIMIT` requests in a row."""
        if not self._alive(host):
            self._take_out(host, f"stopped answering ({exc.message})", exc)
            return
        with self._cond:
            host.failures += 1
            failures = host.failures
        if failures >= FAIL_LIMIT:
            self._take_out(host, f"failed {failures} requests in a row (last: {exc.message})", exc)

    # -- LLMBackend ------------------------------------------------------------------------
    def load(self) -> None:
        """Ask every host for the model (in parallel); a host that cannot serve it is taken out.

        :raises BackendUnavailable: no host can serve the model.
        """
        if self.loaded:
            return

        def one(host: _Host) -> None:
            try:
                host.backend.load()
            except AicpError as exc:
                self._take_out(host, exc.message, exc)

        with self._load_lock:
            if self.loaded:
                return
            with ThreadPoolExecutor(max_workers=len(self.hosts), thread_name_prefix="aicp-host") as pool:
                list(pool.map(one, [h for h in self.hosts if h.down is None]))
            if all(h.down is not None for h in self.hosts):
                raise self._all_down()
            self.loaded = True

    def complete_reply(self, messages: list[dict[str, str]], params: GenerationParams, *,
                       json_schema: dict[str, Any] | None = None, on_text: Any = None) -> Completion:
        """A whole reply from one live host (see :func:`~ai_content_pipeline.backends.base.complete`,
        which calls this); a request whose host is taken out is sent to another one.

        :raises BackendUnavailable: every host is down. :raises RecordError: the record's own failure.
        """
        self.load()
        tried: set[tuple[str, int]] = set()
        last: RecordError | None = None
        while True:
            host = self._acquire(tried)
            if host is None:  # it failed on every live host: the record's own failure
                assert last is not None
                raise last
            streamed = [False]

            def forward(text: str, _streamed: list[bool] = streamed) -> None:
                _streamed[0] = True
                on_text(text)

            try:
                result = complete(host.backend, messages, params, json_schema=json_schema,
                                  on_text=forward if on_text is not None else None)
            except BackendUnavailable as exc:
                self._take_out(host, exc.message, exc)
                if streamed[0]:
                    raise TransientBackendError(f"Ollama host {host.url} went away mid-reply",
                                                stage="script") from exc
                continue
            except TransientBackendError as exc:
                self._failed(host, exc)
                if streamed[0]:
                    raise
                tried.add((host.url, host.generation))
                last = exc
                continue
            finally:
                self._release(host)
            with self._cond:
                host.failures = 0
                host.served += 1
            result.host = host.url
            return result

    def chat(self, messages: list[dict[str, str]], params: GenerationParams, *,
             json_schema: dict[str, Any] | None = None) -> Iterator[ChatChunk]:
        """Stream a reply from one live host; sent to another host only while nothing was streamed."""
        self.load()
        tried: set[tuple[str, int]] = set()
        last: RecordError | None = None
        while True:
            host = self._acquire(tried)
            if host is None:
                assert last is not None
                raise last
            streamed = False
            try:
                for chunk in host.backend.chat(messages, params, json_schema=json_schema):
                    streamed = streamed or bool(chunk.text)
                    if chunk.done:
                        chunk.host = host.url
                    yield chunk
                with self._cond:
                    host.failures = 0
                return
            except BackendUnavailable as exc:
                self._take_out(host, exc.message, exc)
                if streamed:
                    raise TransientBackendError(f"Ollama host {host.url} went away mid-reply",
                                                stage="script") from exc
            except TransientBackendError as exc:
                self._failed(host, exc)
                if streamed:
                    raise
                tried.add((host.url, host.generation))
                last = exc
            finally:
                self._release(host)

    def abort(self) -> None:
        """Cancel the requests in flight on every host (see :meth:`OllamaBackend.abort`)."""
        self.loaded = False
        for host in self.hosts:
            host.backend.abort()

    def unload(self) -> None:
        """Unload the model on every host at once (``keep_alive: 0``, ``/api/ps`` wait): the live
        ones and those taken out that still answer ``GET /api/version`` (one that kept failing
        may hold the model); the others only get their connections closed. A host that never
        loaded the model (taken out at load) is not asked again: nothing to unload there."""
        self.loaded = False

        def one(host: _Host) -> None:
            if host.down is None or not host.backend.loaded or self._alive(host):
                host.backend.unload()
            else:
                host.backend.abort()

        with ThreadPoolExecutor(max_workers=len(self.hosts), thread_name_prefix="aicp-unload") as pool:
            list(pool.map(one, self.hosts))




def create(model: str | None = None, *, host: str | list[str] | None = None,
           notice: Callable[..., None] | None = None, **options: Any) -> LLMBackend:
    """The Ollama backend for ``host`` (one URL, a comma list or a list; unset: ``OLLAMA_HOSTS``,
    then ``OLLAMA_HOST``): an :class:`~.ollama.OllamaBackend`, or an
    :class:`OllamaPool` for several hosts (``BackendInfo.adapter`` of ``ollama``).

    :raises UsageError: a host that is not a URL.
    """
    hosts = parse_hosts(host)
    if len(hosts) > 1:
        return OllamaPool(model, hosts=hosts, notice=notice, **options)
    return OllamaBackend(model, host=hosts[0], **options)


__all__ = ["FAIL_LIMIT", "REJOIN_SECONDS", "OllamaPool", "create", "parse_hosts"]
