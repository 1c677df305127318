"""``aicp logs``: read back the take log that ``--log PATH.db`` / ``AICP_LOG_DB`` writes."""

from __future__ import annotations

import click

from ..jsonl import RecordWriter
from .options import EPILOG_STATUS, AicpCommand, PathValue, version_option

EPILOG = f"""\b
Examples:
  aicp-script --log takes.db < examples/songs.jsonl | aicp-voice --log takes.db
  aicp logs --log takes.db                 # the last 10 takes, newest last
  AICP_LOG_DB=takes.db aicp logs -n 0 --json | jq -r 'select(.passed == false) | .text'
  sqlite-utils rows takes.db takes --limit 3  # plain tables: takes, runs

{EPILOG_STATUS}
"""


@click.command("logs", cls=AicpCommand, epilog=EPILOG)
@version_option
@click.option("--log", metavar="PATH.db", envvar="AICP_LOG_DB", type=PathValue(dir_okay=False),
              help="The take log to read [default: $AICP_LOG_DB].")
@click.option("-n", "--count", type=click.IntRange(0), default=10, show_default=True, metavar="N",
              help="Show the last N takes (0: all).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per take (JSON Lines) with every column, instead of text.")
def logs_command(log: str | None, count: int, as_json: bool) -> None:
    """Show the takes recorded in a take log, newest last.

    Runs of aicp-script (and aicp-voice) with --log PATH.db or AICP_LOG_DB record
    each take: time, template@version, persona, backend, model, parameters,
    messages, text, tokens, seconds, checks, and the audio file once aicp-voice
    --log has voiced it. The text form leaves out the messages; --json has every
    column. The file is plain SQLite (tables takes and runs).
    """
    from ..errors import UsageError
    from ..takelog import format_take, iter_takes

    if not log:
        raise UsageError("no take log given", hint="aicp logs --log PATH.db, or set AICP_LOG_DB=PATH.db")
    writer = RecordWriter()
    for take in iter_takes(log, count or None):  # one take in memory at a time
        if as_json:
            writer.write(take)
        else:
            writer.write_raw((format_take(take) + "\n").encode("utf-8"))
