"""``aicp logs`` reads a take log one take at a time (``-n 0`` on a large log holds one take,
never the log), and a cell that is not UTF-8 (a BLOB, a foreign writer) is shown escaped while
the other takes read as ever."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path

import orjson

from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.takelog import TakeLog, iter_takes, read_takes
from tests.cli_helpers import invoke


def _big_log(path: Path, takes: int, text_bytes: int) -> Path:
    TakeLog(path, "aicp-script").close()  # the real schema
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO takes (datetime_utc, stage, record_id, take, text, params) "
                     "VALUES (?, 'script', ?, 0, ?, ?)",
                     ((f"2026-01-01T00:00:{i % 60:02d}Z", f"r{i}", f"take {i} " + "x" * text_bytes, '{"t": 1}')
                      for i in range(takes)))
    conn.commit()
    conn.close()
    return path


def test_all_takes_are_read_one_at_a_time(tmp_path: Path) -> None:
    log = _big_log(tmp_path / "big.db", 3000, 10_000)  # 30 MB of text
    tracemalloc.start()
    try:
        count = 0
        for take in iter_takes(log, 0):
            assert take["record_id"] == f"r{count}" and take["params"] == {"t": 1}
            count += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 3000
    assert peak < 3 * 1024 * 1024, peak  # a few takes, not 30 MB


def test_the_last_n_takes_are_read_oldest_first(tmp_path: Path) -> None:
    log = _big_log(tmp_path / "l.db", 50, 10)
    assert [t["record_id"] for t in iter_takes(log, 3)] == ["r47", "r48", "r49"]
    assert len(read_takes(log, 10**30)) == 50 and len(read_takes(log, None)) == 50
    assert read_takes(log, 1)[0]["record_id"] == "r49"


def _bad_cells(path: Path) -> Path:
    log = _big_log(path, 3, 5)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE takes SET text = CAST(X'41ff42' AS TEXT), persona = X'c3' WHERE record_id = 'r1'")
    conn.execute("UPDATE takes SET params = CAST(X'7b22ff223a317d' AS TEXT) WHERE record_id = 'r2'")
    conn.commit()
    conn.close()
    return log


def test_a_cell_that_is_not_utf8_is_shown_escaped_and_the_rest_read(tmp_path: Path) -> None:
    log = _bad_cells(tmp_path / "bad.db")
    res = invoke(cli, "aicp", ["logs", "--log", str(log), "-n", "0"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.count("## ") == 3 and "A\\xffB" in res.stdout and "take 0 xxxxx" in res.stdout
    assert "take 2 xxxxx" in res.stdout


def test_json_output_of_a_cell_that_is_not_utf8(tmp_path: Path) -> None:
    log = _bad_cells(tmp_path / "bad.db")
    res = invoke(cli, "aicp", ["logs", "--log", str(log), "-n", "0", "--json"])
    assert res.exit_code == 0, res.stderr
    takes = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert [t["record_id"] for t in takes] == ["r0", "r1", "r2"]
    assert takes[1]["text"] == "A\\xffB" and takes[1]["persona"] == "\\xc3"
    assert takes[2]["params"] == '{"\\xff":1}'  # not JSON once escaped: kept as the text it is
