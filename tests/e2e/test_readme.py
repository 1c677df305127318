"""The README's runnable command blocks run as written in a fresh copy of the repository, on the
embedded backends (the way sqlite-utils tests its docs).

A block is runnable when the line before its ```` ```bash ```` fence is ``<!-- runnable -->``.
The copy holds the files git tracks (and untracked ones it does not ignore), with this
checkout's ``.venv`` linked in so ``make install`` finds it up to date; blocks after the
Quick start run with that venv on ``PATH``, as after its ``. .venv/bin/activate``. No Ollama
is reachable (``OLLAMA_HOST`` points at a closed port), so ``auto`` picks the embedded models.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.docs import ROOT, readme_blocks

pytestmark = pytest.mark.e2e


def _fresh_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)  # keeps mtimes: make sees .venv as up to date
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".venv" / ".installed").exists() or shutil.which("git") is None:
        pytest.skip("needs `make install` and git")
    return _fresh_copy(tmp_path_factory.mktemp("clone"))


def test_runnable_blocks_run_as_written(clone: Path) -> None:
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "OLLAMA_HOST": "http://127.0.0.1:9", "TERM": "dumb"}
    env.pop("VIRTUAL_ENV", None)
    blocks = [b for b in readme_blocks() if b.runnable]
    assert len(blocks) >= 2
    for block in blocks:
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.text], cwd=clone, env=env,
                              capture_output=True, timeout=900)
        assert proc.returncode == 0, (f"README.md:{block.line} failed ({proc.returncode}):\n{block.text}\n"
                                      f"stderr:\n{proc.stderr.decode()[-3000:]}")
        assert b"Traceback" not in proc.stderr
    voiced = [orjson.loads(line) for line in (clone / "voiced.jsonl").read_bytes().splitlines()]
    assert len(voiced) == 4 and all(Path(clone, r["audio"]["path"]).is_file() for r in voiced)
    assert sorted(os.listdir(clone / "out")) == sorted(Path(r["audio"]["path"]).name for r in voiced)
    events = [orjson.loads(line) for line in (clone / "progress.jsonl").read_bytes().splitlines()]
    assert events[0]["event"] == "pipeline_start" and any(e["event"] == "step_complete" for e in events)
    assert (clone / "aicp-out" / "radio-intros" / "02-voice.jsonl").is_file()
    assert not (ROOT / "voiced.jsonl").exists() or (ROOT / "voiced.jsonl").stat().st_mtime < clone.stat().st_mtime
