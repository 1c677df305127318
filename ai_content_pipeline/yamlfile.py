"""Bounded, strict YAML for aicp's own files: chain files, templates and personas.

PyYAML's ``safe_load`` is safe from code execution but not from a small file
that expands into gigabytes ("billion laughs": nested aliases), nor does it
complain about a key given twice (the last one silently wins). Files read
through :func:`load_yaml` are:

- at most :data:`MAX_YAML_BYTES` (1 MiB) long and UTF-8;
- free of anchors and aliases (``&name`` / ``*name``): each value is written out
  where it is used, so nothing can expand;
- at most :data:`MAX_DEPTH` (64) collections deep;
- at most :data:`MAX_NODES` (10,000) values (keys, scalars and collections) in all: a file of
  60,000 one-line steps parses and validates for minutes;
- free of duplicate keys in any mapping.

Every violation is a :class:`YAMLProblem` with the 1-based line, which callers
turn into their :class:`~ai_content_pipeline.errors.ConfigError`.
"""

from __future__ import annotations

import os
import re
from typing import IO, Any

import yaml

#: Largest chain, template or persona file read (bytes).
MAX_YAML_BYTES = 1024 * 1024
#: Deepest nesting of mappings and sequences accepted.
MAX_DEPTH = 64
#: Most values (keys, scalars, mappings and sequences) one file may hold.
MAX_NODES = 10_000


class YAMLProblem(Exception):
    """A file that is not acceptable YAML for aicp.

    :ivar problem: what is wrong, for the user. :ivar line: 1-based line, when known.
    """

    def __init__(self, problem: str, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.hint = hint

    def where(self, source: str) -> str:
        """``source:LINE`` (or ``source`` when the line is unknown)."""
        return f"{source}:{self.line}" if self.line else source


class _Reject(yaml.MarkedYAMLError):
    pass


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors/aliases, with a depth limit and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        mark: Any = event.start_mark
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            raise _Reject(None, None, "aliases (*name) are not allowed here: "
                          "write the value out where it is used", mark)
        if anchor:
            raise _Reject(None, None, "anchors (&name) are not allowed here: "
                          "write the value out where it is used", mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:  # keys are composed here too
            raise _Reject(None, None, f"more than {MAX_NODES:,} values (keys, scalars, collections) "
                          "in one file", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Reject(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a collection as key: SafeConstructor rejects it as unhashable
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise _Reject(None, None, f"duplicate key '{key}' (each key may appear once)",
                              key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def redact(problem: str) -> str:
    """A parser's message without the file's own text: quoted fragments (alias names,
    tags) become ``'…'`` (a file may hold secrets; messages go to logs). Single
    characters and PyYAML's token names (``'<stream end>'``) stay."""
    def hide(match: re.Match[str]) -> str:
        inner = match.group(0)[1:-1]
        return match.group(0) if len(inner) <= 1 or (inner.startswith("<") and inner.endswith(">")) else "'…'"

    return _QUOTED.sub(hide, problem)


def read_limited(source: str | os.PathLike[str] | IO[Any], limit: int = MAX_YAML_BYTES) -> bytes:
    """At most ``limit`` bytes of a file path or an open stream (text or binary).

    :raises YAMLProblem: the content is longer than ``limit`` bytes.
    :raises OSError: the file cannot be opened or read.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            data = fh.read(limit + 1)
    else:
        stream: Any = getattr(source, "buffer", source)
        raw = stream.read(limit + 1)
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    if len(data) > limit:
        raise YAMLProblem(f"the file is larger than {limit // 1024} KiB")
    return data


def decode_utf8(data: bytes) -> str:
    """``data`` as text (a UTF-8 BOM is dropped).

    :raises YAMLProblem: not UTF-8 (the line and byte offset are named).
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YAMLProblem(f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})",
                          line) from exc


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` with :class:`StrictLoader`: ``(data, node tree)`` (``(None, None)`` when empty).

    The node tree gives line numbers for key paths.

    :raises YAMLProblem: invalid YAML, an alias or anchor, too deep or too many values, a duplicate key,
        a value PyYAML cannot construct (a bad date, an overlong number...), a string holding
        a lone surrogate (a ``"\\ud800"`` escape; the problem names its key path).
    """
    loader: StrictLoader | None = None
    try:
        loader = StrictLoader(text)  # its reader already rejects control characters
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or str(exc)
        if not isinstance(exc, _Reject):  # PyYAML's words quote the file; ours name keys only
            problem = redact(problem)
        raise YAMLProblem(f"not valid YAML: {problem}", mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:  # ReaderError: a control character...
        mark = getattr(exc, "position", None)
        raise YAMLProblem(f"not valid YAML: {redact(str(getattr(exc, 'reason', None) or 'unreadable'))}"
                          + (f" at character {mark}" if mark is not None else "")) from exc
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors fail in many ways on bad
        # input (a date 2024-13-45, an !!int that is not one, a !!timestamp that does not parse)
        raise YAMLProblem(f"not valid YAML: a value that cannot be read ({type(exc).__name__})") from exc
    finally:
        if loader is not None:
            loader.dispose()
    found = _surrogate(node)
    if found is not None:
        raise YAMLProblem(f"{found[0] or '(top)'}: a lone surrogate ({found[2]}) is not text", found[1],
                          hint=SURROGATE_HINT)
    return data, node


#: a lone surrogate: ``\ud800``-``\udfff`` outside a pair, which no UTF-8 text can hold
SURROGATE = re.compile("[\ud800-\udfff]")
#: how to write the character a lone surrogate was meant to be
SURROGATE_HINT = "write the character itself, or a pair of surrogates as one \\U00XXXXXX escape"


def _escaped(text: str) -> str:
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _surrogate(root: yaml.Node | None) -> tuple[str, int, str] | None:
    """The first string of a node tree holding a lone surrogate (a ``"\\ud800"`` escape: no
    text can be written with it): ``(key path, 1-based line, the escape)``, else ``None``."""
    todo: list[tuple[Any, str]] = [(root, "")]
    while todo:
        node, where = todo.pop()
        if isinstance(node, yaml.ScalarNode):
            match = SURROGATE.search(node.value) if isinstance(node.value, str) else None
            if match is not None:
                return where, node.start_mark.line + 1, _escaped(match.group())
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):  # popped in file order
                name = _escaped(key.value) if isinstance(key.value, str) else "?"
                path = f"{where}.{name}" if where else name
                todo += [(value, path), (key, path)]
        elif isinstance(node, yaml.SequenceNode):
            todo += [(value, f"{where}.{i}" if where else str(i)) for i, value in reversed(list(enumerate(node.value)))]
    return None


class _BlockDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as ``|`` blocks (readable prompts)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value and not any(ch.isspace() and ch not in " \n" for ch in value) \
            and value == value.strip(" "):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_BlockDumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """``data`` (plain dicts, lists, strings, numbers) as block-style YAML, keys in their
    order, multi-line strings as ``|`` blocks; :func:`load_yaml` reads it back equal."""
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=1 << 20)


__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_YAML_BYTES", "StrictLoader", "YAMLProblem", "decode_utf8", "dump_yaml",
           "load_yaml", "read_limited"]
