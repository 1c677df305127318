"""llama.cpp's thread count follows the CPUs this process may run on, not the machine's."""

import os
import subprocess
import sys

import pytest

CODE = ("from ai_content_pipeline.backends.llamacpp import LlamaCppBackend; "
        "print(LlamaCppBackend().n_threads, LlamaCppBackend(n_threads=3).n_threads)")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
                    reason="needs Linux and at least 2 CPUs")
def test_default_threads_follow_the_affinity_mask():
    """Under `taskset -c 0` (one CPU), two llama.cpp threads would wait on each other."""
    one_cpu = sorted(os.sched_getaffinity(0))[0]
    out = subprocess.run([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{one_cpu}}}); " + CODE],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "3"]
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(os.sched_getaffinity(0))), "3"]
