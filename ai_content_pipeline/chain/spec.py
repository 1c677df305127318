"""The chain file: YAML → a validated :class:`ChainSpec` (errors name the key path and line).

A chain file names an input, an output folder and steps run in order::

    name: radio-intros
    input: examples/songs.jsonl        # a path, or "-" for stdin
    output_dir: aicp-out/radio-intros
    on_error: continue                 # or stop: end the chain at the first failed record
    shard: auto                        # optional: K/N or auto (Slurm array, Kubernetes Indexed Job)
    prices: {per_1k_tokens: 0.0, per_audio_minute: 0.0, per_gpu_second: 0.0}
    steps:
      - type: script
        template: song-intro
        persona: julie
        backend: auto                  # auto | llamacpp | ollama | an installed one
        threads: 4                     # a setting of the backend (llamacpp: --threads)
        params: {variants: 2, temperature: 0.8}
      - type: voice
        backend: auto                  # auto | piper | chatterbox | an installed one
        params: {format: wav, loudness: -16}

``params`` are fields of the stage's options dataclass
(:class:`~ai_content_pipeline.stages.script.ScriptOptions`, ``VoiceOptions``),
passed through as they are; an unknown field or a bad type is an error. The
other keys of a step with a backend are that backend's settings
(:mod:`~ai_content_pipeline.backends.settings`: the keys of the command's flags,
``threads``, ``host``, ``voice``, ``device``...), checked against the chosen
backend's (``auto``: each key against the backends that have it); a key it does
not have is an error naming the backend and the key.
Paths in the file are relative to the current directory.

Every problem is a :class:`~ai_content_pipeline.errors.ConfigError` (exit 2)
whose message reads ``chain.yaml:12: steps.0.persona: unknown persona 'bob'``:
the line comes from the YAML node tree, or ``--set`` when an override supplied
the value. The file itself is read with :mod:`ai_content_pipeline.yamlfile`: at
most 1 MiB of UTF-8, no anchors or aliases, no duplicate keys.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ..backends.registry import LLM_CHOICES, TTS_CHOICES, all_settings, step_settings
from ..errors import AicpError, ConfigError, UsageError
from ..faults import path_problem
from ..stages import registry
from ..stages.kind import StepConfig
from ..stages.registry import options_class
from ..stages.script import ScriptStepConfig
from ..stages.voice import VoiceStepConfig
from ..templates import load_persona, load_template
from ..yamlfile import YAMLProblem, decode_utf8, load_yaml, read_limited

#: options the chain sets itself; ``params`` may not.
RESERVED_PARAMS = frozenset({"resume", "strict", "overwrite"})

Loc = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Highest price a chain's ``prices`` may give (any currency unit): far past any real price,
#: short of the numbers that make a cost sum ``inf`` (which JSON writes as ``null``).
MAX_PRICE = 1_000_000.0


class Prices(_Strict):
    """Price table for the ``cost`` of each step (any currency unit; all default to 0; each
    a finite number from 0 to :data:`MAX_PRICE`).

    :ivar per_1k_tokens: price per 1,000 LLM tokens (prompt + completion).
    :ivar per_audio_minute: price per minute of audio written.
    :ivar per_gpu_second: price per second a step ran with its model on a GPU.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    per_1k_tokens: float = Field(0.0, ge=0, le=MAX_PRICE)
    per_audio_minute: float = Field(0.0, ge=0, le=MAX_PRICE)
    per_gpu_second: float = Field(0.0, ge=0, le=MAX_PRICE)


#: The step models of the built-in kinds (``script``, ``voice``).
ScriptStep = ScriptStepConfig
VoiceStep = VoiceStepConfig


def _step_config(index: int, item: Any) -> Any:
    """Item ``index`` of ``steps`` as the model of its kind (``type``), errors located under it."""
    if isinstance(item, StepConfig) or not isinstance(item, dict):
        return item if isinstance(item, StepConfig) else _invalid(index, item)
    kind = registry.find(item.get("type"))
    if kind is None:
        tags = ", ".join(f"'{t}'" for t in registry.stage_types())
        if "type" not in item:
            error = PydanticCustomError("union_tag_not_found", "Unable to extract tag using discriminator 'type'")
        else:
            error = PydanticCustomError("union_tag_invalid", "Input tag {tag} found using 'type' does not match "
                                        "any of the expected tags: {expected_tags}",
                                        {"tag": repr(item["type"]), "expected_tags": tags})
        raise ValidationError.from_exception_data("ChainSpec", [{"type": error, "loc": (index,), "input": item}])
    try:
        return kind.step_model.model_validate(item)
    except ValidationError as exc:
        raise ValidationError.from_exception_data("ChainSpec", [
            {"type": PydanticCustomError(e["type"], e["msg"]), "loc": (index, *e["loc"]), "input": e["input"]}
            for e in exc.errors(include_url=False)]) from None


def _invalid(index: int, item: Any) -> Any:
    raise ValidationError.from_exception_data("ChainSpec", [{
        "type": PydanticCustomError("model_attributes_type", "Input should be a valid dictionary or object "
                                    "to extract fields from"), "loc": (index,), "input": item}])


class ChainSpec(_Strict):
    """A validated chain file (see the module docstring).

    :ivar input: JSON Lines path, or ``-`` for stdin.
    :ivar on_error: ``continue`` (failed records carry ``error`` on) or ``stop``.
    :ivar shard: ``K/N`` or ``auto`` (``aicp run-chain --shard``): the first step takes only the
        input lines of that shard and every file goes to ``output_dir/shard-K-of-N/``
        (see :mod:`ai_content_pipeline.shards`); ``None``: the whole input.
    :ivar source: where the chain was read from (a path or ``-``); set by :func:`load_chain`.
    """

    name: str
    description: str = ""
    input: str
    output_dir: str
    on_error: Literal["continue", "stop"] = "continue"
    shard: str | None = None
    prices: Prices = Prices()
    steps: list[SerializeAsAny[StepConfig]] = Field(min_length=1)
    source: str | None = Field(None, exclude=True)

    @field_validator("steps", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        """Each step as the model of its registered kind (:mod:`~ai_content_pipeline.stages.registry`)."""
        if not isinstance(value, list):
            return value
        return [_step_config(i, item) for i, item in enumerate(value)]

    def step_label(self, index: int) -> str:
        """``01-script``: the file stem of step ``index`` (0-based position in ``steps``)."""
        return f"{index + 1:02d}-{self.steps[index].type}"

    def output_path(self, index: int) -> Path:
        """Records of step ``index``: ``output_dir/NN-type.jsonl``."""
        return Path(self.output_dir) / f"{self.step_label(index)}.jsonl"

    def ledger_path(self, index: int) -> Path:
        """Checkpoint ledger of step ``index``: ``output_dir/NN-type.ledger.jsonl``."""
        return Path(self.output_dir) / f"{self.step_label(index)}.ledger.jsonl"

    @property
    def audio_dir(self) -> Path:
        """Where voice steps write audio files: ``output_dir/audio``."""
        return Path(self.output_dir) / "audio"

    def enabled_steps(self) -> list[int]:
        """0-based positions of the steps that run."""
        return [i for i, s in enumerate(self.steps) if s.enabled]


# -- key path → line -----------------------------------------------------------------------
def node_line(root: yaml.Node | None, loc: Iterable[str | int]) -> int | None:
    """1-based line of the deepest node on key path ``loc`` in a composed YAML tree.

    For a mapping key the key's own line is used (so an unknown key points at
    itself); a path that leaves the tree stops at the last node found.
    """
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((pair for pair in node.value if pair[0].value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


class _Where:
    """Turns a key path into ``file:line: path`` for messages."""

    def __init__(self, source: str, root: yaml.Node | None, overridden: set[Loc]) -> None:
        self.source, self.root, self.overridden = source, root, overridden

    def __call__(self, loc: Loc) -> str:
        path = ".".join(str(p) for p in loc) or "(top)"
        if any(loc[: len(o)] == o or o[: len(loc)] == loc for o in self.overridden if loc):
            return f"{self.source}: {path} (from --set)"
        line = node_line(self.root, loc)
        return f"{self.source}:{line}: {path}" if line else f"{self.source}: {path}"


def _clean_loc(loc: tuple[Any, ...]) -> Loc:
    return tuple(loc)


# -- numbers JSON cannot carry ---------------------------------------------------------------
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def _check_numbers(value: Any, loc: Loc, where: _Where) -> None:
    """Reject integers outside 64 bits and non-finite floats anywhere in the chain data.

    :raises ConfigError: naming the key path (and line, or ``--set``).
    """
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        digits = str(abs(value)) if value.bit_length() < 4000 else "a number"
        shown = digits if len(digits) <= 24 else f"{digits[:12]}... ({len(digits)} digits)"
        raise ConfigError(f"{where(loc)}: the integer {'-' if value < 0 else ''}{shown} does not fit "
                          "in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where(loc)}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(key, loc, where)
            _check_numbers(item, (*loc, key if isinstance(key, int | str) else str(key)), where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_numbers(item, (*loc, index), where)


# -- overrides -----------------------------------------------------------------------------
def parse_override(text: str) -> tuple[Loc, Any]:
    """``steps.0.persona=max`` → ``(("steps", 0, "persona"), "max")``; the value is a YAML scalar.

    :raises UsageError: no ``=`` or an empty path.
    """
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise UsageError(f"--set {text!r}: expected KEY.PATH=VALUE", hint="e.g. --set steps.0.persona=max")
    try:
        value = load_yaml(raw)[0] if raw.strip() else ""
    except YAMLProblem as exc:
        raise UsageError(f"--set {text!r}: the value is {exc.problem}") from exc
    loc = tuple(int(p) if p.isdigit() else p for p in path.strip().split("."))
    return loc, value


def apply_override(data: dict[str, Any], loc: Loc, value: Any) -> None:
    """Set ``value`` at key path ``loc`` in ``data`` (mappings may gain keys; list indexes must exist).

    :raises UsageError: the path goes through a missing list item or a scalar.
    """
    node: Any = data
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        where = ".".join(str(p) for p in loc[: depth + 1])
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise UsageError(f"--set {'.'.join(map(str, loc))}: no list item {where}")
            if last:
                node[part] = value
            else:
                node = node[part]
        elif isinstance(node, dict):
            key = str(part)
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise UsageError(f"--set {'.'.join(map(str, loc))}: {where} is inside a scalar value")


# -- loading -------------------------------------------------------------------------------
def _read_text(config: str, stdin: IO[str] | IO[bytes] | None) -> tuple[str, str]:
    source = "<stdin>" if config == "-" else config
    if config != "-":
        problem = path_problem(config)
        if problem == "is a directory" or problem == "does not exist":
            raise UsageError(f"cannot read chain file {config}: it {problem}",
                             hint="give --config a YAML file, or - for stdin")
    try:
        data = read_limited(stdin or sys.stdin if config == "-" else config)
        return decode_utf8(data), source
    except OSError as exc:
        raise UsageError(f"cannot read chain file {config}: {exc.strerror or exc}") from exc
    except YAMLProblem as exc:
        raise ConfigError(f"{exc.where(source)}: {exc.problem}",
                          hint="a chain file is a small UTF-8 YAML file") from exc


def _options_adapter(step_type: str) -> tuple[set[str], TypeAdapter[Any]]:
    cls = options_class(step_type)
    return {f.name for f in dataclasses.fields(cls)}, TypeAdapter(cls)


#: A step key that names a file the chain reads, and how to check it.
_REFS = (("template", load_template), ("persona", load_persona))


def _backend_choices(kind: Any) -> tuple[str, ...]:
    """``auto`` and the registered backends of the kind ``kind`` uses (read now: a backend
    registered later is among them)."""
    return tuple(LLM_CHOICES if kind.backend == "llm" else TTS_CHOICES)


def reserved_params(step_type: str) -> frozenset[str]:
    """The ``params`` a step of ``step_type`` may not set: what the chain sets (``resume``,
    ``strict``, ``overwrite``, the kind's folders that params may not move) and the step's own
    keys that are also options (``template``, ``persona``)."""
    kind = registry.get(step_type)
    options = {f.name for f in dataclasses.fields(kind.options)}
    own = set(kind.step_model.model_fields) & options
    fixed = {name for name, (_, settable) in kind.dirs.items() if not settable}
    return frozenset(RESERVED_PARAMS | own | fixed) & (options | RESERVED_PARAMS)


def _check_step(spec: ChainSpec, index: int, where: _Where) -> None:
    step = spec.steps[index]
    kind = registry.get(step.type)
    base: Loc = ("steps", index)
    if kind.backend is not None:
        choices = _backend_choices(kind)
        backend = getattr(step, "backend", "auto")
        if backend not in choices:
            raise ConfigError(f"{where((*base, 'backend'))}: unknown {step.type} backend '{backend}'",
                              hint=f"choose one of: {', '.join(choices)}")
        try:
            step_settings(kind.backend, backend, dict(step.model_extra or {}))
        except AicpError as exc:
            raise ConfigError(f"{where((*base, *getattr(exc, 'loc', ())))}: {exc.message}", hint=exc.hint) from exc
    for key, loader in _REFS:
        value = getattr(step, key, None)
        if value is None:
            continue
        try:
            loader(value)
        except AicpError as exc:
            raise ConfigError(f"{where((*base, key))}: {exc.message}", hint=exc.hint) from exc
    allowed, adapter = _options_adapter(step.type)
    reserved = reserved_params(step.type)
    for key in step.params:
        if key in reserved:
            target = key if key in type(step).model_fields else "the chain (--resume, on_error, output_dir)"
            raise ConfigError(f"{where((*base, 'params', key))}: '{key}' is set by {target}, not in params")
        if key not in allowed:
            raise ConfigError(f"{where((*base, 'params', key))}: unknown {step.type} parameter '{key}'",
                              hint="known: " + ", ".join(sorted(allowed - reserved)))
    try:
        adapter.validate_python(step.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{where((*base, 'params', *first['loc']))}: {first['msg']}") from exc
    for checker in (kind, *registry.refinements(step.type)):
        if checker.check_step is None:
            continue
        try:
            checker.check_step(step)
        except AicpError as exc:
            loc = tuple(getattr(exc, "loc", ()))
            raise ConfigError(f"{where((*base, *loc))}: {exc.message}", hint=exc.hint) from exc


#: The keys that name a file or folder (or a NAME|PATH): empty or blank, each is a config error
#: (and so is every backend setting of type ``path`` or ``folder``: :func:`_path_settings`).
PATH_KEYS = ("input", "output_dir")
STEP_PATH_KEYS = ("template", "persona", "model")
PARAM_PATH_KEYS = ("work_dir",)


def _path_settings(step: Any) -> tuple[str, ...]:
    """The step keys of the backend settings that name a file or folder, of every backend of
    the kind ``step``'s stage uses (``voice``, ``checkpoint_dir``...)."""
    kind = registry.find(step.type)
    if kind is None or kind.backend is None:
        return ()
    return tuple(dict.fromkeys(s.step_key for _, table in all_settings(kind.backend) for s in table
                               if s.type in ("path", "folder")))


def _refuse_blank_paths(spec: ChainSpec, where: _Where) -> None:
    """:raises ConfigError: a path key (:data:`PATH_KEYS`, :data:`STEP_PATH_KEYS`,
    :data:`PARAM_PATH_KEYS`) that is empty or blank, or holds a NUL character, named by key
    path and line."""
    found: list[tuple[Loc, Any]] = [((key,), getattr(spec, key)) for key in PATH_KEYS]
    for index, step in enumerate(spec.steps):
        found += [(("steps", index, key), getattr(step, key, None))
                  for key in (*STEP_PATH_KEYS, *_path_settings(step))]
        found += [(("steps", index, "params", key), step.params.get(key)) for key in PARAM_PATH_KEYS]
    for loc, value in found:
        if isinstance(value, str) and not value.strip():
            raise ConfigError(f"{where(loc)}: {loc[-1]} is {'empty' if not value else 'blank'}",
                              hint=f"give {loc[-1]} a path" if loc[-1] in PATH_KEYS + PARAM_PATH_KEYS
                              else f"give {loc[-1]} a name or a path, or leave the key out")
        if isinstance(value, str) and "\x00" in value:  # no file system takes one
            raise ConfigError(f"{where(loc)}: {loc[-1]} contains a NUL character (\\x00): no path can")


def load_chain(config: str, overrides: Iterable[str] = (), *, stdin: IO[str] | None = None) -> ChainSpec:
    """Read, override and validate a chain file (``-`` reads it from stdin).

    :param overrides: ``KEY.PATH=VALUE`` strings (``--set``), applied before validation.
    :returns: the :class:`ChainSpec`, with ``source`` set.
    :raises UsageError: unreadable file, malformed ``--set``.
    :raises ConfigError: invalid YAML, unknown key, bad type, unknown template,
        persona, backend or stage parameter; the message names key path and line.
    """
    text, source = _read_text(config, stdin)
    try:
        data, root = load_yaml(text)
    except YAMLProblem as exc:
        raise ConfigError(f"{exc.where(source)}: {exc.problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a chain file must hold a mapping (name, input, output_dir, steps)")
    overridden: set[Loc] = set()
    for text_override in overrides:
        loc, value = parse_override(text_override)
        apply_override(data, loc, value)
        overridden.add(loc)
    where = _Where(source, root, overridden)
    _check_numbers(data, (), where)
    try:
        spec = ChainSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{where(_clean_loc(first['loc']))}: {first['msg']}") from exc
    _refuse_blank_paths(spec, where)
    if spec.shard is not None and spec.shard.strip().lower() != "auto":
        from ..shards import parse as parse_shard

        try:
            parse_shard(spec.shard)
        except UsageError as exc:
            raise ConfigError(f"{where(('shard',))}: {exc.message}", hint="K/N (e.g. 0/4) or auto") from exc
    problem = path_problem(spec.input) if spec.input != "-" else None
    if problem is not None:
        raise ConfigError(f"{where(('input',))}: input file {spec.input} {problem}",
                          hint='give a JSON Lines file, or "-" (quoted) for stdin')
    for index in range(len(spec.steps)):
        _check_step(spec, index, where)
    spec.source = source
    return spec


def with_hosts(spec: ChainSpec, hosts: list[str] | None) -> ChainSpec:
    """``spec`` with ``host`` of every step whose backend kind has a ``host`` setting (an LLM
    step: Ollama's) set to ``hosts`` (``aicp run-chain --host``, repeated or comma lists:
    several hosts); ``spec`` itself when ``hosts`` is empty."""
    hosts = [h for h in hosts or [] if h.strip()]  # an empty --host (an unset $VAR) sets nothing
    if not hosts:
        return spec

    def takes_host(step: Any) -> bool:
        kind = registry.find(step.type)
        return kind is not None and kind.backend is not None and any(
            s.step_key == "host" for _, table in all_settings(kind.backend) for s in table)

    steps = [step.model_copy(update={"host": hosts}) if takes_host(step) else step for step in spec.steps]
    return spec.model_copy(update={"steps": steps})  # keeps ``source`` (an excluded field) too


__all__ = ["MAX_PRICE", "ChainSpec", "Prices", "ScriptStep", "VoiceStep", "apply_override", "load_chain",
           "node_line", "parse_override", "with_hosts"]
