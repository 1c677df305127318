"""A persona's ``voice`` block: one sub-block per TTS backend, each validated by the persona
voice model that backend declares in the registry (``voice: {piper: {...}, chatterbox: {...}}``).

A backend registered later (an installed package, :func:`~.registry.register_backend`) has its
block accepted at once; a key that is no TTS backend, or a backend without a persona voice
model, is refused like any unknown key (``Extra inputs are not permitted``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from . import registry


def voice_models() -> dict[str, type[BaseModel]]:
    """``backend name → persona voice model`` of every TTS backend that declares one, in choice order."""
    out: dict[str, type[BaseModel]] = {}
    for info in registry.backends("tts"):
        model = info.load("persona_voice")
        if model is not None:
            out[info.name] = model
    return out


def file_settings() -> dict[str, str]:
    """``backend name → key`` of the persona voice setting that names a file
    (``piper → voice``, ``chatterbox → audio_prompt``)."""
    return {info.name: info.voice_file for info in registry.backends("tts")
            if info.voice_file and info.persona_voice is not None}


def _line_error(error: Any, prefix: tuple[Any, ...]) -> dict[str, Any]:
    line: dict[str, Any] = {"type": error["type"], "loc": (*prefix, *error["loc"]), "input": error["input"]}
    if error.get("ctx"):
        line["ctx"] = error["ctx"]
    return line


class VoiceSettings(BaseModel):
    """Per-backend voice settings keyed by TTS backend name; each block is that backend's
    persona voice model (defaults for a backend the input leaves out). Read a block with
    ``settings.piper`` or :meth:`block`."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _blocks(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, VoiceSettings) or not isinstance(data, dict):
            return handler(data)
        models = voice_models()
        own = set(cls.model_fields)
        values: dict[str, Any] = {k: v for k, v in data.items() if k in own}
        errors: list[dict[str, Any]] = []
        for key, value in data.items():
            if key in own:
                continue
            model = models.get(key)
            if model is None:
                errors.append({"type": "extra_forbidden", "loc": (key,), "input": value})
                continue
            try:
                values[key] = value if isinstance(value, model) else model.model_validate(value)
            except ValidationError as exc:
                errors += [_line_error(e, (key,)) for e in exc.errors()]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)  # type: ignore[arg-type]
        blocks = {name: values[name] if name in values else model() for name, model in models.items()}
        return handler({**{k: v for k, v in values.items() if k in own}, **blocks})

    def block(self, backend: str) -> Any:
        """The settings of ``backend`` (its persona voice model), its defaults when unset.

        :raises KeyError: ``backend`` declares no persona voice model.
        """
        extra = self.__pydantic_extra__ or {}
        if backend in extra:
            return extra[backend]
        model = voice_models().get(backend)
        if model is None:
            raise KeyError(backend)
        return model()


__all__ = ["VoiceSettings", "file_settings", "voice_models"]
