"""Run a chain: its steps one after the other in this process, one model resident at a time.

For each enabled step (numbered by position in the file, 1-based) the runner

1. builds the step's backend (not loaded yet) and sends ``step_start``;
2. streams the previous step's records (or the chain input) through the stage, on the one
   :class:`~ai_content_pipeline.stages.driver.Driver` every front end shares,
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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import TypeAdapter

from ..backends.registry import create_llm, create_tts, resolve_llm_name, resolve_tts_name
from ..errors import AicpError, UsageError, error_object
from ..events import Emitter, NullEmitter
from ..faults import os_error
from ..shards import chain_shard_run, shard_chain
from ..stages import registry
from ..stages.driver import (
    GPU_DEVICES,
    MAX_STEP_COST,
    ChainResult,
    Driver,
    StepPlan,
    StepSummary,
    chain_result,
    step_cost,
)
from ..stages.kind import StepConfig
from ..stages.registry import options_class
from ..stages.step import StepInput, count_input, open_input
from ..status import ExitStatus
from .spec import ChainSpec, VoiceStep

#: A chain step (the model of its kind: :class:`~ai_content_pipeline.stages.kind.StepConfig`).
StepSpec = StepConfig
#: ``factory(step, notice) -> backend``: builds (does not load) a step's backend.
BackendFactory = Callable[[StepSpec, Callable[[str], None]], Any]


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


def step_options(spec: ChainSpec, index: int, resume: bool, overwrite: bool = False) -> Any:
    """The stage options of step ``index``: its ``params`` plus what the chain sets.

    The chain sets the step keys that are options (``template``/``persona``), ``resume``,
    ``strict`` (``on_error: stop``), ``overwrite`` (where the options have them), a script
    step's ``voice_backend`` (unless its params give one: the backend of the next TTS step
    when it names one, not ``auto``) and the
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
    if "voice_backend" in fields and "voice_backend" not in step.params:  # the pace of the voice to come
        voice = next((s for s in spec.steps[index + 1:] if s.enabled and registry.get(s.type).backend == "tts"), None)
        name = getattr(voice, "backend", "auto")
        if name != "auto":
            values["voice_backend"] = name
    for option, (folder, settable) in kind.dirs.items():
        if settable:
            values.setdefault(option, str(Path(spec.output_dir) / folder))
        else:
            values[option] = str(Path(spec.output_dir) / folder)
    return TypeAdapter(options_class(step.type)).validate_python(values)


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
        self.emitter = emitter or NullEmitter()
        self.resume = resume
        self.overwrite = overwrite
        self.stdin = stdin
        self.factory = backend_factory or create_backend
        self.cancel = cancel
        self.steps: list[StepSummary] = []
        self._shard: Any = None
        #: the ``pipeline_complete`` fields once sent (also when :meth:`run` raises)
        self.completed: dict[str, Any] | None = None

    def plans(self) -> list[StepPlan]:
        """One :class:`~ai_content_pipeline.stages.driver.StepPlan` per step of the chain file:
        its backend and options built when it starts, its records to ``NN-type.jsonl``, its
        ledger ``NN-type.ledger.jsonl``, no file of its stage replacing one of the chain's."""
        spec = self.spec
        chain_files = (spec.input, spec.source, *(p for i in range(len(spec.steps))
                                                  for p in (spec.output_path(i), spec.ledger_path(i))))

        def setup(index: int) -> tuple[Any, Any]:
            step = spec.steps[index]
            backend = self.factory(step, self.emitter.message) if registry.get(step.type).backend else None
            return backend, step_options(spec, index, self.resume, self.overwrite)

        return [StepPlan(step.type, index + 1, step.name, step.enabled, setup=functools.partial(setup, index),
                         checkpoint=spec.ledger_path(index), output=spec.output_path(index), protect=chain_files)
                for index, step in enumerate(spec.steps)]

    def _check(self) -> None:
        """The chain's paths (:func:`check_chain_paths`), a writable ``output_dir``, and
        ``redo_failed`` only with ``resume`` (the driver's resume rule, for params)."""
        spec = self.spec
        for index, step in enumerate(spec.steps):
            if step.enabled and step.params.get("redo_failed") and not self.resume:
                raise UsageError(f"step {index + 1} ({step.type}): redo_failed needs --resume: it makes again "
                                 "the takes of the step's ledger whose checks failed")
        check_chain_paths(spec, self.stdin, self.log)
        try:
            Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
            probe = tempfile.TemporaryFile(dir=spec.output_dir)  # writable? (before any model runs)
            probe.close()
        except OSError as exc:  # a read-only or misnamed output_dir
            raise os_error(exc, spec.output_dir, doing="write to output_dir") from exc

    def _input(self) -> StepInput:
        """The chain input, read once (a regular file to its end: the progress total; a pipe
        lazily), with ``--shard``'s share of the first enabled step."""
        spec = self.spec
        try:
            return open_input([spec.input], stdin=self.stdin, shard=self._shard)
        except OSError as exc:
            raise os_error(exc, spec.input, doing="read") from exc

    def run(self) -> ChainResult:
        """Run every enabled step; always ends with ``pipeline_complete``.

        A step that fails with an :class:`AicpError` or an ``OSError`` (a full disk, a
        read-only ``output_dir``: see :func:`~ai_content_pipeline.faults.os_error`) ends
        the chain with that error in the result; so does an ``output_dir`` that cannot
        be created.

        :raises KeyboardInterrupt: after ``step_error`` (the CLI exits 130).
        :raises Exception: an unexpected error, after ``step_error`` and ``pipeline_complete``.
        """
        spec = self.spec
        enabled = spec.enabled_steps()
        self._shard = chain_shard_run(spec, enabled[0]) if enabled else None  # --shard K/N: the first step's share
        self.driver = Driver(self.emitter, name=spec.name, config=spec.model_dump(mode="json"), prices=spec.prices,
                             resume=self.resume, overwrite=self.overwrite, cancel=self.cancel, log=self.log,
                             program="aicp run-chain", check=self._check, locks=[(spec.output_dir, "output_dir")],
                             audio_dir=spec.audio_dir)
        try:
            return self.driver.run(self.plans(), self._input, read_first=True, shard=self._shard)
        finally:
            self.steps = self.driver.steps
            self.completed = self.driver.completed


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


__all__ = ["GPU_DEVICES", "MAX_STEP_COST", "BackendFactory", "ChainResult", "ChainRunner", "StepSummary", "backend_settings",
           "chain_result", "check_chain_paths", "check_stdin_once", "create_backend", "plan_chain", "plan_status",
           "resolve_backend", "run_chain", "step_cost", "step_options"]
