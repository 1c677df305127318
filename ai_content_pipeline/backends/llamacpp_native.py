"""llama.cpp's native side, kept off stdout and stderr: how ``llama_cpp`` is imported
(:func:`import_llama_cpp`), where its log goes (kept here: :func:`recent_errors`, never printed
between aicp's own lines or ``--stream`` events) and what happens when ggml aborts the process
(:func:`_on_abort`)."""

from __future__ import annotations

import os
import re
from collections import deque
from typing import Any

from ..errors import BackendOutOfMemory, BackendUnavailable, report_fatal

#: The fix-it hint of every llama.cpp memory failure.
OOM_HINT = ("free memory (other programs, a memory limit such as ulimit -v or a container's), use a "
            "smaller model or fewer --batch / --best-of takes at once")

_abort_handler: Any = None  # the ctypes callbacks llama.cpp holds (kept alive here)
_log_handler: Any = None
_recent: deque[str] = deque(maxlen=16)  # llama.cpp's latest error (and warning) log lines
_MEMORY = re.compile(r"alloc|memory|mem_buffer|mmap|map segment|NULL", re.IGNORECASE)


def is_memory_problem(text: str) -> bool:
    """Whether a llama.cpp message (or its recent log) speaks of a failed allocation."""
    return bool(_MEMORY.search(text))


def recent_errors(clear: bool = False) -> list[str]:
    """llama.cpp's error and warning log lines since the last ``clear`` (at most 16, oldest
    first); ``clear``: forget them after reading."""
    lines = list(_recent)
    if clear:
        _recent.clear()
    return lines


def _on_log(level: int, text: bytes | None, user_data: Any) -> None:
    """llama.cpp's log callback: keep warnings and errors (ggml levels 3, 4) for the error that
    follows them; print nothing (stderr holds aicp's lines or ``--stream`` events only)."""
    if level in (3, 4) and text:
        line = text.decode("utf-8", "replace").strip()
        if line:
            _recent.append(line)


def _on_abort(message: bytes | None) -> None:
    """ggml's abort callback: tell the user in one clear error (a failed allocation is
    :class:`BackendOutOfMemory`), then end the process with that error's exit status instead
    of ``abort()`` (which would dump core). Never returns."""
    text = (message or b"").decode("utf-8", "replace").strip()
    text = re.sub(r"^\S*:\d+: ", "", text)  # the build's source path and line
    if is_memory_problem(text):
        error: BackendUnavailable | BackendOutOfMemory = BackendOutOfMemory(
            f"llama.cpp ran out of memory and stopped ({text})", hint=OOM_HINT)
    else:
        error = BackendUnavailable(f"llama.cpp stopped: {text}",
                                   hint="run again with a smaller --batch; if it persists, report it")
    report_fatal(error)
    os._exit(int(error.exit_status))


def _gist(exc: BaseException) -> str:
    """One line of ``exc``'s text: the one about memory, else the last (numpy's import error is
    a page of advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if is_memory_problem(line)), lines[-1] if lines else type(exc).__name__)


def import_llama_cpp() -> Any:
    """Import ``llama_cpp`` with native crash output kept off stdout (the data stream).

    ``GGML_NO_BACKTRACE`` is set first (ggml's abort otherwise runs gdb, whose backtrace goes
    to fd 1), llama.cpp's log is kept for the errors that follow it (:func:`recent_errors`)
    instead of printed, and ggml's abort callback (``ggml_set_abort_callback``) turns an abort into one
    clear error (see :func:`_on_abort`).

    :raises BackendUnavailable: llama-cpp-python is not installed.
    """
    global _abort_handler, _log_handler
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    try:
        import llama_cpp
    except (ImportError, OSError, RuntimeError, MemoryError) as exc:
        import importlib.util

        if isinstance(exc, ImportError) and importlib.util.find_spec("llama_cpp") is None:
            raise BackendUnavailable("llama-cpp-python is not installed",
                                     hint="pip install llama-cpp-python") from exc
        # installed, but it or its native libraries did not load (they are mapped into memory)
        if isinstance(exc, MemoryError) or is_memory_problem(str(exc)):
            raise BackendOutOfMemory(f"not enough memory to load llama.cpp's libraries ({_gist(exc)})",
                                     hint=OOM_HINT) from exc
        raise BackendUnavailable(f"llama-cpp-python cannot be imported: {_gist(exc)}",
                                 hint="reinstall llama-cpp-python for this machine") from exc
    if _log_handler is None:
        callback = llama_cpp.llama_log_callback(_on_log)
        llama_cpp.llama_log_set(callback, None)
        _log_handler = callback
    if _abort_handler is None:
        import ctypes

        try:  # looked up through libllama: the copy of ggml it loaded (a wheel may hold several)
            setter = llama_cpp.llama_cpp._lib.ggml_set_abort_callback
        except AttributeError:  # another build: GGML_NO_BACKTRACE still keeps gdb off stdout
            return llama_cpp
        callback = ctypes.CFUNCTYPE(None, ctypes.c_char_p)(_on_abort)
        setter.argtypes, setter.restype = [ctypes.c_void_p], ctypes.c_void_p
        setter(ctypes.cast(callback, ctypes.c_void_p))
        _abort_handler = callback
    return llama_cpp
