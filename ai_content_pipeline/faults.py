"""Operating-system faults as user errors: full disks, unwritable folders, wrong kinds of path.

Every ``OSError`` that reaches a user goes through :func:`os_error`, which names
the path, says what went wrong in plain words and picks the exit status:

- no space left (``ENOSPC``, ``EDQUOT``, ``EFBIG``) → :class:`DiskFull` (exit 1), naming
  the path and the free space of its file system;
- permission denied, read-only file system, a directory where a file belongs, a
  missing folder → :class:`~ai_content_pipeline.errors.UsageError` (exit 2: the user
  named a path that cannot be used);
- anything else (``EIO``...) → :class:`WriteFailed` (exit 1).

:func:`path_problem` says why a path that should be a file (or a folder) is not
one: "is a directory", "is not a regular file", "does not exist".
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import AicpError, UsageError

#: errno values meaning "the file system is full" (or the user's quota is).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: errno values meaning "the user named a path that cannot be written here".
USER_PATH = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                       errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST})


class DiskFull(AicpError):
    """No space left on the file system of a path aicp writes (exit 1)."""


class WriteFailed(AicpError):
    """A write failed for a reason other than space or permissions (I/O error; exit 1)."""


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free to an unprivileged user on the file system of ``path`` (or its nearest
    existing parent); ``None`` when it cannot be found out."""
    probe = Path(os.path.abspath(path))
    for candidate in (probe, *probe.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def human_bytes(n: int) -> str:
    """``1536`` → ``1.5 KiB`` (binary units, one decimal)."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def _is_device(path: str | os.PathLike[str]) -> bool:
    try:
        return not Path(path).is_file() and Path(path).exists() and not Path(path).is_dir()
    except OSError:
        return False


def os_error(exc: OSError, path: str | os.PathLike[str] | None = None, doing: str = "write") -> AicpError:
    """The user error for ``exc``, raised while doing ``doing`` (``write``, ``read``...) to ``path``.

    :param path: the path concerned; default ``exc.filename``, else none is named.
    :returns: a :class:`DiskFull` (exit 1), a :class:`UsageError` (exit 2) or a
        :class:`WriteFailed` (exit 1); the caller raises it ``from exc``.
    """
    target = path if path is not None else exc.filename
    what = f"{doing} {os.fspath(target)}" if target is not None else doing
    reason = exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__
    if exc.errno in NO_SPACE:
        free = free_bytes(target) if target is not None and not _is_device(target) else None
        left = f"; {human_bytes(free)} free there" if free is not None else ""
        return DiskFull(f"cannot {what}: no space left on the device{left}",
                        hint="free some space (or point the output elsewhere) and run again with --resume")
    if exc.errno in USER_PATH:
        return UsageError(f"cannot {what}: {reason}")
    return WriteFailed(f"cannot {what}: {reason}")


def missing_hint(path: str | os.PathLike[str], what: str) -> str:
    """A hint for a file that does not exist: a similar name in the same folder, if any, and
    where a relative path was looked for.

    :param what: what a right answer is, e.g. ``"a .gguf file"``.
    :returns: e.g. ``did you mean examples/songs.jsonl? (use - to read standard input)``.
    """
    import difflib

    p = Path(path)
    folder = p.parent
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")] if folder.is_dir() else []
    except OSError:
        names = []
    close = difflib.get_close_matches(p.name, names, n=1, cutoff=0.8)
    if close:
        return f"did you mean {os.path.join(os.path.dirname(str(path)), close[0])}? ({what})"
    if not p.is_absolute():
        return f"relative paths start at {os.getcwd()}; {what}"
    return what


def path_problem(path: str | os.PathLike[str], *, want: str = "file") -> str | None:
    """Why ``path`` is not a usable ``want`` (``file`` or ``directory``), or ``None`` when it is.

    Returns ``"is a directory"``, ``"is not a directory"``, ``"is not a regular file"``
    or ``"does not exist"`` (also for a path under a regular file).
    """
    p = Path(path)
    try:
        if want == "directory":
            if p.is_dir():
                return None
            return "is not a directory" if p.exists() else "does not exist"
        if p.is_file():
            return None
        if p.is_dir():
            return "is a directory"
        if p.exists():
            return "is not a regular file"
    except OSError as exc:  # a name too long, a loop of links...
        return exc.strerror or "cannot be used"
    return "does not exist"


__all__ = ["DiskFull", "WriteFailed", "free_bytes", "human_bytes", "os_error", "path_problem"]
