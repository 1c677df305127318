import pytest

from ai_content_pipeline.errors import BackendUnavailable, RecordError, TransientBackendError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.common import StrictStop
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.text import trim_chatter
from tests.doubles import FakeLLM, RecordingEmitter, lines_of

SONGS = [{"id": f"s{i}", "artist": f"Artist {i}", "title": f"Title {i}"} for i in range(4)]


def run(llm, options=None, records=SONGS, ledger=None, emitter=None):
    stage = ScriptStage(llm, options or ScriptOptions(), emitter or RecordingEmitter(), ledger)
    return stage, list(stage.run(lines_of(*records), total=len(records)))


def test_records_keep_fields_and_gain_script(fake_llm):
    stage, out = run(fake_llm)
    assert [r["id"] for r in out] == ["s0", "s1", "s2", "s3"]
    for rec, src in zip(out, SONGS, strict=True):
        assert {k: rec[k] for k in src} == src
        s = rec["script"]
        assert s["text"] and s["words"] == len(s["text"].split())
        assert s["template"] == "song-intro@5" and s["persona"] == "julie" and s["take"] == 0
        assert s["backend"] == "fake" and s["model"] == "fake-model"
        assert s["tokens"]["prompt"] == 10 and len(s["key"]) == 32
    assert stage.stats.completed == 4 and stage.stats.exit_status == 0
    assert fake_llm.events[0] == "load" and fake_llm.events[-1] == "unload"


def test_variants_seeds_and_overrides(fake_llm):
    opts = ScriptOptions(variants=3, seed=10, temperature=0.2, max_tokens=50)
    _, out = run(fake_llm, opts, records=SONGS[:1])
    assert [r["script"]["take"] for r in out] == [0, 1, 2]
    assert [c["params"].seed for c in fake_llm.calls] == [10, 11, 12]
    assert {c["params"].temperature for c in fake_llm.calls} == {0.2}
    assert {c["params"].max_tokens for c in fake_llm.calls} == {50}
    assert len({r["script"]["key"] for r in out}) == 3


def test_persona_from_record_wins_over_default(fake_llm):
    recs = [{**SONGS[0], "dj": "max"}, SONGS[1]]
    _, out = run(fake_llm, ScriptOptions(persona="sam"), records=recs)
    assert [r["script"]["persona"] for r in out] == ["max", "sam"]
    assert "Max" in fake_llm.calls[0]["messages"][0]["content"]


def test_bad_records_get_errors_and_batch_goes_on(fake_llm):
    em = RecordingEmitter()
    records = [SONGS[0], b"{oops", {"title": "no artist"}, {"artist": "a", "title": "t", "dj": "ghost"},
               {"id": "x", "error": {"stage": "script", "message": "earlier"}}, SONGS[1]]
    stage, out = run(fake_llm, records=records, emitter=em)
    assert len(out) == 6
    assert "script" in out[0] and "script" in out[5]
    assert out[1] == {"error": out[1]["error"]} and out[1]["error"]["line"] == 2
    assert out[2]["error"]["field"] == "artist" and out[2]["title"] == "no artist"
    assert "unknown persona" in out[3]["error"]["message"]
    assert out[4] == records[4]  # passed through untouched
    assert stage.stats.failed == 4 and stage.stats.completed == 2 and stage.stats.exit_status == 3
    assert em.names().count("record_error") == 4
    last = [f for e, f in em.events if e == "progress"][-1]
    assert last["completed"] == 2 and last["failed"] == 4 and last["percent"] == 100.0


def test_strict_stops_at_first_failure(fake_llm):
    with pytest.raises(StrictStop, match="--strict"):
        run(fake_llm, ScriptOptions(strict=True), records=[SONGS[0], {"title": "x"}, SONGS[1]])
    assert len(fake_llm.calls) == 1 and fake_llm.unloads == 1


def test_backend_failure_of_one_record_is_that_records_error():
    llm = FakeLLM(fail_on=("Title 1",), fail_with=RecordError)
    stage, out = run(llm)
    assert "error" in out[1] and out[1]["error"]["stage"] == "script"
    assert all("script" in out[i] for i in (0, 2, 3))


def test_retries_only_for_transient_errors(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    llm = FakeLLM(fail_on=("Title 1",), fail_with=TransientBackendError, fail_times=1)
    _, out = run(llm, ScriptOptions(retries=1))
    assert "script" in out[1] and len(llm.calls) == 5
    llm = FakeLLM(fail_on=("Title 1",), fail_with=TransientBackendError, fail_times=1)
    _, out = run(llm, ScriptOptions(retries=0))
    assert "error" in out[1] and out[1]["error"]["type"] == "TransientBackendError"


def test_unavailable_backend_aborts():
    with pytest.raises(BackendUnavailable):
        run(FakeLLM(unavailable=True))


def test_resume_serves_the_ledger_without_calling_the_model(tmp_path, fake_llm):
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as ledger:
        _, first = run(fake_llm, ScriptOptions(seed=1), records=SONGS[:2], ledger=ledger)
    llm2 = FakeLLM()
    em = RecordingEmitter()
    with Ledger(path) as ledger:
        stage, second = run(llm2, ScriptOptions(seed=1, resume=True), records=SONGS, ledger=ledger, emitter=em)
    assert len(llm2.calls) == 2  # only the two new songs
    assert llm2.loads == 1
    assert [r["script"].get("skipped", False) for r in second] == [True, True, False, False]
    assert second[0]["script"]["text"] == first[0]["script"]["text"]
    assert stage.stats.skipped == 2 and em.names().count("record_skipped") == 2


def test_fully_resumed_run_never_loads_the_model(tmp_path, fake_llm):
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as ledger:
        run(fake_llm, ScriptOptions(seed=1), records=SONGS, ledger=ledger)
    llm2 = FakeLLM()
    with Ledger(path) as ledger:
        run(llm2, ScriptOptions(seed=1, resume=True), records=SONGS, ledger=ledger)
    assert llm2.loads == 0 and llm2.calls == []


def test_jobs_keep_input_order():
    llm = FakeLLM(delay=0.02)
    records = [{"id": f"r{i}", "artist": "a", "title": f"t{i}"} for i in range(12)]
    _, out = run(llm, ScriptOptions(jobs=4), records=records)
    assert [r["id"] for r in out] == [f"r{i}" for i in range(12)]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('Sure! Here\'s an intro for "Dreams":\n\nGood evening, night owls.', "Good evening, night owls."),
        ('"Good evening, night owls."', "Good evening, night owls."),
        ("“Good evening.”", "Good evening."),
        ("Intro: Good evening.", "Good evening."),
        ("Good evening.\n\nLet me know if you want another version!", "Good evening."),
        ('He said "hi" and "bye"', 'He said "hi" and "bye"'),  # inner quotes: keep
        ('"Hi," she said, "welcome."', '"Hi," she said, "welcome."'),
        ("Here comes the sun, and here is why: it shines.", "Here comes the sun, and here is why: it shines."),
        ("Sure thing, it's a classic.", "Sure thing, it's a classic."),
    ],
)
def test_trim_chatter_is_conservative(raw, expected):
    assert trim_chatter(raw) == expected
