"""Request bodies read the way the commands read records: every value kept as sent, or refused.

FastAPI's own reading (the standard ``json`` module) turns ``1e400`` into infinity and
accepts ``NaN`` and lone surrogates, which then become ``null`` or a 500 further on. The
submit route reads its body with :func:`parse_body` instead: the project's JSON Lines
reader (:func:`~ai_content_pipeline.jsonl.loads`), so an integer past 64 bits or a number
a double cannot hold comes back out byte for byte, as ``aicp script`` writes it back.

What the commands refuse in a record is refused here with a :class:`RequestProblem`
(HTTP 422) naming the field: ``NaN``/``Infinity``, lone surrogates, a record nested more
than :data:`~ai_content_pipeline.jsonl.MAX_DEPTH` levels. Outside ``records`` (``chain``,
``params``, ``voice_params``: settings, not data) nesting stops at
:data:`SETTINGS_DEPTH` levels and numbers must fit a 64-bit integer or a finite double.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from ..jsonl import MAX_DEPTH, ExactFloat, loads
from .requests import RequestProblem

#: deepest nesting of the settings objects of a request (``chain``, ``params``...)
SETTINGS_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_BIG_NUMBER = re.compile(rb"[0-9][0-9.]{15,}|[eE][+-]?[0-9]{3,}")

Path = tuple[str | int, ...]


class _Constant:
    """``NaN``/``Infinity`` as the standard parser met them (only while locating a problem)."""

    def __init__(self, name: str) -> None:
        self.name = name


def field_name(path: Path) -> str:
    """``("records", 0, "x")`` → ``records.0.x``; the empty path is ``body``. A key that is not
    Unicode text (a lone surrogate) is written with ``\\u`` escapes."""
    text = ".".join(str(p) for p in path) or "body"
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _not_utf8(text) else text


def _walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any, int]]:
    """Every node of ``value`` with its key path and depth (1 = ``value``); iterative, so any
    nesting is walked without recursion."""
    stack: list[tuple[Any, Path, int]] = [(value, path, 1)]
    while stack:
        node, where, depth = stack.pop()
        yield where, node, depth
        if isinstance(node, dict):
            stack.extend((v, (*where, k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*where, i), depth + 1) for i, v in enumerate(node))


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _locate(raw: bytes, exc: Exception) -> RequestProblem:
    """The field of a body the JSON Lines reader refused, found with the standard parser
    (which accepts lone surrogates and ``NaN``), or ``body`` when that cannot say."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return RequestProblem("body", "is not valid UTF-8")
    if "depth limit" in str(exc) or isinstance(exc, RecursionError):
        return RequestProblem("body", f"is nested too deeply (a record may have {MAX_DEPTH} levels)")
    try:
        value = json.loads(text, parse_constant=_Constant)
    except RecursionError:
        return RequestProblem("body", f"is nested too deeply (a record may have {MAX_DEPTH} levels)")
    except ValueError as err:
        return RequestProblem("body", f"is not valid JSON: {err}")
    for where, node, _ in _walk(value):
        if isinstance(node, _Constant):
            return RequestProblem(field_name(where), f"{node.name} is not a JSON number",
                                  hint="send a number, a string or null")
        if isinstance(node, str) and _not_utf8(node):
            return RequestProblem(field_name(where), "has a lone surrogate (\\ud800-\\udfff): not Unicode text",
                                  hint="send each character outside the BMP as a surrogate pair")
        if isinstance(node, dict):
            for key in node:
                if _not_utf8(key):
                    return RequestProblem(field_name((*where, key)), "is a key with a lone surrogate",
                                          hint="send each character outside the BMP as a surrogate pair")
    return RequestProblem("body", f"is not valid JSON: {exc}")


def _check_record(record: Any, where: Path) -> None:
    for path, node, depth in _walk(record, where):
        if isinstance(node, (dict, list)) and depth > MAX_DEPTH:
            name = field_name(path[: len(where) + 1])
            raise RequestProblem(name, f"is nested more than {MAX_DEPTH} levels deep",
                                 hint="the commands refuse such a record too")


def _settings(value: Any, where: Path) -> Any:
    """``value`` (a settings object) checked: nesting, and numbers a setting can hold; a finite
    float given with more digits than a double keeps becomes that double, as a chain file's would."""
    for path, node, depth in _walk(value, where):
        if isinstance(node, (dict, list)) and depth > SETTINGS_DEPTH:
            raise RequestProblem(field_name(where), f"is nested more than {SETTINGS_DEPTH} levels deep")
        if isinstance(node, ExactFloat) and not math.isfinite(node):
            raise RequestProblem(field_name(path), f"{node.text} is out of range for a setting",
                                 hint="a setting is a double-precision number")
        if isinstance(node, int) and not isinstance(node, bool) and not _INT_MIN <= node <= _INT_MAX:
            raise RequestProblem(field_name(path), "is an integer past 64 bits",
                                 hint="a setting is a 64-bit integer")
    return _plain(value)


def _plain(value: Any) -> Any:
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            if isinstance(child, ExactFloat):
                node[key] = float(child)
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return float(value) if isinstance(value, ExactFloat) else value


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body, read as :func:`~ai_content_pipeline.jsonl.loads` reads
    a record line; ``records`` keep every value as sent.

    :raises RequestProblem: not JSON, not UTF-8, ``NaN``/``Infinity``, a lone surrogate,
        nested too deeply, a setting out of range (HTTP 422, naming the field).
    """
    try:
        value = loads(raw)
    except (ValueError, RecursionError) as exc:  # json/orjson errors, UnicodeDecodeError
        raise _locate(raw, exc) from None
    if not isinstance(value, dict):
        return value  # the request model says what the body must be
    deep = raw.count(b"[") + raw.count(b"{") > SETTINGS_DEPTH
    records = value.get("records")
    if deep and isinstance(records, list):
        for i, record in enumerate(records):
            _check_record(record, ("records", i))
    if deep or _BIG_NUMBER.search(raw):
        for key in list(value):
            if key != "records":
                value[key] = _settings(value[key], (key,))
    return value


__all__ = ["SETTINGS_DEPTH", "field_name", "parse_body"]
