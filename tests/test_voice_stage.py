"""The voice stage with TTS doubles: records, files, personas, resume, barrier, errors."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import orjson
import pytest
import soundfile as sf

from ai_content_pipeline.errors import BackendUnavailable, TransientBackendError, UsageError
from ai_content_pipeline.jsonl import InputLine
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.commands import run_voice
from ai_content_pipeline.stages.common import StrictStop
from ai_content_pipeline.stages.step import SpooledLines
from ai_content_pipeline.stages.voice import (
    PERSONA_FIELDS,
    VoiceOptions,
    VoiceStage,
    audio_file_name,
    record_text,
)
from ai_content_pipeline.templates import Personas
from tests.doubles import FakeTTS, RecordingEmitter, SpeechTTS, lines_of

SCRIPT = "Good evening, night owls. Here comes Queen with Bohemian Rhapsody."
AUDIO_KEYS = {"path", "format", "sample_rate", "channels", "seconds", "backend", "voice", "chunks",
              "rtf", "loudness_lufs", "key", "size"}


def scripted(rid: str, text: str = SCRIPT, persona: str = "julie", take: int = 0, **extra) -> dict:
    return {"id": rid, "title": "Song", "script": {"text": text, "persona": persona, "take": take}, **extra}


def run(tts, records, tmp_path, emitter=None, ledger=None, **opts) -> tuple[list[dict], VoiceStage]:
    options = VoiceOptions(out_dir=str(tmp_path / "audio"), **opts)
    stage = VoiceStage(tts, options, emitter or RecordingEmitter(), ledger)
    return list(stage.run(lines_of(*records), total=len(records))), stage


def test_records_keep_fields_and_gain_audio(tmp_path) -> None:
    tts, emitter = SpeechTTS(), RecordingEmitter()
    records = [scripted("s1"), scripted("s2", persona="max", take=1), {"id": "t3", "text": "Hello there, friends."}]
    out, stage = run(tts, records, tmp_path, emitter)
    assert [r["id"] for r in out] == ["s1", "s2", "t3"]
    for before, after in zip(records, out, strict=True):
        assert {k: v for k, v in after.items() if k != "audio"} == before
        assert set(after["audio"]) == AUDIO_KEYS
    a = out[0]["audio"]
    assert a["path"] == str(tmp_path / "audio" / "s1_julie_0.wav")
    assert out[1]["audio"]["path"].endswith("s2_max_1.wav") and out[2]["audio"]["path"].endswith("/t3.wav")
    assert a["backend"] == "fake-tts" and a["format"] == "wav" and a["channels"] == 1
    assert a["sample_rate"] == 16000 and a["chunks"] == 1 and a["rtf"] >= 0
    assert abs(a["loudness_lufs"] + 16) < 1.0
    data, rate = sf.read(a["path"])
    assert rate == 16000 and abs(len(data) / rate - a["seconds"]) < 0.01
    assert a["size"] == os.path.getsize(a["path"])
    assert stage.stats.completed == 3 and stage.stats.failed == 0
    assert stage.stats.audio_seconds == pytest.approx(sum(r["audio"]["seconds"] for r in out))
    names = emitter.names()
    assert names.count("model_load") == 1 and names[-1] == "model_unload"
    assert names.count("record_complete") == 3 and "progress" in names
    assert tts.events[0] == "load" and tts.events[-1] == "unload"


def test_text_comes_from_script_then_text_or_text_field() -> None:
    assert record_text({"script": {"text": " A "}, "text": "B"}) == "A"
    assert record_text({"text": "B"}) == "B"
    assert record_text({"body": {"intro": "C"}, "text": "B"}, "body.intro") == "C"
    with pytest.raises(Exception, match="body.intro"):
        record_text({"text": "B"}, "body.intro")


def test_persona_comes_from_record_then_script_then_default() -> None:
    def name(record, default=None):
        persona = Personas(default, required=False).for_record(record, PERSONA_FIELDS)
        return persona.name if persona else None

    assert name({"persona": "max", "script": {"persona": "sam"}}) == "max"
    assert name({"dj": "sam"}) == "sam"
    assert name({"script": {"persona": "sam"}}, "julie") == "sam"
    assert name({}, "julie") == "julie"
    assert name({}) is None


def test_personas_choose_voice_settings_and_fixed_seeds(tmp_path) -> None:
    tts = SpeechTTS()
    run(tts, [scripted("a"), scripted("b", persona="max"), scripted("c", take=1)], tmp_path)
    voices = [v for _, v in tts.calls]
    assert [v.seed for v in voices] == [1101, 2202, 1101]  # julie's seed in every take
    run(tts, [scripted("d")], tmp_path, seed=7)
    assert tts.calls[-1][1].seed == 7


def test_file_names_are_safe_from_traversal(tmp_path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: ../../evil\ndisplay_name: Evil\nstyle: sneaky\n")
    out, _ = run(SpeechTTS(), [scripted("../../etc/passwd"), scripted("a/b", persona="../../evil")], tmp_path,
                 persona=str(evil))
    assert out[1]["audio"]["path"].endswith("_evil_0.wav")
    for rec in out:
        path = Path(rec["audio"]["path"])
        assert path.parent == tmp_path / "audio" and path.exists()
    assert audio_file_name("id", None, None, "flac") == "id.flac"
    assert audio_file_name("id", "Julie Night", 2, "wav") == "id_Julie-Night_2.wav"


def test_long_text_is_chunked_by_sentences(tmp_path) -> None:
    tts = SpeechTTS()  # max_chunk_chars = 200
    sentence = "This sentence is exactly long enough to make a point about chunking. "
    out, _ = run(tts, [scripted("long", text=sentence * 8)], tmp_path)
    assert out[0]["audio"]["chunks"] == len(tts.calls) > 1
    assert all(len(text) <= 200 for text, _ in tts.calls)
    assert " ".join(t for t, _ in tts.calls).split() == (sentence * 8).split()


def test_missing_text_upstream_errors_and_bad_lines(tmp_path) -> None:
    tts, emitter = SpeechTTS(), RecordingEmitter()
    upstream = {"id": "u", "error": {"stage": "script", "type": "RecordError", "message": "boom"}}
    out, stage = run(tts, [{"id": "n"}, upstream, b"{not json", scripted("ok")], tmp_path, emitter)
    assert out[0]["error"]["stage"] == "voice" and out[0]["error"]["type"] == "InputError"
    assert out[1] == upstream
    assert out[2]["error"]["stage"] == "input" and out[2]["error"]["line"] == 3
    assert "audio" in out[3]
    assert stage.stats.failed == 3 and stage.stats.completed == 1 and int(stage.stats.exit_status) == 3


def test_silent_synthesis_is_an_error_with_no_file(tmp_path) -> None:
    out, stage = run(SpeechTTS(silent=True), [scripted("s")], tmp_path)
    assert out[0]["error"]["type"] == "SynthesisError" and "silent" in out[0]["error"]["message"]
    assert "audio" not in out[0]
    assert not (tmp_path / "audio").exists() or os.listdir(tmp_path / "audio") == []


def test_implausibly_short_audio_is_an_error(tmp_path) -> None:
    out, _ = run(FakeTTS(), [scripted("s", text=SCRIPT * 2)], tmp_path)  # 0.06 s a word
    assert "words" in out[0]["error"]["message"] and not list((tmp_path / "audio").glob("*"))


def test_failed_synthesis_does_not_stop_the_batch_unless_strict(tmp_path) -> None:
    records = [scripted("a", text="Bad take here."), scripted("b")]
    out, _ = run(SpeechTTS(fail_on=("Bad",)), records, tmp_path)
    assert "error" in out[0] and "audio" in out[1]
    with pytest.raises(StrictStop):
        run(SpeechTTS(fail_on=("Bad",)), records, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / "audio" / "a_julie_0.wav").exists()


def test_transient_errors_are_retried(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    tts = SpeechTTS()
    real, calls = tts.synthesize, []

    def flaky(text, voice):
        calls.append(text)
        if len(calls) == 1:
            raise TransientBackendError("hiccup", stage="voice")
        return real(text, voice)

    tts.synthesize = flaky
    out, _ = run(tts, [scripted("a")], tmp_path, retries=1)
    assert "audio" in out[0] and len(calls) == 2


def test_backend_unavailable_aborts_and_unloads(tmp_path) -> None:
    class Down(SpeechTTS):
        def load(self) -> None:
            raise BackendUnavailable("no voice", hint="install it")

    emitter = RecordingEmitter()
    with pytest.raises(BackendUnavailable):
        run(Down(), [scripted("a")], tmp_path, emitter)
    assert "model_load" not in emitter.names()


def test_sample_rate_format_and_no_normalize(tmp_path) -> None:
    out, _ = run(SpeechTTS(), [scripted("a")], tmp_path, sample_rate=24000, format="flac", loudness=None)
    a = out[0]["audio"]
    data, rate = sf.read(a["path"])
    assert rate == a["sample_rate"] == 24000 and a["path"].endswith(".flac")
    assert np.max(np.abs(data)) == pytest.approx(0.3, abs=0.01)  # raw level kept
    with pytest.raises(UsageError):
        VoiceStage(SpeechTTS(), VoiceOptions(format="aiff"))
    with pytest.raises(UsageError):
        VoiceStage(SpeechTTS(), VoiceOptions(persona="nobody-here"))


# -- resume ------------------------------------------------------------------------------------
def test_resume_reuses_only_existing_files_of_matching_size(tmp_path) -> None:
    ledger_path = tmp_path / "voice.ledger"
    records = [scripted("a"), scripted("b"), scripted("c")]
    with Ledger(ledger_path) as ledger:
        first, _ = run(SpeechTTS(), records, tmp_path, ledger=ledger)
    paths = [Path(r["audio"]["path"]) for r in first]
    paths[1].unlink()  # gone: voiced again
    with open(paths[2], "ab") as fh:  # changed size: voiced again
        fh.write(b"\0\0")

    tts, emitter = SpeechTTS(), RecordingEmitter()
    with Ledger(ledger_path) as ledger:
        second, stage = run(tts, records, tmp_path, emitter, ledger=ledger, resume=True)
    assert second[0]["audio"]["skipped"] is True
    assert {k: v for k, v in second[0]["audio"].items() if k != "skipped"} == first[0]["audio"]
    assert "skipped" not in second[1]["audio"] and "skipped" not in second[2]["audio"]
    assert [r["id"] for r in records[1:]] == ["b", "c"] and len(tts.calls) == 2
    assert paths[1].exists() and paths[2].stat().st_size == second[2]["audio"]["size"]
    assert (stage.stats.skipped, stage.stats.completed) == (1, 2)


def test_resume_with_everything_done_never_loads_the_model(tmp_path) -> None:
    with Ledger(tmp_path / "l") as ledger:
        run(SpeechTTS(), [scripted("a")], tmp_path, ledger=ledger)
    tts, emitter = SpeechTTS(), RecordingEmitter()
    with Ledger(tmp_path / "l") as ledger:
        out, _ = run(tts, [scripted("a")], tmp_path, emitter, ledger=ledger, resume=True)
    assert out[0]["audio"]["skipped"] and tts.loads == 0 and "model_load" not in emitter.names()


def test_changed_voice_settings_change_the_key(tmp_path) -> None:
    with Ledger(tmp_path / "l") as ledger:
        first, _ = run(SpeechTTS(), [scripted("a")], tmp_path, ledger=ledger)
        second, _ = run(SpeechTTS(), [scripted("a")], tmp_path, ledger=ledger, resume=True, loudness=-20.0)
    assert first[0]["audio"]["key"] != second[0]["audio"]["key"] and "skipped" not in second[0]["audio"]


# -- barrier -------------------------------------------------------------------------------------
class RecordingInput:
    """A stdin stand-in that logs into ``log`` as each line is consumed and at EOF."""

    def __init__(self, records: list[dict], log: list[str]) -> None:
        self.records = records
        self.log = log

    def __iter__(self):
        for i, rec in enumerate(self.records):
            self.log.append(f"read:{i}")
            yield orjson.dumps(rec) + b"\n"
        self.log.append("eof")


def test_barrier_loads_the_model_only_after_eof(tmp_path) -> None:
    tts, emitter, written = SpeechTTS(), RecordingEmitter(), []
    stdin = RecordingInput([scripted("a"), scripted("b"), scripted("c")], tts.events)
    stats = run_voice(["-"], VoiceOptions(out_dir=str(tmp_path)), backend=tts, emitter=emitter,
                      write=written.append, barrier=True, stdin=stdin)
    assert tts.events[:5] == ["read:0", "read:1", "read:2", "eof", "load"]
    assert tts.events[-1] == "unload" and len(written) == 3 and stats.total == 3
    assert stats.audio_seconds > 0 and emitter.names()[-1] == "run_complete"


def test_no_barrier_loads_first_and_voices_records_as_they_arrive(tmp_path) -> None:
    tts, written = SpeechTTS(), []
    stdin = RecordingInput([scripted("a"), scripted("b")], tts.events)
    run_voice(["-"], VoiceOptions(out_dir=str(tmp_path)), backend=tts, emitter=RecordingEmitter(),
              write=written.append, barrier=False, stdin=stdin)
    assert tts.events[:4] == ["load", "read:0", "synthesize", "read:1"]
    assert len(written) == 2


def test_spool_uses_a_temp_file_and_replays_in_order() -> None:
    consumed: list[int] = []

    def gen():
        for i in range(3):
            consumed.append(i)
            yield InputLine(i + 1, "-", record={"n": i})
        yield InputLine(4, "-", error={"stage": "input", "message": "bad", "line": 4})

    with SpooledLines(gen()) as spool:
        assert consumed == [0, 1, 2] and spool.count == 4
        assert isinstance(spool._file.fileno(), int)  # a real (anonymous) file, not a list
        back = list(spool)
    assert [line.record for line in back[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert back[3].error == {"stage": "input", "message": "bad", "line": 4} and back[3].line == 4


def test_run_voice_reads_files_and_needs_checkpoint_for_resume(tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [scripted("a"), scripted("b")]))
    written: list[dict] = []
    stats = run_voice([str(src)], VoiceOptions(out_dir=str(tmp_path / "o")), backend=SpeechTTS(),
                      emitter=RecordingEmitter(), write=written.append, checkpoint=str(tmp_path / "l"))
    assert [r["id"] for r in written] == ["a", "b"] and stats.completed == 2
    assert len(Ledger(tmp_path / "l")) == 2
    with pytest.raises(UsageError, match="--checkpoint"):
        run_voice([str(src)], VoiceOptions(resume=True), backend=SpeechTTS(), emitter=RecordingEmitter(),
                  write=written.append, stdin=io.BytesIO())


def test_ctrl_c_mid_record_unloads_and_leaves_no_partial_file(tmp_path) -> None:
    class Interrupting(SpeechTTS):
        def synthesize(self, text, voice):
            if "second" in text:
                raise KeyboardInterrupt
            return super().synthesize(text, voice)

    tts = Interrupting()
    stage = VoiceStage(tts, VoiceOptions(out_dir=str(tmp_path)), RecordingEmitter())
    records = lines_of(scripted("a"), scripted("b", text="The second one, please."))
    with pytest.raises(KeyboardInterrupt):
        list(stage.run(records))
    assert sorted(os.listdir(tmp_path)) == ["a_julie_0.wav"] and tts.events[-1] == "unload"
