"""The Piper adapter: voice lookup, persona settings, and synthesis against a piper-shaped double."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ai_content_pipeline.backends.piper import BUNDLED_VOICE, PiperBackend, bundled_voice_paths
from ai_content_pipeline.errors import (
    BackendOutOfMemory,
    BackendUnavailable,
    SynthesisError,
    UsageError,
)
from ai_content_pipeline.templates import load_persona


@dataclass
class FakeSynthesisConfig:
    speaker_id: int | None = None
    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    normalize_audio: bool = True
    volume: float = 1.0


class FakeVoice:
    """``PiperVoice``-shaped: ``load`` records paths, ``synthesize`` yields one chunk per sentence."""

    loaded: list[tuple[str, str]] = []

    def __init__(self, rate: int) -> None:
        self.config = types.SimpleNamespace(sample_rate=rate, num_speakers=1)
        self.calls: list[tuple[str, FakeSynthesisConfig]] = []

    @classmethod
    def load(cls, model, config_path=None, use_cuda=False):
        cls.loaded.append((str(model), str(config_path)))
        return cls(16000 if "other" in str(model) else 22050)

    def synthesize(self, text, syn_config=None):
        self.calls.append((text, syn_config))
        if "explode" in text:
            raise RuntimeError("onnx went bang")
        for sentence in text.split(". "):
            yield types.SimpleNamespace(sample_rate=self.config.sample_rate,
                                        audio_float_array=np.full(100 * len(sentence.split()), 0.2, np.float32))


@pytest.fixture
def fake_piper(monkeypatch):
    module = types.ModuleType("piper")
    module.PiperVoice = FakeVoice
    module.SynthesisConfig = FakeSynthesisConfig
    FakeVoice.loaded = []
    monkeypatch.setitem(sys.modules, "piper", module)
    return module


def make_voice(folder: Path, name: str) -> Path:
    model = folder / f"{name}.onnx"
    model.write_bytes(b"onnx")
    Path(f"{model}.json").write_text("{}")
    return model


def test_bundled_voice_is_found_without_loading_piper() -> None:
    paths = bundled_voice_paths()
    assert paths is not None and paths[0].name == f"{BUNDLED_VOICE}.onnx" and paths[1].is_file()
    backend = PiperBackend()
    assert backend.model == BUNDLED_VOICE and not backend.loaded and backend.max_chunk_chars == 1000


def test_voice_path_errors_are_clear(tmp_path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        PiperBackend(voice=str(tmp_path / "nope.onnx"))
    with pytest.raises(UsageError, match="not a Piper .onnx voice") as info:
        PiperBackend(voice=str(tmp_path / "host.wav"))
    assert "chatterbox" in info.value.hint
    (tmp_path / "lonely.onnx").write_bytes(b"x")
    with pytest.raises(UsageError, match="lonely.onnx.json"):
        PiperBackend(voice=str(tmp_path / "lonely.onnx"))


def test_missing_piper_is_backend_unavailable(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # import raises ImportError
    with pytest.raises(BackendUnavailable, match="piper-tts"):
        PiperBackend().load()


def test_persona_settings_become_the_synthesis_config(fake_piper) -> None:
    backend = PiperBackend()
    backend.load()
    julie = load_persona("julie")
    voice = backend.default_voice(julie, None)
    assert voice.seed == julie.seed and voice.name == BUNDLED_VOICE
    assert voice.settings == {"length_scale": 1.08, "noise_scale": 0.6, "noise_w_scale": 0.8}
    samples = backend.synthesize("One two three. Four five", voice)
    assert samples.dtype == np.float32 and samples.shape == (500,)  # both sentences, concatenated
    engine = next(iter(backend._voices.values()))
    text, config = engine.calls[-1]
    assert config.length_scale == 1.08 and config.noise_w_scale == 0.8
    assert config.normalize_audio is False  # no per-sentence peak normalization
    assert backend.sample_rate == 22050
    assert backend.default_voice(None, 3).settings == {} and backend.default_voice(None, 3).seed == 3


def test_persona_voice_file_is_used_unless_voice_is_given(fake_piper, tmp_path) -> None:
    make_voice(tmp_path, "other-voice")
    own = make_voice(tmp_path, "mine")
    persona_file = tmp_path / "p.yaml"
    persona_file.write_text("name: p\ndisplay_name: P\nstyle: calm\n"
                            "voice: {piper: {voice: other-voice.onnx, length_scale: 1.2}}\n")
    persona = load_persona(str(persona_file))
    backend = PiperBackend()
    backend.load()
    voice = backend.default_voice(persona, None)
    assert voice.name == "other-voice" and voice.settings["voice"] == str(tmp_path / "other-voice.onnx")
    with pytest.raises(SynthesisError, match="16000 Hz"):  # the double's other voice runs at 16 kHz
        backend.synthesize("Hi there.", voice)
    explicit = PiperBackend(voice=str(own))
    assert explicit.default_voice(persona, None).name == "mine"
    assert "voice" not in explicit.default_voice(persona, None).settings


def test_engine_errors_are_per_record_and_unload_frees(fake_piper) -> None:
    backend = PiperBackend()
    backend.load()
    with pytest.raises(SynthesisError, match="onnx went bang"):
        backend.synthesize("Please explode.", backend.default_voice())
    backend.unload()
    assert not backend.loaded and backend._voices == {}


ORT_OOM = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
           "Failed to allocate memory for requested buffer of size 94371840")


@pytest.mark.parametrize("error", [RuntimeError(ORT_OOM), MemoryError(), RuntimeError("std::bad_alloc")])
def test_onnxruntime_allocation_failures_are_out_of_memory_with_a_hint(fake_piper, monkeypatch, error) -> None:
    """A failed allocation is no bad voice file (load) nor one record's fault (synthesis)."""
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(FakeVoice, "load", classmethod(fail))
    with pytest.raises(BackendOutOfMemory) as info:
        PiperBackend().load()
    assert "free memory" in info.value.hint and info.value.exit_status == 1
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "piper", fake_piper)
    backend = PiperBackend()
    backend.load()
    monkeypatch.setattr(FakeVoice, "synthesize", fail)
    with pytest.raises(BackendOutOfMemory, match="Piper ran out of memory"):
        backend.synthesize("Hello there.", backend.default_voice())
