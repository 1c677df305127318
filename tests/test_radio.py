"""The AI-radio batch API (ai_content_pipeline.radio) over the real script and voice stages."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai_content_pipeline.backends.llamacpp import LlamaCppBackend
from ai_content_pipeline.errors import BackendUnavailable, UsageError
from ai_content_pipeline.radio import (
    BatchProgress,
    GenerationPipeline,
    GenerationResult,
    generate_batch_intros,
    generate_song_intro,
)
from tests.doubles import MENTIONS_TEMPLATE, FakeLLM, FakeTTS, RecordingEmitter


def songs(n: int, **extra) -> list[dict]:
    return [{"id": f"song{i}", "artist": f"Artist {i}", "title": f"Title {i}", **extra} for i in range(n)]


class Log(list):
    """One event log shared by both instrumented doubles."""


class InstrumentedLLM(FakeLLM):
    """FakeLLM that logs into a shared log and checks the TTS model is not resident."""

    def __init__(self, log: Log, tts_ref: list, **kw) -> None:
        super().__init__(**kw)
        self.log, self.tts_ref = log, tts_ref

    def load(self) -> None:
        assert not (self.tts_ref and self.tts_ref[0].loaded), "LLM loaded while the TTS model is"
        if not self.loaded and not self.unavailable:
            self.log.append("llm.load")
        super().load()

    def chat(self, messages, params, *, json_schema=None):
        self.log.append("llm.chat")
        yield from super().chat(messages, params, json_schema=json_schema)

    def unload(self) -> None:
        if self.loaded:
            self.log.append("llm.unload")
        super().unload()


class InstrumentedTTS(FakeTTS):
    """FakeTTS that logs into a shared log and checks the LLM is not resident.

    Speaks 0.3 s per word, so the voice stage's duration check passes.
    """

    def __init__(self, log: Log, llm: FakeLLM, **kw) -> None:
        super().__init__(**kw)
        self.log, self.llm = log, llm

    def load(self) -> None:
        assert not self.llm.loaded, "TTS model loaded while the LLM is"
        self.log.append("tts.load")
        super().load()

    def synthesize(self, text, voice):
        assert not self.llm.loaded, "TTS ran while the LLM was loaded"
        self.log.append("tts.synthesize")
        super().synthesize(text, voice)  # bookkeeping and forced failures
        n = int(self.sample_rate * 0.3 * max(1, len(text.split())))
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)

    def unload(self) -> None:
        if self.loaded:
            self.log.append("tts.unload")
        super().unload()


def make(tmp_path: Path, *, llm_kw=None, tts_kw=None, **kw):
    log, ref = Log(), []
    llm = InstrumentedLLM(log, ref, **(llm_kw or {}))
    tts = InstrumentedTTS(log, llm, **(tts_kw or {}))
    ref.append(tts)
    return GenerationPipeline(tmp_path, llm=llm, tts=tts, **kw), log


# -- dataclasses and construction ---------------------------------------------------------
def test_result_and_progress_shapes():
    names = [f.name for f in dataclasses.fields(GenerationResult)]
    assert names == ["song_id", "dj", "text", "audio_path", "success", "error", "skipped",
                     "checks_passed", "checks_failed", "checks_details", "hosts", "turns"]  # positions kept
    r = GenerationResult("a", "julie", "hi", None, True)
    assert r.error is None and r.skipped is False
    assert r.checks_passed is None and r.checks_failed == [] and r.checks_details == {}
    assert r.hosts == [] and r.turns == []
    assert [f.name for f in dataclasses.fields(BatchProgress)] == ["total", "completed", "failed", "current_song",
                                                                    "checks_failed"]
    assert BatchProgress(0, 0, 0, "").percent == 0
    assert BatchProgress(4, 1, 0, "x").percent == 25.0
    assert BatchProgress(3, 3, 1, "x").percent == 100.0


def test_function_signatures():
    assert list(inspect.signature(generate_song_intro).parameters) == \
        ["pipeline", "song_id", "artist", "title", "dj"]
    params = inspect.signature(generate_batch_intros).parameters
    assert list(params)[:4] == ["pipeline", "songs", "progress_callback", "resume"]
    assert params["progress_callback"].default is None and params["resume"].default is False
    first = list(inspect.signature(GenerationPipeline).parameters.values())[0]
    assert first.name == "output_dir" and first.default is None


def test_default_output_dir_and_loaded_flags_read_the_backends(fake_llm, fake_tts):
    p = GenerationPipeline(llm=fake_llm, tts=fake_tts)
    assert p.output_dir == Path("data/generated")
    assert (p._llm_loaded, p._tts_loaded) == (False, False)
    fake_llm.load()
    assert p._llm_loaded and not p._tts_loaded
    fake_tts.load()
    fake_llm.unload()
    assert p._tts_loaded and not p._llm_loaded
    fake_tts.unload()
    assert not p._tts_loaded


def test_backends_are_built_from_names(tmp_path, fake_tts):
    p = GenerationPipeline(tmp_path, llm_backend="llamacpp", tts=fake_tts)
    assert isinstance(p.llm, LlamaCppBackend) and not p._llm_loaded  # built, not loaded
    with pytest.raises(UsageError, match="unknown LLM backend"):
        GenerationPipeline(tmp_path, llm_backend="nope", tts=fake_tts)
    with pytest.raises(UsageError, match="unknown template"):
        GenerationPipeline(tmp_path, llm=FakeLLM(), tts=fake_tts, template="nope")
    with pytest.raises(UsageError, match="unknown persona"):
        GenerationPipeline(tmp_path, llm=FakeLLM(), tts=fake_tts, persona="nobody")


# -- one intro ---------------------------------------------------------------------------
def test_one_intro_text_then_audio(tmp_path):
    p, log = make(tmp_path)
    r = generate_song_intro(p, "s1", "Queen", "Bohemian Rhapsody", "max")
    assert r.success and r.error is None and not r.skipped
    assert (r.song_id, r.dj) == ("s1", "max")
    assert r.audio_path == tmp_path / "intros" / "s1_max_0.wav" and r.audio_path.is_file()
    info = sf.info(str(r.audio_path))
    assert info.samplerate == 16000 and info.frames > 0
    assert r.text and r.text.startswith("Script for:")
    assert log == ["llm.load", "llm.chat", "llm.unload", "tts.load", "tts.synthesize", "tts.unload"]
    assert not p._llm_loaded and not p._tts_loaded
    assert "Bohemian Rhapsody" in p.llm.calls[0]["messages"][-1]["content"]


def test_one_intro_method_form_and_failure(tmp_path):
    p, log = make(tmp_path, llm_kw={"fail_on": ("Broken",)})
    r = p.generate_song_intro("s2", "X", "Broken Song", "julie")
    assert not r.success and "forced failure" in r.error and r.audio_path is None
    assert "tts.load" not in log and not (tmp_path / "intros" / "s2_julie_0.wav").exists()
    r = p.generate_song_intro("s3", "X", "Fine Song", "julie")
    assert r.success and r.audio_path.name == "s3_julie_0.wav"


# -- the LLM and the TTS model are never resident together ---------------------------------
@pytest.mark.parametrize("two_phase", [True, False])
def test_llm_always_before_tts_and_never_both_loaded(tmp_path, two_phase):
    p, log = make(tmp_path)
    results = list(generate_batch_intros(p, songs(3), two_phase=two_phase))
    assert [r.success for r in results] == [True] * 3
    assert log.count("llm.chat") == 3 and log.count("tts.synthesize") == 3
    # each song's text comes before its audio; loads and unloads alternate strictly
    resident = None
    for event in log:
        if event.endswith(".load"):
            assert resident is None, log
            resident = event.split(".")[0]
        elif event.endswith(".unload"):
            assert resident == event.split(".")[0], log
            resident = None
        else:
            assert resident == event.split(".")[0], log
    assert resident is None and not p._llm_loaded and not p._tts_loaded
    if two_phase:  # each model loads once: all texts, then all audio
        assert log == ["llm.load", *["llm.chat"] * 3, "llm.unload",
                       "tts.load", *["tts.synthesize"] * 3, "tts.unload"]
    else:  # song by song
        assert log == ["llm.load", "llm.chat", "llm.unload", "tts.load", "tts.synthesize", "tts.unload"] * 3


def test_tts_is_unloaded_before_the_last_result_and_on_break(tmp_path):
    p, _ = make(tmp_path)
    seen = []
    for r in generate_batch_intros(p, songs(3)):
        seen.append((r.song_id, p._llm_loaded, p._tts_loaded))
    assert len(seen) == 3 and seen[-1] == ("song2", False, False)
    assert all(not llm for _, llm, _ in seen)
    gen = generate_batch_intros(p, songs(3, notes="again"))
    next(gen)
    assert p._tts_loaded
    gen.close()
    assert not p._tts_loaded and not p._llm_loaded


# -- batches -------------------------------------------------------------------------------
def test_batch_of_five_with_one_forced_failure(tmp_path):
    p, _ = make(tmp_path, llm_kw={"fail_on": ("Title 2",)})
    updates: list[BatchProgress] = []
    results = list(generate_batch_intros(p, songs(5), progress_callback=updates.append))
    assert [r.song_id for r in results] == [f"song{i}" for i in range(5)]
    assert [r.success for r in results] == [True, True, False, True, True]
    bad = results[2]
    assert "forced failure" in bad.error and bad.audio_path is None and bad.text is None
    for r in results[:2] + results[3:]:
        assert r.audio_path.is_file() and r.error is None and r.text
    assert len(updates) == 5
    assert [u.completed for u in updates] == [1, 2, 3, 4, 5]
    assert updates[-1].completed == updates[-1].total == 5 and updates[-1].failed == 1
    assert updates[-1].percent == 100.0
    assert [u.current_song for u in updates] == [f"Title {i}" for i in range(5)]


def test_a_speech_failure_fails_only_its_song(tmp_path):
    replies = ["Hello there friends.", "Here comes BOOM now.", "And one more tune."]
    p, _ = make(tmp_path, llm_kw={"replies": replies}, tts_kw={"fail_on": ("BOOM",)})
    results = list(generate_batch_intros(p, songs(3)))
    assert [r.success for r in results] == [True, False, True]
    assert "forced synthesis failure" in results[1].error
    assert results[1].text.startswith("Here comes BOOM now. Here is Title 1 by Artist 1.")  # and song-intro's close
    assert not (tmp_path / "intros" / "song1_julie_0.wav").exists()


def test_resume_over_ten_songs_with_five_done(tmp_path):
    p, _ = make(tmp_path)
    batch = songs(10)
    first = list(generate_batch_intros(p, batch[::2]))
    q, log = make(tmp_path)
    updates = []
    results = list(generate_batch_intros(q, batch, progress_callback=updates.append, resume=True))
    assert [r.song_id for r in results] == [s["id"] for s in batch]
    assert [r.skipped for r in results] == [True, False] * 5
    assert all(r.success for r in results)
    assert log.count("llm.chat") == 5 and log.count("tts.synthesize") == 5
    asked = [c["messages"][-1]["content"] for c in q.llm.calls]
    assert all(any(f"Title {i}" in a for a in asked) for i in range(1, 10, 2))
    assert not any(f"Title {i}\"" in a for a in asked for i in range(0, 10, 2))
    assert [r.text for r in results[::2]] == [r.text for r in first]  # served with their text
    assert updates[-1].completed == 10 and updates[-1].failed == 0


def test_resume_makes_again_an_intro_file_no_ledger_accounts_for(tmp_path):
    """resume keeps what the ledgers vouch for, as --resume does: a file made by hand (or by
    another tool) under an intro's name is made again, never served as that song's intro."""
    p, log = make(tmp_path)
    (tmp_path / "intros").mkdir()
    for s in songs(3):
        (tmp_path / "intros" / f"{s['id']}_julie_0.wav").write_bytes(b"x")
    results = list(generate_batch_intros(p, songs(3), resume=True))
    assert len(results) == 3 and all(r.success and not r.skipped and r.text for r in results)
    assert log.count("llm.chat") == 3 and log.count("tts.synthesize") == 3
    assert all(sf.info(str(r.audio_path)).frames > 0 for r in results)


def test_without_resume_existing_files_are_made_again(tmp_path):
    p, log = make(tmp_path)
    (tmp_path / "intros").mkdir()
    (tmp_path / "intros" / "song0_julie_0.wav").write_bytes(b"old")
    results = list(generate_batch_intros(p, songs(2)))
    assert not any(r.skipped for r in results) and log.count("llm.chat") == 2
    assert sf.info(str(results[0].audio_path)).frames > 0


def test_resume_reuses_texts_written_before_the_audio_failed(tmp_path):
    p, _ = make(tmp_path, tts_kw={"fail_on": ("Script",)})
    first = list(generate_batch_intros(p, songs(2)))
    assert not any(r.success for r in first)
    q, log = make(tmp_path)
    second = list(generate_batch_intros(q, songs(2), resume=True))
    assert len(second) == 2
    assert all(r.success and not r.skipped for r in second)
    assert "llm.chat" not in log and log.count("tts.synthesize") == 2  # texts from the ledger
    assert [r.text for r in second] == [r.text for r in first]


def test_unsafe_ids_and_djs_fail_without_writing(tmp_path):
    p, log = make(tmp_path)
    bad = [{"id": "../evil", "artist": "A", "title": "T"},
           {"id": "a/b", "artist": "A", "title": "T"},
           {"artist": "A", "title": "no id"},
           {"id": "ok1", "artist": "A", "title": "T", "dj": "../julie"},
           {"id": "ok2", "artist": "A", "title": "T", "dj": "persona.yaml"},
           {"id": "good", "artist": "A", "title": "T"}]
    results = list(generate_batch_intros(p, bad))
    assert [r.success for r in results] == [False] * 5 + [True]
    assert "file name" in results[0].error and "file name" in results[1].error
    assert "no id" in results[2].error and "persona" in results[3].error and "persona" in results[4].error
    written = sorted(x.name for x in tmp_path.rglob("*.wav"))
    assert written == ["good_julie_0.wav"] and not (tmp_path.parent / "evil_julie_0.wav").exists()
    assert log.count("llm.chat") == 1


def test_dj_per_song_batch_default_and_unknown_persona(tmp_path):
    p, _ = make(tmp_path, persona="sam", max_tokens=33, seed=4)
    batch = [{"id": "a", "artist": "A", "title": "T", "dj": "max"},
             {"id": "b", "artist": "B", "title": "T"},
             {"id": "c", "artist": "C", "title": "T", "dj": "nobody"},
             {"id": 7, "artist": "D", "title": "T", "year": 1977}]
    results = list(generate_batch_intros(p, batch))
    assert [(r.song_id, r.dj) for r in results] == [("a", "max"), ("b", "sam"), ("c", "nobody"), ("7", "sam")]
    assert [r.success for r in results] == [True, True, False, True]
    assert "unknown persona" in results[2].error
    assert results[3].audio_path.name == "7_sam_0.wav"
    assert "1977" in p.llm.calls[-1]["messages"][-1]["content"]  # extra song fields reach the template
    assert {c["params"].max_tokens for c in p.llm.calls} == {33}
    assert {c["params"].seed for c in p.llm.calls} == {4}
    # the method form keeps the older argument order: (songs, dj, resume, progress_callback)
    q, _ = make(tmp_path / "other")
    out = list(q.generate_batch_intros([{"id": "z", "artist": "Z", "title": "T"}], "max"))
    assert out[0].dj == "max" and out[0].audio_path.name == "z_max_0.wav"


def test_a_backend_that_cannot_load_fails_every_song(tmp_path):
    p, log = make(tmp_path, llm_kw={"unavailable": True})
    updates = []
    results = list(generate_batch_intros(p, songs(3), progress_callback=updates.append))
    assert len(results) == 3 and not any(r.success for r in results)
    assert all("fake backend down (start it)" == r.error for r in results)
    assert "tts.load" not in log and updates[-1].completed == 3 and updates[-1].failed == 3


def test_a_voice_that_cannot_load_fails_every_song_after_the_texts(tmp_path):
    p, log = make(tmp_path)

    def down() -> None:
        raise BackendUnavailable("voice down", hint="install it")

    p.tts.load = down
    results = list(generate_batch_intros(p, songs(2)))
    assert [r.success for r in results] == [False, False]
    assert all(r.error == "voice down (install it)" and r.text for r in results)
    assert log.count("llm.chat") == 2 and not p._llm_loaded


def test_events_go_to_the_pipeline_emitter(tmp_path):
    em = RecordingEmitter()
    p, _ = make(tmp_path, emitter=em)
    list(generate_batch_intros(p, songs(2)))
    names = em.names()
    assert names[0] == "pipeline_start" and names[-1] == "pipeline_complete"
    steps = [(n, f.get("step"), f.get("type")) for n, f in em.events if n.startswith("step_")]
    assert steps == [("step_start", 1, "script"), ("step_complete", 1, "script"),
                     ("step_start", 2, "voice"), ("step_complete", 2, "voice")]
    models = [(n, f["backend"]) for n, f in em.events if n.startswith("model_")]
    assert models == [("model_load", "fake"), ("model_unload", "fake"),
                      ("model_load", "fake-tts"), ("model_unload", "fake-tts")]
    assert em.events[-1][1]["songs"] == {"completed": 2, "failed": 0, "skipped": 0, "checks_failed": 2}
    assert em.events[0][1]["total_steps"] == 2


@pytest.mark.parametrize("llm_kw", [{}, {"fail_on": ("Title",)}])
def test_the_radio_apis_events_are_the_documented_ones(tmp_path, llm_kw):
    """Every event the radio API sends is in the events table with the fields the table names
    (eventdocs.CHAIN_FIELDS for the chain's own events); pipeline_complete is the chain's result."""
    from ai_content_pipeline import eventdocs

    em = RecordingEmitter()
    p, _ = make(tmp_path, emitter=em, llm_kw=llm_kw)
    list(generate_batch_intros(p, songs(2)))
    assert set(em.names()) <= eventdocs.names()
    for name, fields in em.events:
        missing = set(eventdocs.CHAIN_FIELDS.get(name, ())) - set(fields)
        assert not missing, (name, missing)
    done = em.events[-1][1]
    assert set(done) == {*eventdocs.CHAIN_FIELDS["pipeline_complete"], "songs"}
    assert done["steps_completed"] == done["total_steps"] == 2
    assert done["outputs"]["audio_dir"] == str(p.intros_dir) and done["outputs"]["final"]["type"] == "voice"
    assert done["records"]["total"] == 2


def test_empty_batch(tmp_path):
    p, log = make(tmp_path)
    updates = []
    assert list(generate_batch_intros(p, [], progress_callback=updates.append)) == []
    assert updates == [] and log == []


# -- the radio's batch follows the commands' rules ---------------------------------------------
class CountingLLM(InstrumentedLLM):
    """Counts every attempt to load, also the ones that fail."""

    def load(self) -> None:
        self.attempts = getattr(self, "attempts", 0) + 1
        super().load()


@pytest.mark.parametrize("two_phase", [True, False])
def test_a_backend_that_cannot_load_ends_the_batch_once(tmp_path, two_phase):
    """As a chain ends at a step that cannot run: song by song, the batch never tries the dead
    backend again for each song (a connection timeout each)."""
    log, ref = Log(), []
    llm = CountingLLM(log, ref, unavailable=True)
    tts = InstrumentedTTS(log, llm)
    ref.append(tts)
    em = RecordingEmitter()
    p = GenerationPipeline(tmp_path, llm=llm, tts=tts, two_phase=two_phase, emitter=em)
    results = list(generate_batch_intros(p, songs(3)))
    assert [r.error for r in results] == ["fake backend down (start it)"] * 3
    assert llm.attempts == 1 and "tts.load" not in log
    assert [(n, f["step"]) for n, f in em.events if n.startswith("step_")] == [("step_start", 1), ("step_error", 1)]
    done = em.events[-1][1]
    assert done["success"] is False and done["error"]["type"] == "BackendUnavailable" and done["error"]["step"] == 1
    assert done["songs"] == {"completed": 0, "failed": 3, "skipped": 0, "checks_failed": 0}


def test_song_by_song_a_voice_that_cannot_load_stops_the_texts_too(tmp_path):
    """The batch writes no more texts once the voice cannot load: nothing could speak them."""
    p, log = make(tmp_path, two_phase=False)

    def down() -> None:
        raise BackendUnavailable("voice down", hint="install it")

    p.tts.load = down
    results = list(generate_batch_intros(p, songs(3)))
    assert [r.error for r in results] == ["voice down (install it)"] * 3
    assert log.count("llm.chat") == 1 and results[0].text and results[1].text is None


def test_a_backend_lost_mid_step_ends_the_batch_and_keeps_the_texts(tmp_path):
    """Two phases, the LLM server goes away at the third song: no voice step runs (not even for
    the first two); their texts are in the ledger, so resume voices them."""
    p, log = make(tmp_path, llm_kw={"fail_on": ("Title 2",), "fail_with": BackendUnavailable})
    results = list(generate_batch_intros(p, songs(4)))
    assert not any(r.success for r in results) and "tts.load" not in log
    assert [r.text is not None for r in results] == [True, True, False, False]
    q, again = make(tmp_path)
    resumed = list(generate_batch_intros(q, songs(4), resume=True))
    assert all(r.success for r in resumed) and again.count("llm.chat") == 2  # songs 0 and 1 from the ledger
    assert [r.text for r in resumed[:2]] == [r.text for r in results[:2]]


def test_resume_serves_finished_intros_from_the_ledgers_with_their_text(tmp_path):
    p, _ = make(tmp_path)
    first = list(generate_batch_intros(p, songs(2)))
    q, log = make(tmp_path)
    again = list(generate_batch_intros(q, songs(2), resume=True))
    assert log == [] and all(r.skipped and r.success for r in again)
    assert [r.text for r in again] == [r.text for r in first] and all(r.text for r in again)


def test_resume_makes_a_changed_song_again(tmp_path):
    """Resume does not skip a song just because its file exists: an intro of a song whose notes
    (or the pipeline's seed, voice, loudness) changed is made again."""
    p, _ = make(tmp_path)
    list(generate_batch_intros(p, songs(2)))
    q, log = make(tmp_path)
    changed = songs(2)
    changed[1]["notes"] = "recorded in one take"
    again = list(generate_batch_intros(q, changed, resume=True))
    assert [r.skipped for r in again] == [True, False] and all(r.success for r in again)
    assert log.count("llm.chat") == 1 and "recorded in one take" in q.llm.calls[0]["messages"][-1]["content"].lower()
    assert again[1].audio_path == tmp_path / "intros" / "song1_julie_0.wav"


def test_resume_makes_a_damaged_intro_again(tmp_path):
    """The voice ledger records each file's size, as aicp-voice's does: a file cut short is voiced
    again (existing is not enough to keep it)."""
    p, _ = make(tmp_path)
    [first] = list(generate_batch_intros(p, songs(1)))
    first.audio_path.write_bytes(first.audio_path.read_bytes()[:100])
    q, log = make(tmp_path)
    [again] = list(generate_batch_intros(q, songs(1), resume=True))
    assert again.success and not again.skipped and log.count("tts.synthesize") == 1
    assert "llm.chat" not in log and sf.info(str(again.audio_path)).frames > 0  # the text from its ledger


def test_a_pipeline_persona_file_voices_its_songs(tmp_path):
    """A pipeline persona given as a file voices every song: each song's dj is the persona's
    name, never its path (a record may not name a file)."""
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text("name: rosa\ndisplay_name: Rosa\nstyle: warm and slow\n")
    p, _ = make(tmp_path / "out", persona=str(rosa))
    results = list(generate_batch_intros(p, songs(2) + [{"id": "x", "artist": "A", "title": "T", "dj": "rosa"}]))
    assert all(r.success for r in results), [r.error for r in results]
    assert [r.audio_path.name for r in results] == ["song0_rosa_0.wav", "song1_rosa_0.wav", "x_rosa_0.wav"]
    assert {r.dj for r in results} == {"rosa"} and "Rosa" in p.llm.calls[0]["messages"][0]["content"]


def test_results_decided_before_any_model_come_first(tmp_path):
    """Results merge in input order as they come: a song refused before any model runs (an id
    that cannot name a file) is yielded before any model loads."""
    p, log = make(tmp_path)
    batch = generate_batch_intros(p, [{"id": "../x", "artist": "A", "title": "T"}, *songs(1)], resume=True)
    first = next(batch)
    assert not first.success and log == []
    assert next(batch).success and log.count("llm.chat") == 1


def test_failed_texts_pass_through_the_voice_step(tmp_path):
    """As in a chain, step 2 runs over every record of step 1 (two steps are announced and both
    run, also when every text failed)."""
    em = RecordingEmitter()
    p, log = make(tmp_path, llm_kw={"fail_on": ("Title",)}, emitter=em)
    results = list(generate_batch_intros(p, songs(2)))
    assert not any(r.success for r in results) and "tts.load" not in log
    starts = [f["step"] for n, f in em.events if n == "step_start"]
    assert starts == [1, 2] and em.events[0][1]["total_steps"] == 2
    voice_done = [f for n, f in em.events if n == "step_complete" and f["step"] == 2][0]
    assert voice_done["records"]["failed"] == 2  # upstream failures, as a chain counts them


def test_the_voice_stage_names_the_file(tmp_path):
    """The intro's name comes from the voice stage's record_audio_stem: intro_path and the written
    file agree for every song."""
    p, _ = make(tmp_path)
    results = list(generate_batch_intros(p, [{"id": "a.b-C_1", "artist": "A", "title": "T", "dj": "max"}]))
    assert results[0].audio_path == p.intro_path("a.b-C_1", "max") and results[0].audio_path.is_file()


def test_an_intro_that_failed_its_checks_is_voiced_and_the_emitter_is_told(tmp_path):
    """The double's echo ("Script for: …") is too long and unfinished: voiced, with a warning."""
    em = RecordingEmitter()
    p, _ = make(tmp_path, emitter=em)
    results = list(generate_batch_intros(p, songs(2)))
    assert all(r.success for r in results)
    warnings = [f for n, f in em.events if n == "message" and "failed its checks" in f["message"]]
    assert [w["message"].split(":")[0] for w in warnings] == ["record song0", "record song1"]
    assert all(w["level"] == "warning" and w["step"] == 2 for w in warnings)


def test_the_batch_keeps_the_ledgers_a_chain_of_its_two_steps_keeps(tmp_path):
    p, _ = make(tmp_path)
    list(generate_batch_intros(p, songs(2)))
    assert sorted(x.name for x in tmp_path.glob("*.ledger.jsonl")) == ["01-script.ledger.jsonl",
                                                                       "02-voice.ledger.jsonl"]


def test_each_intro_carries_its_checks_and_one_that_failed_them_is_counted(tmp_path):
    template = tmp_path / "check-intro.yaml"
    template.write_text(MENTIONS_TEMPLATE)
    replies = {"replies": ["Here is Title 0 by Artist 0.", "Here is a song, and it is"]}
    em = RecordingEmitter()
    p, _ = make(tmp_path / "out", template=str(template), emitter=em, llm_kw=replies)
    progress: list[BatchProgress] = []
    results = list(generate_batch_intros(p, songs(2), progress_callback=progress.append))
    assert [r.success for r in results] == [True, True]  # voiced: the checks do not fail a song by default
    assert (results[0].checks_passed, results[0].checks_failed, results[0].checks_details) == (True, [], {})
    assert results[1].checks_passed is False and results[1].checks_failed == ["mentions", "complete"]
    assert results[1].checks_details["mentions"] == ["artist", "title"]
    assert em.events[-1][1]["songs"] == {"completed": 2, "failed": 0, "skipped": 0, "checks_failed": 1}
    assert [b.checks_failed for b in progress] == [0, 1]

    served = list(generate_batch_intros(p, songs(2), resume=True))  # from the ledgers, checks and all
    assert [(r.skipped, r.checks_passed) for r in served] == [(True, True), (True, False)]

    strict, _ = make(tmp_path / "strict", template=str(template), require_checks=True, llm_kw=replies)
    results = list(generate_batch_intros(strict, songs(2)))
    assert [r.success for r in results] == [True, False] and results[1].audio_path is None
    assert results[1].checks_passed is False and results[1].checks_failed == ["mentions", "complete"]


# -- banter: two DJs introduce each song ---------------------------------------------------------
BANTER_LINES = ["Good morning, everybody, something calm is coming up!", "Oh, I love this one, Max.",
                "It sure is gentle, Julie.", "Here is Title 0 by Artist 0."]


class BanterLLM(InstrumentedLLM):
    """Says the banter's lines in turn: each line answers the one before it."""

    def reply(self, n, messages, params):
        user = messages[-1]["content"]
        return BANTER_LINES[BANTER_LINES.index(user) + 1] if user in BANTER_LINES else BANTER_LINES[0]


def test_banter_has_two_djs_introduce_each_song_each_in_their_own_turns(tmp_path):
    em = RecordingEmitter()
    log, ref = Log(), []
    llm = BanterLLM(log, ref)
    tts = InstrumentedTTS(log, llm)
    ref.append(tts)
    p = GenerationPipeline(tmp_path, llm=llm, tts=tts, banter=["max", "julie"], emitter=em)
    assert p.template == "radio-banter"
    [r] = list(generate_batch_intros(p, songs(1)))
    assert r.success and r.hosts == ["max", "julie"] and r.dj == "max", r
    assert [t["speaker"] for t in r.turns] == ["max", "julie", "max", "julie"]
    assert [t["text"] for t in r.turns] == BANTER_LINES and r.text.startswith("Max: Good morning")
    assert r.audio_path == tmp_path / "intros" / "song0_max_0.wav" and r.audio_path.is_file()
    assert r.checks_passed is True, r.checks_details
    assert [f["turns"] for n, f in em.events if n == "record_complete" and f.get("type", "script") == "script"
            and "words" in f][:1] == [4]


@pytest.mark.parametrize("kw,message", [
    ({"banter": ["max"]}, "two hosts"), ({"banter": ["max", "max"]}, "twice"),
    ({"banter": ["max", "nobody"]}, "unknown persona"),
    ({"banter": ["max", "julie"], "template": "song-intro-x"}, "unknown template"),
])
def test_banter_that_is_not_two_personas_is_a_usage_error(tmp_path, kw, message):
    with pytest.raises(UsageError, match=message):
        GenerationPipeline(tmp_path, llm=FakeLLM(), tts=FakeTTS(), **kw)


def test_banter_on_a_one_voice_template_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="one speaker"):
        GenerationPipeline(tmp_path, llm=FakeLLM(), tts=FakeTTS(), banter=["max", "julie"], template="song-outro")
