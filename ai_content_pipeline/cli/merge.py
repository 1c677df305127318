"""``aicp merge``: the outputs of ``--shard K/N`` runs back into one file, in input order."""

from __future__ import annotations

import click

from ..jsonl import RecordWriter
from .errors import message_prefix, note_flag
from .options import EPILOG_STATUS, AicpCommand, PathValue, version_option

EPILOG = f"""\b
Examples:
  aicp-script --shard $K/3 --checkpoint run.ledger examples/songs.jsonl > scripts.$K.jsonl  # K = 0, 1, 2
  aicp merge scripts.0.jsonl scripts.1.jsonl scripts.2.jsonl > scripts.jsonl
  aicp merge 'out/scripts.*.jsonl' -o scripts.jsonl
  aicp merge out/shard-*-of-8/02-voice.jsonl -o out/voiced.jsonl
  aicp merge --partial scripts.*.jsonl > so-far.jsonl   # what there is; still exit 3

\b
Exit status 3 names the gaps: a shard with no file, one that stopped before
the end of its input (rerun it with --resume), a record given twice.

{EPILOG_STATUS}
"""


@click.command("merge", cls=AicpCommand, epilog=EPILOG)
@version_option
@click.argument("files", nargs=-1, required=True, metavar="SHARD_OUTPUT...", type=PathValue())
@click.option("-o", "--output", type=PathValue(dir_okay=False, allow_dash=True), metavar="FILE",
              help="Write to FILE (created through a temporary file, renamed when complete) "
                   "[default: stdout].")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --output file (without it, an existing one stops the merge: exit 2).")
@click.option("--partial", is_flag=True,
              help="Write the records there are even when shards are incomplete (still exit 3).")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
@click.option("--traceback", is_flag=True, callback=note_flag, help="Show the Python traceback of an error.")
def merge_command(files: tuple[str, ...], output: str | None, overwrite: bool, partial: bool, quiet: bool,
                  traceback: bool) -> int:
    """Merge the outputs of `--shard K/N` runs into the records one unsharded
    run writes, in input order.

    SHARD_OUTPUT... are the files the shards wrote (any order; a quoted glob is
    expanded here). Each record carries `_aicp` (shard, input line index, seq;
    `end` on a shard's last record); the merge checks that every shard is there
    and finished and that no record is missing or repeated, then writes each
    record without `_aicp` (or with the input record's own `_aicp`, kept in the
    tag as `orig`). Inputs are never written: an output that is one of
    them stops the merge (exit 2), and so does an existing --output file
    unless --overwrite. Nothing is written when a shard is
    incomplete (exit 3, naming the gaps) unless --partial.
    """
    import os
    import sys

    from ..errors import UsageError
    from ..files import check_output_file, refuse_overlap, write_atomic
    from ..merge import MergeIncomplete, expand, merge_files
    from ..report import message_lines, one_line

    paths = expand(files)
    to_file = output is not None and output != "-"
    if to_file:
        assert output is not None
        check_output_file(output, "--output")
    reads = {f"input {p}": p for p in paths}
    refuse_overlap(reads, {f"--output {output}": output if to_file else None,
                           "stdout": None if to_file else sys.stdout.buffer})
    if to_file and not overwrite and os.path.lexists(str(output)):
        raise UsageError(f"--output {output} exists: aicp merge does not replace a file unless told to",
                         hint="pass --overwrite to replace it, or give another --output")
    result: list[tuple[int, list[str]]] = []
    if to_file:
        assert output is not None
        write_atomic(output, lambda handle: result.append(merge_files(paths, RecordWriter(handle).write,
                                                                      partial=partial)))
    else:
        result.append(merge_files(paths, RecordWriter().write, partial=partial))
    written, problems = result[0]
    if problems:
        raise MergeIncomplete(problems)
    if written == 0:  # no file carries an end tag: an empty input, or shards killed before their first record
        sys.stderr.write(message_lines(message_prefix("aicp merge"), "warning", "no shard file has a record: right "
                                       "for an input without records; if the input had some, a shard stopped "
                                       "before its first record (rerun it)"))
    if not quiet:  # one whole line: the output's path (escaped like every message's) stays copyable
        sys.stderr.write(one_line(message_prefix("aicp merge"), f"{written} records from {len(paths)} files"
                                  f"{f' -> {output}' if to_file else ''}", width=None) + "\n")
    return 0
