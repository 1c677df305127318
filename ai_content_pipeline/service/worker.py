"""The worker: claims queued jobs and runs each as a chain, one at a time.

A job runs through the same :func:`~ai_content_pipeline.chain.runner.run_chain` as
``aicp run-chain``, always with ``resume=True`` over its own folder
``DATA_DIR/jobs/ID/`` (``input.jsonl``, ``out/NN-type.jsonl``, ``out/NN-type.ledger.jsonl``,
``out/audio/``): a job that was interrupted (kill -9, a lost worker) continues from its
ledgers and every record is produced exactly once. The events go to the database
(:class:`JobEmitter`) as the exact JSON that ``--stream`` prints.

A claim carries a fencing token (:class:`Claim`): a worker paused past another worker's
``--stale-after`` finds, when it wakes, that its job was requeued. Its events and outcome
are then refused; it takes the job back if it is queued again, else it stops at the next
record and leaves the job's folder (and the records its ledgers hold) to the newer claim.
A worker that claims a job whose folder another worker process still holds waits for it
up to ``lock_wait`` seconds, then hands the job back (it is not failed).

Cancellation is asked at every record and long-form chunk boundary; a worker that is
told to stop (SIGTERM, Ctrl-C of ``aicp serve``) stops its job at the next boundary and
puts it back in the queue. A worker never exits on a full disk or a lost database: while
the data folder's disk has less than ``min_free_bytes`` free it claims nothing, a job that
ran out of space goes back to the queue, and errors are retried with back-off.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..events import StreamEmitter, event_json
from ..faults import free_bytes
from ..jsonl import dumps, loads
from .db import Job
from .store import JobStore

log = logging.getLogger("aicp.worker")

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")


#: default floor of free space on the data folder's disk (bytes) below which no job is
#: claimed and ``aicp serve`` refuses new jobs (507)
DEFAULT_MIN_FREE = 512 * 1024 * 1024


class Claim:
    """This worker's hold on one job: the job id and the fencing token of the claim.

    :ivar token: the claim's token (it changes when the job is taken back after a requeue).
    :ivar lost: another claim (or a final status) superseded this one: stop, write nothing.
    """

    def __init__(self, store: JobStore, worker_id: str, job_id: str, token: int) -> None:
        self.store, self.worker_id, self.job_id, self.token = store, worker_id, job_id, token
        self.lost = False
        self._lock = threading.Lock()

    def check(self) -> bool:
        """Ask the database whether the claim still holds (taking a requeued job back, see
        :meth:`JobStore.check_claim`); sets :attr:`lost`. Returns whether a cancel was asked.

        A database error is logged and answers "no cancel": the run goes on, and the claim is
        checked again at the next record.
        """
        with self._lock:
            if self.lost:
                return False
            try:
                token, cancel = self.store.check_claim(self.job_id, self.worker_id, self.token)
            except Exception as exc:  # noqa: BLE001 - asked again at the next boundary
                log.warning("job %s: cannot check its claim: %s", self.job_id, _describe(exc))
                return False
            if token is None:
                self.lost = True
                log.warning("job %s was requeued and claimed by another worker while this one was "
                            "paused: stopping it here; its finished records stay in its ledgers", self.job_id)
            elif token != self.token:
                log.warning("job %s was requeued while this worker was paused: taken back", self.job_id)
                self.token = token
            return cancel

    def add_event(self, data: str, progress: dict[str, Any] | None, totals: dict[str, Any] | None) -> int:
        """Store one event under this claim (taking the job back first if it was requeued and
        is queued still); 0 when the claim is lost or the database refused it twice (the
        run goes on: its ledgers, not its events, hold the work)."""
        for attempt in range(2):
            if self.lost:
                return 0
            try:
                seq = self.store.add_event(self.job_id, data, progress, totals, worker_id=self.worker_id,
                                           token=self.token)
            except Exception as exc:  # noqa: BLE001 - a dropped connection (this worker was paused)
                if attempt:
                    log.warning("job %s: an event was not stored: %s", self.job_id, _describe(exc))
                    return 0
                continue
            if seq:
                return seq
            self.check()
        return 0

    def heartbeat(self) -> None:
        """Touch the job; a refused heartbeat checks the claim at once (see :meth:`check`)."""
        if not self.lost and not self.store.heartbeat(self.worker_id, self.job_id, self.token):
            self.check()


class JobEmitter(StreamEmitter):
    """Stores every event of a job in the database and keeps the job's progress current.

    The stored text is what :class:`~ai_content_pipeline.events.StreamEmitter` would
    print for the event (same fields, same ``schema_version``). Tokens come from
    ``record_complete`` (script), audio seconds from ``record_complete`` (voice), cost
    from ``step_complete``; they add to what earlier attempts of the job spent.

    :param claim: the worker's claim on the job: events are stored only while it holds
        (default: a claim of whoever holds the job now, for tests and tools).
    """

    def __init__(self, store: JobStore, job: Job, claim: Claim | None = None) -> None:
        super().__init__(enabled=True)
        self.store = store
        self.job_id = job.id
        self.claim = claim
        self.state: dict[str, Any] = dict(job.progress or {})
        self.totals: dict[str, Any] = {"prompt_tokens": job.prompt_tokens,
                                       "completion_tokens": job.completion_tokens,
                                       "audio_seconds": job.audio_seconds, "cost": job.cost}
        self.steps_seen = 0

    def emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            payload = self.envelope(event, fields)
            changed = self._track(event, payload)
            data = event_json(payload).decode()
            progress, totals = (dict(self.state), dict(self.totals)) if changed else (None, None)
            if self.claim is not None:
                self.claim.add_event(data, progress, totals)
            else:
                self.store.add_event(self.job_id, data, progress, totals)

    def _track(self, event: str, f: dict[str, Any]) -> bool:
        p = self.state
        if event == "pipeline_start":
            p.update(total_steps=f.get("total_steps"), step=None, step_type=None)
        elif event == "step_start":
            self.steps_seen += 1
            p.update(step=f.get("step"), step_type=f.get("type"), step_percent=0.0, completed=0, failed=0,
                     skipped=0, record=None, chunk=None, chunks=None, section=None)
        elif event == "record_start":
            p.update(record=f.get("id"), chunk=None, chunks=f.get("chunks"), section=None)
        elif event == "chunk_start":
            p.update(chunk=f.get("chunk"), section=f.get("section"))
        elif event == "progress":
            p.update(total=f.get("total"), completed=f.get("completed"), failed=f.get("failed"),
                     skipped=f.get("skipped"), step_percent=f.get("percent"))
        elif event == "record_complete":
            tokens = f.get("tokens")
            if isinstance(tokens, dict):
                self.totals["prompt_tokens"] += int(tokens.get("prompt") or 0)
                self.totals["completion_tokens"] += int(tokens.get("completion") or 0)
            if f.get("audio_seconds"):
                self.totals["audio_seconds"] = round(self.totals["audio_seconds"] + float(f["audio_seconds"]), 3)
            return True
        elif event == "step_complete":
            p["step_percent"] = 100.0
            self.totals["cost"] = round(self.totals["cost"] + float(f.get("cost") or 0.0), 6)
        else:
            return False
        steps = p.get("total_steps") or 1
        done_steps = max(0, self.steps_seen - 1)
        p["percent"] = round(min(100.0, 100.0 * (done_steps + (p.get("step_percent") or 0.0) / 100.0) / steps), 1)
        return True


def _read_records(path: Path) -> list[dict[str, Any]]:
    return [loads(line) for line in path.read_bytes().splitlines() if line.strip()]  # numbers as written


class Worker:
    """Runs queued jobs from ``store``, one at a time, in ``data_dir/jobs/``.

    :param worker_id: unique name (default ``host:pid:random``).
    :param poll_seconds: wait between looks at an empty queue.
    :param heartbeat_seconds: how often the worker row (and its job) is touched.
    :param stale_after: seconds without a heartbeat after which another worker requeues a job.
    :param backend_factory: builds each step's backend (tests pass doubles).
    :param lock_wait: seconds to wait for a job folder another worker process still holds,
        before handing the job back to the queue.
    :param min_free_bytes: claim no job while the data folder's disk has less free (bytes).
    """

    #: longest wait (seconds) between tries after an error, and between looks at a full disk
    MAX_BACKOFF = 30.0

    def __init__(self, store: JobStore, data_dir: str | Path, *, worker_id: str | None = None,
                 poll_seconds: float = 0.5, heartbeat_seconds: float = 2.0, stale_after: float = 30.0,
                 backend_factory: Callable[..., Any] | None = None, lock_wait: float = 10.0,
                 min_free_bytes: int = DEFAULT_MIN_FREE) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.host = socket.gethostname()
        self.id = worker_id or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self.factory = backend_factory
        self.lock_wait = lock_wait
        self.min_free_bytes = min_free_bytes
        self.stop = threading.Event()
        self.claim: Claim | None = None
        self.jobs_run = 0
        self._registered = False
        self._last_sweep = 0.0
        self._skip: dict[str, float] = {}  # job id -> monotonic time until which it is left alone
        self._low_disk = False

    # -- lifecycle -------------------------------------------------------------------------
    def register(self) -> None:
        """Write this worker's row and requeue jobs of dead workers (once)."""
        if not self._registered:
            self.store.register_worker(self.id, self.host, os.getpid())
            self._registered = True
        self.sweep(force=True)

    def sweep(self, force: bool = False) -> list[str]:
        """Requeue orphaned jobs (at most once per heartbeat interval unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_sweep < self.heartbeat_seconds:
            return []
        self._last_sweep = now
        requeued = self.store.requeue_orphans(self.stale_after, self.host)
        for job_id in requeued:
            log.warning("requeued job %s: its worker stopped", job_id)
        return requeued

    def _beat(self) -> None:
        while not self.stop.wait(self.heartbeat_seconds):
            try:
                claim = self.claim
                if claim is not None:
                    claim.heartbeat()
                else:
                    self.store.heartbeat(self.id, None)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("heartbeat failed: %s", _describe(exc))

    def run(self, max_jobs: int | None = None, idle_exit: bool = False) -> int:
        """Claim and run jobs until :attr:`stop` is set (or ``max_jobs`` ran, or the queue is
        empty with ``idle_exit``); returns the number of jobs run.

        An error of the database or the disk does not end the loop: it is logged and the
        worker tries again after a wait that doubles up to :attr:`MAX_BACKOFF` seconds.
        """
        delay = self.poll_seconds
        while not self.stop.is_set():
            try:
                self.register()
                break
            except Exception as exc:  # noqa: BLE001 - the database may come back
                delay = self._failed("cannot register this worker", exc, delay)
        beat = threading.Thread(target=self._beat, name="aicp-heartbeat", daemon=True)
        beat.start()
        delay = self.poll_seconds
        try:
            while not self.stop.is_set() and (max_jobs is None or self.jobs_run < max_jobs):
                try:
                    ran = self.run_once()
                except Exception as exc:  # noqa: BLE001 - the worker goes on
                    delay = self._failed("cannot run jobs now", exc, delay)
                    continue
                delay = self.poll_seconds
                if not ran:
                    if idle_exit and not self._low_disk:
                        break
                    self.stop.wait(self.poll_seconds)
        finally:
            self.stop.set()
            try:
                self.store.stop_worker(self.id)
            except Exception as exc:  # noqa: BLE001 - the row goes stale and is seen as stopped
                log.warning("cannot mark this worker stopped: %s", _describe(exc))
        return self.jobs_run

    def _failed(self, what: str, exc: Exception, delay: float) -> float:
        """Log an error, wait ``delay`` seconds (less if stopped); the next delay."""
        log.error("%s: %s; trying again in %.3g s", what, _describe(exc), delay)
        self.stop.wait(delay)
        return min(self.MAX_BACKOFF, max(delay * 2, 0.5))

    def disk_ok(self) -> bool:
        """Whether the data folder's disk has at least :attr:`min_free_bytes` free (logged
        once when it falls below, and once when it is back)."""
        free = free_bytes(self.data_dir)
        low = free is not None and free < self.min_free_bytes
        if low != self._low_disk:
            from ..faults import human_bytes

            if low:
                log.warning("the data folder's disk has %s free, below the floor of %s: claiming no "
                            "job until there is more", human_bytes(free or 0), human_bytes(self.min_free_bytes))
            else:
                log.warning("the data folder's disk has room again: claiming jobs")
            self._low_disk = low
        return not low

    def run_once(self) -> bool:
        """Claim one queued job and run it; ``False`` when the queue was empty (or the disk
        is below the floor)."""
        if not self._registered:
            self.register()
        self.sweep()
        if not self.disk_ok():
            self.stop.wait(min(self.MAX_BACKOFF, max(self.poll_seconds, 2.0)))
            return False
        now = time.monotonic()
        self._skip = {k: t for k, t in self._skip.items() if t > now}
        job = self.store.claim(self.id, exclude=self._skip)
        if job is None:
            return False
        self.claim = claim = Claim(self.store, self.id, job.id, job.claim_token)
        try:
            self.execute(job)
        except Exception:
            if not claim.lost:  # an error of the database or the disk: the job goes back to the queue
                try:
                    self.store.release(job.id, self.id, claim.token)
                except Exception:  # noqa: BLE001, S110 - the sweep requeues it later
                    pass
            raise
        finally:
            self.claim = None
            self.jobs_run += 1
        return True

    # -- one job ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """``data_dir/jobs/ID``: the job's input, outputs, ledgers and audio."""
        return self.data_dir / "jobs" / job_id

    def _lock_folder(self, job: Job, claim: Claim) -> Any:
        """The job folder's lock (a :class:`~ai_content_pipeline.files.FolderLock` on its
        ``out`` folder, the one the chain runner takes), waiting up to :attr:`lock_wait`
        seconds while another worker process holds it; ``None`` when it stayed busy (or the
        claim was lost, or the worker is stopping) and the job was handed back."""
        from ..files import FolderBusy, FolderLock

        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                return FolderLock(self.job_dir(job.id) / "out", "job folder").acquire()
            except FolderBusy as exc:
                busy = exc
            claim.check()
            if claim.lost:
                return None
            if time.monotonic() >= deadline or self.stop.is_set():
                break
            self.stop.wait(min(0.2, self.lock_wait))
        log.warning("job %s: %s; handing it back to the queue", job.id, busy.message)
        self.store.release(job.id, self.id, claim.token, started=False)
        self._skip[job.id] = time.monotonic() + max(self.stale_after, self.lock_wait)
        return None

    def execute(self, job: Job) -> None:
        """Run ``job``'s chain (resuming from its ledgers) and store the outcome."""
        from ..files import write_atomic

        claim = self.claim if self.claim is not None and self.claim.job_id == job.id else \
            Claim(self.store, self.id, job.id, job.claim_token)
        lock = self._lock_folder(job, claim)
        if lock is None:
            return
        try:
            source = self.job_dir(job.id) / "input.jsonl"
            if not source.is_file():  # written here, not by the API: the worker may be another host
                try:
                    write_atomic(source, lambda fh: fh.writelines(dumps(r) + b"\n" for r in job.inputs))
                except OSError as exc:
                    from ..faults import os_error

                    self._hand_back(claim, os_error(exc, source))
                    return
            self._run(job, claim, source)
        finally:
            lock.release()

    def _hand_back(self, claim: Claim, error: Exception) -> None:
        """Give the job back after a full disk (it runs again once there is room)."""
        log.warning("job %s: %s; back to the queue", claim.job_id, _describe(error))
        self.store.release(claim.job_id, self.id, claim.token)
        self._skip[claim.job_id] = time.monotonic() + max(self.poll_seconds, 5.0)

    def _run(self, job: Job, claim: Claim, source: Path) -> None:
        from ..chain.runner import run_chain
        from ..chain.spec import ChainSpec
        from ..faults import DiskFull
        from ..stages.common import Cancelled

        folder = self.job_dir(job.id)
        spec = ChainSpec.model_validate({**job.chain, "input": str(source), "output_dir": str(folder / "out")})
        emitter = JobEmitter(self.store, job, claim)

        def cancel() -> bool:
            return self.stop.is_set() or claim.check() or claim.lost

        error: dict[str, Any] | None = None
        result: dict[str, Any] | None = None
        try:
            outcome = run_chain(spec, emitter=emitter, resume=True, cancel=cancel, backend_factory=self.factory)
        except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
            log.error("job %s failed: %s", job.id, _describe(exc), exc_info=_traceback_wanted())
            status, error = "failed", {"type": type(exc).__name__, "message": str(exc)}
        else:
            result, error = outcome.result, outcome.result.get("error")
            if claim.lost:
                return  # the newer claim runs the job on from its ledgers
            if isinstance(outcome.error, Cancelled):
                if not self.store.cancel_requested(job.id):
                    self.store.release(job.id, self.id, claim.token)  # this worker is stopping
                    return
                status = "cancelled"
            elif isinstance(outcome.error, DiskFull):
                self._hand_back(claim, outcome.error)
                return
            elif outcome.error is not None:
                status = "failed"
            elif outcome.result["records"]["failed"]:
                status = "partial"
            else:
                status = "completed"
        records: list[dict[str, Any]] = []
        for index in reversed(spec.enabled_steps()):
            if spec.output_path(index).is_file():
                records = _read_records(spec.output_path(index))
                break
        files = []
        if spec.audio_dir.is_dir():
            files = [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(spec.audio_dir.iterdir())
                     if p.is_file() and p.suffix in AUDIO_SUFFIXES and not p.name.startswith(".")]
        for _ in range(2):  # a claim requeued while this worker was paused is taken back first
            if self.store.finish(job.id, self.id, status, result=result, error=error, records=records,
                                 files=files, token=claim.token):
                return
            claim.check()
            if claim.lost:
                return


class WorkerProcess:
    """The worker child process of ``aicp serve``, started again whenever it ends.

    A child that dies (``kill -9``, an engine crash, the out-of-memory killer) is started
    again after ``min_delay`` seconds, doubling up to ``max_delay`` while it keeps dying; a
    child that ran ``stable_after`` seconds or more starts the count afresh. Every exit and
    restart is logged (``aicp.serve``). Its jobs are requeued by the new child's first sweep
    (the dead process's pid is gone) and resume from their ledgers.

    :param argv: the child's command line (``aicp worker ... ``).
    :param env: its environment (``None``: this process's).
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, *, min_delay: float = 1.0,
                 max_delay: float = 60.0, stable_after: float = 60.0) -> None:
        self.argv, self.env = argv, env
        self.min_delay, self.max_delay, self.stable_after = min_delay, max_delay, stable_after
        self.restarts = 0
        self.last_exit: int | None = None
        self.proc: Any = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._log = logging.getLogger("aicp.serve")

    def _spawn(self) -> None:
        import subprocess

        # a session of its own: Ctrl-C in the terminal reaches aicp serve only, which then
        # stops the child (a child stopped by the terminal would look like one that died)
        self.proc = subprocess.Popen([*self.argv, "--parent-pid", str(os.getpid())], env=self.env,
                                     start_new_session=True)
        self._started = time.monotonic()

    def start(self) -> None:
        """Start the child and the thread that watches it."""
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="aicp-worker-watch", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the child process runs now."""
        return self.proc is not None and self.proc.poll() is None

    def _watch(self) -> None:
        delay = self.min_delay
        while True:
            code = self.proc.wait()
            if self._stopping.is_set():
                return
            self.last_exit = code
            if time.monotonic() - self._started >= self.stable_after:
                delay = self.min_delay
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            self._log.error("the worker process %s; starting it again in %.3g s", how, delay)
            if self._stopping.wait(delay):
                return
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._spawn()
            except OSError as exc:
                self._log.error("cannot start the worker process: %s", exc.strerror or exc)
                self._stopping.wait(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            self.restarts += 1
            delay = min(self.max_delay, delay * 2)

    def stop(self, timeout: float = 600) -> None:
        """Stop the child (SIGTERM: its job stops at the next record and is requeued) and
        stop restarting it; SIGKILL after ``timeout`` seconds."""
        import subprocess

        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(5)

    def state(self) -> dict[str, Any]:
        """``{"running", "restarts", "last_exit_status"}`` for the detailed health."""
        return {"running": self.running, "restarts": self.restarts, "last_exit_status": self.last_exit}


def _describe(exc: BaseException) -> str:
    """One line for an error: an aicp error's message, else ``Type: message`` (first line)."""
    from ..errors import AicpError

    text = exc.message if isinstance(exc, AicpError) else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _traceback_wanted() -> bool:
    """Whether the log shows tracebacks (``aicp worker --traceback`` / ``AICP_TRACEBACK=1``)."""
    return os.environ.get("AICP_TRACEBACK", "") not in ("", "0")


__all__ = ["AUDIO_SUFFIXES", "DEFAULT_MIN_FREE", "Claim", "JobEmitter", "Worker", "WorkerProcess"]
