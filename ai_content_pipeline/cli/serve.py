"""``aicp serve`` (the HTTP API, with one worker process beside it) and ``aicp worker`` (more GPU hosts).

FastAPI, uvicorn and SQLAlchemy are imported only when a command runs, so
``--help`` stays instant.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import click

from ..errors import UsageError
from ..status import ExitStatus
from .errors import message_prefix
from .options import EPILOG_STATUS, AicpCommand, FiniteFloatRange, PathValue, version_option

SERVE_EPILOG = f"""\b
Examples:
  aicp serve
  aicp serve --port 8080 --data-dir /srv/aicp
  AICP_API_TOKEN=s3cret aicp serve --host 0.0.0.0
  aicp serve --database-url postgresql://aicp:pw@db/aicp --no-worker
  curl -s localhost:8000/api/v1/generate -H 'Content-Type: application/json' \\
       -d '{{"template": "song-intro", "voice": true, "records": [{{"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody"}}]}}'
  curl -sN localhost:8000/api/v1/generate/ID/events

\b
API (OpenAPI at /docs, /redoc, /openapi.json):
  POST   /api/v1/generate                  submit a job (202)
  GET    /api/v1/generate                  list jobs (?status=&limit=&offset=)
  GET    /api/v1/generate/ID               status, progress, records, files
  GET    /api/v1/generate/ID/events        Server-Sent Events (--stream events)
  DELETE /api/v1/generate/ID               cancel
  GET    /api/v1/generate/ID/files/NAME    download an audio file
  GET    /api/v1/templates[/NAME], /api/v1/personas
  GET    /api/v1/health, /api/v1/health/detailed, /metrics

\b
Files (under --data-dir):
  aicp.db                   the SQLite database (without --database-url)
  jobs/ID/input.jsonl       a job's input records
  jobs/ID/out/              its chain outputs and ledgers, as aicp run-chain writes them
  jobs/ID/out/audio/        its audio files

{EPILOG_STATUS}
"""

WORKER_EPILOG = f"""\b
Examples:
  aicp worker --database-url postgresql://aicp:pw@db/aicp --data-dir /srv/aicp
  aicp worker --data-dir aicp-data --once

{EPILOG_STATUS}
"""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _self_command() -> list[str]:
    """How to run this program again: the console script (or ``python -m`` module) we run as."""
    if sys.argv and sys.argv[0] and os.path.isfile(sys.argv[0]):
        return [sys.executable, sys.argv[0]]
    return [sys.executable, "-m", "ai_content_pipeline.cli"]


def _watch_parent(parent: int) -> None:
    """Exit at once when the parent process (``aicp serve``) is gone, as after ``kill -9``."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(int(ExitStatus.INTERRUPTED))
            time.sleep(0.2)

    threading.Thread(target=watch, name="aicp-parent-watch", daemon=True).start()


def name_map(given: tuple[str, ...] | list[str], option: str, *, files: bool) -> dict[str, str]:
    """``--allow-model``/``--allow-voice`` values as ``{name: value}``: ``NAME=FILE`` maps to the
    file's absolute path (so the worker opens it wherever it runs from); a bare ``NAME`` (models
    only) is an Ollama model, or the bundled model or voice by its name.

    :raises UsageError: an empty name, a bare name where a file is needed, a file that does
        not exist (exit 2).
    """
    from ..service.requests import default_models, default_voices

    bundled = default_voices() if files else default_models()
    out: dict[str, str] = {}
    for item in given:
        name, sep, file = item.partition("=")
        name = name.strip()
        if not name or (sep and not file):
            raise UsageError(f"{option} takes NAME=FILE{'' if files else ' or NAME'}, not {item!r}")
        if not sep:
            if name in bundled:
                out[name] = bundled[name]
            elif files:
                raise UsageError(f"{option} {name}: give the voice file as {name}=FILE")
            else:
                out[name] = name
            continue
        path = os.path.abspath(os.path.expanduser(file))
        if not os.path.isfile(path):
            raise UsageError(f"{option} {name}={file}: no such file")
        out[name] = path
    return out


def _check_limits(max_records: int, max_body: int) -> None:
    if max_records < 1 or max_body < 1024:
        raise UsageError("--max-records must be at least 1 and --max-body at least 1024")


#: what ``aicp serve`` and ``aicp worker`` import (the ``[serve]`` extra)
SERVER_STACK = {"serve": ("fastapi", "uvicorn", "sqlalchemy", "alembic", "prometheus_client", "sse_starlette"),
                "worker": ("sqlalchemy", "alembic")}
INSTALL_HINT = "pip install 'ai_content_pipeline[serve]'"


def _need_server_stack(command: str) -> None:
    """Import the server stack of ``command`` (``serve`` or ``worker``).

    :raises UsageError: (exit 2, one line) a package of the ``[serve]`` extra is missing.
    """
    import importlib

    for module in SERVER_STACK[command]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"aicp {command} needs the server packages ({exc.name or module} is not "
                             f"installed): {INSTALL_HINT}") from None


def _plain_host(host: str) -> str:
    """``--host`` as the socket layer takes it: ``[::1]`` becomes ``::1``.

    :raises UsageError: an empty host.
    """
    plain = host.strip()
    if plain.startswith("[") and plain.endswith("]"):
        plain = plain[1:-1]
    if not plain:
        raise UsageError("--host is empty", hint="give an address such as 127.0.0.1, ::1 or 0.0.0.0")
    return plain


def _listen(host: str, port: int) -> Any:
    """A listening TCP socket on ``host``:``port`` (IPv4 or IPv6, by the address).

    :raises UsageError: (exit 2, one line) the address does not resolve or cannot be
        bound (a port in use, an address of no interface here, a port below 1024 without
        the right to bind it).
    """
    import socket

    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"cannot listen on {shown}: {getattr(exc, 'strerror', None) or exc}",
                         hint="give --host an address of this machine (127.0.0.1, ::1, 0.0.0.0)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = ("another program (or another aicp serve) listens there: pick another --port"
                if exc.errno == errno.EADDRINUSE else "give --host an address of this machine")
        raise UsageError(f"cannot listen on {shown}: {exc.strerror or exc}", hint=hint) from None
    sock.set_inheritable(False)
    return sock


def _prepare_data_dir(data_dir: str) -> None:
    """Create ``--data-dir`` (one line and exit 2 when it cannot be)."""
    from ..files import check_output_dir

    check_output_dir(data_dir, "--data-dir")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --data-dir {data_dir}: {exc.strerror or exc}") from None


@click.command("serve", cls=AicpCommand, epilog=SERVE_EPILOG)
@version_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (IPv4, or IPv6 such as ::1 or [::1]).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--data-dir", default="aicp-data", show_default=True, metavar="DIR", type=PathValue(file_okay=False),
              help="Jobs' files, and the SQLite database when no --database-url is given.")
@click.option("--database-url", envvar="AICP_DATABASE_URL", metavar="URL",
              help="PostgreSQL URL (postgresql://user:pass@host/db) [env: AICP_DATABASE_URL].")
@click.option("--token", envvar="AICP_API_TOKEN", metavar="TOKEN",
              help="Require `Authorization: Bearer TOKEN`, or the login cookie a browser gets from "
                   "POST /login, on every endpoint but /api/v1/health and /login [env: AICP_API_TOKEN].")
@click.option("--insecure", is_flag=True,
              help="Allow listening on a non-loopback address without a token.")
@click.option("--no-worker", is_flag=True, help="Serve the API only; `aicp worker` processes run the jobs.")
@click.option("--max-records", default=1000, show_default=True, type=int,
              help="Most records one job may carry (more: HTTP 413).")
@click.option("--max-body", default=10 * 1024 * 1024, show_default=True, type=int, metavar="BYTES",
              help="Largest request body (more: HTTP 413).")
@click.option("--stale-after", default=30.0, show_default=True, type=FiniteFloatRange(1),
              help="Seconds without a worker heartbeat after which its running job is requeued.")
@click.option("--min-free-mb", default=512, show_default=True, type=click.IntRange(0), metavar="MB",
              help="Refuse new jobs (HTTP 507), and claim none, while the disk of --data-dir has "
                   "less free space (MiB).")
@click.option("--max-streams", default=8, show_default=True, type=click.IntRange(1), metavar="N",
              help="Most event streams (SSE) one client address may hold open (more: HTTP 429).")
@click.option("--allow-model", "allow_models", multiple=True, metavar="NAME[=FILE]",
              help="A model clients may name: NAME=FILE.gguf, or an Ollama model NAME (repeat for more; "
                   "default: the bundled SmolLM2 GGUF).")
@click.option("--allow-voice", "allow_voices", multiple=True, metavar="NAME=FILE",
              help="A voice clients may name in a voice step: NAME=FILE (a Piper .onnx, or a "
                   "Chatterbox reference clip; repeat for more; default: the bundled Piper voice).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="uvicorn log level.")
def serve_command(host: str, port: int, data_dir: str, database_url: str | None, token: str | None,
                  insecure: bool, no_worker: bool, max_records: int, max_body: int, stale_after: float,
                  min_free_mb: int, max_streams: int, allow_models: tuple[str, ...],
                  allow_voices: tuple[str, ...], log_level: str) -> int:
    """Serve the generation API over HTTP, with one worker process beside it.

    Clients submit records (or one topic) and get scripts and audio: each job
    runs as a chain (script, and with voice: true a voice step) through the
    same runner, ledgers and events as aicp run-chain, one job at a time. Jobs,
    progress and events live in a database (SQLite in --data-dir, or
    PostgreSQL); a job interrupted by a crash resumes from its ledgers when a
    worker starts again, and a worker process that dies is started again
    (after 1 s, doubling up to 60 s). Stop with Ctrl-C: a running job stops at
    the next record and goes back to the queue.

    Needs the server packages: pip install 'ai_content_pipeline[serve]'.
    Start-up problems (the port in use, a database that cannot be opened or
    written) print one line and exit 2.
    """
    _need_server_stack("serve")
    import uvicorn

    from ..service.app import ServiceSettings, create_app
    from ..service.db import open_database
    from ..service.store import JobStore

    _check_limits(max_records, max_body)
    plain = _plain_host(host)
    if not _loopback(plain) and not token and not insecure:
        raise UsageError(f"refusing to listen on {host} without a token",
                         hint="set --token/AICP_API_TOKEN, or pass --insecure on a trusted network")
    _prepare_data_dir(data_dir)
    prefix = message_prefix("aicp serve")
    sock = _listen(plain, port)
    try:
        engine = open_database(database_url, data_dir)
    except BaseException:
        sock.close()
        raise
    worker = [*_self_command(), "worker", "--data-dir", data_dir, "--stale-after", str(stale_after),
              "--min-free-mb", str(min_free_mb)]
    env = None
    if database_url:
        env = {**os.environ, "AICP_DATABASE_URL": database_url}  # not on the command line: ps shows it
    settings = ServiceSettings(data_dir=data_dir, database_url=database_url, token=token or None,
                               max_records=max_records, max_body=max_body, worker=not no_worker,
                               worker_command=worker, worker_env=env, stale_after=stale_after,
                               min_free_bytes=min_free_mb * 1024 * 1024, max_streams=max_streams,
                               models=name_map(allow_models, "--allow-model", files=False) if allow_models else None,
                               voices=name_map(allow_voices, "--allow-voice", files=True) if allow_voices else None)
    app = create_app(settings, JobStore(engine))
    config = uvicorn.Config(app, host=plain, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                            log_config=_log_config(prefix))
    shown = f"http://[{plain}]:{port}" if ":" in plain else f"http://{plain}:{port}"

    class Server(uvicorn.Server):
        """uvicorn's server on the socket bound above (uvicorn says where it listens only
        when it binds the socket itself)."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", shown)

    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()
        engine.dispose()
    return 0


class PrefixFormatter(logging.Formatter):
    """uvicorn's log lines as aicp's: ``aicp serve: Uvicorn running on …``, ``aicp serve:
    warning: …`` (uvicorn's own format, ``INFO:     …``, carried no command prefix).

    Every line of a message of several lines, and of the traceback after it, carries the
    prefix and the level (``aicp serve: error:   File "…", line 3``), so ``grep`` finds a whole
    error; control characters in a line print as escapes (:func:`~ai_content_pipeline.report.printable`).
    """

    def __init__(self, prefix: str = "aicp serve") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        from ..report import printable

        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = record.getMessage().removesuffix("\n")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return "\n".join(f"{self.prefix}: {level}{printable(line)}" for line in text.split("\n"))


def _log_config(prefix: str) -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`PrefixFormatter` for its server and access
    lines, both on stderr (uvicorn writes access lines to stdout), and for aicp's own loggers
    (``aicp.serve``, ``aicp.worker``: a job's errors, a worker restarted)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("default", "access"):
        config["formatters"][name] = {"()": f"{__name__}.PrefixFormatter", "prefix": prefix}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout is for data, as everywhere
    config["loggers"]["aicp"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _log_to_stderr(prefix: str) -> None:
    """aicp's loggers (``aicp.worker``...) print on stderr, every line with ``prefix``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrefixFormatter(prefix))
    logger = logging.getLogger("aicp")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


@click.command("worker", cls=AicpCommand, epilog=WORKER_EPILOG)
@version_option
@click.option("--database-url", envvar="AICP_DATABASE_URL", metavar="URL",
              help="The service's database (PostgreSQL URL) [env: AICP_DATABASE_URL; default: SQLite in --data-dir].")
@click.option("--data-dir", default="aicp-data", show_default=True, metavar="DIR", type=PathValue(file_okay=False),
              help="Where this worker writes jobs' files (share it with `aicp serve` for downloads).")
@click.option("--once", is_flag=True, help="Run the jobs queued now, then exit.")
@click.option("--max-jobs", type=click.IntRange(1), metavar="N", help="Exit after N jobs.")
@click.option("--poll", default=0.5, show_default=True, type=FiniteFloatRange(0.05),
              help="Seconds between looks at an empty queue.")
@click.option("--heartbeat", default=2.0, show_default=True, type=FiniteFloatRange(0.1),
              help="Seconds between heartbeats.")
@click.option("--stale-after", default=30.0, show_default=True, type=FiniteFloatRange(1),
              help="Seconds without a heartbeat after which another worker's job is requeued.")
@click.option("--lock-wait", default=10.0, show_default=True, type=FiniteFloatRange(0),
              help="Seconds to wait for a job's folder that another worker process still holds, "
                   "before handing the job back to the queue.")
@click.option("--min-free-mb", default=512, show_default=True, type=click.IntRange(0), metavar="MB",
              help="Claim no job while the disk of --data-dir has less free space (MiB).")
@click.option("--parent-pid", type=int, hidden=True)  # set by `aicp serve` for its worker process
def worker_command(database_url: str | None, data_dir: str, once: bool, max_jobs: int | None, poll: float,
                   heartbeat: float, stale_after: float, lock_wait: float, min_free_mb: int,
                   parent_pid: int | None) -> int:
    """Run queued jobs from the service's database, one at a time.

    Start one per GPU host next to `aicp serve --no-worker` (or beside its
    own worker). Workers claim jobs with row locks, so two never run
    the same job; a worker that stops sending heartbeats has its running job
    requeued, and the job resumes from its ledgers. A worker that was paused
    past --stale-after (SIGSTOP, a suspended VM) takes its job back if it is
    still queued, else leaves it to the worker that claimed it; one that finds
    a job's folder held by another worker process waits --lock-wait seconds,
    then hands the job back. While the disk of --data-dir has less than
    --min-free-mb free it claims nothing and waits; database errors are
    retried. SIGTERM or Ctrl-C stops the running job at the next record and
    puts it back in the queue.

    Needs the server packages: pip install 'ai_content_pipeline[serve]'.
    """
    _need_server_stack("worker")
    from ..service.db import open_database
    from ..service.store import JobStore
    from ..service.worker import Worker

    if parent_pid:
        _watch_parent(parent_pid)
    if parent_pid:  # the worker of `aicp serve` speaks as aicp serve (one command, one prefix)
        from .errors import SEEN

        SEEN.prog = "aicp serve"
    _log_to_stderr(message_prefix("aicp worker"))
    _prepare_data_dir(data_dir)
    engine = open_database(database_url, data_dir)
    worker = Worker(JobStore(engine), data_dir, poll_seconds=poll, heartbeat_seconds=heartbeat,
                    stale_after=stale_after, lock_wait=lock_wait, min_free_bytes=min_free_mb * 1024 * 1024)

    def _stop(*_: object) -> None:
        worker.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    try:
        worker.run(max_jobs=max_jobs, idle_exit=once)
    finally:
        engine.dispose()
    return 0
