"""Shards: one process does the input lines whose position is ≡ K mod N.

``--shard K/N`` (``aicp-script``, ``aicp-voice``, ``aicp run-chain`` and the chain key
``shard``) makes a run read its whole input but process only the lines at positions
``p`` with ``p % N == K``, where a *position* is the 0-based index of a line in the
input (all FILEs one after the other). Every line counts: a bad line is a position
that becomes an ``error`` record, as in a single run; a blank line is a position that
produces nothing, as in a single run.

Each output record of a sharded run carries one extra field, ``_aicp``::

    {"shard": "K/N", "line": p, "seq": i}            # every record
    {..., "end": {"lines": M, "counts": [c0, ..., cN-1], "input": D}}   # the shard's last record
    {..., "end": {"lines": M, "blank": {"j": b_j, ...}, "input": D}}    # the same when N > 4096

An input record that already has an ``_aicp`` field keeps its value in the tag as
``orig`` (``aicp merge`` puts it back, in its place). ``line`` is the input position, ``seq`` the record's 0-based place in this shard's
output (takes of one line are consecutive), and ``end`` marks a shard that reached
the end of its input: ``M`` input lines in all, ``c_j`` non-blank lines at positions
≡ j mod N (so ``aicp merge`` knows which shards must have records); with more than
:data:`DENSE_COUNTS` shards ``blank`` instead gives ``b_j``, the blank lines of each shard
that has any, and ``c_j`` is shard j's positions less ``b_j``. ``aicp merge``
(:mod:`ai_content_pipeline.merge`) uses it to put the records back in input order,
find gaps and repeats, and removes it: the merged output equals a single run's. ``D``
(:func:`input_digest`) is a digest of every input line, so that merge refuses shards run on
different inputs even when their line counts agree.

``--shard auto`` reads the index and count from the scheduler (:func:`detect`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .jsonl import (
    InputLine,
    check_sources,
    count_records,
    input_line,
    is_blank,
    raw_lines,
)

#: The field a sharded run adds to each output record (removed by ``aicp merge``).
FIELD = "_aicp"
#: The key of the tag that keeps an input record's own ``_aicp`` value (restored by ``aicp merge``).
ORIG = "orig"
#: The environment variable that gives the shard count to ``--shard auto`` on Kubernetes.
COUNT_ENV = "AICP_SHARD_COUNT"
MAX_SHARDS = 1_000_000
#: Shard counts up to which ``end`` lists every shard's count (above: only blank lines, see :func:`end_tag`).
DENSE_COUNTS = 4096


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 ≤ index < count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        """``shard-K-of-N``: the part of file and folder names that names this shard."""
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, position: int) -> bool:
        """Whether input position ``position`` (0-based line index) belongs to this shard."""
        return position % self.count == self.index

    def ledger_path(self, path: str | None) -> str | None:
        """This shard's own ledger for ``--checkpoint path``: ``run.ledger`` → ``run.shard-K-of-N.ledger``."""
        if path is None:
            return None
        p = Path(path)
        return str(p.with_name(f"{p.stem}.{self.label}{p.suffix}"))

    def output_dir(self, folder: str) -> str:
        """A chain's ``output_dir`` for this shard: ``folder/shard-K-of-N``."""
        return str(Path(folder) / self.label)


def lines_of(index: int, count: int, lines: int) -> int:
    """Input positions (blank or not) of shard ``index`` of ``count`` among ``lines`` lines."""
    return len(range(index, lines, count))


def input_digest() -> Any:
    """A hash of a run's whole input, fed one raw line at a time (``update(line + b"\\n")``, a
    line too long to read as ``b"\\0"``): BLAKE2b, 16 bytes (``hashlib``); the ``end`` tag
    carries its hex digest as ``blake2b:HEX``."""
    return hashlib.blake2b(digest_size=16)


def end_tag(lines: int, counts: list[int], digest: str | None = None) -> dict[str, Any]:
    """A finished shard's ``end``: ``{"lines": M, "counts": [c0, …]}`` for up to
    :data:`DENSE_COUNTS` shards; above that ``{"lines": M, "blank": {"j": b_j}}``, the blank
    lines of the shards that have any (``c_j`` is shard j's positions less ``b_j``), so the
    last record stays small with a million shards; ``input``: ``digest``, when given."""
    n = len(counts)
    if n <= DENSE_COUNTS:
        tag: dict[str, Any] = {"lines": lines, "counts": list(counts)}
    else:
        tag = {"lines": lines, "blank": {str(j): lines_of(j, n, lines) - c for j, c in enumerate(counts[:lines])
                                         if c != lines_of(j, n, lines)}}
    if digest is not None:
        tag["input"] = digest
    return tag


def _int(text: str, what: str) -> int:
    """A whole number written in ASCII digits (an optional ``-``); surrounding white space is
    ignored. ``int()``'s other forms (``1_0``, ``+1``, other scripts' digits) are refused."""
    digits = str(text).strip()
    if not re.fullmatch(r"-?[0-9]+", digits, flags=re.ASCII):
        raise UsageError(f"{what} must be a whole number, not {text!r}")
    return int(digits)


def _env_int(environ: Mapping[str, str], name: str, why: str) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        raise UsageError(f"--shard auto: {name} is not set ({why})",
                         hint="run under the scheduler, or give --shard K/N")
    return _int(raw, name)


def _count(count: int | str | None, environ: Mapping[str, str]) -> tuple[int | None, str]:
    """The shard count given by ``--shard-count`` (first) or ``AICP_SHARD_COUNT``, and its name."""
    if count is not None:
        return _int(str(count), "--shard-count"), "--shard-count"
    raw = environ.get(COUNT_ENV)
    if raw is not None and raw.strip():
        return _int(raw, COUNT_ENV), COUNT_ENV
    return None, COUNT_ENV


def detect(environ: Mapping[str, str] | None = None, count: int | str | None = None) -> Shard:
    """The shard a scheduler gives this process (``--shard auto``).

    - Slurm job arrays: index ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` (divided by
      ``SLURM_ARRAY_TASK_STEP`` when set), count ``SLURM_ARRAY_TASK_COUNT``.
    - Kubernetes Indexed Jobs: index ``JOB_COMPLETION_INDEX``, count from ``count``
      (``--shard-count``) or ``AICP_SHARD_COUNT``.

    :raises UsageError: (exit 2) no scheduler variable, or one absent, not a number or
        inconsistent (an index outside the count...), naming the variable.
    """
    env = os.environ if environ is None else environ
    given, given_name = _count(count, env)
    if env.get("SLURM_ARRAY_TASK_ID", "").strip():
        why = "Slurm sets it for job arrays (sbatch --array)"
        task = _env_int(env, "SLURM_ARRAY_TASK_ID", why)
        total = _env_int(env, "SLURM_ARRAY_TASK_COUNT", why)
        low = _env_int(env, "SLURM_ARRAY_TASK_MIN", why)
        step = _int(env["SLURM_ARRAY_TASK_STEP"], "SLURM_ARRAY_TASK_STEP") \
            if env.get("SLURM_ARRAY_TASK_STEP", "").strip() else 1
        if step < 1:
            raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_STEP is {step}, not a positive step")
        if not 1 <= total <= MAX_SHARDS:
            raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_COUNT is {total}, not a count from 1 to {MAX_SHARDS}")
        offset = task - low
        if offset % step:
            raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_ID {task} is not SLURM_ARRAY_TASK_MIN {low} "
                             f"plus a multiple of SLURM_ARRAY_TASK_STEP {step}",
                             hint="use a plain range array such as --array=0-7")
        index = offset // step
        if not 0 <= index < total:
            raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_ID {task} (minus SLURM_ARRAY_TASK_MIN {low}) "
                             f"is outside SLURM_ARRAY_TASK_COUNT {total}",
                             hint="use a plain range array such as --array=0-7")
        if given is not None and given != total:
            raise UsageError(f"--shard auto: {given_name} {given} disagrees with SLURM_ARRAY_TASK_COUNT {total}")
        return Shard(index, total)
    if env.get("JOB_COMPLETION_INDEX", "").strip():
        index = _int(env["JOB_COMPLETION_INDEX"], "JOB_COMPLETION_INDEX")
        if given is None:
            raise UsageError("--shard auto: JOB_COMPLETION_INDEX is set but the shard count is not: "
                             f"set {COUNT_ENV} (the Job's completions) or --shard-count",
                             hint=f"in the Job manifest: env: [{{name: {COUNT_ENV}, value: \"N\"}}]")
        if given < 1 or given > MAX_SHARDS:
            raise UsageError(f"--shard auto: {given_name} is {given}, not a count from 1 to {MAX_SHARDS}")
        if not 0 <= index < given:
            raise UsageError(f"--shard auto: JOB_COMPLETION_INDEX {index} is outside {given_name} {given}")
        return Shard(index, given)
    raise UsageError("--shard auto found no scheduler: neither SLURM_ARRAY_TASK_ID (a Slurm job array) "
                     "nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set",
                     hint="give --shard K/N, e.g. --shard 0/4")


def parse(spec: str | None, *, count: int | str | None = None,
          environ: Mapping[str, str] | None = None) -> Shard | None:
    """``"K/N"`` → ``Shard(K, N)``; ``"auto"`` → :func:`detect`; ``None`` (no ``--shard``) → ``None``.

    :param count: ``--shard-count`` (for ``auto`` on Kubernetes; with ``K/N`` it must equal N).
    :raises UsageError: (exit 2) a malformed spec (an empty or blank one too: it never means
        the whole input), K outside 0…N-1, N < 1.
    """
    if spec is None:
        if count is not None:
            raise UsageError("--shard-count needs --shard auto (or --shard K/N)")
        return None
    if not str(spec).strip():
        raise UsageError(f"--shard {str(spec)!r} is {'empty' if not str(spec) else 'blank'}: expected K/N "
                         "(e.g. 0/4) or auto", hint="leave --shard out to run the whole input")
    text = str(spec).strip()
    if text.lower() == "auto":
        return detect(environ, count)
    k, sep, n = text.partition("/")
    if not sep:
        raise UsageError(f"--shard {text!r}: expected K/N (e.g. 0/4) or auto")
    index, total = _int(k, "--shard K"), _int(n, "--shard N")
    if not 1 <= total <= MAX_SHARDS:
        raise UsageError(f"--shard {text}: N must be from 1 to {MAX_SHARDS}")
    if not 0 <= index < total:
        raise UsageError(f"--shard {text}: K must be from 0 to N-1 ({total - 1})")
    if count is not None and _int(str(count), "--shard-count") != total:
        raise UsageError(f"--shard {text} disagrees with --shard-count {count}")
    return Shard(index, total)


def fanout_one(line: InputLine) -> int:
    """Output records per input line of a 1:1 stage (voice)."""
    return 1


def fanout_takes(variants: int) -> Callable[[InputLine], int]:
    """Output records per input line of the script stage: ``variants`` takes of a record
    (also one that arrives with an ``error``), one for a bad line."""
    takes = max(1, int(variants))
    return lambda line: 1 if line.record is None else takes


class ShardRun:
    """Reads a shard's lines and tags what the stage writes for them (see the module docstring).

    Use :meth:`lines` (or :meth:`count`) on the input, wrap the record writer with
    :meth:`wrap`, and call :meth:`finish` when the stage ended normally (the last record
    then gets ``end``) or :meth:`close` in any case (a record held back is written
    without ``end``: the shard is incomplete and ``aicp merge`` says so).

    :param shard: which shard this process is.
    :param fanout: ``fn(line) -> int``: how many output records the stage writes for a line.
    """

    def __init__(self, shard: Shard, fanout: Callable[[InputLine], int] = fanout_one) -> None:
        self.shard = shard
        self.fanout = fanout
        #: input lines in all (set once the input was read to its end)
        self.total_lines: int | None = None
        #: non-blank lines per shard residue (complete once ``total_lines`` is set)
        self.counts = [0] * shard.count
        #: ``blake2b:HEX`` of the whole input (:func:`input_digest`; set with ``total_lines``)
        self.digest: str | None = None
        self._pending: deque[list[Any]] = deque()  # [tag, outputs left] per selected line
        self._write: Callable[[dict[str, Any]], Any] | None = None
        self._held: dict[str, Any] | None = None
        self._seq = 0
        self._done = False

    # -- input ----------------------------------------------------------------------------
    def lines(self, sources: Iterable[str], stdin: IO[bytes] | None = None) -> Iterator[InputLine]:
        """The input lines of this shard, parsed as :func:`~ai_content_pipeline.jsonl.read_records`
        parses them (same line numbers and error records); lines of other shards are only
        counted, never parsed.

        :raises UsageError: an input cannot be read (checked before the first line).
        """
        sources = list(sources) or ["-"]
        check_sources(sources)
        n, k = self.shard.count, self.shard.index
        total = 0
        digest = input_digest()
        for position, (raw, number, name) in enumerate(raw_lines(sources, stdin)):
            total = position + 1
            digest.update(b"\0" if raw is None else raw + b"\n")
            if is_blank(raw):
                continue
            residue = position % n
            self.counts[residue] += 1
            if residue != k:
                continue
            line = input_line(raw, number, name)
            self._pending.append([{"shard": str(self.shard), "line": position}, self.fanout(line)])
            yield line
        self.total_lines = total
        self.digest = f"blake2b:{digest.hexdigest()}"

    def count(self, sources: Iterable[str], stdin: IO[bytes] | None = None) -> int | None:
        """This shard's non-blank lines when every source is a regular file, else ``None``
        (:func:`~ai_content_pipeline.jsonl.count_records`: stdin from a regular file is read
        and rewound)."""
        n, k = self.shard.count, self.shard.index
        return count_records(sources, stdin=stdin, positions=lambda position: position % n == k)

    # -- output ---------------------------------------------------------------------------
    def wrap(self, write: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
        """A writer that tags each record with ``_aicp`` and passes it to ``write``, one
        record behind (the last one waits for :meth:`finish` or :meth:`close`)."""
        self._write = write
        return self._tagged

    def _tagged(self, record: dict[str, Any]) -> None:
        while self._pending and self._pending[0][1] <= 0:
            self._pending.popleft()
        if not self._pending:
            raise RuntimeError("sharded run: the stage wrote more records than its input lines explain")
        entry = self._pending[0]
        entry[1] -= 1
        tag = {**entry[0], "seq": self._seq}
        if FIELD in record:  # the input record's own field: kept in the tag, in its place, for the merge
            tag[ORIG] = record[FIELD]
        out = dict(record)
        out[FIELD] = tag
        self._seq += 1
        held, self._held = self._held, out
        if held is not None:
            assert self._write is not None
            self._write(held)

    def finish(self) -> None:
        """The stage ended normally: write the last record with ``end``.

        :raises RuntimeError: the stage wrote fewer records than its lines call for (a bug).
        """
        if any(left > 0 for _, left in self._pending):
            raise RuntimeError("sharded run: the stage wrote fewer records than its input lines call for")
        self._done = True
        held, self._held = self._held, None
        if held is not None and self._write is not None:
            held[FIELD]["end"] = end_tag(self.total_lines or 0, self.counts, self.digest)
            self._write(held)

    def close(self) -> None:
        """Write a record still held back (without ``end``: the shard did not finish)."""
        held, self._held = self._held, None
        if held is not None and self._write is not None and not self._done:
            try:
                self._write(held)
            except Exception:  # noqa: BLE001, S110 - the run is failing already; its error wins
                pass


def shard_chain(spec: Any, shard: str | None = None, count: int | None = None,
                environ: Mapping[str, str] | None = None) -> Any:
    """The chain ``spec`` for one shard: ``shard`` (``--shard``) or the chain's ``shard`` key
    resolved to ``K/N``, and ``output_dir`` moved to ``output_dir/shard-K-of-N`` (its records,
    ledgers, audio and long-form folders are that shard's own). Unsharded: ``spec`` itself.
    Applying it twice changes nothing.

    :raises UsageError: a malformed shard, or ``auto`` without the scheduler's variables.
    """
    resolved = parse(shard if shard is not None else spec.shard, count=count, environ=environ)
    if resolved is None:
        return spec
    folder = spec.output_dir if Path(spec.output_dir).name == resolved.label else resolved.output_dir(spec.output_dir)
    copy = spec.model_copy(update={"shard": str(resolved), "output_dir": folder})
    copy.source = spec.source
    return copy


def chain_shard_run(spec: Any, index: int) -> ShardRun | None:
    """The :class:`ShardRun` of step ``index`` of a chain resolved by :func:`shard_chain`: only
    the first enabled step reads the chain input (later steps read the records of the step
    before, which keep their ``_aicp`` tags), so only it is sharded."""
    if not spec.shard or index != spec.enabled_steps()[0]:
        return None
    shard = parse(spec.shard)
    assert shard is not None
    step = spec.steps[index]
    fanout = fanout_takes(step.params.get("variants", 1)) if step.type == "script" else fanout_one
    return ShardRun(shard, fanout)


def shard_run(shard: Shard | None, fanout: Callable[[InputLine], int] = fanout_one) -> ShardRun | None:
    """A :class:`ShardRun` for ``shard``, or ``None`` when the run is not sharded."""
    return ShardRun(shard, fanout) if shard is not None else None


__all__ = ["COUNT_ENV", "DENSE_COUNTS", "FIELD", "ORIG", "end_tag", "lines_of", "Shard", "ShardRun", "chain_shard_run", "detect", "fanout_one", "fanout_takes",
           "parse", "shard_chain", "shard_run"]
