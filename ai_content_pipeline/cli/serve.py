"""``aicp serve`` (the HTTP API, with one worker process beside it) and ``aicp worker`` (more GPU hosts).

FastAPI, uvicorn and SQLAlchemy are imported only when a command runs, so
``--help`` stays instant.
"""

from __future__ import annotations

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
from .options import EPILOG_STATUS, AicpCommand, version_option

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


@click.command("serve", cls=AicpCommand, epilog=SERVE_EPILOG)
@version_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--data-dir", default="aicp-data", show_default=True, metavar="DIR",
              help="Jobs' files, and the SQLite database when no --database-url is given.")
@click.option("--database-url", envvar="DATABASE_URL", metavar="URL",
              help="PostgreSQL URL (postgresql://user:pass@host/db) [env: DATABASE_URL].")
@click.option("--token", envvar="AICP_API_TOKEN", metavar="TOKEN",
              help="Require `Authorization: Bearer TOKEN` on every endpoint but /api/v1/health "
                   "[env: AICP_API_TOKEN].")
@click.option("--insecure", is_flag=True,
              help="Allow listening on a non-loopback address without a token.")
@click.option("--no-worker", is_flag=True, help="Serve the API only; `aicp worker` processes run the jobs.")
@click.option("--max-records", default=1000, show_default=True, type=int,
              help="Most records one job may carry (more: HTTP 413).")
@click.option("--max-body", default=10 * 1024 * 1024, show_default=True, type=int, metavar="BYTES",
              help="Largest request body (more: HTTP 413).")
@click.option("--stale-after", default=30.0, show_default=True, type=click.FloatRange(1),
              help="Seconds without a worker heartbeat after which its running job is requeued.")
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
                  max_streams: int, allow_models: tuple[str, ...], allow_voices: tuple[str, ...],
                  log_level: str) -> int:
    """Serve the generation API over HTTP, with one worker process beside it.

    Clients submit records (or one topic) and get scripts and audio: each job
    runs as a chain (script, and with voice: true a voice step) through the
    same runner, ledgers and events as aicp run-chain, one job at a time. Jobs,
    progress and events live in a database (SQLite in --data-dir, or
    PostgreSQL); a job interrupted by a crash resumes from its ledgers when a
    worker starts again. Stop with Ctrl-C: a running job stops at the next
    record and goes back to the queue.
    """
    import uvicorn

    from ..service.app import ServiceSettings, create_app

    _check_limits(max_records, max_body)
    if not _loopback(host) and not token and not insecure:
        raise UsageError(f"refusing to listen on {host} without a token",
                         hint="set --token/AICP_API_TOKEN, or pass --insecure on a trusted network")
    worker = [*_self_command(), "worker", "--data-dir", data_dir, "--stale-after", str(stale_after)]
    if database_url:
        worker += ["--database-url", database_url]
    settings = ServiceSettings(data_dir=data_dir, database_url=database_url, token=token or None,
                               max_records=max_records, max_body=max_body, worker=not no_worker,
                               worker_command=worker, stale_after=stale_after, max_streams=max_streams,
                               models=name_map(allow_models, "--allow-model", files=False) if allow_models else None,
                               voices=name_map(allow_voices, "--allow-voice", files=True) if allow_voices else None)
    os.makedirs(data_dir, exist_ok=True)
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                log_config=_log_config(message_prefix("aicp serve")))
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
    lines, both on stderr (uvicorn writes access lines to stdout)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("default", "access"):
        config["formatters"][name] = {"()": f"{__name__}.PrefixFormatter", "prefix": prefix}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout is for data, as everywhere
    return config


@click.command("worker", cls=AicpCommand, epilog=WORKER_EPILOG)
@version_option
@click.option("--database-url", envvar="DATABASE_URL", metavar="URL",
              help="The service's database (PostgreSQL URL) [env: DATABASE_URL; default: SQLite in --data-dir].")
@click.option("--data-dir", default="aicp-data", show_default=True, metavar="DIR",
              help="Where this worker writes jobs' files (share it with `aicp serve` for downloads).")
@click.option("--once", is_flag=True, help="Run the jobs queued now, then exit.")
@click.option("--max-jobs", type=click.IntRange(1), metavar="N", help="Exit after N jobs.")
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between looks at an empty queue.")
@click.option("--heartbeat", default=2.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between heartbeats.")
@click.option("--stale-after", default=30.0, show_default=True, type=click.FloatRange(1),
              help="Seconds without a heartbeat after which another worker's job is requeued.")
@click.option("--parent-pid", type=int, hidden=True)  # set by `aicp serve` for its worker process
def worker_command(database_url: str | None, data_dir: str, once: bool, max_jobs: int | None, poll: float,
                   heartbeat: float, stale_after: float, parent_pid: int | None) -> int:
    """Run queued jobs from the service's database, one at a time.

    Start one per GPU host next to `aicp serve --no-worker` (or beside its
    own worker). Workers claim jobs with row locks, so two never run
    the same job; a worker that stops sending heartbeats has its running job
    requeued, and the job resumes from its ledgers. SIGTERM or Ctrl-C stops
    the running job at the next record and puts it back in the queue.
    """
    from ..service.db import database_url as make_url
    from ..service.db import make_engine, migrate
    from ..service.store import JobStore
    from ..service.worker import Worker

    if parent_pid:
        _watch_parent(parent_pid)
    engine = make_engine(make_url(database_url, data_dir))
    migrate(engine)
    worker = Worker(JobStore(engine), data_dir, poll_seconds=poll, heartbeat_seconds=heartbeat,
                    stale_after=stale_after)

    def _stop(*_: object) -> None:
        worker.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    worker.run(max_jobs=max_jobs, idle_exit=once)
    return 0
