"""A history like `llm logs`: --log PATH.db / AICP_LOG_DB record every take in SQLite,
`aicp logs` reads them back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.jsonl import dumps, loads
from ai_content_pipeline.takelog import TakeLog, read_takes
from tests.cli_helpers import BIN, invoke
from tests.doubles import FakeLLM, SpeechTTS

SONGS = [{"id": f"s{i}", "artist": "Queen", "title": f"Song {i}"} for i in range(3)]
REPLY = "Here is Queen with a song. It is a classic. Enjoy it tonight, night owls."


def jsonl(records: list[dict]) -> bytes:
    return b"".join(dumps(r) + b"\n" for r in records)


def records_of(stdout: str) -> list[dict]:
    return [loads(line) for line in stdout.splitlines()]


def script(monkeypatch, args: list[str], records: list[dict], llm=None):
    llm = llm or FakeLLM(replies=[REPLY])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    return invoke(script_cli.script_command, "aicp-script", args, input=jsonl(records)), llm


def rows(db: Path, sql: str = "SELECT * FROM takes ORDER BY id") -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_every_take_is_logged_with_what_it_was_asked(monkeypatch, tmp_path) -> None:
    db = tmp_path / "takes.db"
    res, llm = script(monkeypatch, ["--log", str(db), "--variants", "2", "--seed", "7", "-p", "max"], SONGS)
    assert res.exit_code == 0, res.stderr
    out = records_of(res.stdout)
    got = rows(db)
    assert len(got) == 6 == len(llm.calls)
    first = got[0]
    assert first["record_id"] == "s0" and first["take"] == 0 and first["stage"] == "script"
    assert first["template"] == "song-intro@5" and first["persona"] == "max"
    assert first["backend"] == out[0]["script"]["backend"] and first["model"] == out[0]["script"]["model"]
    assert loads(first["messages"]) == llm.calls[0]["messages"]
    assert loads(first["params"])["seed"] == 7 and loads(first["params"])["max_tokens"] > 0
    assert first["text"] == out[0]["script"]["text"] and first["key"] == out[0]["script"]["key"]
    assert first["prompt_tokens"] == out[0]["script"]["tokens"]["prompt"]
    assert first["seconds"] == out[0]["script"]["seconds"]
    assert loads(first["checks"]) == out[0]["script"]["checks"] and first["passed"] in (0, 1)
    assert first["datetime_utc"].endswith("Z")
    [run] = rows(db, "SELECT * FROM runs")
    assert run["command"] == "aicp-script" and {r["run_id"] for r in got} == {run["id"]}


def test_failed_takes_are_logged_with_their_error(monkeypatch, tmp_path) -> None:
    db = tmp_path / "takes.db"
    res, _ = script(monkeypatch, ["--log", str(db)], [{"id": "bad", "artist": "A"}, SONGS[0]])
    assert res.exit_code == 3
    # the missing field fails before any model call: not a take; the good one is logged
    assert [r["record_id"] for r in rows(db)] == ["s0"]
    res, _ = script(monkeypatch, ["--log", str(db), "--require-checks"], [SONGS[1]],
                    llm=FakeLLM(replies=["Sure! As an AI, here it is."]))
    assert res.exit_code == 3
    last = rows(db)[-1]
    assert last["record_id"] == "s1" and loads(last["error"])["type"] == "ChecksFailed" and last["passed"] == 0


def test_off_by_default_and_on_with_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AICP_LOG_DB", raising=False)
    res, _ = script(monkeypatch, [], SONGS[:1])
    assert res.exit_code == 0 and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("AICP_LOG_DB", str(tmp_path / "env.db"))
    res, _ = script(monkeypatch, [], SONGS[:1])
    assert res.exit_code == 0 and len(rows(tmp_path / "env.db")) == 1


def test_voice_adds_the_audio_file_to_the_take(monkeypatch, tmp_path) -> None:
    db = tmp_path / "takes.db"
    res, _ = script(monkeypatch, ["--log", str(db)], SONGS[:2])
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: SpeechTTS())
    voiced = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "out"), "--log", str(db)],
                    input=res.stdout.encode() + jsonl([{"id": "plain", "text": "Just some words to say here."}]))
    assert voiced.exit_code == 0, voiced.stderr
    out = records_of(voiced.stdout)
    got = rows(db)
    assert [r["audio_path"] for r in got] == [o["audio"]["path"] for o in out]
    assert got[0]["stage"] == "script" and got[0]["audio_backend"] == "fake-tts" and got[0]["audio_seconds"] > 0
    assert got[2]["stage"] == "voice" and got[2]["record_id"] == "plain"


def test_writes_from_many_threads_all_arrive(tmp_path) -> None:
    log = TakeLog(tmp_path / "t.db", "test")
    def add(n: int) -> None:
        for i in range(200):
            log.add_script(f"r{n}-{i}", 0, {"text": "x", "tokens": {"prompt": 1, "completion": 2}},
                           messages=[{"role": "user", "content": "hi"}], params={"seed": i})
    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    got = rows(tmp_path / "t.db")
    assert len(got) == 1600 and len({r["record_id"] for r in got}) == 1600
    assert sqlite3.connect(tmp_path / "t.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_utils_reads_the_tables(tmp_path, monkeypatch) -> None:
    sqlite_utils = pytest.importorskip("sqlite_utils")
    db = tmp_path / "takes.db"
    script(monkeypatch, ["--log", str(db)], SONGS[:1])
    database = sqlite_utils.Database(db)
    assert {"runs", "takes"} <= set(database.table_names())
    [row] = list(database["takes"].rows)
    assert row["template"] == "song-intro@5"


@pytest.mark.parametrize("clash", ["input", "checkpoint"])
def test_the_log_is_never_an_input_or_another_output(monkeypatch, tmp_path, clash) -> None:
    songs = tmp_path / "songs.jsonl"
    songs.write_bytes(jsonl(SONGS))
    before = songs.read_bytes()
    args = ["--log", str(songs), str(songs)] if clash == "input" else \
        ["--log", str(tmp_path / "x.db"), "--checkpoint", str(tmp_path / "x.db"), str(songs)]
    res, llm = script(monkeypatch, args, [])
    assert res.exit_code == 2 and "same file" in res.stderr and llm.calls == []
    assert songs.read_bytes() == before and not (tmp_path / "x.db").exists()


def test_the_log_is_never_stdouts_file(tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as fh:
        proc = subprocess.run([os.path.join(BIN, "aicp-script"), "--log", str(out)], input=jsonl(SONGS),
                              stdout=fh, stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 2 and b"same file" in proc.stderr and out.read_bytes() == b""


def test_a_file_that_is_not_a_database_is_refused(monkeypatch, tmp_path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("my notes, not a database\n" * 100)
    res, llm = script(monkeypatch, ["--log", str(bad)], SONGS[:1])
    assert res.exit_code == 2 and "take log" in res.stderr and llm.calls == []
    assert bad.read_text().startswith("my notes")


def test_the_folder_of_a_new_log_is_made_like_every_outputs(monkeypatch, tmp_path) -> None:
    """A missing folder is made before the run (SQLite cannot open a file in a folder that is
    not there, which would surface after the whole run as exit 1); a file where the folder
    belongs is exit 2."""
    log = tmp_path / "logs" / "2026" / "takes.db"
    res, llm = script(monkeypatch, ["--log", str(log)], SONGS[:2])
    assert res.exit_code == 0, res.stderr
    assert [r["record_id"] for r in rows(log)] == ["s0", "s1"]
    (tmp_path / "afile").write_text("x")
    res, llm = script(monkeypatch, ["--log", str(tmp_path / "afile" / "takes.db")], SONGS[:1])
    assert res.exit_code == 2 and llm.calls == [] and "is a file, not a folder" in res.stderr


def test_aicp_logs_reads_back_newest_last(monkeypatch, tmp_path) -> None:
    db = tmp_path / "takes.db"
    script(monkeypatch, ["--log", str(db)], SONGS)
    res = invoke(cli, "aicp", ["logs", "--log", str(db), "-n", "2", "--json"])
    assert res.exit_code == 0 and res.stderr == ""
    got = records_of(res.stdout)
    assert [t["record_id"] for t in got] == ["s1", "s2"]
    assert got[0]["messages"][0]["role"] == "system" and isinstance(got[0]["checks"], dict)
    assert got[0]["passed"] in (True, False)
    text = invoke(cli, "aicp", ["logs", "--log", str(db)])
    assert text.exit_code == 0 and text.stdout.count("## ") == 3 and "song-intro@5" in text.stdout
    assert text.stdout.index("record s0") < text.stdout.index("record s2")
    monkeypatch.setenv("AICP_LOG_DB", str(db))
    assert len(records_of(invoke(cli, "aicp", ["logs", "-n", "0", "--json"]).stdout)) == 3


def test_aicp_logs_without_a_log_is_a_usage_error(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AICP_LOG_DB", raising=False)
    res = invoke(cli, "aicp", ["logs"])
    assert res.exit_code == 2 and "AICP_LOG_DB" in res.stderr and res.stdout == ""
    res = invoke(cli, "aicp", ["logs", "--log", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "no take log" in res.stderr and not (tmp_path / "none.db").exists()


def test_read_takes_limit() -> None:
    with pytest.raises(Exception, match="no take log"):
        read_takes("/nonexistent/x.db")


def test_a_chain_logs_its_script_takes_and_their_audio(monkeypatch, tmp_path) -> None:
    from ai_content_pipeline.chain import runner
    from tests.chain_doubles import FakeFactory, write_chain

    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    db = tmp_path / "chain.db"
    chain = write_chain(tmp_path)
    res = invoke(cli, "aicp", ["run-chain", "--config", str(chain), "--log", str(db)])
    assert res.exit_code == 0, res.stderr
    final = loads(res.stdout)["outputs"]["final"]["path"]
    voiced = records_of(Path(final).read_text())
    got = rows(db)
    assert [r["stage"] for r in got] == ["script"] * len(voiced)
    assert [r["audio_path"] for r in got] == [v["audio"]["path"] for v in voiced]
    [run] = rows(db, "SELECT * FROM runs")
    assert run["command"] == "aicp run-chain"


def test_a_chain_log_is_never_its_input(monkeypatch, tmp_path) -> None:
    from ai_content_pipeline.chain import runner
    from tests.chain_doubles import FakeFactory, chain_data, write_chain

    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    chain = write_chain(tmp_path)
    songs = chain_data(tmp_path)["input"]
    before = Path(songs).read_bytes()
    res = invoke(cli, "aicp", ["run-chain", "--config", str(chain), "--log", str(songs)])
    assert res.exit_code == 2 and "same file" in res.stderr and Path(songs).read_bytes() == before


def test_format_take_escapes_as_the_messages_do() -> None:
    """One escape function for stderr and ``aicp logs``: U+202E is ``\\u202e`` (not ``\\x202e``,
    read as the byte 0x20 and '2e'), a newline in a heading field never starts a line of its own."""
    from ai_content_pipeline.takelog import format_take

    text = format_take({"persona": "rosa\u202eevil", "template": "t\nforged", "record_id": "r\U000e0001",
                        "text": "Line one.\nLine\ttwo \x1b[2J."})
    lines = text.splitlines()
    assert lines[0] == "## t\\nforged  rosa\\u202eevil"
    assert lines[1].startswith("record r\\U000e0001 take None")
    assert lines[3:] == ["Line one.", "Line\\ttwo \\x1b[2J."]  # the text keeps its lines
