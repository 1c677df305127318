"""The one top-level error handler every aicp entry point runs under.

Maps outcomes to :class:`~ai_content_pipeline.status.ExitStatus`: an
:class:`~ai_content_pipeline.errors.AicpError` prints ``aicp: error: …`` and its
hint on stderr; click usage errors exit 2; Ctrl-C exits 130; a closed stdout
(``| head -1``) ends quietly with 141 (128 + SIGPIPE, like other Unix tools).
No traceback is printed unless ``--traceback`` is on the command line.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from ..errors import AicpError
from ..jsonl import OutputClosed
from ..status import ExitStatus


def _quiet_stdout() -> None:
    # Python docs, "Note on SIGPIPE": point stdout at devnull so the interpreter's
    # final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _report(prog_name: str, stream_events: bool, message: str, hint: str | None, status: int) -> None:
    """Tell the user about a fatal error: plain lines, or one ``error`` event with ``--stream``.

    With ``--stream`` stderr is a JSON Lines log (``2>progress.jsonl``), so the error
    goes there as an event too and a ``jq`` pipeline over the log never meets a plain line.
    """
    if stream_events:
        from ..events import StreamEmitter

        StreamEmitter(enabled=True).emit("error", message=message, hint=hint, exit_code=int(status))
        return
    sys.stderr.write(f"{prog_name}: error: {message}\n")
    if hint:
        sys.stderr.write(f"{prog_name}: hint: {hint}\n")


def run_cli(command: click.Command, prog_name: str, args: list[str] | None = None) -> int:
    """Run ``command`` and return the exit status (never raises, except SystemExit)."""
    argv = list(sys.argv[1:] if args is None else args)
    show_tb = "--traceback" in argv or os.environ.get("AICP_TRACEBACK") == "1"
    stream_events = "--stream" in argv
    try:
        result: Any = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
        return int(result) if isinstance(result, int) else ExitStatus.SUCCESS
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        code = ExitStatus.USAGE if exc.exit_code == 2 else exc.exit_code
        if stream_events:
            _report(prog_name, True, exc.format_message(), None, code)
        else:
            exc.show()
        return code
    except (KeyboardInterrupt, click.Abort):
        _report(prog_name, stream_events, "interrupted", None, ExitStatus.INTERRUPTED)
        return ExitStatus.INTERRUPTED
    except (BrokenPipeError, OutputClosed):
        _quiet_stdout()
        return ExitStatus.BROKEN_PIPE
    except AicpError as exc:
        if show_tb:
            traceback.print_exc()
        _report(prog_name, stream_events, exc.message, exc.hint, exc.exit_status)
        return exc.exit_status
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if show_tb:
            traceback.print_exc()
        _report(prog_name, stream_events, f"unexpected {type(exc).__name__}: {exc}",
                "run again with --traceback and report it", ExitStatus.ERROR)
        return ExitStatus.ERROR


def entry(command: click.Command, prog_name: str) -> None:
    """Console-script entry: run and exit with the status."""
    code = run_cli(command, prog_name)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = ExitStatus.BROKEN_PIPE
    sys.exit(code)
