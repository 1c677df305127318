"""The pronunciation lexicon at voicing time: what reaches each kind of engine, the take key
(a changed entry is voiced again), the chain step's ``lexicon`` param, and real Piper speaking
an entry's phonemes through espeak-ng's phoneme input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ai_content_pipeline.backends.base import Voice
from ai_content_pipeline.backends.chatterbox import ChatterboxBackend
from ai_content_pipeline.backends.piper import PiperBackend
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.errors import AicpError, ConfigError, SynthesisError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.lexicon import Lexicon, entries_of, speak
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from tests.chatterbox_doubles import FakeChatterboxTTS, install
from tests.doubles import RecordingEmitter, SpeechTTS, lines_of

TEXT = "Tonight I play Você É Linda for you."
PHONEMES = "vo.ˈse ɛ ˈlĩ.dɐ"


class PhonemeTTS(SpeechTTS):
    """A SpeechTTS that takes phonemes: records the parts it was given."""

    takes_phonemes = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.part_calls: list[list[tuple[str, str | None]]] = []

    def synthesize_parts(self, parts: list[Any], voice: Voice) -> np.ndarray:
        self.part_calls.append([(p.text, p.phonemes) for p in parts])
        return self.synthesize("".join(p.text for p in parts), voice)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def voice(tts: Any, tmp_path: Path, texts: list[str], emitter: RecordingEmitter | None = None,
          ledger: Ledger | None = None, **opts: Any) -> list[dict]:
    options = VoiceOptions(out_dir=str(tmp_path / "audio"), **opts)
    stage = VoiceStage(tts, options, emitter or RecordingEmitter(), ledger)
    records = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    return list(stage.run(lines_of(*records), total=len(records)))


def test_an_engine_that_takes_phonemes_gets_them_for_the_matched_span(tmp_path: Path) -> None:
    names = write(tmp_path / "names.yaml", f'Você É Linda: {{say: voh-SAY eh LEEN-dah, phonemes: "{PHONEMES}"}}\n')
    tts = PhonemeTTS()
    out = voice(tts, tmp_path, [TEXT], lexicon=(names,))
    assert "audio" in out[0], out[0]
    assert tts.part_calls == [[("Tonight I play ", None), ("Você É Linda", PHONEMES), (" for you.", None)]]


def test_other_engines_get_the_respelling_and_a_phonemes_only_entry_is_warned_about_once(tmp_path: Path) -> None:
    names = write(tmp_path / "names.yaml", "Você É Linda: voh-SAY eh LEEN-dah\nBjörk: {phonemes: bjˈɜːk}\n")
    tts, emitter = SpeechTTS(), RecordingEmitter()
    out = voice(tts, tmp_path, [TEXT, "Björk now. And Björk later.", "Björk again."], emitter, lexicon=(names,))
    assert all("audio" in r for r in out), out
    assert [text for text, _ in tts.calls] == ["Tonight I play voh-SAY eh LEEN-dah for you.",
                                               "Björk now. And Björk later.", "Björk again."]
    warnings = [f["message"] for name, f in emitter.events if name == "message" and f.get("level") == "warning"]
    assert len(warnings) == 1 and "'Björk'" in warnings[0] and "said as written" in warnings[0]


def test_chatterbox_says_the_respelling_and_warns_about_a_phonemes_only_entry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    install(monkeypatch, cuda=True)
    names = write(tmp_path / "names.yaml", f'Você É Linda: {{say: voh-SAY eh LEEN-dah, phonemes: "{PHONEMES}"}}\n'
                                           "Björk: {phonemes: bjˈɜːk}\n")
    emitter = RecordingEmitter()
    out = voice(ChatterboxBackend(), tmp_path, [TEXT + " And Björk."], emitter, lexicon=(names,))
    assert "audio" in out[0], out[0]
    assert [c["text"] for c in FakeChatterboxTTS.instances[0].calls] == [
        "Tonight I play voh-SAY eh LEEN-dah for you. And Björk."]
    assert any("'Björk'" in f["message"] for name, f in emitter.events if name == "message")


def test_the_persona_lexicon_is_used_for_records_it_voices(tmp_path: Path) -> None:
    rosa = write(tmp_path / "rosa.yaml", "name: rosa\ndisplay_name: Rosa\nstyle: warm\nlexicon:\n  Linda: LEEN-dah\n")
    tts = SpeechTTS()
    voice(tts, tmp_path, ["Linda is here."], persona=rosa)
    assert tts.calls[0][0] == "LEEN-dah is here."


def test_a_changed_entry_voices_the_take_again_and_an_unrelated_one_does_not(tmp_path: Path) -> None:
    names = tmp_path / "names.yaml"
    ledger_path = tmp_path / "voice.ledger"

    def again(entries: str) -> list[bool]:
        write(names, entries)
        out = voice(SpeechTTS(), tmp_path, [TEXT, "No names in this one at all."], ledger=Ledger(ledger_path),
                    lexicon=(str(names),), resume=True)
        return [bool(r["audio"].get("skipped")) for r in out]

    assert again("Você É Linda: voh-SAY eh LEEN-dah\n") == [False, False]
    assert again("Você É Linda: voh-SAY eh LEEN-dah\n") == [True, True]        # same entries: served
    assert again("Você É Linda: voh-SAY eh LEEN-dah\nBjörk: byerk\n") == [True, True]  # unrelated entry
    assert again("Você É Linda: VO-say eh LIN-dah\n") == [False, True]          # the entry changed
    assert again("Você É Linda: {say: VO-say eh LIN-dah, phonemes: vo}\n") == [True, True]  # no phoneme input
    assert again("# none\n") == [False, True]                                   # the entry is gone


def test_a_take_without_lexicon_entries_keeps_its_key(tmp_path: Path) -> None:
    stage = VoiceStage(SpeechTTS(), VoiceOptions(out_dir=str(tmp_path)))
    voice_ = Voice(name="v")
    assert stage.request_key(TEXT, voice_, "a.wav") == stage.request_key(TEXT, voice_, "a.wav", Lexicon())
    used = Lexicon(entries_of({"Linda": "LEEN-dah"}, "t"))
    assert stage.request_key(TEXT, voice_, "a.wav", used) != stage.request_key(TEXT, voice_, "a.wav")


def test_a_chain_voice_step_takes_lexicon_files_and_checks_them_when_read(tmp_path: Path) -> None:
    names = write(tmp_path / "names.yaml", "Björk: byerk\n")
    src = write(tmp_path / "in.jsonl", '{"id": "a", "text": "Björk"}\n')

    def chain(lexicon: Any) -> Path:
        path = tmp_path / "chain.yaml"
        path.write_text(f"name: t\ninput: {src}\noutput_dir: {tmp_path / 'out'}\nsteps:\n"
                        f"  - type: voice\n    params: {{lexicon: {lexicon}}}\n", encoding="utf-8")
        return path

    assert load_chain(str(chain([names]))).steps[0].params["lexicon"] == [names]
    assert load_chain(str(chain(names))).steps[0].params["lexicon"] == names
    bad = write(tmp_path / "bad.yaml", "Björk: {sey: x}\n")
    with pytest.raises(ConfigError, match=r"steps.0.params.lexicon: lexicon file .*bad.yaml:1: entry 'Björk'"):
        load_chain(str(chain([bad])))
    with pytest.raises(AicpError, match=r"steps.0.params.lexicon: lexicon file .*none.yaml does not exist"):
        load_chain(str(chain([str(tmp_path / "none.yaml")])))


# -- real Piper (the bundled en_US-joe-medium voice) ----------------------------------------------

#: noise off: Piper speaks the same text into the same samples, so any difference is the lexicon's
STILL = {"noise_scale": 0.0, "noise_w_scale": 0.0}


@pytest.fixture(scope="module")
def piper() -> Any:
    backend = PiperBackend()
    backend.load()
    yield backend
    backend.unload()


def spoken(piper: PiperBackend, table: dict[str, Any] | None, text: str = TEXT) -> np.ndarray:
    lexicon = Lexicon(entries_of(table, "test")) if table is not None else None
    return speak(piper, text, Voice(name="joe", settings=STILL), lexicon)


def test_piper_says_an_entry_s_phonemes_not_what_espeak_makes_of_the_spelling(piper: PiperBackend) -> None:
    plain = spoken(piper, None)
    assert np.array_equal(plain, spoken(piper, None))  # deterministic without noise
    with_phonemes = spoken(piper, {"Você É Linda": {"phonemes": PHONEMES}})
    assert not np.array_equal(plain, with_phonemes)
    assert abs(len(plain) - len(with_phonemes)) > 0.1 * piper.sample_rate  # "vóker E-acute linda" is longer
    # the respelling is not what Piper says when there are phonemes: the same audio either way
    both = spoken(piper, {"Você É Linda": {"phonemes": PHONEMES, "say": "something else entirely"}})
    assert np.array_equal(with_phonemes, both)
    # and the phonemes are what Piper says: as if espeak-ng had been given them
    direct = piper.synthesize("Tonight I play [[ voˈse ɛ ˈli\u0303dɐ ]] for you.", Voice(name="joe", settings=STILL))
    assert np.array_equal(with_phonemes, direct)


def test_piper_says_a_respelling_entry(piper: PiperBackend) -> None:
    respelled = spoken(piper, {"Você É Linda": "voh-SAY eh LEEN-dah"})
    assert not np.array_equal(spoken(piper, None), respelled)
    assert np.array_equal(respelled, spoken(piper, None, "Tonight I play voh-SAY eh LEEN-dah for you."))


def test_piper_refuses_phonemes_its_voice_does_not_know(piper: PiperBackend) -> None:
    with pytest.raises(SynthesisError, match=r"lexicon phonemes for 'Você' hold '☃'.*does not know"):
        spoken(piper, {"Você": {"phonemes": "vo☃se"}})


def test_the_voice_stage_on_piper_voices_a_record_with_the_entry_s_phonemes(piper: PiperBackend,
                                                                            tmp_path: Path) -> None:
    still = write(tmp_path / "still.yaml", "name: still\ndisplay_name: Still\nstyle: calm\n"
                                           "voice: {piper: {noise_scale: 0.0, noise_w_scale: 0.0}}\n")
    names = write(tmp_path / "names.yaml", f'Você É Linda: {{phonemes: "{PHONEMES}"}}\n')
    plain = voice(piper, tmp_path / "plain", [TEXT], persona=still)[0]["audio"]
    fixed = voice(piper, tmp_path / "fixed", [TEXT], persona=still, lexicon=(names,))[0]["audio"]
    assert plain["key"] != fixed["key"]
    assert plain["seconds"] - fixed["seconds"] > 0.2  # "vóker E-acute linda" is gone
    assert np.array_equal(spoken(piper, {"Você É Linda": {"phonemes": PHONEMES}}),
                          spoken(piper, {"Você É Linda": {"phonemes": PHONEMES}}))
