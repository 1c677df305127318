"""``aicp merge``: the records of N shard outputs back in input order, checked complete.

Every record of a sharded run carries ``_aicp: {shard: "K/N", line, seq[, end]}`` (see
:mod:`ai_content_pipeline.shards`). The merge reads each shard file twice, streaming:

1. **check**: within a file, one shard only, ``seq`` 0, 1, 2… without gap or repeat,
   positions ascending and ≡ K mod N, ``end`` on the last record only; across files,
   one N, each K at most once, and every shard whose input lines are not all blank
   (``end.counts``, or ``end.blank`` above 4096 shards) present and finished (``end`` seen, all its positions there);
2. **write**: a k-way merge by ``(line, seq)``, each record without ``_aicp`` (or with the
   input record's own ``_aicp`` value, kept in the tag as ``orig``) — the records a single
   unsharded run writes, in its order.

A problem of the first kind is a :class:`MergeIncomplete` (exit 3) naming each gap or
repeat (which shard, which file, which positions); nothing is written unless
``partial`` is set. A file that is not a shard output is a ``UsageError`` (exit 2), and so
is a tag whose line count, line index or ``seq`` is past :data:`MAX_COUNT` (a forged one).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AicpError, UsageError
from .jsonl import InputLine, read_records
from .shards import FIELD, MAX_SHARDS, ORIG, lines_of
from .status import ExitStatus

#: How many problems a message lists before "and N more".
SHOWN = 12
#: Largest input line index, ``seq`` or line count a shard tag may carry (what a 64-bit count
#: holds; more lines than any file has): a larger one is a forged tag, refused (exit 2).
MAX_COUNT = 2**63 - 1


class MergeIncomplete(AicpError):
    """A shard is missing, unfinished, or gives a record twice (exit 3); ``problems`` lists each."""

    exit_status = ExitStatus.PARTIAL

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
        super().__init__(f"the shards are not complete: {shown}",
                         hint="rerun each incomplete shard with the same --shard K/N, --checkpoint and "
                              "--resume (it redoes only what is missing), then merge again")
        self.problems = problems


@dataclass
class ShardFile:
    """What the check pass learned about one input file."""

    path: str
    shard: tuple[int, int] | None = None
    records: int = 0
    positions: int = 0
    last_line: int | None = None
    end: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"shard {self.shard[0]}/{self.shard[1]} ({self.path})" if self.shard else self.path


def _tag(line: InputLine, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(record, its _aicp tag)``; a line that is not a tagged shard record is a usage error."""
    if line.record is None:
        message = (line.error or {}).get("message", "not a JSON object")
        raise _Damaged(f"{path}:{line.line}: {message}")
    tag = line.record.get(FIELD)
    ok = (isinstance(tag, dict) and isinstance(tag.get("shard"), str)
          and all(type(tag.get(k)) is int and tag[k] >= 0 for k in ("line", "seq")))
    if not ok:
        raise UsageError(f"{path}:{line.line}: the record has no `{FIELD}` shard tag "
                         "(shard, line, seq): it is not the output of a --shard run",
                         hint="merge the files a --shard K/N run wrote, unchanged")
    assert isinstance(tag, dict)
    for key in ("line", "seq"):
        _count(tag[key], f"{path}:{line.line}: `{FIELD}.{key}`")
    return line.record, tag


def _count(value: int, what: str) -> int:
    """``value``, a line index or count of a shard tag. :raises UsageError: past :data:`MAX_COUNT`."""
    if value > MAX_COUNT:
        shown = f"{value}" if value.bit_length() < 200 else f"a {len(str(value))}-digit number"
        raise UsageError(f"{what} is {shown}, past any input's line count ({MAX_COUNT}): it is not what "
                         "a --shard run writes", hint="merge the files a --shard K/N run wrote, unchanged")
    return value


class _Damaged(Exception):
    """A line that is not JSON (a run killed while writing it)."""


def _parse_shard(text: str, where: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        raise UsageError(f"{where}: `{FIELD}.shard` is {text!r}, not K/N") from None
    if not 0 <= index < count <= MAX_SHARDS:
        raise UsageError(f"{where}: `{FIELD}.shard` is {text!r}, not K/N with 0 <= K < N <= {MAX_SHARDS}")
    return index, count


def _end(end: Any, n: int, where: str) -> dict[str, Any]:
    """A shard's ``end`` tag as ``{"lines": M, "blank": {j: b_j}}`` (blank lines per shard that
    has any), from either form :func:`~ai_content_pipeline.shards.end_tag` writes.

    :raises UsageError: neither form, or counts that do not fit the line count.
    """
    bad = UsageError(f"{where}: `{FIELD}.end` is not {{lines, counts}} of {n} shards",
                     hint="merge the files a --shard K/N run wrote, unchanged")
    if not isinstance(end, dict) or type(end.get("lines")) is not int or end["lines"] < 0:
        raise bad
    lines = _count(end["lines"], f"{where}: `{FIELD}.end.lines`")
    blank: dict[int, int] = {}
    counts, sparse = end.get("counts"), end.get("blank")
    if isinstance(counts, list) and len(counts) == n and all(type(c) is int for c in counts):
        for j, c in enumerate(counts):
            if not 0 <= c <= lines_of(j, n, lines):
                raise bad
            if c != lines_of(j, n, lines):
                blank[j] = lines_of(j, n, lines) - c
    elif isinstance(sparse, dict) and counts is None:
        for key, b in sparse.items():
            # a shard index as end_tag writes it: ASCII digits, no leading zero, at most MAX_SHARDS
            # (a 5,000-digit key is refused here, not by int()'s digit limit)
            j = int(key) if key.isascii() and key.isdigit() and len(key) <= 7 and key == str(int(key)) else -1
            if not (0 <= j < n and type(b) is int and 0 < b <= lines_of(j, n, lines)):
                raise bad
            blank[j] = b
    else:
        raise bad
    digest = end.get("input")
    if digest is not None and not isinstance(digest, str):
        raise bad
    return {"lines": lines, "blank": blank, "input": digest}


def _want(end: dict[str, Any], k: int, n: int) -> int:
    """Non-blank input lines of shard ``k`` of ``n`` by a normalised ``end`` (:func:`_end`)."""
    return lines_of(k, n, end["lines"]) - end["blank"].get(k, 0)


def _check_file(path: str) -> ShardFile:
    info = ShardFile(path)
    expected_seq = 0
    try:
        for line in read_records([path]):
            try:
                record, tag = _tag(line, path)
            except _Damaged as exc:
                info.problems.append(f"{info.name}: damaged line {exc}")
                return info
            where = f"{path}:{line.line}"
            shard = _parse_shard(tag["shard"], where)
            if info.shard is None:
                info.shard = shard
            elif shard != info.shard:
                raise UsageError(f"{where}: a record of shard {shard[0]}/{shard[1]} in a file of shard "
                                 f"{info.shard[0]}/{info.shard[1]}", hint="give each shard's output file as it was written")
            if info.end is not None:
                info.problems.append(f"{info.name}: records after its last one (line {line.line}): repeated")
                return info
            k, n = shard
            pos, seq = tag["line"], tag["seq"]
            if pos % n != k:
                raise UsageError(f"{where}: input line index {pos} does not belong to shard {k}/{n}")
            if seq < expected_seq:
                info.problems.append(f"{info.name}: record seq {seq} (input line index {pos}) repeated at line {line.line}")
            elif seq > expected_seq:
                info.problems.append(f"{info.name}: records seq {expected_seq}-{seq - 1} missing before input "
                                     f"line index {pos}")
            if info.last_line is not None and pos < info.last_line:
                info.problems.append(f"{info.name}: input line index {pos} after {info.last_line}: out of order")
            if pos != info.last_line:
                info.positions += 1
            info.last_line = pos
            expected_seq = max(expected_seq, seq + 1)
            info.records += 1
            if "end" in tag:
                end = tag["end"]
                info.end = _end(end, n, where)
                if not pos < info.end["lines"]:  # positions ascend: the last one is the largest
                    raise UsageError(f"{where}: input line index {pos} is past the {info.end['lines']} lines "
                                     "its shard's end counts", hint="merge the files a --shard K/N run wrote, unchanged")
    except RecursionError:  # pragma: no cover - read_records bounds depth already
        info.problems.append(f"{info.name}: unreadable")
    return info


def check(paths: list[str]) -> tuple[list[ShardFile], list[str]]:
    """The check pass (see the module docstring): ``(files, problems)``.

    :raises UsageError: a file is not a shard output, files of different N or inputs.
    """
    files = [_check_file(p) for p in paths]
    problems = [p for f in files for p in f.problems]
    counts = {f.shard[1] for f in files if f.shard}
    if len(counts) > 1:
        raise UsageError(f"the files come from runs with different shard counts: {sorted(counts)}",
                         hint="merge the outputs of one --shard K/N run set")
    if not counts:
        if any(f.problems for f in files):
            return files, problems
        return files, problems  # every file empty: an empty input (nothing to check)
    n = counts.pop()
    ends = [f for f in files if f.end is not None]
    totals = {(e.end["lines"], tuple(sorted(e.end["blank"].items()))) for e in ends if e.end}
    if len(totals) > 1:
        raise UsageError("the shards were run on different inputs (their line counts differ)",
                         hint="merge the outputs of one input")
    digests = {e.end["input"] for e in ends if e.end and e.end["input"] is not None}
    if len(digests) > 1:
        raise UsageError("the shards were run on different inputs (same line counts, other contents)",
                         hint="merge the outputs of one input")
    if digests:  # the others carry no digest in their end tag: their input cannot be checked
        problems.extend(f"{e.name}: no input digest in its end tag (an older aicp wrote it), so it may come "
                        "from another input; run that shard again with --resume" for e in ends
                        if e.end and e.end["input"] is None)
    end = ends[0].end if ends else None
    unknown: list[int] = []  # shards without a file while no shard says how many lines each has
    by_index: dict[int, ShardFile] = {}
    for f in files:
        if f.shard is None:
            continue
        k = f.shard[0]
        if k in by_index:
            problems.append(f"shard {k}/{n} given twice ({by_index[k].path} and {f.path}): its records repeat")
            continue
        by_index[k] = f
    missing = 0  # shards without a file that have input lines: named up to SHOWN, then counted
    for k in range(n):
        found = by_index.get(k)
        want = _want(end, k, n) if end is not None else None
        if found is None:
            if want is None:
                unknown.append(k)
            elif want > 0:
                missing += 1
                if missing <= SHOWN:
                    problems.append(f"shard {k}/{n}: no records; {want} input lines missing "
                                    f"(line indexes {k}, {k + n}, ... mod {n})")
            continue
        if found.end is None:
            after = f"after input line index {found.last_line}" if found.last_line is not None else "at its start"
            more = f"; {want - found.positions} of its {want} input lines missing" if want is not None else ""
            problems.append(f"{found.name}: incomplete, stops {after}{more}")
        elif want is not None and found.positions != want:
            problems.append(f"{found.name}: {found.positions} input lines of {want}: {want - found.positions} missing")
    if missing > SHOWN:  # one line for the rest, not a million
        problems.append(f"{missing - SHOWN} more shards of {n} have no records and input lines missing")
    if len(unknown) > SHOWN:  # one line, not a million
        problems.append(f"shards {', '.join(map(str, unknown[:SHOWN]))} and {len(unknown) - SHOWN} more of {n}: "
                        "no records (their files are missing or empty)")
    else:
        problems.extend(f"shard {k}/{n}: no records (its file is missing or empty)" for k in unknown)
    return files, problems


def _records(path: str) -> Iterator[tuple[int, int, dict[str, Any]]]:
    for line in read_records([path]):
        if line.record is None:
            return  # a damaged (torn) line ends what --partial can use of this file
        try:
            _, tag = _tag(line, path)
        except UsageError:
            return  # an untagged record (only after what the check read: --partial) ends it too
        out = dict(line.record)
        if ORIG in tag:
            out[FIELD] = tag[ORIG]  # the input record's own field, in its place
        else:
            del out[FIELD]
        yield tag["line"], tag["seq"], out
        if "end" in tag:
            return  # records after a shard's last one are repeats (the check names them)


def merged(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Records of ``paths`` in input order (by ``(line, seq)``), without ``_aicp``; a repeat of
    the same ``(line, seq)`` is written once."""
    last: tuple[int, int] | None = None
    streams = [_records(p) for p in paths]
    for pos, seq, record in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        if (pos, seq) == last:
            continue
        last = (pos, seq)
        yield record


def expand(patterns: Iterable[str]) -> list[str]:
    """The files to merge: each argument as given, or the sorted matches of a glob pattern
    (for shells that do not expand it, a Kubernetes ``command:``). Repeats are kept (the
    check reports them).

    :raises UsageError: a pattern that matches nothing, a folder, an unreadable file.
    """
    import glob

    out: list[str] = []
    for pattern in patterns:
        if not Path(pattern).exists() and glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise UsageError(f"{pattern} matches no file", hint="check the shard output paths")
            out.extend(matches)
        else:
            if Path(pattern).is_dir():
                raise UsageError(f"cannot read {pattern}: it is a folder, not a JSON Lines file")
            if not Path(pattern).exists():
                raise UsageError(f"cannot read {pattern}: no such file")
            out.append(pattern)
    for path in out:
        if not Path(path).is_file():  # a pipe gives its records once; the merge reads twice
            raise UsageError(f"cannot read {path}: not a regular file (the merge reads each file twice)",
                             hint="save the shard output to a file first")
    if not out:
        raise UsageError("aicp merge needs the shard output files", hint="aicp merge out.*.jsonl -o all.jsonl")
    return out


def merge_files(paths: list[str], write: Callable[[dict[str, Any]], Any], *,
                partial: bool = False) -> tuple[int, list[str]]:
    """Check ``paths`` and write their records in input order with ``write``.

    :param partial: write what there is even when shards are incomplete.
    :returns: ``(records written, problems)``; ``problems`` is empty unless ``partial``
        (the caller then raises :class:`MergeIncomplete` once the output is in place).
    :raises MergeIncomplete: (exit 3) gaps or repeats, before anything is written, unless ``partial``.
    :raises UsageError: (exit 2) a file that is not a shard output.
    """
    _, problems = check(paths)
    if problems and not partial:
        raise MergeIncomplete(problems)
    written = 0
    for record in merged(paths):
        write(record)
        written += 1
    return written, problems


__all__ = ["MAX_COUNT", "MergeIncomplete", "ShardFile", "check", "expand", "merge_files", "merged"]
