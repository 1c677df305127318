"""The shapes of checkpoint-ledger values, checked before a value is served again.

A ledger is a plain file: a hand edit, another tool or a bug can leave a value that
is JSON but not what the stage wrote. A value that does not fit its shape here is
treated as missing, so that work is done again (never served, never an "unexpected"
error). Shapes are pydantic models in strict mode (``true`` is not a word count).
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Tokens(BaseModel):
    """``{"prompt": int, "completion": int}``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: StrictInt = Field(ge=0)
    completion: StrictInt = Field(ge=0)


class ScriptEntry(_Shape):
    """A finished take (``script`` object): non-blank ``text``, its ``words``, ``tokens``."""

    text: StrictStr = Field(pattern=r"\S")
    words: StrictInt = Field(ge=0)
    tokens: Tokens | None = None


class AudioEntry(_Shape):
    """A written audio file (``audio`` object): ``path``, ``size`` (bytes), ``seconds``."""

    path: StrictStr = Field(min_length=1)
    size: StrictInt = Field(gt=0)
    seconds: StrictFloat | StrictInt = Field(ge=0)
    sample_rate: StrictInt = Field(gt=0)


class ChunkEntry(BaseModel):
    """A finished long-form section (``DIR/{id}/checkpoint.jsonl``); no other keys."""

    model_config = ConfigDict(extra="forbid", strict=True)
    index: StrictInt = Field(ge=1)
    section: StrictStr
    words: StrictInt = Field(ge=0)
    target: StrictInt = Field(ge=0)
    tokens: Tokens
    seconds: StrictFloat | StrictInt = Field(ge=0)
    first_token_seconds: StrictFloat | StrictInt | None = None
    continuations: StrictInt = Field(ge=0)
    shortfall: StrictInt = Field(ge=0)
    sha256: StrictStr = Field(pattern=r"^[0-9a-f]{64}$")
    key: StrictStr | None = None
    checks: dict[str, Any] | None = None


class PackEntry(BaseModel):
    """The canonical pack of a long-form record; no other keys."""

    model_config = ConfigDict(extra="forbid", strict=True)
    path: StrictStr
    tokens: Tokens
    seconds: StrictFloat | StrictInt = Field(ge=0)
    key: StrictStr


def fits(shape: type[BaseModel], value: Any) -> bool:
    """Whether ``value`` (a ledger value, or ``None``) has ``shape``."""
    if not isinstance(value, dict):
        return False
    try:
        shape.model_validate(value)
    except ValidationError:
        return False
    return True


__all__ = ["AudioEntry", "ChunkEntry", "PackEntry", "ScriptEntry", "Tokens", "fits"]
