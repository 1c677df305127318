"""The listening check (``aicp-voice --verify``) with a recogniser double: the word comparison,
``audio.checks``, warnings and counts, ``--require-checks``, and the chain and service params.
The real recogniser on real voicings is in tests/e2e/test_listening_e2e.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import orjson
import pytest

from ai_content_pipeline import listen
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.errors import ConfigError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from tests.cli_helpers import invoke
from tests.doubles import RecordingEmitter, SpeechTTS, lines_of

GOOD = "Here is Queen with Bohemian Rhapsody, from 1975. Let the night play on."
OTHER = "the weather tomorrow brings rain over the hills and a cold wind"


class ScriptedRecogniser:
    """A :class:`~ai_content_pipeline.listen.Recogniser` that hears what it is told: ``heard``
    maps a word the script contains (a marker) to the transcript; else it hears ``default``."""

    name = "scripted"
    sample_rate = 16000

    def __init__(self, default: str = "", unknown: tuple[str, ...] = ()) -> None:
        self.default = default
        self.unknown = set(unknown)
        self.calls = 0

    def transcribe(self, samples: np.ndarray) -> str:
        self.calls += 1
        return self.default

    def knows(self, word: str) -> bool:
        return word not in self.unknown


def tone(seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# -- words and recall ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("Back in 1975, the '80s!", "back in nineteen seventy five the eighties"),
    ("The 3rd of 12 songs, 1,200 fans, 2.5 stars", "the third of twelve songs one thousand two hundred fans "
                                                   "two point five stars"),
    ("Here’s Sigur Rós & friends — late-night", "here's sigur ros and friends late night"),
    ("the 1990s and 2006.", "the nineteen nineties and two thousand six"),
])
def test_words_are_what_a_listener_hears(text: str, expected: str) -> None:
    assert " ".join(listen.words(text)) == expected


def test_a_faithful_transcript_passes_with_full_recall() -> None:
    heard = listen.listen(tone(), 16000, GOOD, ScriptedRecogniser(
        "here is queen with bohemian rhapsody from nineteen hundred seventy five let the night play on"),
        names={"artist": "Queen", "title": "Bohemian Rhapsody"})
    assert heard.passed and heard.recall == 1.0 and heard.name_recall == 1.0 and heard.last_recall == 1.0


def test_other_text_fails_as_unintelligible() -> None:
    heard = listen.listen(tone(), 16000, GOOD, ScriptedRecogniser(OTHER))
    assert not heard.passed and "unintelligible" in heard.failed and heard.recall < listen.RECALL_THRESHOLD


def test_a_missing_last_sentence_fails_as_truncated() -> None:
    heard = listen.listen(tone(), 16000, GOOD, ScriptedRecogniser(
        "here is queen with bohemian rhapsody from nineteen seventy five"))
    assert heard.failed == ["truncated"] and heard.last_recall == 0.0 and heard.recall > listen.RECALL_THRESHOLD


def test_silence_fails_as_silent_without_transcribing() -> None:
    recogniser = ScriptedRecogniser("here is queen")
    for samples in (np.zeros(32000, np.float32), np.full(32000, 1e-4, np.float32), np.zeros(0, np.float32)):
        heard = listen.listen(samples, 16000, GOOD, recogniser)
        assert heard.failed == ["silent"] and heard.recall == 0.0
    assert recogniser.calls == 0


def test_garbled_names_are_measured_on_their_own() -> None:
    heard = listen.listen(tone(), 16000, GOOD, ScriptedRecogniser(
        "here is green with the hemi and rap city from nineteen seventy five let the night play on"),
        names={"artist": "Queen", "title": "Bohemian Rhapsody"})
    assert heard.name_recall == 0.0 and heard.as_checks()["details"]["listen"]["name_recall"] == 0.0


def test_words_the_recogniser_cannot_spell_are_left_out() -> None:
    heard = listen.listen(tone(), 16000, "Amy Winehouse sings.", ScriptedRecogniser("amy sings", ("winehouse",)))
    assert heard.recall == 1.0 and heard.unknown == 1 and heard.words == 2


def test_merge_keeps_the_checks_already_there() -> None:
    fits = {"passed": False, "failed": ["fits"], "details": {"fits": {"seconds": 31.0}}}
    listened = {"passed": True, "failed": [], "details": {"listen": {"recall": 0.9}}}
    merged = listen.merge_checks(fits, listened)
    assert merged == {"passed": False, "failed": ["fits"],
                      "details": {"fits": {"seconds": 31.0}, "listen": {"recall": 0.9}}}
    both = listen.merge_checks(merged, {"passed": False, "failed": ["truncated"], "details": {}})
    assert both["failed"] == ["fits", "truncated"] and both["passed"] is False
    assert listen.merge_checks(None, listened) == listened


# -- the voice stage and aicp-voice -------------------------------------------------------------
SCRIPTS = b"".join(orjson.dumps(r) + b"\n" for r in [
    {"id": "good", "artist": "Queen", "title": "Bohemian Rhapsody",
     "script": {"text": GOOD, "persona": "julie", "take": 0}},
    {"id": "wrong", "script": {"text": "Turn it up for the morning drive with Max and Dreams.",
                               "persona": "max", "take": 0}},
])


class TextRecogniser(ScriptedRecogniser):
    """Hears the first script exactly and other text for every other file (in call order)."""

    def transcribe(self, samples: np.ndarray) -> str:
        self.calls += 1
        return "here is queen with bohemian rhapsody from nineteen seventy five let the night play on" \
            if self.calls == 1 else OTHER


def use(monkeypatch, recogniser) -> None:
    monkeypatch.setattr(voice_cli, "create_tts", lambda name, notice=None, **options: SpeechTTS())
    monkeypatch.setattr(listen, "PocketSphinx", lambda: recogniser)


def records(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def test_verify_adds_audio_checks_keeps_a_failed_file_and_counts_it(monkeypatch, tmp_path) -> None:
    use(monkeypatch, TextRecogniser())
    out_dir = tmp_path / "a"
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(out_dir), "--verify"], SCRIPTS)
    assert res.exit_code == 0, res.stderr
    good, wrong = records(res.stdout)
    assert good["audio"]["checks"]["passed"] is True and good["audio"]["checks"]["failed"] == []
    assert good["audio"]["checks"]["details"]["listen"]["recall"] == 1.0
    assert wrong["audio"]["checks"]["passed"] is False
    assert "unintelligible" in wrong["audio"]["checks"]["failed"]
    assert os.path.exists(wrong["audio"]["path"])
    assert "record wrong: its audio failed its checks (unintelligible" in res.stderr
    assert "audio checks: 1 passed, 1 failed" in res.stderr


def test_without_verify_nothing_is_transcribed(monkeypatch, tmp_path) -> None:
    recogniser = TextRecogniser()
    use(monkeypatch, recogniser)
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path)], SCRIPTS)
    assert res.exit_code == 0 and recogniser.calls == 0
    assert all("checks" not in r["audio"] for r in records(res.stdout)) and "audio checks" not in res.stderr


def test_require_checks_makes_a_failed_listening_check_a_record_error(monkeypatch, tmp_path) -> None:
    use(monkeypatch, TextRecogniser())
    out_dir = tmp_path / "a"
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(out_dir), "--verify", "--require-checks", "--stream"], SCRIPTS)
    assert res.exit_code == 3
    good, wrong = records(res.stdout)
    assert good["audio"]["checks"]["passed"] is True
    error = wrong["error"]
    assert error["type"] == "ChecksFailed" and error["stage"] == "voice" and "audio" not in wrong
    assert "unintelligible" in error["checks"]["failed"] and "no new file kept" in error["message"]
    assert sorted(os.listdir(out_dir)) == ["good_julie_0.wav"]  # no file for the failed record
    done = [orjson.loads(x) for x in res.stderr.splitlines() if '"run_complete"' in x][0]
    assert done["audio_checks"] == {"passed": 1, "failed": 1} and done["records"]["failed"] == 1


def test_resume_keeps_the_check_the_ledger_holds(tmp_path) -> None:
    recogniser = TextRecogniser()
    ledger = Ledger(str(tmp_path / "voice.ledger"))
    options = VoiceOptions(out_dir=str(tmp_path / "a"), verify=True)
    stage = VoiceStage(SpeechTTS(), options, RecordingEmitter(), ledger)
    stage.recogniser = recogniser
    first = list(stage.run(lines_of(*[orjson.loads(x) for x in SCRIPTS.splitlines()])))
    again = VoiceStage(SpeechTTS(), VoiceOptions(out_dir=str(tmp_path / "a"), verify=True, resume=True),
                       RecordingEmitter(), Ledger(str(tmp_path / "voice.ledger")))
    again.recogniser = recogniser
    second = list(again.run(lines_of(*[orjson.loads(x) for x in SCRIPTS.splitlines()])))
    assert recogniser.calls == 2
    assert [r["audio"]["checks"] for r in second] == [r["audio"]["checks"] for r in first]
    assert again.stats.audio_checks_passed == 1 and again.stats.audio_checks_failed == 1


# -- chain and service --------------------------------------------------------------------------
def _chain(tmp_path: Path, params: str) -> str:
    songs = tmp_path / "songs.jsonl"
    songs.write_text('{"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody"}\n')
    path = tmp_path / "chain.yaml"
    path.write_text(f"name: t\ninput: {songs}\noutput_dir: {tmp_path / 'out'}\nsteps:\n"
                    f"  - type: script\n  - type: voice\n    params: {params}\n")
    return str(path)


def test_a_chain_voice_step_takes_verify(tmp_path) -> None:
    from ai_content_pipeline.chain.runner import step_options

    spec = load_chain(_chain(tmp_path, "{verify: true, require_checks: true}"))
    options = step_options(spec, 1, resume=False)
    assert options.verify is True and options.require_checks is True
    with pytest.raises(ConfigError, match="verify"):
        load_chain(_chain(tmp_path, "{verify: [1]}"))


def test_a_service_request_takes_voice_params_verify(tmp_path) -> None:
    from ai_content_pipeline.service.requests import (
        GenerateRequest,
        RequestProblem,
        build_chain,
        validate_chain,
    )

    def check(voice_params):
        (tmp_path / "in.jsonl").write_text("{}\n")
        chain, _, where = build_chain(GenerateRequest.model_validate(
            {"records": [{"id": "s1", "artist": "Queen", "title": "Dreams"}], "voice": True,
             "voice_params": voice_params}))
        return validate_chain(chain, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), where)

    assert check({"verify": True})["steps"][1]["params"]["verify"] is True
    with pytest.raises(RequestProblem) as problem:
        check({"verify": [1]})
    assert problem.value.field.startswith("voice_params.verify")


def test_a_chain_step_line_counts_audio_checks() -> None:
    from ai_content_pipeline.report import step_summary_text

    line = step_summary_text({"step": 2, "type": "voice", "records": {"completed": 2}, "path": "o.jsonl",
                              "duration_seconds": 1.0, "audio_checks": {"passed": 1, "failed": 1}})
    assert "audio checks: 1 passed, 1 failed" in line
