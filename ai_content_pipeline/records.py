"""Record helpers: stable safe ids, dotted-path lookups, word counts.

A *record* is one JSON object read from a JSON Lines input. Stages never change
the fields a record arrived with; they add one object (``script``, ``audio``)
or an ``error``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from .jsonl import dumps

#: Fields every run may add whatever its stages: a failed record's ``error`` and a sharded
#: run's position tag ``_aicp`` (see :mod:`ai_content_pipeline.shards`).
RUN_FIELDS = frozenset({"error", "_aicp"})
_fields: frozenset[str] | None = None
_listening = False


def _forget() -> None:
    global _fields
    _fields = None


def stage_fields() -> frozenset[str]:
    """The fields aicp stages add: each registered stage kind's record field (``script``,
    ``audio``: :attr:`~ai_content_pipeline.stages.kind.StageKind.record_field`) plus
    :data:`RUN_FIELDS`. They are ignored when deriving an id, so a record keeps the same id
    before and after each stage, sharded or not. Read from the stage registry (again after a
    kind registers); ``STAGE_FIELDS`` is the same set."""
    global _fields, _listening
    if _fields is None:
        from .stages import registry

        if not _listening:
            registry.on_change(_forget)
            _listening = True
        kinds = [*registry.kinds(), *(r for k in registry.kinds() for r in registry.refinements(k.name))]
        _fields = RUN_FIELDS | {k.record_field for k in kinds if k.record_field}
    return _fields


def __getattr__(name: str) -> Any:
    if name == "STAGE_FIELDS":  # read when asked: kinds register at run time
        return stage_fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

MAX_ID_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def content_hash(value: Any, length: int = 16) -> str:
    """Hex SHA-256 of ``value`` serialized as canonical JSON (sorted keys, numbers as read), truncated."""
    data = dumps(value, sort_keys=True)
    return hashlib.sha256(data).hexdigest()[:length]


def slugify(text: str, max_length: int = MAX_ID_LENGTH) -> str:
    """ASCII slug safe in a file name: no path separators, no ``..``, bounded length."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", text).strip("-._")
    slug = re.sub(r"\.{2,}", ".", slug)
    return slug[:max_length].rstrip("-._")


def record_id(record: dict[str, Any]) -> str:
    """Return the record's file-name-safe id.

    Uses ``record["id"]`` when present (slugified; a long or changed id gets a
    short hash suffix so two ids never collide after cleaning). Otherwise an id
    is derived from the content: a slug of the ``title``/``topic``/``name`` plus
    an 8-hex hash of the record without the stage fields, so the id is stable
    across runs and stages.
    """
    raw = record.get("id")
    if raw is not None and str(raw) != "":
        raw_s = str(raw)
        slug = slugify(raw_s)
        if slug == raw_s and len(slug) <= MAX_ID_LENGTH:
            return slug
        return f"{slug[: MAX_ID_LENGTH - 9] or 'id'}-{content_hash(raw_s, 8)}"
    fields = stage_fields()
    base = {k: v for k, v in record.items() if k not in fields}
    label = ""
    for field in ("title", "topic", "name"):
        if isinstance(base.get(field), str):
            label = slugify(base[field], 40).lower()
            break
    digest = content_hash(base, 8)
    return f"{label}-{digest}" if label else f"rec-{digest}"


def get_path(record: dict[str, Any], dotted: str) -> Any:
    """Look up ``a.b.c`` in nested dicts; ``None`` when any part is missing."""
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def word_count(text: str) -> int:
    """Number of whitespace-separated words in ``text``."""
    return len(text.split())
