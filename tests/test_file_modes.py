"""Files renamed into place get the mode any other output gets (0666 less the umask), not
mkstemp's 0600: a merged file or a starter template must be readable like the records beside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ai_content_pipeline.files import write_atomic
from ai_content_pipeline.templates import new_file


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_gives_the_plain_mode(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "merged.jsonl"
    write_atomic(str(target), lambda handle: handle.write(b"{}\n"))
    assert target.read_bytes() == b"{}\n"
    assert _mode(target) == 0o644


def test_write_atomic_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        target = tmp_path / "private.jsonl"
        write_atomic(str(target), lambda handle: handle.write(b"{}\n"))
    finally:
        os.umask(old)
    assert _mode(target) == 0o600


def test_new_starter_files_get_the_plain_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              umask_022: None) -> None:
    monkeypatch.setenv("AICP_HOME", str(tmp_path / "home"))
    for kind in ("template", "persona"):
        path = Path(new_file(kind, f"my-{kind}"))
        assert path.is_file() and _mode(path) == 0o644


def test_write_atomic_exclusive_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "kept.yaml"
    target.write_bytes(b"mine\n")
    with pytest.raises(FileExistsError):
        write_atomic(target, lambda handle: handle.write(b"theirs\n"), exclusive=True)
    assert target.read_bytes() == b"mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.yaml"]  # no temporary file left
