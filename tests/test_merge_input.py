"""Hostile shard files for ``aicp merge``: a forged huge N, a pipe that cannot be read twice."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke


def _write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_forged_huge_shard_count_is_refused_not_walked(tmp_path: Path) -> None:
    # one record claiming shard 0 of 10**12: the completeness check must not loop over 10**12 shards
    src = _write(tmp_path / "a.jsonl", {"id": 1, "_aicp": {"shard": "0/1000000000000", "line": 0, "seq": 0}})
    result: list = []
    t = threading.Thread(target=lambda: result.append(invoke(cli, "aicp", ["merge", str(src)])), daemon=True)
    t.start()
    t.join(20)
    assert result, "aicp merge hung on a forged shard count"
    r = result[0]
    assert r.exit_code == 2
    assert "1000000000000" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_a_pipe_is_refused_not_merged_empty(tmp_path: Path) -> None:
    # the merge reads each file twice; a pipe gives its records once: the second pass saw
    # nothing and the merge wrote 0 records with exit 0 (records silently lost)
    good = _write(tmp_path / "d.jsonl", {"id": 1, "_aicp": {"shard": "0/1", "line": 0, "seq": 0,
                                                             "end": {"lines": 1, "counts": [1]}}})
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        with os.fdopen(fd, "wb") as h:
            h.write(good.read_bytes())

    out = tmp_path / "out.jsonl"
    result: list = []
    t = threading.Thread(target=lambda: result.append(invoke(cli, "aicp", ["merge", str(fifo), "-o", str(out)])),
                         daemon=True)
    t.start()
    t.join(5)
    if not result:
        feed()
        t.join(10)
    assert result, "aicp merge hung on a pipe"
    r = result[0]
    assert r.exit_code == 2, r.stderr
    assert "pipe.jsonl" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_partial_stops_where_the_check_stopped(tmp_path: Path) -> None:
    # --partial wrote records the check never read: past a shard's `end` (a KeyError traceback
    # on a tag without seq, exit 1; or a forged record after the end written as data)
    a = _write(tmp_path / "a.jsonl",
               {"id": 1, "_aicp": {"shard": "0/2", "line": 0, "seq": 0}},
               {"id": 2, "_aicp": {"shard": "0/2", "line": 2, "seq": 1, "end": {"lines": 4, "counts": [2, 2]}}},
               {"id": 9, "_aicp": {"shard": "0/2", "line": 4, "seq": 2}},
               {"id": 10, "_aicp": {"line": "x"}})
    b = _write(tmp_path / "b.jsonl",
               {"id": 5, "_aicp": {"shard": "1/2", "line": 1, "seq": 0}},
               {"id": 6, "_aicp": {"shard": "1/2", "line": 3, "seq": 1}},
               {"id": 7, "_aicp": {"shard": "1/2", "line": 5, "seq": 2}})
    r = invoke(cli, "aicp", ["merge", "--partial", str(a), str(b)])
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert "records after its last one" in r.stderr
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == [1, 5, 2, 6, 7]


def test_merge_output_on_a_device_is_refused_with_a_true_hint(tmp_path: Path) -> None:
    # the hint spoke of "a checkpoint" for aicp merge -o /dev/null
    src = _write(tmp_path / "d.jsonl", {"id": 1, "_aicp": {"shard": "0/1", "line": 0, "seq": 0,
                                                            "end": {"lines": 1, "counts": [1]}}})
    r = invoke(cli, "aicp", ["merge", str(src), "-o", "/dev/null"])
    assert r.exit_code == 2
    assert "not a regular file" in r.stderr and "checkpoint" not in r.stderr
    assert r.stdout == ""


def test_a_position_past_the_input_is_refused_not_counted_for_a_missing_one(tmp_path: Path) -> None:
    # shard 0/2 of 4 lines owns 0 and 2; a file with 0 and 4 has "2 positions of 2", but line 4
    # is not one of its positions: the merge must not leave out input line 2 silently (exit 0)
    end = {"lines": 4, "counts": [2, 2]}
    a = _write(tmp_path / "a.jsonl", {"id": 0, "_aicp": {"shard": "0/2", "line": 0, "seq": 0}},
               {"id": 4, "_aicp": {"shard": "0/2", "line": 4, "seq": 1, "end": end}})
    b = _write(tmp_path / "b.jsonl", {"id": 1, "_aicp": {"shard": "1/2", "line": 1, "seq": 0}},
               {"id": 3, "_aicp": {"shard": "1/2", "line": 3, "seq": 1, "end": end}})
    r = invoke(cli, "aicp", ["merge", str(a), str(b)])
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "past the 4 lines" in r.stderr and r.stdout == ""
