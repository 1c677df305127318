"""Takes that fit a time limit: the word target from the voice's pace, the ``length`` check on
a take that is too long, and the voice stage's ``fits`` check on the audio file."""

from __future__ import annotations

import math
import os

import orjson
import pytest

from ai_content_pipeline.airtime import (
    DEFAULT_WORDS_PER_SECOND,
    PIPER_WORDS_PER_SECOND,
    add_check,
    fitting_words,
    words_per_second,
)
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.errors import ConfigError, UsageError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from ai_content_pipeline.templates import load_persona
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter, SpeechTTS, lines_of

SONG = {"id": "s1", "artist": "Sigur Rós", "title": "Hoppípolla"}
GOOD = ("Good evening, night owls. This one always takes me back to a snowy walk home, "
        "with children jumping in puddles and strings that swell like a warm tide. "
        "Stay cozy, night owls. Here is Hoppipolla by Sigur Ros.")  # 38 words
SHORT = "Good evening, night owls. Here is Hoppipolla by Sigur Ros."  # 10 words
MEDIUM = SHORT + " It is a quiet one, so settle in."  # 17 words
#: song-intro's closing line under a time limit ("Here is Hoppípolla by Sigur Rós."): the words
#: the prompt's budget leaves out
CLOSE_WORDS = 6


def script_run(llm, options=None, records=(SONG,), emitter=None, ledger=None):
    stage = ScriptStage(llm, options or ScriptOptions(), emitter or RecordingEmitter(), ledger)
    return stage, list(stage.run(lines_of(*records), total=len(records)))


def user_prompt(llm: FakeLLM, call: int = 0) -> str:
    return llm.calls[call]["messages"][-1]["content"]


# -- the word target -------------------------------------------------------------------------
def test_the_speaking_rate_follows_the_personas_piper_length_scale():
    julie, sam, max_ = (load_persona(n) for n in ("julie", "sam", "max"))
    assert julie.voice.piper.length_scale == 1.08 and max_.voice.piper.length_scale == 0.92
    assert words_per_second(sam) == PIPER_WORDS_PER_SECOND
    assert words_per_second(julie) == pytest.approx(PIPER_WORDS_PER_SECOND / 1.08)
    assert words_per_second(max_) == pytest.approx(PIPER_WORDS_PER_SECOND / 0.92)
    assert words_per_second(None) == PIPER_WORDS_PER_SECOND
    assert words_per_second(julie, "chatterbox") == DEFAULT_WORDS_PER_SECOND == 2.5
    assert 2.0 < PIPER_WORDS_PER_SECOND < 3.5
    assert fitting_words(10, 2.5) == 25 and fitting_words(0.1, 2.5) == 1


@pytest.mark.parametrize("persona", ["julie", "sam", "max"])
def test_intro_seconds_sets_the_word_target_the_prompt_asks_for(persona):
    llm = FakeLLM([MEDIUM])
    _, [out] = script_run(llm, ScriptOptions(persona=persona), records=[{**SONG, "intro_seconds": 8}])
    words = math.floor(8 * words_per_second(load_persona(persona)))
    assert words < 60  # below the template's own target: the time limit caps it
    assert f"Stay under {words - CLOSE_WORDS} words." in user_prompt(llm)
    assert out["script"]["max_seconds"] == 8.0 and out["intro_seconds"] == 8
    assert out["script"]["checks"]["passed"] is True


def test_a_limit_that_fits_more_than_the_template_asks_keeps_the_templates_target():
    llm = FakeLLM([SHORT])
    script_run(llm, records=[{**SONG, "intro_seconds": 600}])
    assert f"Stay under {40 - CLOSE_WORDS} words." in user_prompt(llm)


def test_max_seconds_and_intro_seconds_the_smaller_counts():
    llm = FakeLLM([SHORT])
    _, out = script_run(llm, ScriptOptions(persona="sam", max_seconds=6.5),
                        records=[{**SONG, "intro_seconds": 4}, {**SONG, "id": "s2"}])
    assert [r["script"]["max_seconds"] for r in out] == [4.0, 6.5]
    assert f"Stay under {math.floor(4 * PIPER_WORDS_PER_SECOND) - CLOSE_WORDS} words." in user_prompt(llm, 0)
    assert f"Stay under {math.floor(6.5 * PIPER_WORDS_PER_SECOND) - CLOSE_WORDS} words." in user_prompt(llm, 1)


def test_other_voice_backends_use_the_default_pace():
    llm = FakeLLM([SHORT])
    script_run(llm, ScriptOptions(max_seconds=6, voice_backend="chatterbox"))
    assert f"Stay under {math.floor(6 * DEFAULT_WORDS_PER_SECOND) - CLOSE_WORDS} words." in user_prompt(llm)


def test_a_take_longer_than_the_time_allows_fails_length():
    _, [free] = script_run(FakeLLM([GOOD]))
    assert free["script"]["checks"]["passed"] is True and "max_seconds" not in free["script"]
    stage, [out] = script_run(FakeLLM([GOOD]), ScriptOptions(persona="sam", max_seconds=8))
    checks = out["script"]["checks"]
    fit = math.floor(8 * PIPER_WORDS_PER_SECOND)
    assert checks["failed"] == ["length"] and checks["details"]["length"]["max"] == fit
    assert checks["details"]["length"]["words"] == 38 > fit
    assert stage.stats.checks_failed == 1


def test_best_of_prefers_the_candidate_that_fits():
    llm = FakeLLM([GOOD, MEDIUM])
    _, [out] = script_run(llm, ScriptOptions(persona="sam", max_seconds=8, best_of=2, seed=1, jobs=1))
    assert out["script"]["checks"]["passed"] is True and out["script"]["checks"]["chosen"] == 1


def test_a_template_without_a_length_window_still_fails_a_take_that_does_not_fit(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("name: plain\ntarget_words: 60\nchecks: {no_echo: false}\n"
                    "system: You are a DJ.\nuser: Introduce {{ title }}. Stay under {{ target_words }} words.\n")
    _, [free] = script_run(FakeLLM([GOOD]), ScriptOptions(template=str(path)))
    assert free["script"]["checks"]["passed"] is True
    _, [out] = script_run(FakeLLM([GOOD]), ScriptOptions(template=str(path), persona="sam"),
                          records=[{**SONG, "intro_seconds": 5}])
    assert out["script"]["checks"]["failed"] == ["length"]
    assert out["script"]["checks"]["details"]["length"] == {"words": 38, "min": 0,
                                                            "max": math.floor(5 * PIPER_WORDS_PER_SECOND)}


def test_the_limit_is_part_of_the_request_key(tmp_path):
    ledger = Ledger(str(tmp_path / "run.ledger"))
    _, [a] = script_run(FakeLLM([SHORT]), ScriptOptions(seed=1), ledger=ledger)
    _, [b] = script_run(FakeLLM([SHORT]), ScriptOptions(seed=1, max_seconds=5), ledger=ledger)
    _, [c] = script_run(FakeLLM([SHORT]), ScriptOptions(seed=1, max_seconds=5, resume=True), ledger=ledger)
    assert a["script"]["key"] != b["script"]["key"] == c["script"]["key"]
    assert c["script"]["skipped"] is True and c["script"]["max_seconds"] == 5.0


@pytest.mark.parametrize("bad", ["12", True, 0, -3, 1e9, [12]])
def test_a_bad_intro_seconds_is_a_record_error(bad):
    stage, [out] = script_run(FakeLLM([SHORT]), records=[{**SONG, "intro_seconds": bad}])
    assert out["error"]["stage"] == "script" and out["error"]["field"] == "intro_seconds"
    assert "number of seconds" in out["error"]["message"] and stage.stats.failed == 1


def test_max_seconds_with_a_long_form_template_is_a_usage_error():
    with pytest.raises(UsageError, match="max_seconds applies to one-call templates"):
        ScriptOptions(template="podcast-longform", max_seconds=30).validate()


def test_cli_max_seconds_reaches_the_prompt_and_is_range_checked(monkeypatch):
    from ai_content_pipeline.cli import script as script_cli

    llm = FakeLLM([GOOD])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    res = invoke(script_cli.script_command, "aicp-script", ["--max-seconds", "5", "-p", "sam"],
                 orjson.dumps(SONG) + b"\n")
    assert res.exit_code == 0, res.stderr
    fit = math.floor(5 * PIPER_WORDS_PER_SECOND)
    assert f"Stay under {fit - CLOSE_WORDS} words." in user_prompt(llm)
    out = orjson.loads(res.stdout)
    assert out["script"]["max_seconds"] == 5.0 and out["script"]["checks"]["failed"] == ["length"]
    assert "checks: 0 passed, 1 failed" in res.stderr
    bad = invoke(script_cli.script_command, "aicp-script", ["--max-seconds", "0"], b"")
    assert bad.exit_code == 2 and "--max-seconds" in bad.stderr and bad.stdout == ""


def test_chain_script_steps_take_max_seconds(tmp_path):
    def chain(params: str) -> str:
        path = tmp_path / "chain.yaml"
        (tmp_path / "in.jsonl").write_text(orjson.dumps(SONG).decode() + "\n")
        path.write_text(f"name: c\ninput: {tmp_path / 'in.jsonl'}\noutput_dir: {tmp_path / 'out'}\n"
                        f"steps:\n  - type: script\n    backend: llamacpp\n    params: {params}\n")
        return str(path)

    assert load_chain(chain("{max_seconds: 12.5}")).steps[0].params == {"max_seconds": 12.5}
    with pytest.raises(ConfigError, match="max_seconds"):
        load_chain(chain("{max_seconds: 0}"))


# -- the fits check of the voice stage ---------------------------------------------------------
def voiced(text: str, **script_fields) -> dict:
    return {"id": "s1", "title": "Song", "script": {"text": text, "persona": "sam", "take": 0,
                                                     "checks": {"passed": True, "failed": []}, **script_fields}}


def voice_run(records, tmp_path, emitter=None, ledger=None, **opts):
    options = VoiceOptions(out_dir=str(tmp_path / "audio"), **opts)
    stage = VoiceStage(SpeechTTS(), options, emitter or RecordingEmitter(), ledger)
    return stage, list(stage.run(lines_of(*records), total=len(records)))


def test_audio_longer_than_script_max_seconds_fails_fits(tmp_path):
    em = RecordingEmitter()
    stage, [out] = voice_run([voiced(GOOD, max_seconds=4.0)], tmp_path, em)
    audio = out["audio"]
    assert audio["seconds"] > 4
    assert audio["checks"] == {"passed": False, "failed": ["fits"],
                               "details": {"fits": {"seconds": audio["seconds"], "max_seconds": 4.0}}}
    assert os.path.exists(audio["path"])
    assert stage.stats.audio_checks_failed == 1 and stage.stats.audio_checks_passed == 0
    assert stage.stats.checks_passed == 1 and stage.stats.checks_failed == 0 and stage.stats.failed == 0
    warnings = [f["message"] for e, f in em.events if e == "message" and f.get("level") == "warning"]
    assert any("failed its checks (fits); it lasts" in w and "longer than the 4 s it must fit" in w
               for w in warnings)


def test_audio_that_fits_passes_and_intro_seconds_counts_for_plain_text(tmp_path):
    stage, out = voice_run([voiced(SHORT, max_seconds=20.0),
                            {"id": "t2", "text": GOOD, "intro_seconds": 5},
                            {"id": "t3", "text": SHORT}], tmp_path)
    assert out[0]["audio"]["checks"] == {"passed": True, "failed": []}
    assert out[1]["audio"]["checks"]["failed"] == ["fits"]
    assert out[1]["audio"]["checks"]["details"]["fits"]["max_seconds"] == 5.0
    assert "checks" not in out[2]["audio"]  # no time limit: no check
    assert stage.stats.audio_checks_passed == 1 and stage.stats.audio_checks_failed == 1


def test_intro_seconds_below_script_max_seconds_counts(tmp_path):
    _, [out] = voice_run([{**voiced(SHORT, max_seconds=20.0), "intro_seconds": 1.5}], tmp_path)
    assert out["audio"]["checks"]["details"]["fits"]["max_seconds"] == 1.5


def test_max_seconds_of_a_script_not_voiced_does_not_count(tmp_path):
    record = {**voiced(GOOD, max_seconds=2.0), "other": SHORT}
    _, [out] = voice_run([record], tmp_path, text_field="other")
    assert "checks" not in out["audio"]


def test_require_checks_makes_audio_that_does_not_fit_a_record_error_without_a_file(tmp_path):
    stage, [out] = voice_run([voiced(GOOD, max_seconds=4.0)], tmp_path, require_checks=True)
    assert "audio" not in out and out["error"]["type"] == "ChecksFailed"
    assert "fits" in out["error"]["message"] and out["error"]["checks"]["failed"] == ["fits"]
    assert list((tmp_path / "audio").glob("*.wav")) == []
    assert stage.stats.failed == 1 and stage.stats.audio_checks_failed == 1


def test_resumed_audio_is_checked_against_todays_limit(tmp_path):
    ledger = Ledger(str(tmp_path / "voice.ledger"))
    _, [first] = voice_run([voiced(GOOD)], tmp_path, ledger=ledger)
    assert "checks" not in first["audio"]
    _, [again] = voice_run([{**voiced(GOOD), "intro_seconds": 3}], tmp_path, ledger=ledger, resume=True)
    assert again["audio"]["skipped"] is True and again["audio"]["checks"]["failed"] == ["fits"]


def test_a_bad_script_max_seconds_is_a_voice_record_error(tmp_path):
    _, [out] = voice_run([voiced(SHORT, max_seconds="long")], tmp_path)
    assert out["error"]["stage"] == "voice" and out["error"]["field"] == "script.max_seconds"


def test_checks_merge_into_audio_checks_another_check_wrote():
    audio = {"seconds": 9.0, "checks": {"passed": False, "failed": ["listen"], "details": {"listen": "x"}}}
    add_check(audio, "fits", True, {"seconds": 9.0, "max_seconds": 10})
    assert audio["checks"] == {"passed": False, "failed": ["listen"], "details": {"listen": "x"}}
    add_check(audio, "fits", False, {"seconds": 9.0, "max_seconds": 8})
    assert audio["checks"]["failed"] == ["listen", "fits"] and set(audio["checks"]["details"]) == {"listen", "fits"}
    add_check(audio, "fits", True)  # a new verdict of the same check replaces the old one
    assert audio["checks"] == {"passed": False, "failed": ["listen"], "details": {"listen": "x"}}
    fresh: dict = {}
    assert add_check(fresh, "fits", True)["checks"] == {"passed": True, "failed": []}


@pytest.mark.e2e
def test_a_take_of_the_target_length_fits_on_the_bundled_piper_voice(tmp_path):
    from ai_content_pipeline.backends.registry import create_tts

    julie = load_persona("julie")
    target = fitting_words(12, words_per_second(julie))
    sentence = "Here is a song about the quiet hours, the rain on the glass and the long road home."
    words = (sentence.split() * 10)[:target - 1] + ["tonight."]
    fits_text = " ".join(words)
    long_text = " ".join([fits_text] * 2)
    records = [{"id": "a", "text": fits_text, "persona": "julie", "intro_seconds": 12},
               {"id": "b", "text": long_text, "persona": "julie", "intro_seconds": 12}]
    stage = VoiceStage(create_tts("piper"), VoiceOptions(out_dir=str(tmp_path / "audio")), RecordingEmitter())
    a, b = list(stage.run(lines_of(*records), total=2))
    assert a["audio"]["seconds"] <= 12 and a["audio"]["checks"]["passed"] is True
    assert b["audio"]["seconds"] > 12 and b["audio"]["checks"]["failed"] == ["fits"]


def test_audio_removed_for_not_fitting_is_voiced_again_on_resume(tmp_path):
    ledger = Ledger(str(tmp_path / "voice.ledger"))
    _, [refused] = voice_run([voiced(GOOD, max_seconds=4.0)], tmp_path, ledger=ledger, require_checks=True)
    assert "error" in refused and len(Ledger(str(tmp_path / "voice.ledger"))) == 0  # no entry for a removed file
    _, [kept] = voice_run([voiced(GOOD, max_seconds=60.0)], tmp_path, ledger=ledger, resume=True)
    assert "skipped" not in kept["audio"] and kept["audio"]["checks"]["passed"] is True


def test_a_chain_script_step_takes_the_pace_of_its_voice_step(tmp_path):
    from ai_content_pipeline.chain.runner import step_options

    (tmp_path / "in.jsonl").write_text(orjson.dumps(SONG).decode() + "\n")

    def spec(voice_backend: str, params: str = "{max_seconds: 10}"):
        path = tmp_path / "chain.yaml"
        path.write_text(f"name: c\ninput: {tmp_path / 'in.jsonl'}\noutput_dir: {tmp_path / 'out'}\nsteps:\n"
                        f"  - {{type: script, backend: llamacpp, params: {params}}}\n"
                        f"  - {{type: voice, backend: {voice_backend}}}\n")
        return load_chain(str(path))

    assert step_options(spec("chatterbox"), 0, False).voice_backend == "chatterbox"
    assert step_options(spec("piper"), 0, False).voice_backend == "piper"
    assert step_options(spec("auto"), 0, False).voice_backend == "piper"  # auto: the default pace
    given = spec("chatterbox", "{max_seconds: 10, voice_backend: piper}")
    assert step_options(given, 0, False).voice_backend == "piper"
