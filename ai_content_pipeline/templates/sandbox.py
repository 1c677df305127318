"""The Jinja2 sandbox that renders prompts, bounded in time and memory.

Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` keeps a template from
reaching Python's internals or changing data, but not from running without end or from
filling memory: ``{{ ((9**999)**999)**999 }}``, three nested ``range(99999)`` loops,
``'{:>300000000}'.format(1)``, ``'x'|center(10**9)`` or ``lipsum(10**9)``. A render through
:func:`environment` and :func:`rendering` is bounded:

- every value an operation makes (``*``, ``+``, ``%``, ``**``, ``~``, a filter, a method or
  function call) is at most :data:`MAX_CHARS` characters (strings) or :data:`MAX_ITEMS` items
  (lists, tuples, dicts), and what would be larger is refused *before* it is built (widths of
  ``center``, ``ljust``, ``format``, ``%``, ``indent``...; repetition counts; ``replace`` and
  ``join`` results; integers past :data:`MAX_INT_BITS` bits);
- all such values of one render together are at most :data:`MAX_MADE` characters and items;
- loop iterations, calls and checked operations of one render are at most :data:`MAX_STEPS`,
  calls (macros, ``caller()``, recursive loops) nest at most :data:`MAX_DEPTH` deep, and a
  render stops after :data:`RENDER_SECONDS` seconds.

A limit reached raises :class:`RenderLimit`; :meth:`~ai_content_pipeline.templates.Template.render`
turns it into a :class:`~ai_content_pipeline.templates.TemplateLimitError` naming the template.
Jinja2 is imported on the first call of :func:`environment` only.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any, TypeGuard

#: Longest string one operation may make (characters): the longest prompt part.
MAX_CHARS = 4 * 1024 * 1024
#: Most items of a list, tuple or dict one operation may make (Jinja2's own ``range`` limit).
MAX_ITEMS = 100_000
#: Characters and items all checked operations of one render may make together.
MAX_MADE = 8 * MAX_CHARS
#: Largest integer an operation may make, in bits (``str()`` of it stays under Python's
#: 4300-digit limit).
MAX_INT_BITS = 10_000
#: Loop iterations, calls and checked operations one render may take.
MAX_STEPS = 1_000_000
#: Calls (macros, ``caller()``, recursive loops) one inside another.
MAX_DEPTH = 64
#: Seconds one render may take.
RENDER_SECONDS = 5.0
#: Longest text the filters written in Python take (``wordwrap``, ``urlize``): their time
#: grows with it (``wordwrap`` of one long word, quadratically), out of reach of the clock.
MAX_SLOW_CHARS = 100_000
#: Most values ``pprint`` and ``tojson`` with an indent take (Python's pure-Python encoders).
MAX_SLOW_NODES = 20_000


class RenderLimit(Exception):
    """A render reached one of the limits of this module; the message says which."""


class _Budget:
    """What one render has spent (see the module docstring)."""

    __slots__ = ("steps", "made", "depth", "deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.steps = 0
        self.made = 0
        self.depth = 0
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds


_BUDGET: ContextVar[_Budget | None] = ContextVar("aicp_render_budget", default=None)


@contextmanager
def rendering(seconds: float | None = None) -> Iterator[None]:
    """Count what the renders inside this block spend against one budget (the limits of the
    module docstring); ``seconds`` defaults to :data:`RENDER_SECONDS`."""
    token = _BUDGET.set(_Budget(RENDER_SECONDS if seconds is None else seconds))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is None:  # compile-time constant folding: only the size checks apply
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise RenderLimit(f"more than {MAX_STEPS:,} loop iterations, calls and operations")
    if time.monotonic() > budget.deadline:
        raise RenderLimit(f"the render took longer than {budget.seconds:g} seconds")


def _clock() -> None:
    """Stop a render past its seconds (without taking a step)."""
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise RenderLimit(f"the render took longer than {budget.seconds:g} seconds")


def _limit_of(value: Any) -> tuple[int, str] | None:
    if isinstance(value, (str, bytes, bytearray)):
        return MAX_CHARS, "characters"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return MAX_ITEMS, "items"
    return None


def _predict(size: int, like: Any, what: str) -> None:
    """Refuse to build a value of ``size`` characters/items (of the kind of ``like``)."""
    limit = _limit_of(like)
    if limit is not None and size > limit[0]:
        raise RenderLimit(f"{what} would make {size:,} {limit[1]}; the limit is {limit[0]:,}")


def _made(value: Any, what: str = "a value") -> Any:
    """Count ``value`` (a result) against the render's budget; refuse one too large."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise RenderLimit(f"{what} made an integer of {value.bit_length():,} bits; the limit is "
                              f"{MAX_INT_BITS:,}")
        return value
    limit = _limit_of(value)
    if limit is None:
        return value
    size = len(value)
    if size > limit[0]:
        raise RenderLimit(f"{what} made {size:,} {limit[1]}; the limit is {limit[0]:,}")
    budget = _BUDGET.get()
    if budget is not None:
        budget.made += size
        if budget.made > MAX_MADE:
            raise RenderLimit(f"the render made more than {MAX_MADE:,} characters and items in all")
    return value


#: Values (counted again each time one is reached) a single value may hold when it is printed,
#: compared or sorted: a list holding the same long list many times is small to make but
#: huge to print, and slow to compare, in one call the render clock cannot interrupt.
MAX_NODES = 1_000_000


def _deep(value: Any, what: str) -> None:
    """Refuse a container that, printed, would pass :data:`MAX_CHARS` characters, or that
    holds more than :data:`MAX_NODES` values counting each time a shared one is reached
    (``[a] * 99999`` of a 99,999-item ``a``). The walk stops at the first limit passed."""
    if not isinstance(value, (list, tuple, dict, set, frozenset)):
        return
    nodes = chars = 0
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        nodes += 1
        if isinstance(item, (str, bytes, bytearray)):
            chars += len(item) + 2
        elif isinstance(item, dict):
            chars += 2
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            chars += 2
            todo.extend(item)
        elif _int(item):
            chars += _int_chars(item)
        else:
            chars += 24 if isinstance(item, float) else 1
        if not nodes & 0xFFFF:
            _clock()
        if nodes > MAX_NODES:
            raise RenderLimit(f"{what} holds more than {MAX_NODES:,} values (counting each time a "
                              "shared one is reached); the limit is that many")
        if chars > MAX_CHARS:
            raise RenderLimit(f"{what} would print as more than {MAX_CHARS:,} characters; the limit "
                              f"is {MAX_CHARS:,}")


def _int_chars(value: int) -> int:
    """The most characters ``str(value)`` has (digits from the bit length, and a sign): known
    without the conversion, which takes time growing with the square of the digits."""
    return value.bit_length() * 30103 // 100000 + 2


def _text(value: Any, what: str) -> str:
    """``str(value)``, refused (:func:`_deep`) before it is built when it would be too large."""
    _deep(value, what)
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an integer (``True`` is not one here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _width(value: Any, what: str) -> None:
    """Refuse a width, count or length past :data:`MAX_CHARS`."""
    if _int(value) and value > MAX_CHARS:
        raise RenderLimit(f"{what} {value:,} is past the limit of {MAX_CHARS:,}")


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    """``items``, one step of the render's budget per item."""
    for item in items:
        _step()
        yield item


class _CountedLoop:
    """A ``{% for %}`` loop's iterable, one step per iteration; its length as the iterable's."""

    __slots__ = ("_items",)

    def __init__(self, items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return _counted(self._items)

    def __len__(self) -> int:
        return len(self._items)


# -- checks before an operation ------------------------------------------------------------
def _check_mul(left: Any, right: Any) -> None:
    if _int(left) and _int(right):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise RenderLimit(f"a product of {left.bit_length() + right.bit_length():,} bits is past the "
                              f"limit of {MAX_INT_BITS:,}")
        return
    for seq, count in ((left, right), (right, left)):
        if _limit_of(seq) is not None and _int(count) and count > 0:
            _predict(len(seq) * count, seq, "a repetition")


def _check_pow(base: Any, exponent: Any) -> None:
    if _int(base) and _int(exponent) and exponent > 0 and abs(base) > 1:
        bits = (abs(base).bit_length() - 1) * exponent
        if bits > MAX_INT_BITS:
            raise RenderLimit(f"a power of about {bits:,} bits is past the limit of {MAX_INT_BITS:,}")


def _check_add(left: Any, right: Any) -> None:
    if _limit_of(left) is not None and _limit_of(right) is not None:
        try:
            size = len(left) + len(right)
        except TypeError:
            return
        _predict(size, left, "a concatenation")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def _check_printf(text: str, args: Any) -> None:
    """Refuse a ``%`` format whose widths or precisions (literal or ``*``) pass :data:`MAX_CHARS`."""
    star = False
    for match in _PRINTF.finditer(text):
        for part in match.group(1, 2):
            if part == "*":
                star = True
            elif part and (len(part) > 9 or int(part) > MAX_CHARS):
                raise RenderLimit(f"a % format width or precision of {_digits(part)} is past the limit "
                                  f"of {MAX_CHARS:,}")
    if star:  # a negative * width is a left-aligned one as wide
        values = args if isinstance(args, tuple) else (args,)
        for value in values:
            _width(abs(value) if _int(value) else value, "a % format width or precision of")


_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"\S+")


def _digits(part: str) -> str:
    """A width written in a format, for a message: the number, or its digit count when long."""
    return f"{int(part):,}" if len(part) <= 30 else f"{len(part):,} digits"


def _check_spec(spec: str) -> None:
    """Refuse a ``str.format`` spec whose width or precision passes :data:`MAX_CHARS`."""
    for part in _DIGITS.findall(spec):
        if len(part) > 9 or int(part) > MAX_CHARS:
            raise RenderLimit(f"a format width or precision of {_digits(part)} is past the limit of "
                              f"{MAX_CHARS:,}")


def _check_str_method(text: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a call of a ``str``/``bytes`` method that may make a longer value; return the
    arguments to call it with (``join``'s iterable as a list)."""
    if name in ("center", "ljust", "rjust", "zfill"):
        if args:
            _width(args[0], f"{name}() width")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if _int(size) and size > 1:
            _predict(len(text) + text.count("\t" if isinstance(text, str) else b"\t") * size, text,
                     "expandtabs()")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if _limit_of(old) is not None and _limit_of(new) is not None and type(old) is type(new):
            try:
                count = text.count(old) if len(old) else len(text) + 1
            except TypeError:
                return args
            if len(args) > 2 and _int(args[2]) and args[2] >= 0:
                count = min(count, args[2])
            _predict(len(text) + count * (len(new) - len(old)), text, "replace()")
    elif name == "join" and len(args) == 1:
        items = list(_counted(args[0])) if not isinstance(args[0], (str, bytes)) else args[0]
        _predict(len(items), [], "join()")
        size = sum(len(x) for x in items if isinstance(x, (str, bytes, bytearray)))
        _predict(size + len(text) * max(len(items) - 1, 0), text, "join()")
        return (items,)
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _predict(len(text) * longest, text, "translate()")
    return args


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, (str, bytes, bytearray)):
        return _check_str_method(owner, name, args, kwargs)
    if _int(owner) and name == "to_bytes":
        _width(args[0] if args else kwargs.get("length", 1), "to_bytes() length")
    return args


# -- filters -----------------------------------------------------------------------------
def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else _int_chars(value) if _int(value) else len(str(value))


def _shape(value: Any) -> tuple[int, int]:
    """``(nodes, depth)`` of a JSON-like value, stopping once nodes pass :data:`MAX_ITEMS`."""
    nodes, deepest, todo = 0, 0, [(value, 1)]
    while todo and nodes <= MAX_ITEMS:
        item, depth = todo.pop()
        nodes += 1
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend((v, depth + 1) for v in item)
    return nodes, deepest


def _filter_checks() -> dict[str, Any]:
    """Checks run before a filter, by name: ``check(args, kwargs) -> (args, kwargs)`` where
    ``args`` start at the filtered value (a context argument left out)."""

    def center(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _width(args[1] if len(args) > 1 else kwargs.get("width", 80), "center width")
        return args, kwargs

    def indent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        each = len(width) if isinstance(width, str) else width if _int(width) else 0
        text = _text(args[0], "indent's value")
        _predict(len(text) + (text.count("\n") + 1) * max(each, 0), text, "indent")
        return args, kwargs

    def slow(text: str, what: str) -> None:
        if len(text) > MAX_SLOW_CHARS:
            raise RenderLimit(f"{what} of {len(text):,} characters is past the limit of {MAX_SLOW_CHARS:,}")

    def wordwrap(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring")
        text = _text(args[0], "wordwrap's value")
        slow(text, "wordwrap")
        if isinstance(wrap, str) and len(wrap) > 1:
            _predict(len(text) + (len(text) + 1) * len(wrap), text, "wordwrap")
        return args, kwargs

    def printf(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and isinstance(args[0], str):
            _check_printf(args[0], tuple(kwargs.values()) or args[1:])
        return args, kwargs

    def replace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) >= 3:
            text = _text(args[0], "replace's value")
            rest = (_text(args[1], "replace's old text"), _text(args[2], "replace's new text"), *args[3:4], *([kwargs["count"]] if "count" in kwargs else []))
            _check_str_method(text, "replace", rest, {})
        return args, kwargs

    def join(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        items = list(_counted(args[0])) if not isinstance(args[0], str) else list(args[0])
        _predict(len(items), items, "join")
        for item in items:
            _deep(item, "an item of join")
        sep = args[1] if len(args) > 1 else kwargs.get("d", "")
        size = sum(_text_len(x) for x in items if isinstance(x, (str, int, float)))
        _predict(size + _text_len(sep) * max(len(items) - 1, 0), "", "join")
        return (items, *args[1:]), kwargs

    def count_arg(position: int, key: str, what: str) -> Any:
        def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            value = args[position] if len(args) > position else kwargs.get(key)
            if _int(value) and value > MAX_ITEMS:
                raise RenderLimit(f"{what} {value:,} is past the limit of {MAX_ITEMS:,}")
            return args, kwargs
        return check

    def nodes_of(value: Any, what: str) -> tuple[int, int]:
        nodes, depth = _shape(value)
        if nodes > MAX_SLOW_NODES:
            raise RenderLimit(f"{what} of more than {MAX_SLOW_NODES:,} values is past the limit")
        return nodes, depth

    def tojson(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        indent_ = args[1] if len(args) > 1 else kwargs.get("indent")
        each = len(indent_) if isinstance(indent_, str) else indent_ if _int(indent_) else 0
        if each > 0:
            nodes, depth = nodes_of(args[0], "tojson with an indent")
            _predict(nodes * depth * each, "", "tojson indent")
        return args, kwargs

    def pprint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        nodes, depth = nodes_of(args[0], "pprint")
        _predict(nodes * depth, "", "pprint")
        return args, kwargs

    def urlize(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        text = _text(args[0], "urlize's value")
        slow(text, "urlize")
        given = [args[i] if len(args) > i else kwargs.get(k) for i, k in ((3, "target"), (4, "rel"))]
        extra = sum(len(str(v or "")) for v in given) + 80
        words = sum(1 for _ in _WORDS.finditer(text))  # each may become a link
        _predict(len(text) + words * (extra + len(text) // max(words, 1)), text, "urlize")
        return args, kwargs

    def escape(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        text = _text(args[0], "escape's value") if args else ""
        grow = sum(text.count(c) * n for c, n in (("&", 4), ("<", 3), (">", 3), ('"', 4), ("'", 4)))
        _predict(len(text) + grow, text, "escape")
        return args, kwargs

    def sum_(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        items = list(_counted(args[0]))
        start = args[2] if len(args) > 2 else kwargs.get("start", 0)
        if _limit_of(start) is not None:
            _predict(len(start) + sum(len(x) for x in items if _limit_of(x) is not None), start, "sum")
        return (items, *args[1:]), kwargs

    return {"center": center, "indent": indent, "wordwrap": wordwrap, "format": printf,
            "replace": replace, "join": join, "batch": count_arg(1, "linecount", "batch size"),
            "slice": count_arg(1, "slices", "slice count"), "tojson": tojson, "pprint": pprint,
            "urlize": urlize, "escape": escape, "e": escape, "forceescape": escape, "sum": sum_}


#: Filters that neither print their value nor compare its items: a value too large to print
#: (:func:`_deep`) may pass through them (``length`` of it, its ``first`` item...).
_SHALLOW_FILTERS = frozenset({"length", "count", "first", "last", "random", "list", "batch", "slice",
                              "map", "select", "reject", "selectattr", "rejectattr", "attr",
                              "default", "d", "reverse", "items", "dictsort"})


def _guard_filter(name: str, func: Any, check: Any, takes_context: bool) -> Any:
    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        head, rest = (args[:1], args[1:]) if takes_context else ((), args)
        for position, value in enumerate((*rest, *kwargs.values())):
            if position or name not in _SHALLOW_FILTERS:
                _deep(value, f"a value given to filter {name}")
        if check is not None and rest:
            rest, kwargs = check(tuple(rest), dict(kwargs))
        result = func(*head, *rest, **kwargs)
        if isinstance(result, Iterator) and not isinstance(result, (str, bytes)):
            return _counted(result)  # map, select, batch...: one step per item taken
        return _made(result, f"filter {name}")
    return guarded


@lru_cache(maxsize=1)
def environment() -> Any:
    """The bounded sandbox (one per process; Jinja2 is imported here): an
    :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with ``StrictUndefined``, no
    autoescape, whose templates are compiled from :meth:`parse` trees."""
    import jinja2
    from jinja2 import nodes
    from jinja2.sandbox import (
        ImmutableSandboxedEnvironment,
        SandboxedEscapeFormatter,
        SandboxedFormatter,
    )
    from jinja2.utils import _PassArg
    from jinja2.visitor import NodeTransformer
    from markupsafe import Markup

    class Spec:
        def format_field(self, value: Any, format_spec: str) -> Any:
            _check_spec(format_spec)
            _deep(value, "a value given to format()")
            return super().format_field(value, format_spec)  # type: ignore[misc]

    class Formatter(Spec, SandboxedFormatter):  # type: ignore[misc]
        pass

    class EscapeFormatter(Spec, SandboxedEscapeFormatter):  # type: ignore[misc]
        pass

    class Bounded(ImmutableSandboxedEnvironment):  # type: ignore[misc]
        """The sandbox with the limits of the module docstring."""

        intercepted_binops = frozenset({"*", "**", "%", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _step()
            if operator == "**":
                _check_pow(left, right)
            elif operator == "*":
                _check_mul(left, right)
            elif operator == "+":
                _check_add(left, right)
            elif operator == "%" and isinstance(left, str):
                _check_printf(left, right)
                _deep(right, "a value given to a % format")
            return _made(super().call_binop(context, operator, left, right), f"'{operator}'")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _step()
            args = _check_call(__obj, args, kwargs)
            budget = _BUDGET.get()
            if budget is not None:
                budget.depth += 1
                if budget.depth > MAX_DEPTH:
                    raise RenderLimit(f"calls (macros, caller(), loop()) nested more than {MAX_DEPTH} deep")
            try:
                result = super().call(__context, __obj, *args, **kwargs)
            finally:
                if budget is not None:
                    budget.depth -= 1
            return _made(result, f"a call of {getattr(__obj, '__name__', 'a function')}")

        def wrap_str_format(self, value: Any) -> Any:
            wrapper = super().wrap_str_format(value)
            if wrapper is None:
                return None
            text = value.__self__
            formatter = EscapeFormatter(self, escape=text.escape) if isinstance(text, Markup) else Formatter(self)
            is_map = value.__name__ == "format_map"

            @wraps(value)
            def bounded(*args: Any, **kwargs: Any) -> str:
                if is_map:
                    if kwargs or len(args) != 1:
                        raise TypeError("format_map() takes exactly one argument")
                    return type(text)(formatter.vformat(text, (), args[0]))
                return type(text)(formatter.vformat(text, args, kwargs))

            return bounded

        def aicp_checked(self, value: Any) -> Any:
            """A compared value (``==``, ``<``, ``in``...), refused when too large to compare
            in bounded time (:func:`_deep`); see :meth:`parse_bounded`."""
            _step()
            _deep(value, "a compared value")
            return value

        def aicp_loop(self, items: Any) -> Any:
            """A ``{% for %}`` loop's iterable, counted (see :meth:`parse_bounded`)."""
            return _CountedLoop(items)

        def aicp_concat(self, *parts: Any) -> str:
            """``a ~ b ~ c``, its length checked before it is joined."""
            texts = [_text(p, "a value of a '~' concatenation") for p in parts]
            _predict(sum(map(len, texts)), "", "a '~' concatenation")
            return "".join(texts)

        def parse_bounded(self, source: str) -> Any:
            """The template tree of ``source`` with each ``{% for %}`` iterable counted and each
            ``~`` checked: what :meth:`from_string` compiles for a bounded render."""
            tree = self.parse(source)

            class Counting(NodeTransformer):  # type: ignore[misc]
                def visit_For(self, node: Any) -> Any:
                    node = self.generic_visit(node)
                    node.iter = _hook("aicp_loop", [node.iter], node.lineno)
                    return node

                def visit_Compare(self, node: Any) -> Any:
                    node = self.generic_visit(node)
                    node.expr = _hook("aicp_checked", [node.expr], node.lineno)
                    for operand in node.ops:
                        operand.expr = _hook("aicp_checked", [operand.expr], node.lineno)
                    return node

                def visit_Test(self, node: Any) -> Any:
                    node = self.generic_visit(node)
                    node.node = _hook("aicp_checked", [node.node], node.lineno)
                    node.args = [_hook("aicp_checked", [arg], node.lineno) for arg in node.args]
                    return node

                def visit_Concat(self, node: Any) -> Any:
                    node = self.generic_visit(node)
                    return _hook("aicp_concat", list(node.nodes), node.lineno)

            env = self

            def _hook(name: str, args: list[Any], lineno: int) -> Any:
                call = nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=lineno)
                return call.set_environment(env)

            return Counting().visit(tree)

    def finalize(value: Any) -> Any:
        """A ``{{ value }}``'s value, refused before it is printed when too large (:func:`_deep`)."""
        _deep(value, "a printed value")
        return value

    env = Bounded(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False,
                  finalize=finalize)
    checks = _filter_checks()
    for name, func in list(env.filters.items()):
        takes = _PassArg.from_obj(func) is not None
        env.filters[name] = _guard_filter(name, func, checks.get(name), takes)

    generate_lipsum: Any = env.globals["lipsum"]

    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        """Jinja2's ``lipsum``, refused when it would pass :data:`MAX_CHARS` (about 12
        characters a word) or make more than :data:`MAX_ITEMS` paragraphs."""
        words = builtins.max([v for v in (min, max, 1) if _int(v)])
        if _int(n) and n > 0:
            if n > MAX_ITEMS:
                raise RenderLimit(f"lipsum() of {n:,} paragraphs is past the limit of {MAX_ITEMS:,}")
            _predict(n * words * 12, "", "lipsum()")
        return str(generate_lipsum(n, html, min, max))

    env.globals["lipsum"] = lipsum
    return env


__all__ = ["MAX_CHARS", "MAX_DEPTH", "MAX_INT_BITS", "MAX_ITEMS", "MAX_MADE", "MAX_NODES", "MAX_STEPS",
           "RENDER_SECONDS", "RenderLimit", "environment", "rendering"]
