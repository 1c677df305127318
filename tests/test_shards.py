"""Shards: assignment by input line index, ``_aicp`` tags, ``aicp merge`` (property test), env detection."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.cli.script import script_command
from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.merge import MergeIncomplete, check, merge_files
from ai_content_pipeline.shards import Shard, ShardRun, detect, fanout_takes, parse
from ai_content_pipeline.stages.commands import run_script
from ai_content_pipeline.stages.script import ScriptOptions
from tests.chain_doubles import write_chain
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter

LINE = st.one_of(
    st.builds(lambda a, t: json.dumps({"artist": a, "title": t}), st.sampled_from(["Queen", "a-ha", "Björk"]),
              st.sampled_from(["One", "Two", "Three"])),
    st.builds(lambda i: json.dumps({"id": f"s{i}", "artist": "X", "title": "Y"}), st.integers(0, 3)),
    st.just(json.dumps({"title": "no artist"})),           # a record missing a field: error record
    st.just(json.dumps({"id": "up", "error": {"stage": "x", "message": "failed upstream"}})),
    st.just(json.dumps({"id": "t", "artist": "A", "title": "T",   # input that already has the tag field
                        "_aicp": {"shard": "0/2", "line": 9, "seq": 0, "end": {"lines": 1}}})),
    st.just(json.dumps({"artist": "B", "title": "U", "_aicp": "theirs"})),
    st.just("not json {"),                                    # a bad line
    st.just("[1, 2]"),                                        # JSON, not an object
    st.just(""),                                              # a blank line: a position, no record
    st.just("   "),
)


def _run(path: Path, shard: Shard | None = None, variants: int = 1) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    run = ShardRun(shard, fanout_takes(variants)) if shard else None
    run_script([str(path)], ScriptOptions(variants=variants, seed=1), backend=FakeLLM(),
               emitter=RecordingEmitter(), write=out.append, shard=run)
    return out


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without the wall-clock field (``script.seconds``)."""
    out = []
    for r in records:
        r = json.loads(json.dumps(r))
        if isinstance(r.get("script"), dict):
            r["script"].pop("seconds", None)
        out.append(r)
    return out


def _merge(paths: list[Path]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    merge_files([str(p) for p in paths], got.append)
    return got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, max_size=14), n=st.one_of(st.integers(1, 5), st.integers(6, 20)),
       variants=st.integers(1, 3), trailing_newline=st.booleans(), sparse=st.booleans())
def test_merge_of_shards_equals_a_single_run(tmp_path_factory: Any, lines: list[str], n: int, variants: int,
                                             trailing_newline: bool, sparse: bool) -> None:
    from unittest import mock

    from ai_content_pipeline import shards

    with mock.patch.object(shards, "DENSE_COUNTS", 0 if sparse else shards.DENSE_COUNTS):  # both end forms
        _merge_equals_single(tmp_path_factory, lines, n, variants, trailing_newline)


def _merge_equals_single(tmp_path_factory: Any, lines: list[str], n: int, variants: int,
                         trailing_newline: bool) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    src = tmp / "in.jsonl"
    src.write_text("\n".join(lines) + ("\n" if trailing_newline and lines else ""))
    single = _run(src, variants=variants)
    paths = []
    for k in range(n):
        records = _run(src, Shard(k, n), variants)
        for r in records:  # the shard's own lines only, in order
            assert r["_aicp"]["line"] % n == k and r["_aicp"]["shard"] == f"{k}/{n}"
        p = tmp / f"out.{k}.jsonl"
        _write(p, records)
        paths.append(p)
    assert check([str(p) for p in paths])[1] == []
    assert _comparable(_merge(list(reversed(paths)))) == _comparable(single)


def test_positions_are_line_indexes_blank_and_bad_lines_included(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id":"a","artist":"A","title":"T"}\n\nnot json\n{"id":"d","artist":"D","title":"T"}\n'
                   '{"id":"e","artist":"E","title":"T"}\n')
    zero = _run(src, Shard(0, 2))
    one = _run(src, Shard(1, 2))
    assert [r.get("id") for r in zero] == ["a", None, "e"]   # lines 0, 2 (bad), 4
    assert zero[1]["error"]["line"] == 3 and "not valid JSON" in zero[1]["error"]["message"]
    assert [r.get("id") for r in one] == ["d"]                 # line 1 is blank, line 3
    assert [r["_aicp"]["line"] for r in zero] == [0, 2, 4]
    end = zero[-1]["_aicp"]["end"]
    assert {k: end[k] for k in ("lines", "counts")} == {"lines": 5, "counts": [3, 1]}
    assert end["input"].startswith("blake2b:") and end["input"] == one[-1]["_aicp"]["end"]["input"]
    assert "end" not in zero[0]["_aicp"]
    assert [r["_aicp"]["seq"] for r in zero] == [0, 1, 2]


def test_merge_refuses_shards_of_two_inputs_with_the_same_line_layout(tmp_path: Path) -> None:
    """Same line count, same blank lines, other songs: the input digest in ``end`` tells them apart."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(first, [{"id": f"a{i}", "artist": "A", "title": f"T{i}"} for i in range(4)])
    _write(second, [{"id": f"b{i}", "artist": "B", "title": f"U{i}"} for i in range(4)])
    paths = [tmp_path / "out.0.jsonl", tmp_path / "out.1.jsonl"]
    _write(paths[0], _run(first, Shard(0, 2)))
    _write(paths[1], _run(second, Shard(1, 2)))
    with pytest.raises(UsageError, match="different inputs"):
        check([str(p) for p in paths])
    _write(paths[1], _run(first, Shard(1, 2)))  # both shards of one input: they merge
    assert check([str(p) for p in paths])[1] == []
    _write(paths[1], _without_digest(_run(second, Shard(1, 2))))  # the other input, by an older aicp
    problems = check([str(p) for p in paths])[1]
    assert len(problems) == 1 and "no input digest" in problems[0] and "out.1.jsonl" in problems[0]
    _write(paths[0], _without_digest(_run(second, Shard(0, 2))))
    assert check([str(p) for p in paths])[1] == []  # all from before the digest: merged as before


def _without_digest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shard output as an aicp before the input digest wrote it."""
    for r in records:
        r["_aicp"].get("end", {}).pop("input", None)
    return records


def test_an_input_records_own_aicp_field_survives_the_merge(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    own = {"shard": "5/7", "line": 40, "seq": 3}
    src.write_text(json.dumps({"id": "a", "artist": "A", "title": "T", "_aicp": own}) + "\n"
                   + json.dumps({"id": "b", "artist": "B", "title": "T"}) + "\n")
    zero = _run(src, Shard(0, 2))
    assert zero[0]["_aicp"]["shard"] == "0/2" and zero[0]["_aicp"]["orig"] == own
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"out.{k}.jsonl")
        _write(paths[-1], _run(src, Shard(k, 2)))
    merged = _merge(paths)
    assert merged[0]["_aicp"] == own and "_aicp" not in merged[1]
    assert _comparable(merged) == _comparable(_run(src))


def test_a_huge_shard_count_keeps_the_end_tag_small_and_merges(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id":"a","artist":"A","title":"T"}\n\n{"id":"c","artist":"C","title":"T"}\n')
    n = 1_000_000
    paths = []
    for k in range(3):
        records = _run(src, Shard(k, n))
        paths.append(tmp_path / f"out.{k}.jsonl")
        _write(paths[-1], records)
        assert len(paths[-1].read_bytes()) < 4096   # a dense list of a million counts was a 2 MB line
    assert check([str(p) for p in paths])[1] == []
    assert [r["id"] for r in _merge(paths)] == ["a", "c"]
    assert "shard 2/1000000: no records" in check([str(p) for p in paths[:1] + paths[1:2]])[1][0]
    assert check([str(paths[0])])[1] == ["shard 2/1000000: no records; 1 input lines missing "
                                         "(line indexes 2, 1000002, ... mod 1000000)"]


def test_shard_ledgers_are_per_shard_and_resume(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"s{i}", "artist": "A", "title": f"T{i}"}) + "\n" for i in range(6)))
    assert Shard(1, 3).ledger_path(str(tmp_path / "run.ledger")) == str(tmp_path / "run.shard-1-of-3.ledger")
    from tests.ollama_server import OllamaServer

    with OllamaServer() as srv:
        r = invoke(script_command, "aicp-script", ["--backend", "ollama", "--host", srv.url, "--shard", "1/3",
                                                   "--checkpoint", str(tmp_path / "run.ledger"), str(src)])
    assert r.exit_code == 0, r.stderr
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == ["s1", "s4"]
    assert (tmp_path / "run.shard-1-of-3.ledger").is_file() and not (tmp_path / "run.ledger").exists()
    (tmp_path / "run.shard-1-of-3.ledger").unlink()
    ledger = str(Shard(1, 3).ledger_path(str(tmp_path / "run.ledger")))
    from ai_content_pipeline.ledger import Ledger

    out: list[dict[str, Any]] = []
    llm = FakeLLM()
    run_script([str(src)], ScriptOptions(seed=1), backend=llm, emitter=RecordingEmitter(), write=out.append,
               checkpoint=ledger, shard=ShardRun(Shard(1, 3), fanout_takes(1)))
    assert len(Ledger(ledger)) == 2 and len(llm.calls) == 2
    again: list[dict[str, Any]] = []
    llm2 = FakeLLM()
    run_script([str(src)], ScriptOptions(seed=1, resume=True), backend=llm2, emitter=RecordingEmitter(),
               write=again.append, checkpoint=ledger, shard=ShardRun(Shard(1, 3), fanout_takes(1)))
    assert llm2.calls == [] and [r["id"] for r in again] == ["s1", "s4"]
    assert all(r["script"]["skipped"] for r in again) and again[-1]["_aicp"]["end"]["lines"] == 6


# -- merge: gaps and repeats ---------------------------------------------------------------
@pytest.fixture
def shard_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"s{i}", "artist": "A", "title": f"T{i}"}) + "\n" for i in range(9)))
    paths = []
    for k in range(3):
        p = tmp_path / f"out.{k}.jsonl"
        _write(p, _run(src, Shard(k, 3), variants=2))
        paths.append(p)
    return src, paths


def _cli_merge(*args: str) -> Any:
    return invoke(cli, "aicp", ["merge", *args])


def test_cli_merge_writes_input_order_and_never_its_inputs(shard_files: Any, tmp_path: Path) -> None:
    src, paths = shard_files
    r = _cli_merge(*map(str, paths))
    assert r.exit_code == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(g["id"], g["script"]["take"]) for g in got] == [(f"s{i}", t) for i in range(9) for t in (0, 1)]
    assert all("_aicp" not in g for g in got) and "18 records from 3 files" in r.stderr
    out = tmp_path / "all.jsonl"
    r = _cli_merge(str(tmp_path / "out.*.jsonl"), "-o", str(out))   # a quoted glob
    assert r.exit_code == 0 and r.stdout == "" and len(out.read_text().splitlines()) == 18
    before = paths[0].read_bytes()
    r = _cli_merge(*map(str, paths), "-o", str(paths[0]))
    assert r.exit_code == 2 and "same file" in r.stderr and paths[0].read_bytes() == before


def test_merge_names_a_truncated_shard(shard_files: Any, tmp_path: Path) -> None:
    _, paths = shard_files
    lines = paths[1].read_text().splitlines()
    paths[1].write_text("\n".join(lines[:-3]) + "\n")     # killed: lost its tail
    out = tmp_path / "all.jsonl"
    r = _cli_merge(*map(str, paths), "-o", str(out))
    assert r.exit_code == 3 and not out.exists() and r.stdout == ""
    assert "shard 1/3" in r.stderr and "incomplete" in r.stderr and "1 of its 3 input lines missing" in r.stderr
    r = _cli_merge("--partial", *map(str, paths))
    assert r.exit_code == 3 and len(r.stdout.splitlines()) == 15


def test_merge_names_a_missing_shard_a_repeat_and_a_middle_gap(shard_files: Any) -> None:
    _, paths = shard_files
    r = _cli_merge(str(paths[0]), str(paths[2]))
    assert r.exit_code == 3 and "shard 1/3: no records; 3 input lines missing" in r.stderr
    r = _cli_merge(*map(str, paths), str(paths[2]))
    assert r.exit_code == 3 and "shard 2/3 given twice" in r.stderr
    lines = paths[0].read_text().splitlines()
    paths[0].write_text("\n".join(lines[:2] + lines[1:]) + "\n")   # a record repeated
    r = _cli_merge(*map(str, paths))
    assert r.exit_code == 3 and "seq 1" in r.stderr and "repeated" in r.stderr
    paths[0].write_text("\n".join(lines[:2] + lines[4:]) + "\n")   # two records gone from the middle
    r = _cli_merge(*map(str, paths))
    assert r.exit_code == 3 and "seq 2-3 missing" in r.stderr
    with pytest.raises(MergeIncomplete):
        merge_files([str(p) for p in paths], lambda r: None)


def test_merge_refuses_files_that_are_not_shard_outputs(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"id": 1}\n')
    r = _cli_merge(str(plain))
    assert r.exit_code == 2 and "_aicp" in r.stderr
    r = _cli_merge(str(tmp_path / "nothing.*.jsonl"))
    assert r.exit_code == 2 and "matches no file" in r.stderr


# -- --shard parsing and the scheduler's variables -------------------------------------------
def test_parse_shard_specs() -> None:
    assert parse("2/5") == Shard(2, 5) and parse(None) is None and str(parse(" 0/1 ")) == "0/1"
    for bad in ("5/5", "-1/3", "1/0", "a/b", "3", "1/2/3"):
        with pytest.raises(UsageError):
            parse(bad)
    with pytest.raises(UsageError, match="--shard-count"):
        parse("1/4", count=3)


@pytest.mark.parametrize("bad", ["", " ", "\t", "/", "1/", "/4", "1_0/20", "+1/4", "\u0663/\u0664", "0x1/4", "1/4.0"])
def test_a_malformed_shard_is_refused_never_the_whole_input(bad: str, tmp_path: Path) -> None:
    """``--shard ""`` (an unset $VAR in a job script) ran the whole input unsharded; int()'s
    extra forms (1_0, +1, other scripts' digits) passed as numbers."""
    with pytest.raises(UsageError):
        parse(bad)
    chain = write_chain(tmp_path)
    src = tmp_path / "songs.jsonl"
    for prog, command, args in (("aicp-script", script_command, [str(src)]),
                                ("aicp", cli, ["voice", str(src)]),
                                ("aicp", cli, ["run-chain", "--config", str(chain), "--dry-run"])):
        r = invoke(command, prog, [*args, "--shard", bad])
        assert r.exit_code == 2 and r.stdout == "" and "--shard" in r.stderr, (prog, args, r.stderr)


@pytest.mark.parametrize("env, shard", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, Shard(3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "10"}, Shard(1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10",
      "SLURM_ARRAY_TASK_STEP": "2"}, Shard(2, 3)),
    ({"JOB_COMPLETION_INDEX": "2", "AICP_SHARD_COUNT": "5"}, Shard(2, 5)),
])
def test_detect_reads_the_scheduler(env: dict[str, str], shard: Shard) -> None:
    assert detect(env) == shard and parse("auto", environ=env) == shard


@pytest.mark.parametrize("env, count, named", [
    ({}, None, "SLURM_ARRAY_TASK_ID"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0"}, None, "SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, None, "SLURM_ARRAY_TASK_MIN"),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, None,
     "SLURM_ARRAY_TASK_ID 7"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, None,
     "SLURM_ARRAY_TASK_ID must be a whole number"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, 3,
     "SLURM_ARRAY_TASK_COUNT 4"),
    ({"JOB_COMPLETION_INDEX": "2"}, None, "AICP_SHARD_COUNT"),
    ({"JOB_COMPLETION_INDEX": "5", "AICP_SHARD_COUNT": "5"}, None, "JOB_COMPLETION_INDEX 5"),
    ({"JOB_COMPLETION_INDEX": "1", "AICP_SHARD_COUNT": "zero"}, None, "AICP_SHARD_COUNT"),
])
def test_detect_names_the_absent_or_inconsistent_variable(env: dict[str, str], count: int | None,
                                                          named: str) -> None:
    with pytest.raises(UsageError) as info:
        detect(env, count)
    assert named in info.value.message


def test_cli_shard_auto_without_a_scheduler_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(var, raising=False)
    r = invoke(script_command, "aicp-script", ["--backend", "llamacpp", "--shard", "auto"], input=b"")
    assert r.exit_code == 2 and "SLURM_ARRAY_TASK_ID" in r.stderr and r.stdout == ""
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    r = invoke(script_command, "aicp-script", ["--backend", "llamacpp", "--shard", "auto"], input=b"")
    assert r.exit_code == 2 and "AICP_SHARD_COUNT" in r.stderr


def test_shard_run_from_stdin_counts_its_own_lines() -> None:
    data = b'{"a":1}\n\n{"a":2}\n{"a":3}\n'
    run = ShardRun(Shard(0, 2))
    assert [line.record for line in run.lines(["-"], stdin=io.BytesIO(data))] == [{"a": 1}, {"a": 2}]
    assert run.total_lines == 4 and run.counts == [2, 1]


@pytest.mark.parametrize("barrier", [True, False])
def test_voice_shards_merge_to_a_single_voice_run(tmp_path: Path, barrier: bool) -> None:
    from ai_content_pipeline.stages.commands import run_voice
    from ai_content_pipeline.stages.voice import VoiceOptions
    from tests.doubles import SpeechTTS

    src = tmp_path / "scripts.jsonl"
    src.write_text('{"id": "v0", "text": "Hello there, this is the first one."}\n'
                   "oops\n\n"
                   '{"id": "v3", "text": "And here comes the second intro tonight."}\n'
                   '{"id": "v4", "error": {"stage": "script", "message": "failed"}}\n'
                   '{"id": "v5", "text": "A third one, to close the hour."}\n')

    def voice(out_dir: Path, shard: Shard | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        run_voice([str(src)], VoiceOptions(out_dir=str(out_dir)), backend=SpeechTTS(), emitter=RecordingEmitter(),
                  write=out.append, barrier=barrier, shard=ShardRun(shard) if shard else None)
        return out

    single = voice(tmp_path / "whole", None)
    paths = []
    for k in range(2):
        p = tmp_path / f"voiced.{k}.jsonl"
        _write(p, voice(tmp_path / f"audio{k}", Shard(k, 2)))
        paths.append(p)

    def strip(records: list[dict[str, Any]]) -> list[Any]:
        return [(r.get("id"), sorted(r), r.get("audio", {}).get("seconds"), r.get("error", {}).get("message"))
                for r in records]

    assert strip(_merge(paths)) == strip(single)


def test_merge_refuses_forged_tags_and_creates_the_output_folder(shard_files: Any, tmp_path: Path) -> None:
    _, paths = shard_files
    forged = tmp_path / "forged.jsonl"
    forged.write_text('{"_aicp": {"shard": "0/1", "line": -1, "seq": 0}}\n')
    assert _cli_merge(str(forged)).exit_code == 2
    forged.write_text('{"_aicp": {"shard": "0/1", "line": 0, "seq": true}}\n')
    assert _cli_merge(str(forged)).exit_code == 2
    out = tmp_path / "new" / "folder" / "all.jsonl"
    r = _cli_merge(*map(str, paths), "-o", str(out))
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 18
    assert not list(out.parent.glob(".*.part"))


def test_merge_of_files_without_any_record_warns_that_it_cannot_tell(tmp_path: Path) -> None:
    # an empty input and a shard killed before its first record look the same: say so
    paths = [tmp_path / f"out.{k}.jsonl" for k in range(2)]
    for p in paths:
        p.write_text("")
    r = _cli_merge(*map(str, paths))
    assert r.exit_code == 0 and r.stdout == ""
    assert "warning" in r.stderr and "before its first record" in r.stderr
    r = _cli_merge("-q", *map(str, paths))
    assert "warning" in r.stderr


def test_a_forged_end_tag_with_a_non_ascii_digit_is_a_usage_error() -> None:
    """``"²".isdigit()`` is true but ``int("²")`` raises: the key is refused like any bad tag."""
    from ai_content_pipeline.merge import _end

    with pytest.raises(UsageError):
        _end({"lines": 10, "blank": {"²": 1}}, 5000, "out.0.jsonl")


def test_an_empty_host_option_leaves_the_chain_steps_hosts() -> None:
    """``aicp run-chain --host "$UNSET"``: an empty value sets nothing (it replaced every
    script step's hosts by none, and the run fell back to OLLAMA_HOST)."""
    from ai_content_pipeline.chain.spec import load_chain, with_hosts

    spec = load_chain(str(Path(__file__).parent.parent / "examples" / "radio-intros.yaml"))
    assert with_hosts(spec, [""]) is spec and with_hosts(spec, [" "]) is spec
    assert with_hosts(spec, ["a:1", ""]).steps[0].host == ["a:1"]


def test_a_shard_counts_its_lines_only_when_every_source_is_a_regular_file(tmp_path: Path) -> None:
    """``ShardRun.count`` asks :func:`jsonl.countable` as ``count_records`` does: a missing file
    next to ``-`` makes the count unknown (``None``), and stdin is left where it was."""
    import os

    from ai_content_pipeline.jsonl import count_records

    source = tmp_path / "in.jsonl"
    source.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\nnot json\n')  # positions 0-4, 1 is blank; the second copy: 5-9, 6 blank
    run = ShardRun(parse("0/2"))
    assert run.count([str(source)]) == 3 and run.count([str(source), str(source)]) == 4
    missing = str(tmp_path / "missing.jsonl")
    with open(source, "rb") as stdin:
        stdin.seek(9)  # past the first line: counts from here, rewinds to here
        assert run.count(["-"], stdin=stdin) == 1 and stdin.tell() == 9
        for sources in (["-", missing], [missing, "-"], [missing]):
            assert run.count(sources, stdin=stdin) is None
            assert count_records(sources, stdin=stdin) is None
            assert stdin.tell() == 9
    read, write = os.pipe()
    with os.fdopen(read, "rb") as pipe, os.fdopen(write, "wb") as writer:
        writer.write(b'{"a": 1}\n')
        writer.flush()
        assert run.count(["-"], stdin=pipe) is None and pipe.read(1) == b"{"  # nothing consumed


def test_merge_names_its_output_escaped(shard_files: Any, tmp_path: Path) -> None:
    """The summary line printed an --output path raw: a name with an escape or a newline in it
    cleared the screen or forged a line."""
    _, paths = shard_files
    out = tmp_path / "new\x1b[2J\nforged  name.jsonl"
    r = _cli_merge(*map(str, paths), "-o", str(out))
    assert r.exit_code == 0 and r.stdout == "" and len(out.read_text().splitlines()) == 18
    assert r.stderr == f"aicp merge: 18 records from 3 files -> {tmp_path}/new\\x1b[2J\\nforged  name.jsonl\n"
