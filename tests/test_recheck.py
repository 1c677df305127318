"""``aicp-script --recheck``: takes whose ``script.text`` a person edited are checked again without a
model, get ``edited: true`` and a new key, and ``aicp-voice --resume`` voices only those."""

from __future__ import annotations

import orjson
import pytest

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.takelog import format_take, read_takes
from tests.cli_helpers import invoke
from tests.doubles import MENTIONS_TEMPLATE as TEMPLATE
from tests.doubles import FakeLLM, SpeechTTS
from tests.test_redo_failed import SONGS


def lines(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def records(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


class Writer(FakeLLM):
    def reply(self, n, messages, params):
        title, artist = messages[-1]["content"].split("|")
        return f"Here is {title} by {artist}."


@pytest.fixture
def template(tmp_path):
    path = tmp_path / "check-intro.yaml"
    path.write_text(TEMPLATE)
    return str(path)


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("--recheck built an LLM backend")

    monkeypatch.setattr(script_cli, "create_llm", refuse)


def script(monkeypatch, args, data, llm=None):
    if llm is not None:
        monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    return invoke(script_cli.script_command, "aicp-script", args, data)


def voice(monkeypatch, tts, args, data):
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    return invoke(voice_cli.voice_command, "aicp-voice", args, data)


def test_recheck_then_voice_resume_revoices_only_the_edited_take(monkeypatch, tmp_path, template):
    ledger, log = str(tmp_path / "script.ledger"), str(tmp_path / "takes.db")
    made = script(monkeypatch, ["-t", template, "--checkpoint", ledger, "--log", log], SONGS, Writer())
    assert made.exit_code == 0, made.stderr
    takes = records(made.stdout)
    voice_args = ["--out-dir", str(tmp_path / "audio"), "--checkpoint", str(tmp_path / "voice.ledger"),
                  "--log", log]
    tts = SpeechTTS()
    assert voice(monkeypatch, tts, voice_args, lines(takes)).exit_code == 0 and len(tts.calls) == 4

    edited = [dict(r, script=dict(r["script"])) for r in takes]
    edited[1]["script"]["text"] = "Here is T1 by A1, a song a person wrote this line for."
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: pytest.fail("--recheck built an LLM"))
    res = script(monkeypatch, ["-t", template, "--recheck", "--checkpoint", ledger, "--log", log, "--stream"],
                 lines(edited))
    assert res.exit_code == 0, res.stderr
    out = records(res.stdout)
    assert [r.get("script", {}).get("edited") for r in out] == [None, True, None, None]  # the others pass through
    assert [out[i] for i in (0, 2, 3)] == [takes[i] for i in (0, 2, 3)]
    new = out[1]["script"]
    assert new["text"] == edited[1]["script"]["text"] and new["words"] == 13
    assert new["checks"] == {"passed": True, "failed": []} and new["key"] != takes[1]["script"]["key"]
    events = [orjson.loads(line) for line in res.stderr.splitlines()]
    done = events[-1]
    assert done["event"] == "run_complete" and done["edited"] == 1 and done["records"]["skipped"] == 3
    assert not [e for e in events if e["event"] == "model_load"]

    tts = SpeechTTS()
    res = voice(monkeypatch, tts, [*voice_args, "--resume"], lines(out))
    assert res.exit_code == 0, res.stderr
    assert [text for text, _ in tts.calls] == [new["text"]]  # only the edited take is voiced again
    voiced = records(res.stdout)
    assert [bool(r["audio"].get("skipped")) for r in voiced] == [True, False, True, True]

    rows = read_takes(log, None)
    edit = [t for t in rows if t["stage"] == "edit"]
    assert len(edit) == 1 and edit[0]["key"] == new["key"] and edit[0]["text"] == new["text"]
    assert edit[0]["params"] == {"edited_from": takes[1]["script"]["key"]} and edit[0]["passed"] is True
    assert edit[0]["audio_path"] == voiced[1]["audio"]["path"]  # the new audio belongs to the edit
    assert edit[0]["prompt_tokens"] is None  # an edit spends no tokens
    assert "(edited by hand, checks passed)" in format_take(edit[0])


def test_recheck_finds_what_the_edit_broke_and_gives_the_same_key_again(monkeypatch, tmp_path, template, no_model):
    take = {"id": "s1", "artist": "Nina Simone", "title": "Feeling Good",
            "script": {"text": "Here is Feeling Good by Nina Simone.", "words": 7, "template": "check-intro@1",
                       "persona": "julie", "take": 0, "key": "k0", "tokens": {"prompt": 3, "completion": 7},
                       "truncated": True, "checks": {"passed": True, "failed": []}}}
    take["script"]["text"] = "Here is Feeling Good, and it is"
    res = script(monkeypatch, ["-t", template, "--recheck"], lines([take]))
    assert res.exit_code == 0, res.stderr
    first = records(res.stdout)[0]["script"]
    assert first["checks"]["passed"] is False and first["checks"]["failed"] == ["mentions", "complete"]
    assert first["checks"]["details"]["mentions"] == ["artist"]
    assert first["words"] == 7 and first["edited"] is True and "truncated" not in first
    assert "1 edited" in res.stderr and "checks: 0 passed, 1 failed" in res.stderr
    again = script(monkeypatch, ["-t", template, "--recheck"], lines([{**take, "script": first}]))
    assert records(again.stdout)[0]["script"]["key"] == first["key"]  # same text: same key
    strict = script(monkeypatch, ["-t", template, "--recheck", "--require-checks"], lines([take]))
    assert strict.exit_code == 3 and records(strict.stdout)[0]["error"]["type"] == "ChecksFailed"


@pytest.mark.parametrize("record, said", [
    ({"id": "a", "artist": "X", "title": "Y"}, "nothing to recheck: the record has no script object"),
    ({"id": "a", "artist": "X", "title": "Y", "script": {"take": 0}}, "nothing to recheck: the record has no script.text"),
    ({"id": "a", "artist": "X", "title": "Y", "script": {"text": "  "}}, "nothing to recheck: the record has a blank script.text"),
    ({"id": "a", "artist": "X", "title": "Y", "script": {"text": 3}}, "a script.text that is not text"),
    ({"id": "a", "artist": "X", "title": "Y", "script": {"text": "X and Y.", "template": "song-outro@2"}},
     "made with template 'song-outro'"),
])
def test_a_record_recheck_cannot_check_is_a_record_error(monkeypatch, template, no_model, record, said):
    ok = {"id": "b", "artist": "X", "title": "Y", "script": {"text": "Y by X.", "take": 0}}
    res = script(monkeypatch, ["-t", template, "--recheck"], lines([record, ok]))
    assert res.exit_code == 3
    out = records(res.stdout)
    assert said in out[0]["error"]["message"] and out[0]["error"]["stage"] == "script"
    assert out[1]["script"]["edited"] is True and said in res.stderr


def test_recheck_refuses_what_makes_takes(monkeypatch, template, no_model):
    res = script(monkeypatch, ["-t", template, "--recheck", "--variants", "2"], b"")
    assert res.exit_code == 2 and "recheck makes no takes" in res.stderr
