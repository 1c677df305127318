"""The body of ``POST /api/v1/generate`` and how it becomes a validated chain.

A request names the work (``records``, or one topic: ``title``/``description``/
``length_target``) and either the simple form (``template``/``script_type``,
``persona`` or ``personas``, ``params``, ``voice``) or a whole ``chain`` object (the run-chain file
without ``input``/``output_dir``, which the service sets per job). The chain is then
checked by the same :func:`~ai_content_pipeline.chain.spec.load_chain` as
``aicp run-chain``, so a bad parameter is refused before the job is queued.

What a client may not choose, because it would reach outside the job: file paths
(templates, personas, models, voices, ``work_dir``; a record's song ``file`` is not read
for tags: the service sets ``song_field`` to none) and the backend settings only the
operator may set (those a backend marks ``operator``: files, folders, servers, such as
``checkpoint_dir`` or ``host``). Templates and personas are built-in names only, also in a record's
``persona``/``dj``/``hosts`` fields and a chain step's ``params.personas``; models and voices are names from the operator's lists
(``aicp serve --allow-model/--allow-voice``; by default the bundled model and voice),
which the service turns into the operator's files. An unknown name gets the same answer
whether or not a file of that name exists anywhere.
"""

from __future__ import annotations

import io
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..errors import AicpError
from ..templates import list_personas, list_templates


class RequestProblem(AicpError):
    """A request that is well-formed JSON but cannot run (HTTP 422); ``field`` names the key."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


class GenerateRequest(BaseModel):
    """``POST /api/v1/generate`` body.

    Give ``records`` (objects as ``aicp script`` reads them) **or** a topic (``title``,
    optional ``description`` and ``length_target`` in words: a long-form script).
    Then either the simple form or ``chain``.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"template": "song-intro", "persona": "julie", "voice": True,
         "records": [{"id": "song-001", "artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975}]},
        {"title": "How vinyl records made a comeback", "description": "sales grew 15 years in a row",
         "length_target": 600, "persona": "sam", "voice": True},
    ]})

    name: str | None = Field(None, max_length=100, pattern=r"^[\w .@-]+$",
                             description="a label for the job (default: the template's name)")
    template: str | None = Field(None, description="built-in template name (see GET /api/v1/templates)")
    script_type: str | None = Field(None, description="another name for `template`")
    persona: str | None = Field(None, description="built-in persona name (see GET /api/v1/personas)")
    personas: list[str] | None = Field(None, min_length=1, max_length=8,
                                       description="a dialogue template's hosts (podcast-dialogue, "
                                                   "radio-banter): built-in persona names, the first opens")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="script stage parameters: variants, temperature, top_p, "
                                               "max_tokens, seed, words, sections, retries...")
    backend: str = Field("auto", description="auto or an LLM backend: llamacpp, ollama, an installed one")
    model: str | None = Field(None, description="LLM model: a name from the server's list "
                                                "(the error for another name lists them); not a path")
    voice: bool = Field(False, description="add the voice step (audio files)")
    voice_backend: str = Field("auto", description="auto or a TTS backend: piper, chatterbox, an installed one")
    voice_params: dict[str, Any] = Field(default_factory=dict,
                                         description="voice stage parameters: format, loudness, seed, verify...")
    backend_settings: dict[str, Any] = Field(default_factory=dict,
                                             description="settings of the LLM backend (its chain step keys: "
                                                         "timeout, keep_alive, threads...), checked against "
                                                         "the chosen backend's")
    voice_settings: dict[str, Any] = Field(default_factory=dict,
                                           description="settings of the TTS backend (its chain step keys: "
                                                       "exaggeration, device...), checked against the chosen "
                                                       "backend's")
    on_error: Literal["continue", "stop"] = "continue"
    records: list[dict[str, Any]] | None = Field(None, description="input records (JSON objects)")
    title: str | None = Field(None, min_length=1, max_length=500, description="one topic: its title")
    description: str | None = Field(None, max_length=10000, description="one topic: notes for the writer")
    length_target: int | None = Field(None, ge=100, le=20000, description="one topic: words of the script")
    chain: dict[str, Any] | None = Field(None, description="a run-chain file as an object, "
                                                            "without input and output_dir")

    @field_validator("backend", "voice_backend")
    @classmethod
    def _known_backend(cls, value: str, info: ValidationInfo) -> str:
        from ..backends.registry import LLM_CHOICES, TTS_CHOICES

        choices = LLM_CHOICES if info.field_name == "backend" else TTS_CHOICES
        if value not in choices:
            raise ValueError(f"unknown backend '{value}'; choose one of: {', '.join(choices)}")
        return value

    @model_validator(mode="after")
    def _one_kind_of_work(self) -> GenerateRequest:
        if (self.records is None) == (self.title is None):
            raise ValueError("give either `records` or a topic (`title`), not both or neither")
        if self.title is None and (self.description is not None or self.length_target is not None):
            raise ValueError("`description` and `length_target` go with `title`")
        if self.template and self.script_type and self.template != self.script_type:
            raise ValueError("`template` and `script_type` name different templates")
        if self.persona is not None and self.personas is not None:
            raise ValueError("give `persona` or `personas` (a dialogue's hosts, the first opens), not both")
        if self.chain is not None:
            simple = [k for k in ("template", "script_type", "persona", "personas", "params", "model", "voice",
                                  "voice_params", "backend_settings", "voice_settings") if k in self.model_fields_set]
            if simple:
                raise ValueError(f"with `chain`, set {', '.join(simple)} inside the chain's steps")
        return self


class ReviewRequest(BaseModel):
    """``POST /api/v1/generate/{id}/records/{index}/review`` body: a person's decision on one
    output record (sent again, it replaces the earlier one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"decision": "approved"}, {"decision": "rejected", "note": "mispronounces the band's name"}]})

    decision: Literal["approved", "rejected"]
    note: str | None = Field(None, max_length=2000, description="why (optional)")


class EditRequest(BaseModel):
    """``POST /api/v1/generate/{id}/records/{index}/edit`` body: the take's script text as a
    person wrote it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "That was Queen with Bohemian Rhapsody, six minutes that changed rock."}]})

    text: str = Field(..., min_length=1, max_length=100_000, description="the new script text")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the text is blank")
        return value


def _builtin(kind: str, field: str, value: Any, names: list[str]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or value not in names:
        raise RequestProblem(field, f"unknown {kind} {value!r}", hint=f"choose one of: {', '.join(names)}")


def _bundled(kind: str) -> dict[str, str]:
    """``{name: file}`` of what the ``kind`` backends ship (their ``bundled`` hooks), in
    ``auto``'s order (a name given twice: the first)."""
    from ..backends.registry import by_priority

    out: dict[str, str] = {}
    for info in by_priority(kind):
        hook = info.load("bundled")
        for name, path in (hook() if hook is not None else {}).items():
            out.setdefault(name, path)
    return out


def default_models() -> dict[str, str]:
    """The models clients may name when the operator lists none: the files the LLM backends
    ship (the bundled GGUF), by file name (``{}`` when none is installed)."""
    return _bundled("llm")


def default_voices() -> dict[str, str]:
    """The voices clients may name when the operator lists none: the voices the TTS backends
    ship (the bundled Piper voice; ``{}`` when none is installed)."""
    return _bundled("tts")


def _named(kind: str, field: str, value: Any, table: dict[str, str]) -> str | None:
    """The operator's value for the name ``value`` from ``table``; the error for any other
    value (a path, a file name, an unknown name) says the same, never what is on disk.

    :raises RequestProblem: ``value`` is not a name in ``table``.
    """
    if value is None:
        return None
    if not isinstance(value, str) or value not in table:
        names = ", ".join(sorted(table)) or f"none: this server takes no {kind} from clients"
        raise RequestProblem(field, f"unknown {kind} {value!r}" if isinstance(value, str) else f"must be a {kind} name",
                             hint=f"name one of the server's {kind}s: {names}")
    return table[value]


def _operator_settings(step_type: Any) -> dict[str, str]:
    """``step key → backend`` of the settings only the operator may set (a file, a folder, a
    server: :attr:`~ai_content_pipeline.backends.settings.Setting.operator`) of the backends
    of the kind ``step_type`` uses (``{}`` for a kind without a backend)."""
    from ..backends.registry import all_settings
    from ..stages import registry

    kind = registry.find(step_type)
    if kind is None or kind.backend is None:
        return {}
    return {s.step_key: name for name, table in all_settings(kind.backend) for s in table
            if s.operator or (s.type in ("path", "folder") and s.step_key != "voice")}


def _setting_keys(step_type: str, field: str, settings: dict[str, Any]) -> None:
    """:raises RequestProblem: a key of ``settings`` that is no setting of any backend of the
    kind ``step_type`` uses (a step key such as ``model`` or ``type`` is no setting)."""
    from ..backends.registry import all_settings
    from ..stages import registry

    kind = registry.get(step_type)
    known = {s.step_key for _, table in all_settings(kind.backend or "") for s in table} if kind.backend else set()
    for key in settings:
        if key not in known:
            raise RequestProblem(f"{field}{key}", f"no {(kind.backend or '').upper()} backend has a setting '{key}'",
                                 hint="the backends' settings: " + (", ".join(sorted(known)) or "none"))


def _uses(step_type: Any, backend_kind: str) -> bool:
    from ..stages import registry

    kind = registry.find(step_type)
    return kind is not None and kind.backend == backend_kind


def _refuse_operator_settings(field: str, step_type: Any, settings: Any) -> None:
    """:raises RequestProblem: ``settings`` (a step, or a settings mapping) sets a setting only
    the operator may set (``field`` + its key names it)."""
    if not isinstance(settings, dict):
        return
    for key, backend in _operator_settings(step_type).items():
        if key in settings:
            raise RequestProblem(f"{field}{key}", f"is set by the server's operator ({backend})",
                                 hint="name a voice or model from the server's list instead")


def _refuse_lexicon(field: str) -> None:
    """A request naming lexicon files: files on the server are the operator's to name.

    :raises RequestProblem: always.
    """
    raise RequestProblem(field, "names files on the server, which a request cannot",
                         hint="the server's own lexicon (its user folder's lexicon/) applies to every job")


def _takes_words(step_type: Any) -> bool:
    """Whether a step of ``step_type`` has a ``words`` option (a topic's ``length_target`` goes
    there): a kind of the stage registry, not a name this module knows."""
    return _has_option(step_type, "words")


def _has_option(step_type: Any, name: str) -> bool:
    import dataclasses

    from ..stages import registry

    kind = registry.find(step_type)
    return kind is not None and name in {f.name for f in dataclasses.fields(kind.options)}


def _no_song_files(field: str, step: dict[str, Any]) -> None:
    """Set ``step``'s ``song_field`` to none (a job never opens a file a record names) when its
    kind has one. :raises RequestProblem: the client set it (``field`` names the params)."""
    params = step.get("params")
    if isinstance(params, dict) and "song_field" in params:
        raise RequestProblem(f"{field}song_field", "is set by the service: a job reads no file a record names")
    if _has_option(step.get("type"), "song_field") and (params is None or isinstance(params, dict)):
        step["params"] = {**(params or {}), "song_field": None}


def slug(text: str) -> str:
    """A record id from a title: lowercase words joined by ``-`` (``topic`` when empty)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "topic"


def build_chain(req: GenerateRequest, *, models: dict[str, str] | None = None,
                voices: dict[str, str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """The chain (as a dict, without ``input``/``output_dir``), the input records, and a map
    from chain key paths back to request fields (for error messages).

    :param models: ``{name clients use: .gguf path or Ollama model}`` (default: :func:`default_models`).
    :param voices: ``{name clients use: voice file}`` (default: :func:`default_voices`).
    :raises RequestProblem: unknown template, persona, model or voice name; a ``checkpoint_dir``.
    """
    models = default_models() if models is None else models
    voices = default_voices() if voices is None else voices
    templates = [t["name"] for t in list_templates()]
    personas = [p["name"] for p in list_personas()]
    if req.records is not None:
        inputs = req.records
        default_template = "song-intro"
    else:
        topic: dict[str, Any] = {"id": slug(req.title or ""), "topic": req.title, "title": req.title}
        if req.description:
            topic["notes"] = req.description
        inputs = [topic]
        default_template = "podcast-longform"
    for i, record in enumerate(inputs):
        for key in ("persona", "dj"):
            if key in record:
                _builtin("persona", f"records.{i}.{key}", record[key], personas)
        if isinstance(record.get("hosts"), list):  # names only (the stage refuses any other value)
            for j, name in enumerate(record["hosts"]):
                _builtin("persona", f"records.{i}.hosts.{j}", name, personas)
    where: dict[str, str] = {}
    if req.chain is not None:
        chain = dict(req.chain)
        for key in ("input", "output_dir", "shard"):
            if key in chain:
                raise RequestProblem(f"chain.{key}", "is set by the service for each job",
                                     hint="send the input as `records` or a topic")
        given = chain.get("steps")
        steps: list[Any] = list(given) if isinstance(given, list) else []
        if isinstance(given, list):
            chain["steps"] = steps
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            _builtin("template", f"chain.steps.{i}.template", step.get("template"), templates)
            _builtin("persona", f"chain.steps.{i}.persona", step.get("persona"), personas)
            step = steps[i] = dict(step)
            if "model" in step:
                step["model"] = _named("model", f"chain.steps.{i}.model", step["model"], models)
            if "voice" in step and _uses(step.get("type"), "tts"):
                step["voice"] = _named("voice", f"chain.steps.{i}.voice", step["voice"], voices)
            _refuse_operator_settings(f"chain.steps.{i}.", step.get("type"), step)
            params = step.get("params")
            if isinstance(params, dict) and isinstance(params.get("personas"), list):
                for j, name in enumerate(params["personas"]):
                    _builtin("persona", f"chain.steps.{i}.params.personas.{j}", name, personas)
            if isinstance(params, dict) and "work_dir" in params:
                raise RequestProblem(f"chain.steps.{i}.params.work_dir", "is set by the service for each job")
            if isinstance(params, dict) and "lexicon" in params:
                _refuse_lexicon(f"chain.steps.{i}.params.lexicon")
            if req.title is not None and isinstance(params, dict) and req.length_target \
                    and _takes_words(step.get("type")):
                params.setdefault("words", req.length_target)
            _no_song_files(f"chain.steps.{i}.params.", step)
        chain.setdefault("name", req.name or "chain")
        where = {"": "chain."}
    else:
        template = req.template or req.script_type or default_template
        _builtin("template", "template" if req.template else "script_type" if req.script_type else "template",
                 template, templates)
        _builtin("persona", "persona", req.persona, personas)
        for j, name in enumerate(req.personas or []):
            _builtin("persona", f"personas.{j}", name, personas)
        model = _named("model", "model", req.model, models)
        if "work_dir" in req.params:
            raise RequestProblem("params.work_dir", "is set by the service for each job")
        if "lexicon" in req.voice_params:
            _refuse_lexicon("voice_params.lexicon")
        params = dict(req.params)
        if req.personas:
            params["personas"] = list(req.personas)
        if req.length_target:
            params.setdefault("words", req.length_target)
        _setting_keys("script", "backend_settings.", req.backend_settings)
        _setting_keys("voice", "voice_settings.", req.voice_settings)
        _refuse_operator_settings("backend_settings.", "script", req.backend_settings)
        _refuse_operator_settings("voice_settings.", "voice", req.voice_settings)
        if "voice" in req.voice_settings:
            raise RequestProblem("voice_settings.voice", "is not a setting a request gives here",
                                 hint="send a `chain` whose voice step names a voice from the server's list")
        script: dict[str, Any] = {**req.backend_settings, "type": "script", "template": template,
                                  "backend": req.backend, "params": params}
        _no_song_files("params.", script)
        if req.persona:
            script["persona"] = req.persona
        if model:
            script["model"] = model
        steps = [script]
        if req.voice:
            steps.append({**req.voice_settings, "type": "voice", "backend": req.voice_backend,
                          "params": dict(req.voice_params)})
        chain = {"name": req.name or template, "on_error": req.on_error, "steps": steps}
        where = {"steps.0.params.": "params.", "steps.0.template": "template", "steps.0.persona": "persona",
                 "steps.0.params.personas": "personas",
                 "steps.0.backend": "backend", "steps.0.model": "model", "steps.1.params.": "voice_params.",
                 "steps.1.backend": "voice_backend", "": ""}
        where.update({f"steps.0.{k}": f"backend_settings.{k}" for k in req.backend_settings})
        where.update({f"steps.1.{k}": f"voice_settings.{k}" for k in req.voice_settings})
    return chain, inputs, where


def validate_chain(chain: dict[str, Any], input_path: str, output_dir: str,
                   where: dict[str, str]) -> dict[str, Any]:
    """Check ``chain`` with ``input``/``output_dir`` set exactly as ``aicp run-chain`` would;
    return the validated chain as a JSON-able dict.

    :raises RequestProblem: naming the request field (e.g. ``params.temperature``).
    """
    from ..chain.spec import load_chain

    data = {**chain, "input": input_path, "output_dir": output_dir}
    try:
        spec = load_chain("-", stdin=io.StringIO(yaml.safe_dump(data, sort_keys=False)))
    except AicpError as exc:
        message = re.sub(r"^<stdin>(:\d+)?: ", "", exc.message)
        path, sep, rest = message.partition(": ")
        field = path
        for prefix in sorted(where, key=len, reverse=True):
            if path.startswith(prefix):
                field = where[prefix] + path[len(prefix):]
                break
        raise RequestProblem(field if sep else "chain", rest if sep else message, hint=exc.hint) from exc
    return spec.model_dump(mode="json")


__all__ = ["EditRequest", "GenerateRequest", "RequestProblem", "ReviewRequest", "build_chain", "default_models",
           "default_voices", "slug", "validate_chain"]
