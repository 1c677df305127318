"""No data loss and no leaks: output paths, persona paths, input caps, inputs never written,
exact numbers, the ledger under concurrency and bad entries, leftovers, paths checked first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from yaml import safe_dump as yaml_dump

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.files import FolderLock, NameClaims, refuse_overlap
from ai_content_pipeline.jsonl import dumps, loads, read_records
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.registry import build_stage
from ai_content_pipeline.stages.script import ScriptOptions
from tests.chain_doubles import chain_data, write_chain, write_songs
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter, SpeechTTS, lines_of

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Good evening, night owls. Here is a song for you."


def jsonl(records: list[dict]) -> bytes:
    return b"".join(dumps(r) + b"\n" for r in records)


def out_records(stdout: str) -> list[dict]:
    lines = stdout.split("\n")  # not splitlines(): U+0085 and U+2028 may sit inside a JSON string
    assert lines[-1] == ""
    return [loads(line) for line in lines[:-1]]


def voice(monkeypatch, tmp_path: Path, records: list[dict] | bytes, *args: str, tts=None):
    tts = tts or SpeechTTS()
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    data = records if isinstance(records, bytes) else jsonl(records)
    return invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "out"), *args], input=data)


def script(monkeypatch, args: list[str], data: bytes = b"", llm=None):
    llm = llm or FakeLLM(replies=["Here is Queen with Bohemian Rhapsody, a classic."])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    return invoke(script_cli.script_command, "aicp-script", args, input=data), llm


def assert_files_match(records: list[dict], out: Path) -> None:
    paths = [r["audio"]["path"] for r in records]
    assert len(set(paths)) == len(paths), paths
    for rec in records:
        path = Path(rec["audio"]["path"])
        assert path.parent == out
        assert os.path.getsize(path) == rec["audio"]["size"]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(p).name for p in paths)


# -- 1. colliding output names --------------------------------------------------------------
COLLIDING = [
    {"id": "s1", "script": {"text": TEXT, "persona": "julie", "take": 0}},
    {"id": "s1", "script": {"text": TEXT + " Again.", "persona": "julie", "take": 0}},
    {"id": 123, "script": {"text": TEXT, "persona": "max", "take": 0}},
    {"id": "123", "script": {"text": TEXT + " Twice.", "persona": "max", "take": 0}},
    {"id": "S1", "script": {"text": TEXT + " Loud.", "persona": "julie", "take": 0}},
    {"id": "s1_julie_0", "text": TEXT + " Bare."},
    {"id": "s1_julie_0-2", "text": TEXT + " Sneaky."},
    {"id": "a/b", "script": {"text": TEXT, "take": 0}},
]


def test_records_that_would_share_a_file_each_get_their_own(monkeypatch, tmp_path) -> None:
    res = voice(monkeypatch, tmp_path, COLLIDING)
    assert res.exit_code == 0, res.stderr
    records = out_records(res.stdout)
    assert len(records) == len(COLLIDING)
    assert_files_match(records, tmp_path / "out")
    names = [Path(r["audio"]["path"]).name for r in records]
    assert names[:2] == ["s1_julie_0.wav", "s1_julie_0-2.wav"]
    assert [r["id"] for r in records] == [r["id"] for r in COLLIDING]  # ids themselves unchanged


def test_resume_serves_every_colliding_record_from_its_own_file(monkeypatch, tmp_path) -> None:
    ledger = str(tmp_path / "voice.ledger")
    first = voice(monkeypatch, tmp_path, COLLIDING, "--checkpoint", ledger)
    assert first.exit_code == 0, first.stderr
    tts = SpeechTTS()
    again = voice(monkeypatch, tmp_path, COLLIDING, "--checkpoint", ledger, "--resume", tts=tts)
    assert again.exit_code == 0, again.stderr
    assert tts.calls == []  # nothing synthesized again
    records = out_records(again.stdout)
    assert len(records) == len(COLLIDING)
    assert all(r["audio"]["skipped"] for r in records)
    assert [r["audio"]["path"] for r in records] == [r["audio"]["path"] for r in out_records(first.stdout)]
    assert_files_match(records, tmp_path / "out")


def test_name_claims_are_case_insensitive_and_never_repeat() -> None:
    claims = NameClaims()
    got = [claims.claim(s, ".wav") for s in ["a", "A", "a-2", "a", "b"]]
    assert got == ["a.wav", "A-2.wav", "a-2-2.wav", "a-3.wav", "b.wav"]
    assert len({g.casefold() for g in got}) == len(got)


def test_longform_records_with_one_id_get_their_own_work_folders(tmp_path) -> None:
    from tests.test_longform import LongformLLM

    llm = LongformLLM()
    options = ScriptOptions(template="podcast-longform", words=200, work_dir=str(tmp_path / "lf"))
    topics = [{"id": "ep", "topic": "Alpha"}, {"id": "ep", "topic": "Beta"}, {"id": "ep-take1", "topic": "G"}]
    stage = build_stage("script", llm, ScriptOptions(**{**options.__dict__, "variants": 2}), RecordingEmitter())
    out = list(stage.run(lines_of(*topics)))
    assert len(out) == 6 and not any("error" in r for r in out)
    dirs = [r["script"]["dir"] if "dir" in r["script"] else str(Path(r["script"]["path"]).parent) for r in out]
    assert len(set(dirs)) == 6
    texts = [Path(r["script"]["path"]).read_text() for r in out]
    assert texts == [r["script"]["text"] for r in out]  # no folder was overwritten by a later record


# -- 2. record data is never a file path ---------------------------------------------------
@pytest.mark.parametrize("field", ["persona", "dj"])
@pytest.mark.parametrize("value", ["{secret}", "../{name}", "{stem}", "./x.yaml", "~/.ssh/id_rsa"])
def test_a_record_cannot_make_aicp_read_a_file(monkeypatch, tmp_path, field, value) -> None:
    secret = tmp_path / "secret.env"
    secret.write_text("API_KEY=hunter2-do-not-print\nname: julie\n")
    value = value.format(secret=secret, name=secret.name, stem=str(secret.with_suffix("")))
    song = {"id": "x", "artist": "A", "title": "T", field: value}
    (res, llm) = script(monkeypatch, [], jsonl([song]))
    assert res.exit_code == 3
    [record] = out_records(res.stdout)
    assert record["error"]["field"] == field and "hunter2" not in res.stdout + res.stderr
    assert llm.calls == []


def test_a_non_string_persona_is_an_error_not_ignored(monkeypatch) -> None:
    (res, _) = script(monkeypatch, [], jsonl([{"id": "x", "artist": "A", "title": "T", "persona": 7}]))
    assert res.exit_code == 3
    assert "must be a persona name" in out_records(res.stdout)[0]["error"]["message"]


def test_a_persona_file_from_the_command_line_is_usable_by_name_downstream(monkeypatch, tmp_path) -> None:
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text("name: rosa\ndisplay_name: Rosa\nstyle: You speak softly.\nseed: 5\n")
    (res, _) = script(monkeypatch, ["-p", str(rosa)], jsonl([{"id": "x", "artist": "A", "title": "T"}]))
    assert res.exit_code == 0, res.stderr
    scripted = out_records(res.stdout)
    assert scripted[0]["script"]["persona"] == "rosa"
    voiced = voice(monkeypatch, tmp_path, scripted, "-p", str(rosa))
    assert voiced.exit_code == 0, voiced.stderr
    assert out_records(voiced.stdout)[0]["audio"]["path"].endswith("x_rosa_0.wav")


@pytest.mark.parametrize("content", ["name: [unclosed hunter2-secret\n", "token: *hunter2secret\n",
                                     "a: !hunter2tag x\n", 'k: "\\q hunter2"\n', "k: &hunter2 v\n",
                                     "k: 'unclosed hunter2\n"])
@pytest.mark.parametrize("option", ["-p", "-t"])
def test_yaml_errors_never_quote_the_file(tmp_path, monkeypatch, content, option) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(content)
    (res, _) = script(monkeypatch, [option, str(bad)], b"")
    assert res.exit_code == 2 and "hunter2" not in res.stderr and "p.yaml:" in res.stderr


# -- 3. bounded input --------------------------------------------------------------------------
def test_an_overlong_line_is_an_error_record_and_the_rest_goes_on(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AICP_MAX_LINE_BYTES", "1000")
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"big": "' + b"x" * 5000 + b'"}\n{"b": 2}\n' + b"y" * 3000)
    lines = list(read_records([str(path)]))
    assert [ln.line for ln in lines] == [1, 2, 3, 4]
    assert lines[0].record == {"a": 1} and lines[2].record == {"b": 2}
    assert "longer than 1000 bytes" in lines[1].error["message"]
    assert "longer than" in lines[3].error["message"]


def test_a_huge_line_never_sits_in_memory(tmp_path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"notes": "')
        for _ in range(200):
            fh.write(b"z" * (1 << 20))
        fh.write(b'"}\n{"id": "after"}\n')
    code = ("import sys\nfrom ai_content_pipeline.jsonl import read_records\n"
            "lines = list(read_records([sys.argv[1]]))\n"
            "assert lines[0].error and lines[1].record == {'id': 'after'}, lines\n"
            "print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert int(proc.stdout) < 80_000  # KiB peak: a 200 MiB line read in bounded memory


def test_a_byte_order_mark_is_not_a_bad_record(tmp_path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n{"id": "b"}\n')
    assert [ln.record for ln in read_records([str(path)])] == [{"id": "a"}, {"id": "b"}]


@pytest.mark.parametrize(("line", "kind"), [(b"null", "null"), (b'"x"', "string"), (b"[1]", "array"),
                                            (b"3", "number"), (b"true", "boolean")])
def test_non_objects_are_named_in_json_terms(line, kind) -> None:
    [got] = list(read_records(["-"], stdin=__import__("io").BytesIO(line + b"\n")))
    assert f"a JSON {kind}, not an object" in got.error["message"]


# -- 4. inputs are never written -------------------------------------------------------------
def test_checkpoint_naming_the_input_is_refused(monkeypatch, tmp_path) -> None:
    songs = write_songs(tmp_path / "songs.jsonl")
    before = songs.read_bytes()
    (res, llm) = script(monkeypatch, [str(songs), "--checkpoint", str(songs)])
    assert res.exit_code == 2 and "same file" in res.stderr
    assert songs.read_bytes() == before and llm.calls == []
    voiced = voice(monkeypatch, tmp_path, b"", str(songs), "--checkpoint", str(songs))
    assert voiced.exit_code == 2 and songs.read_bytes() == before


@pytest.mark.parametrize("command", ["script", "voice"])
def test_stdout_appending_to_the_input_is_refused(tmp_path, command) -> None:
    songs = write_songs(tmp_path / "songs.jsonl")
    before = songs.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9")
    with open(songs, "ab") as out:
        proc = subprocess.run([sys.executable, "-m", "tests.chain_doubles", command, str(songs)],
                              stdout=out, stderr=subprocess.PIPE, env=env, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr.decode()
    assert b"same file" in proc.stderr and songs.read_bytes() == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_chain_whose_input_is_its_own_step_output_is_refused(tmp_path, dry_run) -> None:
    from tests.test_cli_chain import invoke as chain_invoke

    out = tmp_path / "out"
    out.mkdir()
    own = write_songs(out / "02-voice.jsonl")
    before = own.read_bytes()
    path = write_chain(tmp_path, input=str(own))
    code, stdout, stderr = chain_invoke(["run-chain", "--config", str(path), *(["--dry-run"] if dry_run else [])])
    assert code == 2 and "same file" in stderr
    assert own.read_bytes() == before
    if not dry_run:
        assert orjson.loads(stdout)["error"]["type"] == "UsageError"


def test_refuse_overlap_ignores_devices_and_pipes() -> None:
    refuse_overlap({"stdin": os.devnull}, {"stdout": os.devnull})
    read, write = os.pipe()
    refuse_overlap({"stdin": read}, {"stdout": write})
    with pytest.raises(UsageError):
        refuse_overlap({"in": __file__}, {"out": __file__})


# -- 5. every JSON value round-trips ---------------------------------------------------------------
EXACT_LINE = (b'{"id": "big", "year": 99999999999999999999, "neg": -9223372036854775809, '
              b'"huge": 123456789012345678901234567890, "f": 1.0000000000000000001, "inf": 1e400, '
              b'"tiny": 1e-400, "u64": 18446744073709551615, "plain": 1.5, "s": "99999999999999999999", '
              b'"nest": [{"n": 12345678901234567890123}], "artist": "A", "title": "T"}')


def test_big_numbers_come_out_exactly_as_they_went_in(monkeypatch) -> None:
    (res, _) = script(monkeypatch, [], EXACT_LINE + b"\n")
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout, parse_float=str, parse_int=str)
    want = json.loads(EXACT_LINE, parse_float=str, parse_int=str)
    assert {k: v for k, v in got.items() if k != "script"} == want


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=5), children, max_size=4), max_leaves=20))
def test_any_json_value_round_trips(value) -> None:
    assert loads(dumps({"v": value})) == {"v": value}
    text = json.dumps({"v": value})
    assert json.loads(dumps(loads(text))) == json.loads(text)


@given(st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?", fullmatch=True))
def test_any_number_literal_is_written_back_as_the_same_number(literal) -> None:
    from decimal import Decimal

    back = dumps(loads('{"n": ' + literal + "}"))
    assert Decimal(json.loads(back, parse_float=str, parse_int=str)["n"]) == Decimal(literal)


# -- 6. the ledger: bad entries and concurrent writers ------------------------------------------
@pytest.mark.parametrize("bad", [None, "garbage", 7, [], {"text": None}, {"text": "   "}])
def test_a_bad_ledger_entry_means_regenerate(monkeypatch, tmp_path, bad) -> None:
    songs = write_songs(tmp_path / "songs.jsonl")
    ledger = tmp_path / "run.ledger"
    (first, _) = script(monkeypatch, [str(songs), "--checkpoint", str(ledger), "--seed", "1"])
    assert first.exit_code == 0
    entries = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    entries[0]["value"] = bad
    ledger.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    (again, llm) = script(monkeypatch, [str(songs), "--checkpoint", str(ledger), "--seed", "1", "--resume"])
    assert again.exit_code == 0, again.stderr
    records = out_records(again.stdout)
    assert len(llm.calls) == 1 and records[0]["script"]["text"].strip()
    assert [bool(r["script"].get("skipped")) for r in records] == [False, True, True]


def test_bad_voice_ledger_entries_mean_voice_again(monkeypatch, tmp_path) -> None:
    ledger = tmp_path / "v.ledger"
    recs = COLLIDING[:2]
    assert voice(monkeypatch, tmp_path, recs, "--checkpoint", str(ledger)).exit_code == 0
    entries = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    entries[0]["value"] = {"path": 5, "size": "x"}
    entries[1]["value"] = "garbage"
    ledger.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    tts = SpeechTTS()
    res = voice(monkeypatch, tmp_path, recs, "--checkpoint", str(ledger), "--resume", tts=tts)
    assert res.exit_code == 0 and len(tts.calls) == 2
    assert_files_match(out_records(res.stdout), tmp_path / "out")


def test_opening_a_ledger_never_cuts_a_line_another_process_is_writing(tmp_path) -> None:
    path = tmp_path / "shared.ledger"
    big = "x" * 60_000
    code = ("import sys\nfrom ai_content_pipeline.ledger import Ledger\n"
            "ledger = Ledger(sys.argv[1])\n"
            "for i in range(40):\n"
            "    ledger.append(f'{sys.argv[2]}-{i}', {'text': sys.argv[3]})\n"
            "ledger.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), name, big]) for name in "abcd"]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    ledger = Ledger(path)
    assert ledger.torn_lines == 0 and len(ledger) == 160


def test_a_torn_tail_is_repaired_under_the_lock(tmp_path) -> None:
    path = tmp_path / "l.ledger"
    path.write_bytes(b'{"key": "a", "value": {"text": "ok"}}\n{"key": "b", "val')
    ledger = Ledger(path)
    assert len(ledger) == 1 and ledger.torn_lines == 1
    ledger.append("c", {"text": "new"})
    ledger.close()
    assert [orjson.loads(x)["key"] for x in path.read_bytes().splitlines()] == ["a", "c"]


def test_two_voice_runs_on_one_out_dir_never_disagree_with_the_files(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9", AICP_FAKE_DELAY="0.3")
    songs = tmp_path / "in.jsonl"
    songs.write_bytes(jsonl(COLLIDING))
    cmd = [sys.executable, "-m", "tests.chain_doubles", "voice", "--out-dir", str(tmp_path / "out"),
           "--no-barrier", str(songs)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while not (tmp_path / "out" / ".aicp.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0
    assert second.returncode == 2 and b"in use by another aicp run" in second.stderr
    assert second.stdout == b""
    assert_files_match(out_records(out.decode()), tmp_path / "out")


def test_folder_lock_is_exclusive_and_removed_after(tmp_path) -> None:
    errors: list[Exception] = []

    def other_thread() -> None:
        try:
            FolderLock(tmp_path / "o", "--out-dir").acquire()
        except UsageError as exc:
            errors.append(exc)

    with FolderLock(tmp_path / "o", "--out-dir"):
        with FolderLock(tmp_path / "o"):  # nested in the same thread: a chain step in its own folder
            pass
        assert (tmp_path / "o" / ".aicp.lock").exists()
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "in use by another aicp run" in str(errors[0])
        proc = subprocess.run([sys.executable, "-c", "import sys; from ai_content_pipeline.files import "
                               "FolderLock; FolderLock(sys.argv[1]).acquire()", str(tmp_path / "o")],
                              capture_output=True)
        assert proc.returncode != 0 and b"in use" in proc.stderr
    assert not (tmp_path / "o" / ".aicp.lock").exists()
    FolderLock(tmp_path / "o").acquire().release()


# -- 7. leftovers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("resume", [False, True])
def test_voice_removes_temporary_files_a_killed_run_left(monkeypatch, tmp_path, resume) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".s1_julie_0.wav.1a2b3c4d.part").write_bytes(b"half")
    ledger = ["--checkpoint", str(tmp_path / "l"), *(["--resume"] if resume else [])]
    res = voice(monkeypatch, tmp_path, COLLIDING[:1], *ledger)
    assert res.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["s1_julie_0.wav"]


def test_sigkill_while_writing_audio_then_resume(tmp_path) -> None:
    """Kill aicp-voice while a file sits under its temporary name; --resume leaves exactly
    one complete file per record and no temporary file."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9", AICP_FAKE_WRITE_DELAY="1.0")
    songs = tmp_path / "in.jsonl"
    songs.write_bytes(jsonl(COLLIDING))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tests.chain_doubles", "voice", "--out-dir", str(out),
           "--checkpoint", str(tmp_path / "v.ledger"), "--stream", str(songs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None
        starts = 0
        for raw in proc.stderr:
            if orjson.loads(raw)["event"] == "record_start":
                starts += 1
                if starts == 2:  # the first record is written; the second is being written
                    break
        deadline = time.monotonic() + 20
        while not list(out.glob(".*.part")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(out.glob(".*.part")), "no temporary file to kill the writer on"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert list(out.glob(".*.part"))  # the kill left a torn temporary file behind
    env.pop("AICP_FAKE_WRITE_DELAY")
    done = subprocess.run([*cmd, "--resume"], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    records = out_records(done.stdout.decode())
    assert [r["id"] for r in records] == [r["id"] for r in COLLIDING]
    assert sum(bool(r["audio"].get("skipped")) for r in records) >= 1
    assert_files_match(records, out)
    for rec in records:
        assert sf.info(rec["audio"]["path"]).frames > 0


# -- 14. every path is checked before the first model call ---------------------------------------
def test_a_ledger_under_a_regular_file_fails_before_any_generation(monkeypatch, tmp_path) -> None:
    songs = write_songs(tmp_path / "songs.jsonl")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (res, llm) = script(monkeypatch, [str(songs), "--checkpoint", str(blocker / "run.ledger")])
    assert res.exit_code == 2 and llm.calls == [] and res.stdout == ""
    assert "is a file" in res.stderr


def test_a_missing_second_input_fails_before_the_first_is_processed(monkeypatch, tmp_path) -> None:
    songs = write_songs(tmp_path / "songs.jsonl")
    (res, llm) = script(monkeypatch, [str(songs), str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and llm.calls == [] and res.stdout == ""
    assert "nope.jsonl" in res.stderr
    voiced = voice(monkeypatch, tmp_path, b"", str(songs), str(tmp_path))
    assert voiced.exit_code == 2 and voiced.stdout == "" and "directory" in voiced.stderr


def test_a_chain_checks_every_step_path_before_step_one(tmp_path) -> None:
    from tests.test_cli_chain import invoke as chain_invoke

    path = write_chain(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "02-voice.ledger.jsonl").mkdir()  # step 2's ledger path is a folder
    code, stdout, stderr = chain_invoke(["run-chain", "--config", str(path)])
    assert code == 2 and "02-voice.ledger.jsonl" in stderr
    assert not (tmp_path / "out" / "01-script.jsonl").exists()


def test_threads_appending_to_one_ledger_keep_every_line(tmp_path) -> None:
    ledger = Ledger(tmp_path / "t.ledger")
    threads = [threading.Thread(target=lambda n=n: [ledger.append(f"{n}-{i}", {"i": i}) for i in range(50)])
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.close()
    assert len(Ledger(tmp_path / "t.ledger")) == 200


# -- fuzz: the JSON Lines reader through a real command ----------------------------------------
_LINE = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda r: dumps(r), st.fixed_dictionaries({"artist": st.text(max_size=8), "title": st.text(max_size=8)},
                                                        optional={"id": st.integers() | st.text(max_size=6),
                                                                  "year": st.integers(-(10**30), 10**30),
                                                                  "persona": st.sampled_from(["max", "/etc/x", 3]),
                                                                  "error": st.just({"stage": "x"})})),
    st.sampled_from([b"", b"   ", b"\xef\xbb\xbf{}", b"null", b"[]", b'{"a":', b"\xff\xfe", b"{}" * 3,
                     b'{"artist": "A", "title": "T"}\r', b"1e400", b'{"n": 1e400}', b"[" * 2000,
                     b'{"a": 1e400, "b": "\\ud800"}', b'{"a": 99999999999999999999, "b": NaN}']),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_fuzz_every_input_line_is_accounted_for(lines) -> None:
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AICP_MAX_LINE_BYTES", "3000")
        (res, _) = script(mp, ["--seed", "1"], data)
    assert res.exit_code in (0, 3), res.stderr
    assert "Traceback" not in res.stderr and "error: unexpected" not in res.stderr
    expected = [n for n, raw in enumerate(data.split(b"\n"), start=1)
                if (raw[3:] if n == 1 and raw.startswith(b"\xef\xbb\xbf") else raw).strip(b" \t\r\n\x0b\x0c")]
    out = out_records(res.stdout)
    assert len(out) == len(expected)
    for n, rec in zip(expected, out, strict=True):
        assert "script" in rec or "error" in rec
        if rec.get("error", {}).get("stage") == "input":
            assert rec["error"]["line"] == n


@pytest.mark.parametrize("two_phase", [True, False])
def test_radio_never_gives_two_songs_one_intro_file(tmp_path, two_phase) -> None:
    from ai_content_pipeline.radio import generate_batch_intros
    from tests.test_radio import make

    pipeline, _ = make(tmp_path, two_phase=two_phase)
    batch = [{"id": "s1", "artist": "A", "title": "One"}, {"id": "s1", "artist": "B", "title": "Two"},
             {"id": "S1", "artist": "C", "title": "Three"}, {"id": "s1", "artist": "D", "title": "Four", "dj": "max"}]
    results = list(generate_batch_intros(pipeline, batch))
    assert [r.success for r in results] == [True, False, False, True]
    assert "appears earlier in this batch" in (results[1].error or "")
    paths = [r.audio_path for r in results if r.success]
    assert len(set(paths)) == 2 and all(p is not None and p.is_file() for p in paths)


# -- a second round, from an adversarial pass --------------------------------------------------
@pytest.mark.parametrize("value", ["evil.yaml", "secret.yml", "evil.YAML"])
def test_a_record_persona_that_looks_like_a_file_is_never_loaded(monkeypatch, tmp_path, value) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text("name: evil\ndisplay_name: Evil\nstyle: x\n")
    (tmp_path / "secret.yml").write_text("token: *hunter2secret\n")
    (res, llm) = script(monkeypatch, [], jsonl([{"id": "p", "artist": "A", "title": "T", "dj": value}]))
    assert res.exit_code == 3 and llm.calls == []
    [record] = out_records(res.stdout)
    assert record["error"]["field"] == "dj" and "hunter2" not in res.stdout + res.stderr


def test_audio_never_replaces_an_input_or_the_checkpoint(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: SpeechTTS())
    out = tmp_path / "ov"
    out.mkdir()
    source = out / "s1.wav"  # an input named like the audio file its record would get
    source.write_bytes(jsonl([{"id": "s1", "text": TEXT}]))
    before = source.read_bytes()
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(out), str(source)])
    assert res.exit_code == 3 and source.read_bytes() == before
    assert "was not replaced" in out_records(res.stdout)[0]["error"]["message"]

    songs = tmp_path / "in.jsonl"
    songs.write_bytes(jsonl([{"id": "s1", "text": TEXT}, {"id": "s2", "text": TEXT}]))
    ledger = tmp_path / "o2" / "s1.wav"  # the checkpoint named like the first record's audio
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(tmp_path / "o2"), "--checkpoint", str(ledger), str(songs)])
    assert res.exit_code == 3
    assert [orjson.loads(x)["value"]["path"] for x in ledger.read_bytes().splitlines()] == [
        str(tmp_path / "o2" / "s2.wav")]  # still a ledger, holding the one file written


def test_stdout_onto_an_audio_path_is_not_replaced(tmp_path) -> None:
    songs = tmp_path / "in.jsonl"
    songs.write_bytes(jsonl([{"id": "s1", "text": TEXT}, {"id": "s2", "text": TEXT}]))
    (tmp_path / "o").mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9")
    target = tmp_path / "o" / "s1.wav"
    with open(target, "wb") as stdout:
        proc = subprocess.run([sys.executable, "-m", "tests.chain_doubles", "voice", "--out-dir",
                               str(tmp_path / "o"), str(songs)], stdout=stdout, stderr=subprocess.PIPE,
                              env=env, timeout=60)
    assert proc.returncode == 3, proc.stderr.decode()
    records = [loads(x) for x in target.read_bytes().splitlines()]  # stdout's records survived
    assert [r["id"] for r in records] == ["s1", "s2"] and "error" in records[0] and "audio" in records[1]


@pytest.mark.parametrize("how", ["input", "checkpoint"])
def test_the_lock_file_name_is_never_read_or_written(monkeypatch, tmp_path, how) -> None:
    lk = tmp_path / "lk"
    lk.mkdir()
    lock = lk / ".aicp.lock"
    lock.write_bytes(jsonl([{"id": "s1", "text": TEXT}]))
    before = lock.read_bytes()
    args = [str(lock)] if how == "input" else ["--checkpoint", str(lock), str(write_songs(tmp_path / "s.jsonl"))]
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(lk), *args])
    assert res.exit_code == 2 and ".aicp.lock" in res.stderr and lock.read_bytes() == before


@pytest.mark.parametrize("option", ["-p", "-t"])
def test_persona_and_template_files_are_inputs_too(monkeypatch, tmp_path, option) -> None:
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text("name: rosa\ndisplay_name: Rosa\nstyle: You speak softly.\n" if option == "-p" else
                    "name: t\nsystem: s\nuser: '{{ title }}'\n")
    before = rosa.read_bytes()
    songs = write_songs(tmp_path / "songs.jsonl")
    (res, llm) = script(monkeypatch, [option, str(rosa), "--checkpoint", str(rosa), str(songs)])
    assert res.exit_code == 2 and "same file" in res.stderr and rosa.read_bytes() == before and llm.calls == []


def test_a_record_nested_too_deep_is_an_error_record_not_a_crash(monkeypatch) -> None:
    deep = b'{"id": "d", "artist": "a", "title": "t", "x": ' + b"[" * 260 + b"]" * 260 + b"}\n"
    fine = b'{"id": "f", "artist": "a", "title": "t", "x": ' + b"[" * 150 + b"]" * 150 + b"}\n"
    (res, _) = script(monkeypatch, [], deep + fine)
    assert res.exit_code == 3, res.stderr
    records = out_records(res.stdout)
    assert "nested more than" in records[0]["error"]["message"] and "script" in records[1]


def test_identical_longform_records_keep_their_own_folders_after_resume(tmp_path) -> None:
    from tests.test_longform import LongformLLM

    ledger = Ledger(tmp_path / "lf.ledger")
    options = ScriptOptions(template="podcast-longform", words=200, work_dir=str(tmp_path / "lf"))
    same = [{"topic": "same"}, {"topic": "same"}]
    first = list(build_stage("script", LongformLLM(), options, RecordingEmitter(), ledger).run(lines_of(*same)))
    ledger.close()
    again = list(build_stage("script", LongformLLM(), ScriptOptions(**{**options.__dict__, "resume": True}),
                             RecordingEmitter(), Ledger(tmp_path / "lf.ledger")).run(lines_of(*same)))
    paths = [r["script"]["path"] for r in again]
    assert len(set(paths)) == 2 and paths == [r["script"]["path"] for r in first]
    assert all(r["script"].get("skipped") for r in again)


def test_cleanup_removes_only_aicp_temporary_files(monkeypatch, tmp_path) -> None:
    out = tmp_path / "out"
    (out / ".x.part").mkdir(parents=True)
    (out / ".my-notes.part").write_text("keep")
    (out / ".s1.wav.0badc0de.part").write_text("stale")
    res = voice(monkeypatch, tmp_path, COLLIDING[:1])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == [".my-notes.part", ".x.part", "s1_julie_0.wav"]


def test_a_checkpoint_that_is_a_pipe_is_refused_at_once(monkeypatch, tmp_path) -> None:
    fifo = tmp_path / "ff"
    os.mkfifo(fifo)
    (res, llm) = script(monkeypatch, [str(write_songs(tmp_path / "s.jsonl")), "--checkpoint", str(fifo)])
    assert res.exit_code == 2 and "not a regular file" in res.stderr and llm.calls == []
    (res, _) = script(monkeypatch, [str(tmp_path / "s.jsonl"), "--checkpoint", ""])
    assert res.exit_code == 2


@pytest.mark.parametrize("bad", [{"words": True}, {"tokens": "x"}, {"words": "3"}])
def test_ledger_values_of_the_wrong_type_are_not_served(monkeypatch, tmp_path, bad) -> None:
    songs = write_songs(tmp_path / "songs.jsonl")
    ledger = tmp_path / "run.ledger"
    (first, _) = script(monkeypatch, [str(songs), "--checkpoint", str(ledger), "--seed", "1"])
    entries = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    entries[0]["value"].update(bad)
    ledger.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    (again, llm) = script(monkeypatch, [str(songs), "--checkpoint", str(ledger), "--seed", "1", "--resume"])
    assert again.exit_code == 0 and len(llm.calls) == 1


def test_longform_chunk_entries_of_the_wrong_shape_mean_write_again(tmp_path) -> None:
    from tests.test_longform import LongformLLM

    options = ScriptOptions(template="podcast-longform", words=200, work_dir=str(tmp_path / "lf"))
    topic = [{"id": "ep", "topic": "Alpha"}]
    assert "error" not in list(build_stage("script", LongformLLM(), options, RecordingEmitter()).run(lines_of(*topic)))[0]
    checkpoint = tmp_path / "lf" / "ep" / "checkpoint.jsonl"
    entries = [orjson.loads(x) for x in checkpoint.read_bytes().splitlines()]
    entries[1]["value"]["chunk"] = 99
    entries[2]["value"]["words"] = "garbage"
    checkpoint.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    llm = LongformLLM()
    out = list(build_stage("script", llm, ScriptOptions(**{**options.__dict__, "resume": True}), RecordingEmitter())
               .run(lines_of(*topic)))
    assert "error" not in out[0] and len(llm.calls) == 2  # the two bad chunks were written again
    assert all(isinstance(c["words"], int) for c in out[0]["script"]["chunks"])


@pytest.mark.parametrize("value", ["9223372036854775807", "-1", "0", "abc", str(2**31 * 1024)])
def test_an_absurd_line_cap_is_a_usage_error(monkeypatch, value) -> None:
    monkeypatch.setenv("AICP_MAX_LINE_BYTES", value)
    (res, _) = script(monkeypatch, [], jsonl([{"artist": "A", "title": "T"}]))
    assert res.exit_code == 2 and "AICP_MAX_LINE_BYTES" in res.stderr


def test_integers_of_thousands_of_digits_round_trip(monkeypatch) -> None:
    line = b'{"artist": "A", "title": "T", "big": ' + b"9" * 5000 + b', "neg": -' + b"1" * 4500 + b"}"
    (res, _) = script(monkeypatch, [], line + b"\n")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.encode().startswith(line.replace(b": ", b":").replace(b", ", b",")[:-1])


def test_a_second_run_on_a_locked_folder_stops_before_reading_its_input(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OLLAMA_HOST="http://127.0.0.1:9")
    with FolderLock(tmp_path / "o6"):
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "tests.chain_doubles", "voice", "--out-dir",
                                 str(tmp_path / "o6")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        try:  # stdin stays open: a run that waited for EOF would never end
            code = proc.wait(timeout=30)
        finally:
            proc.kill()
            assert proc.stdin is not None
            proc.stdin.close()
        assert code == 2 and time.monotonic() - t0 < 30


@pytest.mark.parametrize("dj", [0, False, "", [], {}])
def test_radio_dj_that_is_not_a_name_is_an_error(tmp_path, dj) -> None:
    from ai_content_pipeline.radio import generate_batch_intros
    from tests.test_radio import make

    pipeline, _ = make(tmp_path)
    [result] = list(generate_batch_intros(pipeline, [{"id": "s1", "artist": "A", "title": "T", "dj": dj}]))
    assert not result.success and "dj must be a persona name" in (result.error or "")


# -- a third round ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--temperature", "--top-p", "--timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_float_flags_refuse_nan_and_infinity(monkeypatch, flag, value) -> None:
    (res, llm) = script(monkeypatch, [flag, value], jsonl([{"artist": "A", "title": "T"}]))
    assert res.exit_code == 2 and llm.calls == []
    assert "finite" in res.stderr or "range" in res.stderr


def test_voice_loudness_nan_is_a_usage_error(monkeypatch, tmp_path) -> None:
    res = voice(monkeypatch, tmp_path, COLLIDING[:1], "--loudness", "nan")
    assert res.exit_code == 2 and res.stdout == ""


@pytest.mark.parametrize("user", ['{% include "x" %}', '{% import "x" as y %}', '{% extends "x" %}',
                                  '{{ "x" * 100000000 }}', '{{ ("x" * 1000000) * 1000 }}', "{{ 2 ** 99999999 }}"])
def test_templates_that_reach_out_or_blow_up_are_usage_errors(monkeypatch, tmp_path, user) -> None:
    template = tmp_path / "t.yaml"
    template.write_text(yaml_dump({"name": "t", "system": "s", "user": user}))
    (res, llm) = script(monkeypatch, ["-t", str(template)], jsonl([{"artist": "A", "title": "T"}] * 2))
    assert res.exit_code == 2 and llm.calls == [] and "unexpected" not in res.stderr


def test_a_chain_voice_file_is_checked_before_step_one(tmp_path) -> None:
    from tests.test_cli_chain import invoke as chain_invoke

    for voice_value in (str(tmp_path / "nope.onnx"), str(tmp_path), str(tmp_path / "ref.wav")):
        data = chain_data(tmp_path)
        data["steps"][1]["voice"] = voice_value
        data["steps"][1]["backend"] = "piper"
        path = tmp_path / "c.yaml"
        path.write_text(yaml_dump(data))
        code, out, err = chain_invoke(["run-chain", "--config", str(path)])
        assert code == 2 and "step 2 (voice)" in err, err
        assert not (tmp_path / "out" / "01-script.jsonl").exists()
        code, out, err = chain_invoke(["run-chain", "--config", str(path), "--dry-run"])
        assert code == 2


@pytest.mark.parametrize("key", ["input", "output_dir"])
def test_an_empty_chain_path_is_a_usage_error(tmp_path, key) -> None:
    from tests.test_cli_chain import invoke as chain_invoke

    path = write_chain(tmp_path, **{key: ""})
    code, out, err = chain_invoke(["run-chain", "--config", str(path)])
    assert code == 2 and "is empty" in err


def test_a_full_disk_under_the_ledger_names_the_ledger(tmp_path, monkeypatch) -> None:
    import errno

    from ai_content_pipeline.faults import DiskFull

    ledger = Ledger(tmp_path / "full.ledger")
    ledger.append("a", {"text": "x"})

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger._handle, "write", no_space)
    with pytest.raises(DiskFull, match="full.ledger"):
        ledger.append("b", {"text": "y"})
