"""``aicp run-chain --shard K/N`` and the chain key ``shard``: per-shard folders and ledgers, merge, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ai_content_pipeline.chain.runner import run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.errors import ConfigError
from ai_content_pipeline.merge import merge_files
from ai_content_pipeline.shards import shard_chain
from tests.chain_doubles import FakeFactory, write_chain, write_songs
from tests.cli_helpers import invoke

SONGS = [{"id": f"s{i}", "artist": f"Artist {i}", "title": f"Song {i}"} for i in range(7)]


def _records(path: str | Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def test_sharded_chains_merge_to_the_unsharded_chain(tmp_path: Path) -> None:
    songs = write_songs(tmp_path / "in.jsonl", SONGS)
    config = write_chain(tmp_path, input=str(songs), steps=[
        {"type": "script", "template": "song-intro", "backend": "auto", "params": {"variants": 2, "seed": 3}},
        {"type": "voice", "backend": "auto"}])
    whole = run_chain(load_chain(str(config), [f"output_dir={tmp_path / 'whole'}"]), backend_factory=FakeFactory())
    assert whole.exit_status == 0
    finals = []
    for k in range(3):
        spec = shard_chain(load_chain(str(config)), f"{k}/3")
        assert spec.output_dir == str(tmp_path / "out" / f"shard-{k}-of-3")
        outcome = run_chain(spec, backend_factory=FakeFactory())
        assert outcome.exit_status == 0 and outcome.result["records"]["total"] == len(range(k, 7, 3)) * 2
        finals.append(outcome.result["outputs"]["final"]["path"])
        assert (tmp_path / "out" / f"shard-{k}-of-3" / "01-script.ledger.jsonl").is_file()
    got: list[dict[str, Any]] = []
    merge_files(finals, got.append)
    want = _records(whole.result["outputs"]["final"]["path"])
    assert [(r["id"], r["script"]["take"], r["script"]["text"]) for r in got] == \
        [(r["id"], r["script"]["take"], r["script"]["text"]) for r in want]
    assert all(Path(r["audio"]["path"]).is_file() for r in got)


def test_chain_key_shard_auto_and_cli_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    songs = write_songs(tmp_path / "in.jsonl", SONGS)
    config = write_chain(tmp_path, input=str(songs), shard="auto")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("AICP_SHARD_COUNT", "2")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    outcome = run_chain(load_chain(str(config)), backend_factory=FakeFactory())
    final = outcome.result["outputs"]["final"]["path"]
    assert Path(final).parent.name == "shard-1-of-2"
    assert [r["id"] for r in _records(final)] == ["s1", "s3", "s5"]
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    r = invoke(cli, "aicp", ["run-chain", "--config", str(config), "--dry-run"])
    assert r.exit_code == 2 and "JOB_COMPLETION_INDEX" in r.stderr
    r = invoke(cli, "aicp", ["run-chain", "--config", str(config), "--dry-run", "--shard", "0/2"])
    assert r.exit_code in (0, 4), r.stderr
    assert "shard-0-of-2" in orjson.loads(r.stdout)["steps"][0]["output"]


def test_chain_key_shard_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shard"):
        load_chain(str(write_chain(tmp_path, shard="3/3")))
