"""Process exit statuses shared by every aicp command.

The numbers are part of the public contract (documented in ``--help``, the man
pages and README.md) so shell scripts and Makefiles can branch on them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit codes of ``aicp``, ``aicp-script`` and ``aicp-voice``.

    - ``SUCCESS`` (0): every record succeeded (or was skipped on resume).
    - ``ERROR`` (1): the run was aborted by an unexpected error.
    - ``USAGE`` (2): bad options, bad chain file, unknown template/persona/backend.
    - ``PARTIAL`` (3): the run finished but some records carry an ``error``.
    - ``BACKEND_UNAVAILABLE`` (4): the backend could not be reached or the model is missing.
    - ``HANGUP`` (129): stopped by SIGHUP, its terminal closed (128 + SIGHUP).
    - ``INTERRUPTED`` (130): stopped by Ctrl-C / SIGINT (128 + SIGINT, the shell convention).
    - ``BROKEN_PIPE`` (141): stdout closed by its reader (``| head -1``); 128 + SIGPIPE.
    - ``TERMINATED`` (143): stopped by SIGTERM (``kill``, a scheduler's time limit); 128 + SIGTERM.

    A run stopped by 129, 130 or 143 stops as on Ctrl-C: an ``error`` event with ``--stream``,
    ledgers and output files consistent, ``--resume`` goes on.
    """

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    PARTIAL = 3
    BACKEND_UNAVAILABLE = 4
    HANGUP = 129
    INTERRUPTED = 130
    BROKEN_PIPE = 141
    TERMINATED = 143


#: What each status means, in the words of ``--help`` and the man pages (EXIT STATUS).
EXIT_STATUS_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.SUCCESS: "all records succeeded",
    ExitStatus.ERROR: "aborted by an error",
    ExitStatus.USAGE: "usage or config error",
    ExitStatus.PARTIAL: "finished but some records failed",
    ExitStatus.BACKEND_UNAVAILABLE: "backend unavailable",
    ExitStatus.HANGUP: "hung up (SIGHUP)",
    ExitStatus.INTERRUPTED: "interrupted",
    ExitStatus.BROKEN_PIPE: "stdout closed by its reader",
    ExitStatus.TERMINATED: "terminated (SIGTERM)",
}

EXIT_STATUS_HELP = (
    "Exit status: " + "; ".join(f"{int(code)} {meaning}" for code, meaning in EXIT_STATUS_MEANINGS.items()) + "."
)
