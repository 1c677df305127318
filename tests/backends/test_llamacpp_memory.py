"""llama.cpp under a memory cap: whatever fails (its libraries, the weights' mmap, the context's
buffers, llama-cpp-python's arrays, a ggml assertion that aborts), stdout holds only JSON
lines, stderr only aicp's own prefixed lines naming the memory, and the exit status is aicp's,
never a signal; no backtrace, no raw ggml or llama.cpp log line."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from ai_content_pipeline.backends.llamacpp import bundled_model_path

pytestmark = pytest.mark.skipif(bundled_model_path() is None or not sys.platform.startswith("linux"),
                                reason="needs the bundled model and RLIMIT_AS (Linux)")

RECORD = b'{"id": "q", "title": "Bohemian Rhapsody", "artist": "Queen"}\n'
#: Address space allowed above what the started command holds (its Python libraries loaded), in
#: MB, in small steps: each step of the way fails differently (llama.cpp's libraries, the mmap
#: of the weights, ggml's own context buffer, where ggml asserts and aborts, the context and
#: compute buffers, llama-cpp-python's logits array) until it runs; some windows are 20 MB wide.
EXTRA_MB = {"one": range(20, 800, 20), "batch": range(30, 800, 40)}
#: The command, started in full, then capped: ``aicp-script`` from its own ``main``.
LAUNCH = """\
import resource, sys
import numpy, pydantic, jinja2, yaml, soundfile  # what the command loads before any model
from ai_content_pipeline.cli.script import main
from ai_content_pipeline.stages import script
size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
cap = size * 1024 + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
sys.argv = ["aicp-script", *sys.argv[2:]]
main()
"""


def _run_capped(extra_mb: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "GGML_NO_BACKTRACE"}
    return subprocess.run([sys.executable, "-c", LAUNCH, str(extra_mb), "--backend", "llamacpp",
                           "--threads", "2", "--max-tokens", "4", "--retries", "0", *args],
                          input=RECORD, capture_output=True, env=env, timeout=300, check=False)


#: What native crash output looks like (gdb's backtrace, ggml's assertion, llama.cpp's log).
NATIVE = (b"GGML_ASSERT", b"ggml.c:", b"Thread debugging", b"#0 ", b"gdb", b"llama_", b"load_tensors")


@pytest.mark.parametrize(("name", "args"), [("one", ()), ("batch", ("--best-of", "2", "--batch", "2"))])
def test_out_of_memory_is_one_clear_error_never_native_output(name: str, args: tuple[str, ...]) -> None:
    told = []
    for cap in EXTRA_MB[name]:
        done = _run_capped(cap, *args)
        where = f"cap +{cap} MB: rc {done.returncode}, stdout {done.stdout[:300]!r}, stderr {done.stderr[-600:]!r}"
        assert done.returncode >= 0, where  # never killed by a signal (ggml's abort: SIGABRT)
        for line in done.stdout.splitlines():
            assert isinstance(orjson.loads(line), dict), where  # the data stream: records only
        lines = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line]
        raw = "\n".join(line for line in lines if not line.startswith("aicp-script: ")).encode()
        assert not any(word in raw for word in NATIVE), where  # aicp's own lines may quote llama.cpp
        errors = [line for line in lines if line.startswith("aicp-script: error: ")]
        if errors and "llama" in errors[0]:  # aicp told it (not the stage's own threads failing to start)
            assert len(errors) == 1 and "memory" in errors[0] and "unexpected" not in errors[0], where
            assert all(line.startswith("aicp-script: ") for line in lines), where
            assert any(line.startswith("aicp-script: hint: free memory") for line in lines), where
            assert done.returncode == 1, where
            told.append(cap)
        elif done.returncode in (0, 3) and done.stdout:
            break  # it ran: a larger cap runs too
        # else: the C library or OpenMP could not start a thread and ended the process itself
        # with one line of its own (exit 1 or 127): no Python was left to tell
    assert told, "no cap made llama.cpp run out of memory: EXTRA_MB needs to move for this machine"


ABORT = """\
import sys
from ai_content_pipeline.backends.llamacpp_native import import_llama_cpp
llama_cpp = import_llama_cpp()
print('{"id": "before"}', flush=True)
llama_cpp.llama_cpp._lib.ggml_abort(b"/build/ggml/src/ggml.c", 1644, sys.argv[1].encode())
print('{"id": "never"}')
"""


@pytest.mark.parametrize(("what", "status", "words"), [
    ("GGML_ASSERT(ctx->mem_buffer != NULL) failed", 1, "llama.cpp ran out of memory"),
    ("GGML_ASSERT(n_tokens <= n_batch) failed", 4, "llama.cpp stopped"),
])
def test_an_abort_inside_ggml_is_one_aicp_error_and_no_backtrace(what: str, status: int, words: str) -> None:
    """What ggml does when an allocation it asserts on fails, on any machine: its abort ran gdb,
    whose backtrace went to stdout, then dumped core (SIGABRT)."""
    env = {k: v for k, v in os.environ.items() if k != "GGML_NO_BACKTRACE"}
    done = subprocess.run([sys.executable, "-c", ABORT, what], capture_output=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == status and done.stdout == b'{"id": "before"}\n', done
    lines = done.stderr.decode().splitlines()
    assert lines[0].startswith(f"aicp: error: {words}") and what in lines[0] and "ggml.c" not in lines[0], lines
    assert len(lines) == 2 and lines[1].startswith("aicp: hint: "), lines
