"""``aicp logs`` on a take log whose rows another program wrote: any column type prints, no traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke

ROWS = [
    {"seconds": "abc"},                                    # not a number for :.2f
    {"error": '"just a string"'},                          # not an object (no .get)
    {"error": "[1, 2]"},
    {"checks": '{"passed": false, "failed": 5}'},          # not a list to join
    {"checks": '{"passed": false, "failed": [1, null]}'},
    {"datetime_utc": 5, "template": 7},                    # ints where text is joined
    {"text": "\x1b]0;pwned\x07 evil", "record_id": "r\x1b[2J"},  # terminal escapes printed raw
]


def _log(path: Path, row: dict) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE takes (id INTEGER PRIMARY KEY, datetime_utc, stage, template, persona, backend, "
                 "model, prompt_tokens, completion_tokens, seconds, checks, passed, record_id, take, key, "
                 "params, error, text, audio_path, audio_seconds, audio_backend, messages)")
    conn.execute(f"INSERT INTO takes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("row", ROWS)
def test_logs_prints_a_hostile_row_without_a_traceback(tmp_path: Path, row: dict) -> None:
    r = invoke(cli, "aicp", ["logs", "--log", str(_log(tmp_path / "t.db", row))])
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith("## ")
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout


def test_log_refuses_another_programs_sqlite_database(tmp_path: Path) -> None:
    # aicp neither adds its runs/takes tables to it nor switches it to WAL mode
    from ai_content_pipeline.errors import UsageError
    from ai_content_pipeline.takelog import TakeLog

    db = tmp_path / "places.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE bookmarks (url TEXT)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(UsageError, match="another program"):
        TakeLog(db, "aicp-script")
    assert db.read_bytes() == before
    # a take log reopens; an empty SQLite file becomes one
    log = tmp_path / "t.db"
    TakeLog(log, "aicp-script").close()
    TakeLog(log, "aicp-script").close()
    empty = tmp_path / "e.db"
    sqlite3.connect(empty).execute("VACUUM")
    TakeLog(empty, "aicp-script").close()


def test_logs_count_past_sqlite_integers_means_all(tmp_path: Path) -> None:
    # -n 10**29 is past SQLite's integers: no OverflowError binding it as the LIMIT
    r = invoke(cli, "aicp", ["logs", "--log", str(_log(tmp_path / "t.db", {"text": "hi"})), "-n", str(10**29)])
    assert r.exit_code == 0, r.stderr
    assert "hi" in r.stdout and r.stderr == ""
