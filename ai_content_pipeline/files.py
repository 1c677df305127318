"""Where a run writes: one output path per record, locked folders, inputs never written.

Three promises rest on this module (README, "Reliability"):

- **No output path is shared by two records.** :class:`NameClaims` hands out file and
  folder names in input order: the first record that asks for a name gets it, a later
  record that would get the same name (a repeated ``id``, ``123`` and ``"123"``, an id
  that equals another after cleaning) gets ``NAME-2``, ``NAME-3``… The order is the
  input order, so a resumed run hands out the same names.
- **One writer per output folder.** :class:`FolderLock` holds an exclusive ``flock`` on
  ``FOLDER/.aicp.lock`` (the ``filelock`` library) for a whole run; a second run on the same folder stops at once
  (exit 2) instead of overwriting files whose size the first run already reported.
- **A run never writes to a file it reads.** :func:`refuse_overlap` compares every path
  a run writes (stdout, ledgers, step outputs) with every path it reads (inputs, stdin,
  the chain file) by file identity, before any work starts (exit 2).

:func:`check_output_file` and :func:`check_output_dir` check, before the first model
call, that a path can be created, so a bad ``--checkpoint`` never fails after an hour.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import UsageError

#: The lock file :class:`FolderLock` creates in a locked folder.
LOCK_NAME = ".aicp.lock"


class NameClaims:
    """Names handed out in one run, compared case-insensitively (``casefold``), so that
    two records never share a file, also on case-insensitive file systems.

    Memory: one 8-byte digest per name (about 100 bytes a record in a Python set).
    """

    def __init__(self) -> None:
        self._taken: set[bytes] = set()

    def _mark(self, name: str) -> bool:
        digest = hashlib.blake2b(name.casefold().encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if digest in self._taken:
            return False
        self._taken.add(digest)
        return True

    def claim(self, stem: str, suffix: str = "") -> str:
        """The first free name of ``stem + suffix``, ``stem-2 + suffix``, ``stem-3 + suffix``…

        :param stem: the wanted name without its extension (already safe for a file name).
        :param suffix: the extension with its dot (``.wav``), or ``""`` for a folder.
        :returns: the claimed name; later calls never return it again.
        """
        name, n = f"{stem}{suffix}", 1
        while not self._mark(name):
            n += 1
            name = f"{stem}-{n}{suffix}"
        return name


class FolderBusy(UsageError):
    """Another process holds the :class:`FolderLock` of the folder (exit 2)."""


def _write_pid(fd: int) -> None:
    """Put this process's id in a lock file just locked (for the message a second run gets)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


class FolderLock:
    """An exclusive advisory lock on ``folder`` for one run: the ``filelock`` library's
    ``FileLock`` (``flock`` on ``folder/.aicp.lock``), taken without waiting.

    The folder is created if needed. The lock file keeps the holder's process id for the
    message a second run gets and is removed on :meth:`release` (or leaving the context
    manager); whatever happens, the kernel drops the lock when the process ends (SIGKILL
    included), and the next run takes over the file left behind.

    A run that nests a step in its own folder (a chain whose work_dir is its output_dir)
    takes the lock again in the same thread instead of locking itself out (one lock object
    per path in this process, a hold count per thread); another thread cannot.

    :param folder: the output folder (``--out-dir``, a chain's ``output_dir``...).
    :param what: how the folder is called in messages (``"--out-dir"``).
    :raises FolderBusy: another process (or thread) holds the lock (a :class:`UsageError`).
    :raises UsageError: the folder cannot be created.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "output folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._lock: Any = None

    def acquire(self) -> FolderLock:
        """Take the lock now (non-blocking); see the class docstring for errors."""
        if self._lock is not None:
            return self
        import filelock  # imported when a run locks a folder: --help stays fast

        path = Path(os.path.realpath(self.folder)) / LOCK_NAME
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(path, timeout=0, is_singleton=True, on_acquired=_write_pid)
            lock.acquire()
        except filelock.Timeout as exc:
            try:
                holder = path.read_bytes()[:32].decode("ascii", "replace").strip() or "?"
            except OSError:
                holder = "?"
            raise FolderBusy(
                f"{self.what} {self.folder} is in use by another aicp run (pid {holder})",
                hint="wait for that run to end, or give this one its own folder",
            ) from exc
        except OSError as exc:
            raise UsageError(f"cannot use {self.what} {self.folder}: {exc.strerror or exc}") from exc
        self._lock = lock
        return self

    def release(self) -> None:
        """Drop this hold; the last one removes the lock file (while still holding it, so a
        run that opened the old file meanwhile sees it gone and opens the new one) and
        unlocks. A killed run leaves the file; the next run takes it over."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            if lock.lock_counter == 1:
                Path(lock.lock_file).unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            lock.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _identity(target: str | os.PathLike[str] | IO[Any] | int) -> tuple[Any, ...] | None:
    """``(device, inode)`` of a regular file (by path, stream or descriptor); for a path that
    does not exist yet its real absolute path; ``None`` for what is not a regular file
    (a terminal, a pipe, ``/dev/null``)."""
    try:
        if isinstance(target, int) or hasattr(target, "fileno"):
            fd = target if isinstance(target, int) else target.fileno()  # type: ignore[union-attr]
            st = os.fstat(fd)
        else:
            st = os.stat(target)
    except FileNotFoundError:
        if isinstance(target, (str, os.PathLike)):
            return ("path", os.path.realpath(target))
        return None
    except (OSError, ValueError, AttributeError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def refuse_overlap(reads: dict[str, Any], writes: dict[str, Any]) -> None:
    """Refuse a run that would write to a file it reads, or write two things to one file.

    :param reads: ``{label: path | stream | fd}`` of what the run reads (``"input x.jsonl"``;
        ``"-"`` as a path means standard input).
    :param writes: ``{label: path | stream | fd}`` of what it writes (``"--checkpoint"``,
        ``"stdout"``). ``None`` values are ignored in both.
    :raises UsageError: (exit 2) naming both sides.
    """
    seen: dict[tuple[Any, ...], str] = {}
    for label, target in reads.items():
        if target is None:
            continue
        if isinstance(target, (str, os.PathLike)) and Path(target).name == LOCK_NAME:
            raise UsageError(f"{label}: {LOCK_NAME} is the name of aicp's folder lock, not an input",
                             hint="give the file another name")
        if isinstance(target, (str, os.PathLike)) and str(target) == "-":
            target = 0
        ident = _identity(target)
        if ident is not None:
            seen.setdefault(ident, label)
    for label, target in writes.items():
        if target is None:
            continue
        ident = _identity(target)
        if ident is None:
            continue
        if ident in seen:
            raise UsageError(f"{label} is the same file as {seen[ident]}: aicp never writes to a file "
                             "it reads, nor two outputs to one file",
                             hint="give the output its own file name")
        seen[ident] = label


class Protected:
    """Files a run must never replace (its inputs, ledger, stdout, persona file): checked
    before each output file a record names is written. A target is known by its real
    path and, when it exists (or is an open stream), by its ``(device, inode)``."""

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._inodes: set[tuple[int, int]] = set()

    def add(self, target: str | os.PathLike[str] | IO[Any] | int | None) -> None:
        """Protect ``target`` (a path, a stream or a descriptor; ``None`` and ``-`` ignored)."""
        if target is None or (isinstance(target, (str, os.PathLike)) and str(target) in ("", "-")):
            return
        if isinstance(target, (str, os.PathLike)):
            self._paths.add(os.path.realpath(target))
        ident = _identity(target)
        if ident is not None and ident[0] != "path":
            self._inodes.add((ident[0], ident[1]))

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False
        if os.path.realpath(path) in self._paths:
            return True
        ident = _identity(path)
        return ident is not None and ident[0] != "path" and (ident[0], ident[1]) in self._inodes


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(folder: str | os.PathLike[str], what: str) -> None:
    """Check that ``folder`` is, or can be made, a writable folder; create nothing.

    :raises UsageError: it is empty or blank (never taken for the current folder), it (or a
        parent) is a file, or the nearest existing parent is not writable.
    """
    if not str(folder).strip():
        raise UsageError(f"{what} is {'empty' if not str(folder) else 'blank'}: give a folder ('.' is this one)")
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {folder} is a file, not a folder (Not a directory)")
    base = _first_existing(path.absolute())
    if not base.is_dir():
        raise UsageError(f"cannot create {what} {folder}: {base} is a file, not a folder (Not a directory)")
    if not os.access(base, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
        reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise UsageError(f"cannot write to {what} {folder}: {base}: {reason}")


def check_output_file(file: str | os.PathLike[str], what: str) -> None:
    """Check that ``file`` can be created or appended to; create nothing.

    :raises UsageError: it is empty or blank, a folder, not a regular file (a pipe, a device), not
        writable, aicp's own lock file, or its folder cannot be made.
    """
    if not str(file).strip():
        raise UsageError(f"{what} needs a file name")
    path = Path(file)
    if path.name == LOCK_NAME:
        raise UsageError(f"{what} {file}: {LOCK_NAME} is the name of aicp's folder lock",
                         hint="give the file another name")
    if path.is_dir():
        raise UsageError(f"{what} {file} is a folder, not a file")
    if path.exists() and not path.is_file():
        raise UsageError(f"{what} {file} is not a regular file (a pipe or a device)",
                         hint="a checkpoint must be a file aicp can read back" if what == "--checkpoint"
                         else "aicp writes it through a temporary file renamed onto it: give a regular file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write to {what} {file}: permission denied")
        return
    check_output_dir(path.parent, f"the folder of {what}")


def _umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux; else 0o022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _plain_mode(fd: int) -> None:
    """Give a file made by :func:`tempfile.mkstemp` (mode 0600) the mode ``open()`` would have
    given it: 0666 less the umask, so a file renamed into place reads like any other output."""
    os.fchmod(fd, 0o666 & ~_umask())


def write_atomic(target: str | os.PathLike[str], fill: Callable[[IO[bytes]], Any], *,
                 exclusive: bool = False) -> None:
    """Create ``target`` (and its folder) through a temporary file in that folder, put in place
    once ``fill(handle)`` returned and the data is on disk: a reader never sees half a file, and a
    failure leaves ``target`` as it was. The file gets 0666 less the umask, like any ``open()``.

    :param exclusive: never replace an existing ``target`` (it is linked into place, not renamed).
    :raises FileExistsError: ``exclusive`` and ``target`` exists.
    :raises OSError: the folder or the file cannot be written.
    """
    import tempfile

    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part")
    try:
        _plain_mode(fd)
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, target)  # atomic, and fails if the name appeared meanwhile
        else:
            os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


__all__ = ["LOCK_NAME", "FolderBusy", "FolderLock", "NameClaims", "Protected", "check_output_dir", "check_output_file", "write_atomic",
           "refuse_overlap"]
