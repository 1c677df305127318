"""The one top-level error handler every aicp entry point runs under.

Maps outcomes to :class:`~ai_content_pipeline.status.ExitStatus`: an
:class:`~ai_content_pipeline.errors.AicpError` prints ``aicp: error: …`` and its
hint on stderr; click usage errors exit 2; Ctrl-C exits 130; a closed stdout
(``| head -1``) ends quietly with 141 (128 + SIGPIPE, like other Unix tools), and a
stdout closed before the start (``>&-``) exits 141 with a message; an ``OSError``
no code expected (a full disk...) is reported through
:func:`~ai_content_pipeline.faults.os_error` (path, free space), never as a traceback.
No traceback is printed unless ``--traceback`` is on the command line.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import stat
import sys
import threading
import time
import traceback
from typing import Any

import click

from ..errors import AicpError, set_fatal_reporter
from ..faults import os_error
from ..jsonl import OutputClosed
from ..status import ExitStatus


def _quiet_stdout() -> None:
    # Python docs, "Note on SIGPIPE": point stdout at devnull so the interpreter's
    # final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _report(prog_name: str, stream_events: bool, message: str, hint: str | None, status: int,
            started: float | None = None) -> None:
    """Tell the user about a fatal error: plain lines, or one ``error`` event with ``--stream``.

    With ``--stream`` stderr is a JSON Lines log (``2>progress.jsonl``), so the error
    goes there as an event too and a ``jq`` pipeline over the log never meets a plain line;
    its ``elapsed_seconds`` counts from ``started`` (the command's start, monotonic clock).
    A stderr that cannot be written (closed, full) loses the message, not the exit status.
    """
    try:
        if stream_events:
            from ..events import StreamEmitter

            StreamEmitter(enabled=True, started=started).error(message, hint, status)
            return
        from ..report import message_lines

        sys.stderr.write(message_lines(prog_name, "error", message, hint))
        sys.stderr.flush()
    except Exception:  # noqa: BLE001, S110 - nowhere left to report to
        pass


class _ReaderWatch:
    """Notices within a moment when the reader of a stdout pipe goes away, even while idle.

    A writer normally learns that ``| head -1`` has exited only at its next write,
    which may be a minute away (a slow model, ``--jobs`` waiting on a hung server).
    When stdout is a pipe or a socket, a daemon thread polls it for ``POLLERR``/``POLLHUP``
    and interrupts the main thread (``SIGUSR1``, whose handler raises ``KeyboardInterrupt``:
    the run stops as on Ctrl-C, even where SIGINT is ignored, as in background jobs);
    :func:`run_cli` then exits 141 quietly instead of 130.
    """

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.done = False
        self.started = False
        self.armed = False

    def arm(self) -> None:
        """Let :meth:`start` watch: the console-script entry arms it, a command starts it when it
        runs. ``--version`` and ``-h`` end while parsing, so a reader that leaves after taking
        their whole output (``aicp --version | head -1``) never turns a success into 141."""
        self.armed = True

    def start(self) -> None:
        """Start watching fd 1 when it is a pipe or a socket (a file or terminal never closes)."""
        if not self.armed or self.started or self.done:
            return
        try:
            mode = os.fstat(1).st_mode
        except OSError:
            return
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            signal.signal(signal.SIGUSR1, _interrupt)
            self.started = True
            threading.Thread(target=self._watch, name="aicp-stdout-watch", daemon=True).start()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(1, 0)  # POLLERR, POLLHUP and POLLNVAL are always reported
        while not self.done:
            events = [ev for _, ev in poller.poll()]
            if any(ev & select.POLLNVAL for ev in events):
                return
            if any(ev & (select.POLLERR | select.POLLHUP) for ev in events):
                break
        if self.done:
            return
        self.closed.set()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    def stop(self) -> None:
        """The command has ended: a reader that leaves now interrupts nothing."""
        self.done = True
        if self.started:
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


_WATCH = _ReaderWatch()


class _StopSignals:
    """SIGTERM and SIGHUP stop a run the way Ctrl-C does.

    Python's default for both ends the process at once: no ``error`` event on ``--stream``,
    ledgers cut wherever the signal fell. Here the first one raises ``KeyboardInterrupt`` in
    the main thread (the stages' Ctrl-C path: records written so far stay consistent), and
    :func:`run_cli` reports it (``terminated by SIGTERM``) with 128 + the signal's number
    (143, 129). Ctrl-C (SIGINT) is handled alike when Python's own handler has it (not when a
    parent left it ignored), reported as ``interrupted`` (130). Once one of them arrived, all
    three take their default action: a second Ctrl-C or signal while the run stops ends the
    process at once, quietly, instead of a ``KeyboardInterrupt`` raised into the clean-up (a
    native object's ``__del__`` printed its traceback).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    #: Commands that stop on these signals their own way (a server's graceful shutdown, a
    #: worker that hands its job back): the handlers are given back while they run.
    OWN_HANDLERS = frozenset({"aicp serve", "aicp worker"})

    def install(self) -> dict[int, Any]:
        """Handle the signals (main thread only); returns the handlers to give back."""
        self.received = None
        self.previous = {}
        if threading.current_thread() is not threading.main_thread():
            return {}
        for sig in self.SIGNALS:
            if sig == signal.SIGINT and signal.getsignal(sig) is not signal.default_int_handler:
                continue  # ignored by a parent (a background job), or a handler of the caller's
            self.previous[int(sig)] = signal.signal(sig, self._handle)
        return self.previous

    def command_starts(self, command_path: str) -> None:
        """Give the handlers back for a command in :data:`OWN_HANDLERS`."""
        if command_path in self.OWN_HANDLERS:
            self.restore(self.previous)

    def restore(self, previous: dict[int, Any]) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: Any) -> None:
        for sig in self.previous:  # the next one, of any kind, ends the process at once
            signal.signal(sig, signal.SIG_DFL)
        if self.received is None:
            self.received = signum
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise KeyboardInterrupt(f"terminated by {signal.Signals(signum).name}")

    def status(self) -> tuple[str, int] | None:
        """``(message, exit status)`` when SIGTERM or SIGHUP ended the run, else ``None``
        (Ctrl-C is reported as ``interrupted``)."""
        if self.received is None or self.received == signal.SIGINT:
            return None
        name = signal.Signals(self.received).name
        return f"terminated by {name}", 128 + self.received


_STOP = _StopSignals()


class _Seen:
    """Which of ``--stream`` / ``--traceback`` click really parsed as flags in this run,
    and the command path (``aicp run-chain``) every message of the run starts with.

    Looking for the words in argv is not enough: ``--set --traceback`` gives the word
    as an option's value.
    """

    def __init__(self) -> None:
        self.stream = False
        self.traceback = False
        self.prog: str | None = None
        self.ctx: click.Context | None = None

    def reset(self) -> None:
        """A new run: no flag seen yet, no command chosen yet."""
        self.stream = self.traceback = False
        self.prog = None
        self.ctx = None


SEEN = _Seen()


HELP_OPTION_NAMES = ["-h", "--help"]


class _OwnErrors:
    """Usage errors raised while parsing a command's line carry that command's context.

    click's option parser raises some without one (an option missing its value:
    ``aicp run-chain --config``), and :func:`run_cli` needs it for the prefix
    (``aicp run-chain: ``) and the ``-h`` hint every other usage error gets.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc, no-any-return]
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise


class AicpCommand(_OwnErrors, click.Command):
    """A click command with ``-h`` beside ``--help`` that notes its command path when it runs.

    Every line a command prints on stderr (notices, the summary, errors and hints) starts
    with that path (``aicp-script: ``, ``aicp run-chain: ``), so one command's messages
    share one prefix.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {"help_option_names": HELP_OPTION_NAMES,
                                      **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        SEEN.prog = ctx.command_path
        SEEN.ctx = ctx
        _STOP.command_starts(ctx.command_path)
        _WATCH.start()  # the command runs now (parsing is over): watch stdout's reader
        return super().invoke(ctx)


class AicpGroup(_OwnErrors, click.Group):
    """A click group with ``-h`` beside ``--help``; its subcommands are :class:`AicpCommand`."""

    command_class = AicpCommand

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {"help_option_names": HELP_OPTION_NAMES,
                                      **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        """click's, but an unknown name is matched against :meth:`list_commands` for its
        ``Did you mean …?`` (click matches ``self.commands``, empty in a lazy group)."""
        no_such = getattr(click.exceptions, "NoSuchCommand", None)  # click 8.4 and later
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if no_such is None or not isinstance(exc, no_such) or exc.possibilities:
                raise
            raise no_such(exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx) from None


AicpGroup.group_class = AicpGroup


def message_prefix(default: str = "aicp") -> str:
    """The command path this run's messages start with (``default`` before a command runs)."""
    return SEEN.prog or default


def note_flag(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback of ``--stream`` and ``--traceback``: remember that the flag is on."""
    if value and param.name in ("stream", "traceback"):
        setattr(SEEN, param.name, True)
    return value


def _invoke(command: click.Command, prog_name: str, argv: list[str]) -> Any:
    """What ``click.Command.main(standalone_mode=False)`` does, minus its exception handling.

    ``main`` turns a closed stdout (EPIPE) into exit 1 and writes a blank line to
    stderr on Ctrl-C (which breaks a ``--stream`` JSON Lines log); here both reach
    :func:`run_cli` untouched. Shell completion (``_AICP_COMPLETE=...``) still works.
    """
    command._main_shell_completion({}, prog_name, None)
    with command.make_context(prog_name, argv) as ctx:
        return command.invoke(ctx)


_OPTION = re.compile(r"(?<![\w/.-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w/.-])")


#: The attribute of a command (``aicp run-chain``'s) holding ``() -> set[str]``: the options of
#: aicp-script and aicp-voice that its hints turn into chain keys (this module does not import
#: those commands: they import it).
STAGE_OPTIONS = "stage_options"


#: The chain's words for options of aicp-script / aicp-voice that are not key: option name.
_CHAIN_KEYS = {"--out-dir": "output_dir:", "--strict": "on_error: stop"}


def fit_hint(hint: str | None, ctx: click.Context | None) -> str | None:
    """``hint`` (or an error message) in the terms of the command that runs (``ctx``): it
    names only options that command has.

    Library errors are written once for every front end: ``run again with --resume`` loses
    ``with --resume`` (and what it would keep) where the command has no ``--resume``
    (``aicp merge``) or ran without the ``--checkpoint`` a resume needs; ``--traceback`` becomes ``AICP_TRACEBACK=1`` where the
    command has no such flag; under ``aicp run-chain`` an option of aicp-script or aicp-voice
    that it lacks becomes the chain key of that name (``--voice`` → ``voice:``, ``--strict`` → ``on_error: stop``) unless the
    clause names another command
    (``aicp-script --best-of 4``).
    """
    if not hint or ctx is None:
        return hint
    have = {opt for param in ctx.command.params for opt in (*param.opts, *param.secondary_opts)}
    if "checkpoint" in ctx.params and not ctx.params["checkpoint"]:
        have.discard("--resume")  # no ledger was written: nothing to resume from
    if "--traceback" not in have:
        hint = hint.replace("with --traceback", "with AICP_TRACEBACK=1")
    if "--resume" not in have:
        hint = re.sub(r"run again with --resume\b(?: to keep [^,;.)]*)?", "run again", hint)
    options = getattr(ctx.command, STAGE_OPTIONS, None)  # run-chain's: its hints name chain keys
    if options is not None and "--" in hint:
        text, stage = hint, options()

        def key(match: re.Match[str]) -> str:
            clause = re.split(r"[,;(]", text[:match.start()])[-1]
            if match.group(0) in have or match.group(0) not in stage or "aicp" in clause:
                return match.group(0)
            return _CHAIN_KEYS.get(match.group(0), match.group(0)[2:].replace("-", "_") + ":")
        hint = _OPTION.sub(key, text)
    return hint


def _usage_hint(exc: click.ClickException) -> str | None:
    """``'aicp-voice -h' shows the options`` for a usage error (click prints the usage and a
    ``Try ... --help`` line without the command's prefix; aicp says it in one hint line); for
    an unknown subcommand, the group's commands."""
    ctx = getattr(exc, "ctx", None)
    if not isinstance(exc, click.UsageError) or ctx is None:
        return None
    no_such = getattr(click.exceptions, "NoSuchCommand", None)  # click 8.4 and later
    unknown = isinstance(exc, no_such) if no_such else exc.message.startswith("No such command")
    if unknown and isinstance(ctx.command, click.Group):
        return (f"the commands: {', '.join(ctx.command.list_commands(ctx))} "
                f"('{ctx.command_path} -h' says what each does)")
    return f"'{ctx.command_path} -h' shows the options"


def run_cli(command: click.Command, prog_name: str, args: list[str] | None = None) -> int:
    """Run ``command`` and return the exit status (never raises, except SystemExit)."""
    started = time.monotonic()
    argv = list(sys.argv[1:] if args is None else args)
    SEEN.reset()
    env_tb = os.environ.get("AICP_TRACEBACK") == "1"

    def report(message: str, hint: str | None, status: int) -> int:
        _report(message_prefix(prog_name), SEEN.stream, message, hint, status, started)
        return status

    set_fatal_reporter(lambda exc: report(exc.message, exc.hint, exc.exit_status))  # a native abort

    previous = _STOP.install()
    try:
        return _run(command, prog_name, argv, report, env_tb)
    finally:
        _STOP.restore(previous)


def _run(command: click.Command, prog_name: str, argv: list[str], report: Any, env_tb: bool) -> int:
    """:func:`run_cli`'s body: the command, and every way it can end mapped to a status."""
    try:
        result: Any = _invoke(command, prog_name, list(argv))  # click consumes the list it parses
        return int(result) if isinstance(result, int) else ExitStatus.SUCCESS
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # a group run bare: its help, as click prints it
        exc.show()
        return ExitStatus.USAGE
    except click.ClickException as exc:
        code = ExitStatus.USAGE if exc.exit_code == 2 else exc.exit_code
        if "--stream" in argv:  # parsing may have stopped before --stream
            SEEN.stream = True
        ctx = getattr(exc, "ctx", None)
        if ctx is not None and SEEN.prog is None:  # the command whose options were wrong
            SEEN.prog = ctx.command_path
        return report(exc.format_message(), _usage_hint(exc), code)
    except (KeyboardInterrupt, click.Abort):
        if _WATCH.closed.is_set():  # not Ctrl-C: the reader of stdout went away
            _quiet_stdout()
            return ExitStatus.BROKEN_PIPE
        stopped = _STOP.status()
        if stopped is not None:  # SIGTERM or SIGHUP
            return report(stopped[0], None, stopped[1])
        return report("interrupted", None, ExitStatus.INTERRUPTED)
    except (BrokenPipeError, OutputClosed):
        _quiet_stdout()
        return ExitStatus.BROKEN_PIPE
    except AicpError as exc:
        if SEEN.traceback or env_tb:
            traceback.print_exc()
        return report(fit_hint(exc.message, SEEN.ctx) or exc.message, fit_hint(exc.hint, SEEN.ctx), exc.exit_status)
    except OSError as exc:  # a full disk, a read-only folder... met where no code expected it
        if SEEN.traceback or env_tb:
            traceback.print_exc()
        error = os_error(exc)
        return report(error.message, fit_hint(error.hint, SEEN.ctx), error.exit_status)
    except MemoryError:  # met where no backend could map it (an import, a validation)
        if SEEN.traceback or env_tb:
            traceback.print_exc()
        return report("out of memory", fit_hint("free memory (other programs, a memory limit such as "
                                                "ulimit -v or a container's), or run less at once", SEEN.ctx),
                      ExitStatus.ERROR)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if SEEN.traceback or env_tb:
            traceback.print_exc()
        return report(f"unexpected {type(exc).__name__}: {exc}",
                      fit_hint("run again with --traceback and report it", SEEN.ctx), ExitStatus.ERROR)


def _standard_streams(prog_name: str) -> bool:
    """Give closed standard streams a /dev/null (so no file aicp opens lands on fd 0-2).

    A closed stdin reads as empty and a closed stderr discards messages; a closed
    stdout (``>&-``) cannot take the records, so it is reported.

    :returns: ``False`` when stdout was closed.
    """
    ok = True
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            devnull = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
        except OSError:
            continue
        if fd == 0:
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as the process
        elif fd == 2:
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        else:
            ok = False
    if not ok:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - /dev/null now
        _report(prog_name, "--stream" in sys.argv[1:], "stdout is closed (>&-): the output has nowhere to go",
                "redirect it to a file, or to /dev/null to discard it", ExitStatus.BROKEN_PIPE)
    return ok


def _blocking_streams() -> list[int]:
    """Make standard streams that a parent left non-blocking (``O_NONBLOCK`` on a pipe) blocking.

    A non-blocking stdin reads as ended while its writer is still quiet (the records that come
    later would be lost, exit 0), and a non-blocking stdout fails a write to a full pipe.

    :returns: the descriptors changed, for :func:`_restore_nonblocking` (the flag belongs to
        the open file, which other processes may share).
    """
    changed = []
    for fd in (0, 1, 2):
        try:
            if not os.get_blocking(fd):
                os.set_blocking(fd, True)
                changed.append(fd)
        except OSError:
            continue
    return changed


def _restore_nonblocking(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.set_blocking(fd, False)
        except OSError:
            pass


#: Set by the shell launchers in bin/ to the standard streams that were folders (``stdin``,
#: ``stdout``): Python cannot start with one, so they give it /dev/null instead.
FOLDER_STREAMS_VAR = "AICP_FOLDER_STREAMS"


def _stream_problem() -> str | None:
    """What is wrong with stdin or stdout before anything runs, or ``None``.

    A folder as stdin (``aicp-script < /``) or stdout (``1< /``) stops Python in its start-up;
    the launcher says which in :data:`FOLDER_STREAMS_VAR` (not passed on to programs aicp
    starts). A stdout opened for reading only (``1< file``) cannot take the records.
    """
    told = os.environ.pop(FOLDER_STREAMS_VAR, "").split()
    if "stdin" in told:
        return "stdin is a folder: give the records as a file, or redirect stdin from one (< records.jsonl)"
    try:
        readonly = fcntl.fcntl(1, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    except OSError:
        readonly = False
    if "stdout" in told or readonly:
        return (f"stdout is {'a folder' if 'stdout' in told else 'open for reading only'}: the output "
                "has nowhere to go (redirect it to a file, or to /dev/null to discard it)")
    return None


def entry(command: click.Command, prog_name: str) -> None:
    """Console-script entry: run and exit with the status."""
    problem = _stream_problem()
    if problem is not None:
        _report(prog_name, "--stream" in sys.argv[1:], problem, None, ExitStatus.USAGE)
        sys.exit(ExitStatus.USAGE)
    if not _standard_streams(prog_name):
        sys.exit(ExitStatus.BROKEN_PIPE)
    nonblocking = _blocking_streams()
    try:
        _WATCH.arm()
        code = run_cli(command, prog_name)
    except KeyboardInterrupt:  # the watch's (or a stop) signal, just as the command ended
        stopped = _STOP.status()
        code = (ExitStatus.BROKEN_PIPE if _WATCH.closed.is_set()
                else stopped[1] if stopped is not None else ExitStatus.INTERRUPTED)
    _WATCH.stop()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = ExitStatus.BROKEN_PIPE
    except OSError as exc:  # a full stdout (/dev/full): one message, no noise at exit
        _quiet_stdout()
        if code in (ExitStatus.SUCCESS, ExitStatus.PARTIAL):
            error = os_error(exc, doing="write to stdout")
            _report(message_prefix(prog_name), SEEN.stream, error.message, None, error.exit_status)
            code = error.exit_status
    _restore_nonblocking(nonblocking)
    sys.exit(code)
