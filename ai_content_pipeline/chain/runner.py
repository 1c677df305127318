"""Run a chain: its steps one after the other in this process, one model resident at a time.

For each enabled step (numbered by position in the file, 1-based) the runner

1. builds the step's backend (not loaded yet) and sends ``step_start``;
2. streams the previous step's records (or the chain input) through the stage
   (:class:`~ai_content_pipeline.stages.step.StageRun`, the primitive every front end shares),
   which loads the model on first use and checkpoints every finished record in
   ``output_dir/NN-type.ledger.jsonl``; the stage's events carry ``step``;
3. writes the records through :func:`~ai_content_pipeline.files.write_atomic` (a temporary
   ``.NN-type.jsonl.XXXXXXXX.part``, renamed to ``NN-type.jsonl`` when the step ends: a reader
   never sees half a file);
4. has the stage unload the model (``model_unload``: Ollama ``keep_alive: 0`` and
   ``/api/ps`` drained, llama.cpp freed, CUDA cache emptied) *before* the next
   step's backend loads, then sends ``step_complete`` with the step's ``cost``.

A record that fails in one step carries its ``error`` through later steps and
the chain goes on (``on_error: stop`` makes the first failed record end it).
A step that cannot run at all (backend unavailable, ...) sends ``step_error``
and ends the chain. ``pipeline_complete`` always closes the run.
A ``cancel`` callable (``aicp serve``'s DELETE) is asked before each step, record
and long-form chunk; when it answers true the step stops there, keeps the records
it finished in ``NN-type.jsonl`` and ends the chain with a ``Cancelled`` error.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import TypeAdapter

from ..backends.registry import create_llm, create_tts, resolve_llm_name, resolve_tts_name
from ..errors import AicpError, UsageError, error_object
from ..events import Emitter, NullEmitter, StepEmitter
from ..faults import os_error
from ..files import FolderLock, write_atomic
from ..jsonl import InputLine, RecordWriter
from ..shards import ShardRun, chain_shard_run, shard_chain
from ..stages import registry
from ..stages.common import Cancelled, first_existing, refuse_overwrite
from ..stages.kind import StepConfig
from ..stages.registry import options_class
from ..stages.step import StageRun, StepInput, count_input, open_input, read_input
from ..status import ExitStatus
from .spec import ChainSpec, Prices, VoiceStep

#: A chain step (the model of its kind: :class:`~ai_content_pipeline.stages.kind.StepConfig`).
StepSpec = StepConfig
#: ``factory(step, notice) -> backend``: builds (does not load) a step's backend.
BackendFactory = Callable[[StepSpec, Callable[[str], None]], Any]

GPU_DEVICES = ("cuda", "gpu", "mps")


def backend_settings(step: Any) -> dict[str, Any]:
    """A step's backend options, ``{adapter keyword: value}``: the backend settings the step
    gives as keys (:meth:`~ai_content_pipeline.stages.kind.BackendStepConfig.settings`), plus
    any of its ``params`` that name a setting of the chosen backend (``params.timeout``,
    ``params.threads``: stage options that the backend reads too), each checked against the
    backend's settings (:func:`~ai_content_pipeline.backends.registry.step_settings`).

    :raises UsageError: a setting the backend does not have, or a value it refuses.
    """
    from ..backends.registry import all_settings, settings, step_settings

    kind = registry.get(step.type).backend
    if kind is None:
        return {}
    given = dict(step.settings()) if hasattr(step, "settings") else {}
    backend = getattr(step, "backend", "auto")
    tables = all_settings(kind) if backend == "auto" else [(backend, settings(kind, backend))]
    keys = {s.step_key for _, table in tables for s in table}
    for key, value in step.params.items():
        if key in keys and key not in given and value is not None:
            given[key] = value
    return step_settings(kind, backend, given)


def create_backend(step: Any, notice: Callable[[str], None]) -> Any:
    """Default :data:`BackendFactory`: the registry's backend of the kind ``step``'s stage kind
    uses, built with the step's validated backend settings (:func:`backend_settings`).

    :raises UsageError: unknown backend, a setting it refuses.
    :raises BackendUnavailable: ``auto`` found nothing usable.
    """
    kind = registry.get(step.type).backend
    if kind == "llm":
        return create_llm(step.backend, model=getattr(step, "model", None), notice=notice, **backend_settings(step))
    return create_tts(step.backend, notice=notice, **backend_settings(step))


def resolve_backend(step: Any) -> tuple[str, str | None]:
    """What ``auto`` would pick for ``step``, without loading anything: ``(backend, model)``
    (the model or voice a step names, else the backend's bundled one, else ``None``)."""
    from ..backends.registry import get

    options = backend_settings(step)
    if registry.get(step.type).backend == "llm":
        name, model = resolve_llm_name(step.backend, getattr(step, "model", None), options.get("host"))
        return name, model or get("llm", name).default_model
    name = resolve_tts_name(step.backend, device=options.get("device"), voice=options.get("voice"))
    return name, options.get("voice") or get("tts", name).default_model


def check_chain_paths(spec: ChainSpec, stdin: IO[bytes] | None = None, log: str | None = None) -> None:
    """Before the first step: the input is readable, every file the chain writes (each
    enabled step's records and ledger, its folders, the take ``log``) can be created, and
    none of them is the chain file or the input (a chain whose ``input`` is one of its own
    step outputs would replace it).

    :raises UsageError: (exit 2) naming the path.
    """
    from ..files import check_output_dir, check_output_file, refuse_overlap
    from ..jsonl import check_sources
    from ..templates import file_ref

    for key in ("input", "output_dir"):
        if not str(getattr(spec, key)).strip():
            raise UsageError(f"the chain's {key} is empty", hint=f"give {key} a path")
    check_sources([spec.input])
    check_output_dir(spec.output_dir, "output_dir")
    reads: dict[str, Any] = {f"the chain input {spec.input}": stdin if spec.input == "-" and stdin else spec.input}
    if spec.source and spec.source != "-":
        reads[f"the chain file {spec.source}"] = spec.source
    for index in spec.enabled_steps():
        step = spec.steps[index]
        for what, ref in (("persona", getattr(step, "persona", None)), ("template", getattr(step, "template", None))):
            if file_ref(ref):
                reads[f"step {index + 1}'s {what} file {ref}"] = ref
    writes: dict[str, Any] = {}
    for index in spec.enabled_steps():
        for what, path in (("records", spec.output_path(index)), ("ledger", spec.ledger_path(index))):
            check_output_file(path, f"step {index + 1} {what}")
            writes[f"step {index + 1}'s {what} {path}"] = path
            part = path.with_name(path.name + ".part")
            writes[f"step {index + 1}'s temporary file {part}"] = part
    if log:
        check_output_file(log, "--log")
        writes[f"--log {log}"] = log
    refuse_overlap(reads, writes)
    for index in spec.enabled_steps():
        step = spec.steps[index]
        kind = registry.get(step.type)
        for option, (folder, settable) in kind.dirs.items():
            if settable:
                check_output_dir(step.params.get(option, Path(spec.output_dir) / folder),
                                 f"step {index + 1} {option}")
            else:
                check_output_dir(Path(spec.output_dir) / folder, f"output_dir/{folder}")
        if kind.backend == "tts":
            check_voice_step(step, index)  # type: ignore[arg-type]


def check_voice_step(step: VoiceStep, index: int) -> None:
    """What a TTS step needs that exists before any model runs (its backend's ``preflight``
    hook: Piper's voice file and ``.onnx.json``, Chatterbox installed and its checkpoint
    folder). Loads nothing.

    :raises UsageError: a voice file that is missing or of the wrong kind (exit 2).
    :raises BackendUnavailable: chatterbox not installed, checkpoint files missing (exit 4).
    """
    from ..backends.registry import backend_options, get

    try:
        options = backend_settings(step)
        name = resolve_tts_name(step.backend, device=options.get("device"), voice=options.get("voice"))
        info = get("tts", name)
        preflight = info.load("preflight")
        if preflight is not None:
            preflight(**backend_options(info, options))
    except AicpError as exc:
        exc.message = f"step {index + 1} ({step.type}): {exc.message}"
        raise


#: Highest cost one step may have: a larger one comes from a usage count that is not real, and
#: sums of such costs could pass what a float holds (``inf``, written as JSON ``null``).
MAX_STEP_COST = 1e15


def step_cost(prices: Prices, tokens: int, audio_seconds: float, seconds: float, device: str | None) -> float:
    """Cost of one step from the price table: tokens/1000, audio minutes, GPU seconds.

    :raises AicpError: the cost is past :data:`MAX_STEP_COST` (never ``inf`` or ``null``).
    """
    on_gpu = bool(device) and str(device).lower().startswith(GPU_DEVICES)
    try:
        cost = (tokens / 1000.0 * prices.per_1k_tokens + audio_seconds / 60.0 * prices.per_audio_minute
                + (seconds * prices.per_gpu_second if on_gpu else 0.0))
    except OverflowError:  # an integer token count past what a float holds
        cost = float("inf")
    if not 0 <= cost <= MAX_STEP_COST:  # NaN too
        raise AicpError(f"the step's cost is past {MAX_STEP_COST:g} at the chain's prices: its token, audio "
                        "or GPU-second counts are not real ones; no cost was added to total_cost",
                        hint="check the backend's token counts and the chain's prices:")
    return round(cost, 6)


def step_options(spec: ChainSpec, index: int, resume: bool, overwrite: bool = False) -> Any:
    """The stage options of step ``index``: its ``params`` plus what the chain sets.

    The chain sets the step keys that are options (``template``/``persona``), ``resume``,
    ``strict`` (``on_error: stop``), ``overwrite`` (where the options have them) and the
    kind's folders (:attr:`~ai_content_pipeline.stages.kind.StageKind.dirs`): voice's
    ``out_dir`` (``output_dir/audio``) and, unless the step's params give one, the long-form
    ``work_dir`` (``output_dir/longform``).

    :raises pydantic.ValidationError: a ``params`` value the options refuse (the chain
        file was validated before, so only a spec built by hand gets here).
    """
    step = spec.steps[index]
    kind = registry.get(step.type)
    fields = {f.name for f in dataclasses.fields(kind.options)}
    values: dict[str, Any] = {**step.params}
    for name, value in (("resume", resume), ("strict", spec.on_error == "stop"), ("overwrite", overwrite)):
        if name in fields:
            values[name] = value
    for name in type(step).model_fields:  # the step's own keys that are options (template, persona)
        value = getattr(step, name)
        if name in fields and name not in StepConfig.model_fields and value is not None and value != "":
            values[name] = value
    for option, (folder, settable) in kind.dirs.items():
        if settable:
            values.setdefault(option, str(Path(spec.output_dir) / folder))
        else:
            values[option] = str(Path(spec.output_dir) / folder)
    return TypeAdapter(options_class(step.type)).validate_python(values)


@dataclass
class StepSummary:
    """What one finished step produced (an item of ``outputs.steps``)."""

    step: int
    type: str
    name: str | None
    path: str
    ledger: str
    cost: float
    duration_seconds: float
    stats: dict[str, Any]
    backend: dict[str, Any] = field(default_factory=dict)

    def emit(self, emitter: Emitter) -> None:
        """Send this step's ``step_complete`` (the documented fields, :mod:`~ai_content_pipeline.eventdocs`)."""
        extra = {"checks": self.stats["checks"]} if "checks" in self.stats else {}
        emitter.step_complete(self.step, self.cost, self.path, self.duration_seconds, type=self.type,
                              records=self.stats["records"], tokens=self.stats["tokens"],
                              audio_seconds=self.stats["audio_seconds"], **extra)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: step, type, name, path, ledger, cost, duration_seconds, backend, records, tokens..."""
        return {"step": self.step, "type": self.type, "name": self.name, "path": self.path, "ledger": self.ledger,
                "cost": self.cost, "duration_seconds": self.duration_seconds,
                "backend": self.backend, **self.stats}


@dataclass
class ChainResult:
    """The outcome of :func:`run_chain`.

    :ivar result: the ``pipeline_complete`` fields (see :meth:`ChainRunner.result`).
    :ivar exit_status: 0 ok, 3 some records failed, or the step error's status (1, 4).
    :ivar error: the error that ended the chain early, else ``None``.
    """

    result: dict[str, Any]
    exit_status: ExitStatus
    error: AicpError | None = None


class ChainRunner:
    """Runs a :class:`ChainSpec` (see the module docstring).

    :param emitter: receives pipeline, step, record and model events.
    :param resume: serve records found in the steps' ledgers instead of recomputing them.
    :param stdin: binary stream read when ``input`` is ``-`` (default ``sys.stdin.buffer``).
    :param backend_factory: builds each step's backend (tests pass doubles here).
    :param cancel: ``cancel() -> bool`` asked before each step, record and long-form chunk;
        true ends the chain there with a :class:`~ai_content_pipeline.stages.common.Cancelled`
        error (exit status 130), keeping finished records.
    :param overwrite: replace the files an earlier run wrote in ``output_dir`` (step records,
        audio, long-form work files). Without it and without ``resume``, such a file ends the
        chain with a usage error (exit 2) naming it: the step records before any step runs,
        a step's own files before its model loads.
    """

    def __init__(self, spec: ChainSpec, *, emitter: Emitter | None = None, resume: bool = False,
                 stdin: IO[bytes] | None = None, backend_factory: BackendFactory | None = None,
                 cancel: Callable[[], bool] | None = None, log: str | None = None,
                 overwrite: bool = False) -> None:
        self.spec = shard_chain(spec)  # a ``shard`` key: that shard's output_dir (idempotent)
        self.log = log
        self.takelog: Any = None
        self.emitter = emitter or NullEmitter()
        self.resume = resume
        self.overwrite = overwrite
        self.stdin = stdin
        self.factory = backend_factory or create_backend
        self.cancel = cancel
        self.steps: list[StepSummary] = []
        #: the ``pipeline_complete`` fields once sent (also when :meth:`run` raises)
        self.completed: dict[str, Any] | None = None

    def _run_step(self, index: int, lines: Iterable[InputLine], total: int | None,
                  sharded: ShardRun | None = None,
                  replay: Callable[[], Iterable[InputLine]] | None = None) -> tuple[StepSummary, int]:
        """Run step ``index`` over ``lines`` (``total`` of them, if known; ``sharded``: the
        :class:`~ai_content_pipeline.shards.ShardRun` they were read with); its summary and how
        many records it wrote (the next step's ``total``: its input is not counted again).

        ``replay()`` reads the same lines again, when they can be: the files the stage would
        write are then checked before its model loads (the overwrite rule)."""
        spec, emitter = self.spec, self.emitter
        step, number = spec.steps[index], index + 1
        kind = registry.get(step.type)
        backend = self.factory(step, emitter.message) if kind.backend is not None else None
        info = backend.describe() if backend is not None else {}
        emitter.step_start(number, step.type, info.get("model"))
        t0 = time.monotonic()
        out = spec.output_path(index)
        options = step_options(spec, index, self.resume, self.overwrite)
        chain_files = (spec.input, spec.source, *(p for i in range(len(spec.steps))
                                                  for p in (spec.output_path(i), spec.ledger_path(i))))
        with StageRun(step.type, backend, options, emitter=StepEmitter(emitter, number),
                      checkpoint=spec.ledger_path(index), cancel=self.cancel, protect=chain_files,
                      takelog=self.takelog) as run:  # no file of the stage replaces the chain's
            if replay is not None:  # the overwrite rule, before this step's model loads
                run.stage.refuse_replacing(replay)
            cancelled: list[Cancelled] = []
            written = 0

            def fill(handle: Any) -> None:
                nonlocal written
                try:
                    written = run.run(lines, RecordWriter(handle).write, total, shard=sharded)
                except Cancelled as exc:  # keep the records finished before the cancel
                    cancelled.append(exc)

            try:
                write_atomic(out, fill)
            except OSError as exc:
                raise os_error(exc, out) from exc
            if cancelled:
                raise cancelled[0]
        stage = run.stage
        duration = round(time.monotonic() - t0, 3)
        stats = stage.stats.as_dict()
        tokens = stats["tokens"]["prompt"] + stats["tokens"]["completion"]
        cost = step_cost(spec.prices, tokens, stats["audio_seconds"], duration, info.get("device"))
        summary = StepSummary(number, step.type, step.name, str(out), str(spec.ledger_path(index)), cost,
                              duration, stats, info)
        summary.emit(emitter)
        return summary, written

    def run(self) -> ChainResult:
        """Run every enabled step; always ends with ``pipeline_complete``.

        A step that fails with an :class:`AicpError` or an ``OSError`` (a full disk, a
        read-only ``output_dir``: see :func:`~ai_content_pipeline.faults.os_error`) ends
        the chain with that error in the result; so does an ``output_dir`` that cannot
        be created.

        :raises KeyboardInterrupt: after ``step_error`` (the CLI exits 130).
        :raises Exception: an unexpected error, after ``step_error`` and ``pipeline_complete``.
        """
        spec, emitter = self.spec, self.emitter
        t0 = time.monotonic()
        enabled = spec.enabled_steps()
        emitter.pipeline_start(spec.name, len(enabled), spec.model_dump(mode="json"))
        try:
            check_chain_paths(spec, self.stdin, self.log)
            lock = FolderLock(spec.output_dir, "output_dir").acquire()
        except AicpError as exc:
            return self._stopped(t0, exc)
        if not (self.resume or self.overwrite):
            found = first_existing(spec.output_path(i) for i in enabled)
            if found is not None:
                lock.release()
                return self._stopped(t0, refuse_overwrite(found, "step records"))
        try:
            if self.log:
                from ..takelog import TakeLog
                try:
                    self.takelog = TakeLog(self.log, "aicp run-chain")
                except AicpError as exc:
                    return self._stopped(t0, exc)
            return self._run_steps(t0)
        finally:
            lock.release()
            if self.takelog is not None:
                self.takelog.close()

    def _run_steps(self, t0: float) -> ChainResult:
        """Run the enabled steps in order, the first over the chain input (read once, with
        ``--shard``'s share), each later one over the records of the step before it;
        ``pipeline_complete`` at the end. The input's spool is deleted however the run ends."""
        spec, emitter = self.spec, self.emitter
        enabled = spec.enabled_steps()
        source = spec.input
        error: AicpError | None = None
        error_obj: dict[str, Any] | None = None
        sharded: ShardRun | None = None
        chain_input = StepInput((), None)  # no input is read when no step runs
        try:
            try:
                Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
                probe = tempfile.TemporaryFile(dir=spec.output_dir)  # writable? (before any model runs)
                probe.close()
            except OSError as exc:  # a read-only or misnamed output_dir
                raise os_error(exc, spec.output_dir, doing="write to output_dir") from exc
            if enabled:  # read once: a regular file to its end here (the progress total), a pipe lazily
                sharded = chain_shard_run(spec, enabled[0])  # --shard K/N: the first step's share
                try:
                    chain_input = open_input([source], stdin=self.stdin, shard=sharded)
                except OSError as exc:
                    raise os_error(exc, source, doing="read") from exc
        except AicpError as exc:
            error = exc
            error_obj = {**error_object(error, stage="chain"), "step": None}
            enabled = []  # nothing runs; the error goes out with pipeline_complete
        lines: Iterable[InputLine] = chain_input
        total = chain_input.total
        replay: Callable[[], Iterable[InputLine]] | None = (lambda: chain_input) if total is not None else None
        with chain_input:
            for index, step in enumerate(spec.steps):
                if index not in enabled:
                    if error is None:
                        emitter.message(f"step {index + 1} ({step.type}) is disabled; skipped")
                    continue
                try:
                    if self.cancel is not None and self.cancel():
                        raise Cancelled(f"chain cancelled before step {index + 1}")
                    summary, total = self._run_step(index, lines, total, sharded, replay)
                except (AicpError, OSError) as exc:
                    error = exc if isinstance(exc, AicpError) else os_error(exc)
                    error_obj = {**error_object(error, stage=step.type), "step": index + 1}
                    emitter.step_error(index + 1, str(error), step.type)
                    break
                except BaseException as exc:
                    emitter.step_error(index + 1, (str(exc) or "interrupted") if isinstance(exc, KeyboardInterrupt)
                                       else f"{type(exc).__name__}: {exc}", step.type)
                    if not isinstance(exc, KeyboardInterrupt):
                        self.completed = self.result(t0, {"stage": step.type, "step": index + 1,
                                                          "type": type(exc).__name__, "message": str(exc)})
                        emitter.pipeline_complete(self.completed)
                    raise
                self.steps.append(summary)
                lines, sharded = read_input([summary.path]), None  # ``total``: the records it wrote
                replay = functools.partial(read_input, [summary.path])
            result = self.completed = self.result(t0, error_obj)
            emitter.pipeline_complete(result)
        if error is not None:
            status = error.exit_status
        elif any(s.stats["records"]["failed"] for s in self.steps):
            status = ExitStatus.PARTIAL
        else:
            status = ExitStatus.SUCCESS
        return ChainResult(result, status, error)

    def _stopped(self, t0: float, exc: AicpError) -> ChainResult:
        """End before the first step: ``pipeline_complete`` with ``exc`` as its error (the
        caller reports ``exc``, once: the command's one error handler)."""
        result = self.result(t0, {**error_object(exc, stage="chain"), "step": None})
        self.emitter.pipeline_complete(result)
        return ChainResult(result, exc.exit_status, exc)

    def result(self, t0: float, error: dict[str, Any] | None) -> dict[str, Any]:
        """The ``pipeline_complete`` fields (:func:`chain_result` of this run's steps)."""
        return chain_result(self.spec.name, self.steps, len(self.spec.enabled_steps()), t0, error,
                            self.spec.audio_dir)


def chain_result(name: str, steps: list[StepSummary], total_steps: int, t0: float,
                 error: dict[str, Any] | None, audio_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The ``pipeline_complete`` fields of a run of ``total_steps`` steps that finished ``steps``.

    Shape: ``name``, ``success`` (every step finished, no error), ``steps_completed``,
    ``total_steps``, ``total_cost``, ``total_time`` (seconds since ``t0``, monotonic),
    ``outputs`` (``final``: the last step's ``{path, step, type}``; ``steps``: one summary per
    finished step; ``audio_dir``: ``audio_dir`` when a finished step wrote audio, else ``null``),
    ``error`` (object or ``null``), ``records`` (the last step's ``{total, completed, failed,
    skipped}``), ``tokens`` (``{prompt, completion}`` over all steps) and ``audio_seconds``.
    """
    last = steps[-1] if steps else None
    has_audio = any(folder == "audio" for s in steps for folder, _ in registry.get(s.type).dirs.values())
    return {
        "name": name,
        "success": error is None and len(steps) == total_steps,
        "steps_completed": len(steps),
        "total_steps": total_steps,
        "total_cost": round(sum(s.cost for s in steps), 6),
        "total_time": round(time.monotonic() - t0, 3),
        "outputs": {
            "final": {"path": last.path, "step": last.step, "type": last.type} if last else None,
            "steps": [s.as_dict() for s in steps],
            "audio_dir": str(audio_dir) if has_audio and audio_dir is not None else None,
        },
        "error": error,
        "records": last.stats["records"] if last else {"total": None, "completed": 0, "failed": 0, "skipped": 0},
        "tokens": {k: sum(s.stats["tokens"][k] for s in steps) for k in ("prompt", "completion")},
        "audio_seconds": round(sum(s.stats["audio_seconds"] for s in steps), 3),
    }


def run_chain(spec: ChainSpec, *, emitter: Emitter | None = None, resume: bool = False,
              stdin: IO[bytes] | None = None, backend_factory: BackendFactory | None = None,
              cancel: Callable[[], bool] | None = None, overwrite: bool = False) -> ChainResult:
    """Run ``spec`` (see :class:`ChainRunner`) and return its :class:`ChainResult`."""
    return ChainRunner(spec, emitter=emitter, resume=resume, stdin=stdin,
                       backend_factory=backend_factory, cancel=cancel, overwrite=overwrite).run()


def check_stdin_once(config: str, spec: ChainSpec) -> None:
    """Standard input can be read once: not for both the chain file (``config`` ``-``) and
    the chain's ``input``.

    :raises UsageError: (exit 2) both come from stdin.
    """
    if config == "-" and spec.input == "-":
        raise UsageError("the chain file and its input cannot both come from stdin",
                         hint="give --config a file, or set `input` to a path")


def plan_status(plan: dict[str, Any]) -> ExitStatus:
    """The exit status of a ``--dry-run`` plan (:func:`plan_chain`): ``SUCCESS`` when every
    enabled step's backend resolves, else ``BACKEND_UNAVAILABLE`` (4)."""
    return ExitStatus.SUCCESS if plan["ok"] else ExitStatus.BACKEND_UNAVAILABLE


def plan_chain(spec: ChainSpec,
               resolver: Callable[[StepSpec], tuple[str, str | None]] | None = None) -> dict[str, Any]:
    """The ``--dry-run`` plan: steps, record count, the backends ``auto`` would pick.

    Loads no model (``auto`` may probe Ollama's ``/api/tags`` for up to a second).
    A backend that cannot be resolved is reported in the step's ``error``.

    :raises UsageError: a path the chain would write cannot be written, or is its input
        (see :func:`check_chain_paths`).

    Shape: ``{"dry_run": true, "name", "input", "records": int|null, "output_dir",
    "total_steps", "ok": bool, "steps": [{"step", "type", "enabled", "backend",
    "resolved_backend", "model", "template"?, "persona", "params", "output", "ledger",
    "error"?}]}``.
    """
    check_chain_paths(spec)
    resolve = resolver or resolve_backend
    records = count_input([spec.input]) if spec.input != "-" else None
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(spec.steps):
        entry: dict[str, Any] = {"step": index + 1, "type": step.type, "enabled": step.enabled,
                                 "backend": getattr(step, "backend", None)}
        if step.enabled and registry.get(step.type).backend is not None:
            try:
                entry["resolved_backend"], entry["model"] = resolve(step)
            except AicpError as exc:
                entry["error"] = error_object(exc, stage=step.type)
        elif step.enabled:
            entry["resolved_backend"], entry["model"] = None, None
        if "template" in type(step).model_fields:
            entry["template"] = getattr(step, "template")  # noqa: B009 - a field of that kind's model
        entry.update(persona=getattr(step, "persona", None), params=step.params, output=str(spec.output_path(index)),
                     ledger=str(spec.ledger_path(index)))
        steps.append(entry)
    return {"dry_run": True, "name": spec.name, "input": spec.input, "records": records,
            "output_dir": spec.output_dir, "total_steps": len(spec.enabled_steps()),
            "ok": not any("error" in s for s in steps), "steps": steps}


__all__ = ["BackendFactory", "ChainResult", "ChainRunner", "StepSummary", "chain_result", "check_chain_paths", "check_stdin_once",
           "backend_settings", "create_backend", "plan_chain", "plan_status", "resolve_backend", "run_chain", "step_cost", "step_options"]
