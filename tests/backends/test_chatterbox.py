"""The Chatterbox adapter against a ChatterboxTTS-shaped double (tests/chatterbox_doubles.py)."""

from __future__ import annotations

import importlib.util

import pytest

from ai_content_pipeline.backends import chatterbox
from ai_content_pipeline.backends.chatterbox import (
    ChatterboxBackend,
    chatterbox_available,
    detect_device,
)
from ai_content_pipeline.backends.registry import create_tts, resolve_tts_name
from ai_content_pipeline.errors import BackendOutOfMemory, BackendUnavailable, UsageError
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from ai_content_pipeline.templates import load_persona
from tests.chatterbox_doubles import FakeChatterboxTTS, OutOfMemoryError, install, make_checkpoint
from tests.doubles import RecordingEmitter, lines_of

LONG = ("Good evening, night owls, and welcome back to the late show on Night Owl FM. "
        "Tonight we open with a song that took three weeks to record, six minutes to play, "
        "and about fifty years to stop surprising people; it starts as a ballad, turns into "
        "an opera, then rocks out before it fades away. Here is Queen with Bohemian Rhapsody. "
        "Stay cozy, night owls.")


@pytest.mark.parametrize(("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"),
                                                        (False, False, "cpu")])
def test_detect_device_prefers_cuda_then_mps(monkeypatch, cuda, mps, expected) -> None:
    install(monkeypatch, cuda=cuda, mps=mps)
    assert detect_device() == expected


def test_detect_device_without_torch_is_cpu(monkeypatch) -> None:
    monkeypatch.setattr(chatterbox, "_import_torch", lambda: None)
    assert detect_device() == "cpu"


def test_availability_is_checked_without_importing(monkeypatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: asked.append(name) or object())
    assert chatterbox_available() is True and asked == ["chatterbox"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert chatterbox_available() is False


def test_auto_picks_chatterbox_only_with_a_gpu(monkeypatch) -> None:
    install(monkeypatch, cuda=True)
    monkeypatch.setattr(chatterbox, "chatterbox_available", lambda: True)
    notes: list[str] = []
    assert resolve_tts_name("auto", notes.append) == "chatterbox" and "chatterbox" in notes[0]
    speaker = create_tts("auto")  # personas that name a Piper or Kokoro voice keep it
    assert isinstance(getattr(speaker, "backend_for", lambda persona: speaker)(None), ChatterboxBackend)
    install(monkeypatch, cuda=False)
    assert resolve_tts_name("auto") == "piper"
    monkeypatch.setattr(chatterbox, "chatterbox_available", lambda: False)
    assert resolve_tts_name("auto", device="cuda") == "piper"


def test_loads_on_the_detected_or_requested_device(monkeypatch, tmp_path) -> None:
    install(monkeypatch, cuda=True)
    hub = ChatterboxBackend()
    hub.load()
    assert FakeChatterboxTTS.instances[-1].source == "hub" and hub.device == "cuda"
    assert hub.sample_rate == 24000 and hub.describe()["model"] == "ResembleAI/chatterbox"
    ckpt = make_checkpoint(tmp_path / "ckpt")
    local = ChatterboxBackend(checkpoint_dir=str(ckpt), device="cpu")
    local.load()
    assert FakeChatterboxTTS.instances[-1].source == f"local:{ckpt}"
    assert FakeChatterboxTTS.instances[-1].device == "cpu" == local.device


@pytest.mark.parametrize("missing", ["ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors",
                                     "tokenizer.json"])
def test_a_missing_checkpoint_file_is_named(tmp_path, missing) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", skip=missing)
    with pytest.raises(BackendUnavailable, match=missing) as info:
        ChatterboxBackend(checkpoint_dir=str(ckpt))
    assert int(info.value.exit_status) == 4


def test_hub_failure_hints_at_checkpoint_dir(monkeypatch) -> None:
    install(monkeypatch)
    FakeChatterboxTTS.fail_load = OSError("couldn't connect to the hub")
    with pytest.raises(BackendUnavailable, match="hub") as info:
        ChatterboxBackend().load()
    assert "--checkpoint-dir" in info.value.hint


def test_not_installed_is_backend_unavailable(monkeypatch) -> None:
    def missing():
        raise ImportError("No module named 'chatterbox'")

    monkeypatch.setattr(chatterbox, "_import_engine", missing)
    with pytest.raises(BackendUnavailable, match="not installed") as info:
        ChatterboxBackend().load()
    assert "[chatterbox]" in info.value.hint


def test_oom_maps_to_backend_out_of_memory(monkeypatch) -> None:
    torch = install(monkeypatch)
    backend = ChatterboxBackend()
    backend.load()
    FakeChatterboxTTS.fail_generate = OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    with pytest.raises(BackendOutOfMemory) as info:
        backend.synthesize("Hello there.", backend.default_voice())
    assert info.value.hint and torch.cuda.empty_cache_calls >= 1
    FakeChatterboxTTS.fail_load = OutOfMemoryError("out of memory")
    with pytest.raises(BackendOutOfMemory):
        ChatterboxBackend().load()


def test_other_generate_errors_are_per_record(monkeypatch, tmp_path) -> None:
    install(monkeypatch)
    FakeChatterboxTTS.fail_generate = RuntimeError("index out of range")
    stage = VoiceStage(ChatterboxBackend(), VoiceOptions(out_dir=str(tmp_path)), RecordingEmitter())
    out = list(stage.run(lines_of({"id": "a", "text": "Hello there, friends."})))
    assert out[0]["error"]["type"] == "SynthesisError" and "index out of range" in out[0]["error"]["message"]


def test_stage_chunks_seeds_clones_and_releases(monkeypatch, tmp_path) -> None:
    torch = install(monkeypatch, cuda=True)
    ref = tmp_path / "host.wav"
    ref.write_bytes(b"RIFF")
    backend = ChatterboxBackend(voice=str(ref), exaggeration=0.9)
    emitter = RecordingEmitter()
    stage = VoiceStage(backend, VoiceOptions(out_dir=str(tmp_path / "audio")), emitter)
    records = [{"id": "a", "script": {"text": LONG, "persona": "julie", "take": 0}},
               {"id": "b", "script": {"text": "Turn it up! This is Max.", "persona": "max", "take": 0}}]
    out = list(stage.run(lines_of(*records)))
    model = FakeChatterboxTTS.instances[0]
    calls = model.calls
    chunks_a = out[0]["audio"]["chunks"]
    assert chunks_a > 1 and all(len(c["text"]) <= 300 for c in calls)
    assert " ".join(c["text"] for c in calls[:chunks_a]).split() == LONG.split()
    assert all(c["inference_mode"] for c in calls)
    assert all(c["audio_prompt_path"] == str(ref) for c in calls)  # cloning wins over personas
    assert all(c["exaggeration"] == 0.9 for c in calls)  # the command-line override
    julie, mx = load_persona("julie"), load_persona("max")
    assert [c["seed"] for c in calls] == [julie.seed] * chunks_a + [mx.seed]
    assert calls[0]["cfg_weight"] == julie.voice.chatterbox.cfg_weight
    assert calls[-1]["temperature"] == mx.voice.chatterbox.temperature
    assert out[0]["audio"]["sample_rate"] == 24000 and out[0]["audio"]["voice"] == "host"
    # released at the end: model dropped, CUDA cache emptied, model_unload sent
    assert backend._model is None and not backend.loaded and torch.cuda.empty_cache_calls >= 1
    assert emitter.names().count("model_load") == 1 and "model_unload" in emitter.names()


def test_persona_settings_and_seed_override(monkeypatch) -> None:
    install(monkeypatch)
    backend = ChatterboxBackend()
    max_ = load_persona("max")
    voice = backend.default_voice(max_, None)
    assert voice.seed == max_.seed and voice.settings["exaggeration"] == max_.voice.chatterbox.exaggeration
    assert voice.settings["audio_prompt"] is None and voice.name == "default"
    assert backend.default_voice(max_, 5).seed == 5
    assert backend.default_voice(None, None).settings["exaggeration"] == 0.5


def test_persona_audio_prompt_is_relative_to_the_persona_file(monkeypatch, tmp_path) -> None:
    install(monkeypatch)
    (tmp_path / "dj.wav").write_bytes(b"RIFF")
    persona_file = tmp_path / "dj.yaml"
    persona_file.write_text("name: dj\ndisplay_name: DJ\nstyle: calm\nseed: 9\n"
                            "voice: {chatterbox: {audio_prompt: dj.wav, exaggeration: 1.2}}\n")
    voice = ChatterboxBackend().default_voice(load_persona(str(persona_file)), None)
    assert voice.settings["audio_prompt"] == str(tmp_path / "dj.wav") and voice.name == "dj"
    assert voice.seed == 9 and voice.settings["exaggeration"] == 1.2


def test_checkpoint_without_conds_needs_a_reference(monkeypatch, tmp_path) -> None:
    install(monkeypatch)
    backend = ChatterboxBackend(checkpoint_dir=str(make_checkpoint(tmp_path / "c")))
    backend.load()
    backend._model.conds = None
    with pytest.raises(Exception, match="conds.pt") as info:
        backend.synthesize("Hello.", backend.default_voice())
    assert "--voice" in info.value.hint


def test_bad_arguments_are_usage_errors(tmp_path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        ChatterboxBackend(voice=str(tmp_path / "missing.wav"))
    with pytest.raises(UsageError, match="device"):
        ChatterboxBackend(device="tpu")
    with pytest.raises(UsageError, match="Piper voice") as info:
        ChatterboxBackend(voice="en_US-joe-medium.onnx")
    assert "--backend piper" in info.value.hint


def _library_like_conds(monkeypatch) -> list:
    """Make the double keep a reference clip's voice the way chatterbox-tts 0.1.7 does:
    ``generate(audio_prompt_path=p)`` runs ``prepare_conditionals(p)``, which replaces
    ``model.conds``; a call without a clip speaks with whatever ``model.conds`` holds."""
    spoke_with: list = []
    plain_generate = FakeChatterboxTTS.generate

    def generate(self, text, audio_prompt_path=None, **kwargs):
        if audio_prompt_path:
            self.conds = ("clone", audio_prompt_path)
        assert self.conds is not None, "Please `prepare_conditionals` first or specify `audio_prompt_path`"
        spoke_with.append(self.conds)
        return plain_generate(self, text, audio_prompt_path=audio_prompt_path, **kwargs)

    monkeypatch.setattr(FakeChatterboxTTS, "generate", generate)
    return spoke_with


def test_built_in_voice_comes_back_after_a_cloned_record(monkeypatch, tmp_path) -> None:
    install(monkeypatch)
    spoke_with = _library_like_conds(monkeypatch)
    (tmp_path / "dj.wav").write_bytes(b"RIFF")
    persona_file = tmp_path / "dj.yaml"
    persona_file.write_text("name: dj\ndisplay_name: DJ\nstyle: calm\nseed: 9\n"
                            "voice: {chatterbox: {audio_prompt: dj.wav}}\n")
    backend = ChatterboxBackend(checkpoint_dir=str(make_checkpoint(tmp_path / "c")))
    backend.load()
    built_in = backend._model.conds
    plain, cloned = backend.default_voice(None), backend.default_voice(load_persona(str(persona_file)))
    for voice in (plain, cloned, plain, cloned):
        backend.synthesize("Hello there.", voice)
    clone = ("clone", str(tmp_path / "dj.wav"))
    assert spoke_with == [built_in, clone, built_in, clone]
    # a checkpoint without conds.pt: after a cloned record, a plain one is still refused
    backend._model.conds = backend._builtin_conds = None
    backend.synthesize("Hello there.", cloned)
    with pytest.raises(Exception, match="conds.pt"):
        backend.synthesize("Hello there.", plain)
    assert spoke_with[-1] == clone


def test_a_watermarker_that_did_not_import_is_named(monkeypatch) -> None:
    """resemble-perth sets PerthImplicitWatermarker to None without pkg_resources (setuptools
    81+), and ChatterboxTTS() would then fail with "'NoneType' object is not callable"."""
    import sys
    import types

    tts = types.ModuleType("chatterbox.tts")
    tts.ChatterboxTTS = FakeChatterboxTTS
    perth = types.ModuleType("perth")
    perth.PerthImplicitWatermarker = None
    for name, module in {"torch": types.ModuleType("torch"), "chatterbox": types.ModuleType("chatterbox"),
                         "chatterbox.tts": tts, "perth": perth}.items():
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(BackendUnavailable, match="watermarker") as info:
        ChatterboxBackend().load()
    assert "setuptools<81" in info.value.hint
    perth.PerthImplicitWatermarker = object
    assert chatterbox._import_engine() == (FakeChatterboxTTS, sys.modules["torch"])
