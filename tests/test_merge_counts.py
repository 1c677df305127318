"""``aicp merge`` with a shard tag whose line count, line index or seq is forged past any
input's size: refused as not a shard output (exit 2, naming the file, line and key), never an
overflow; a forged shard count with an end tag names a dozen missing shards, then counts the rest."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.merge import MAX_COUNT, MergeIncomplete, merge_files
from tests.cli_helpers import invoke

HUGE = [MAX_COUNT + 1, 10**20, 10**300]


def _write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("end", [{"counts": [1]}, {"blank": {"1": 1}}])
def test_a_forged_line_count_is_refused(tmp_path: Path, value: int, end: dict) -> None:
    n = len(end["counts"]) if "counts" in end else 2
    src = _write(tmp_path / "a.jsonl", {"id": 1, "_aicp": {"shard": f"0/{n}", "line": 0, "seq": 0,
                                                            "end": {"lines": value, **end}}})
    res = invoke(cli, "aicp", ["merge", str(src)])
    assert res.exit_code == 2 and res.stdout == ""
    assert f"{src}:1: `_aicp.end.lines` is " in res.stderr and "past any input's line count" in res.stderr
    assert "Traceback" not in res.stderr and "unexpected" not in res.stderr


@pytest.mark.parametrize("key", ["line", "seq"])
@pytest.mark.parametrize("value", HUGE)
def test_a_forged_line_index_or_seq_is_refused(tmp_path: Path, key: str, value: int) -> None:
    tag = {"shard": "0/1", "line": 0, "seq": 0, "end": {"lines": 1, "counts": [1]}, key: value}
    src = _write(tmp_path / "a.jsonl", {"id": 1, "_aicp": tag})
    res = invoke(cli, "aicp", ["merge", str(src)])
    assert res.exit_code == 2 and res.stdout == ""
    assert f"`_aicp.{key}` is " in res.stderr and "unexpected" not in res.stderr


def test_the_largest_count_is_still_read(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", {"id": 1, "_aicp": {"shard": "0/2", "line": 0, "seq": 0,
                                                            "end": {"lines": MAX_COUNT, "counts": [1, 0]}}})
    res = invoke(cli, "aicp", ["merge", str(src)])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == {"id": 1}


def test_a_forged_shard_count_with_an_end_tag_lists_a_dozen_missing_shards(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", {"id": 1, "_aicp": {"shard": "0/1000000", "line": 0, "seq": 0,
                                                            "end": {"lines": 10**18, "blank": {}}}})
    tracemalloc.start()
    try:
        with pytest.raises(MergeIncomplete) as caught:
            merge_files([str(src)], lambda record: None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, peak
    assert len(caught.value.problems) < 20
    assert caught.value.problems[-1] == "999987 more shards of 1000000 have no records and input lines missing"


@pytest.mark.parametrize("key", ["1" * 5000, "01", "1 ", "+1", "1e3"])
def test_a_forged_blank_shard_index_is_refused(tmp_path: Path, key: str) -> None:
    src = _write(tmp_path / "a.jsonl", {"id": 1, "_aicp": {"shard": "0/2", "line": 0, "seq": 0,
                                                            "end": {"lines": 3, "blank": {key: 1}}}})
    res = invoke(cli, "aicp", ["merge", str(src)])
    assert res.exit_code == 2 and res.stdout == ""
    assert "`_aicp.end` is not {lines, counts} of 2 shards" in res.stderr and "unexpected" not in res.stderr
