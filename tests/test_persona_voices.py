"""A voice per persona: with ``--voice-backend auto`` each persona is spoken by the first backend
whose persona block names a voice that is here (others by the default backend); the record says
which backend and voice spoke, the ledger key holds them (a change of voice re-voices), and
``aicp doctor`` / ``aicp personas show`` say which voice each persona gets or falls back to."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from ai_content_pipeline.backends import registry
from ai_content_pipeline.backends.base import TTSBackend, Voice
from ai_content_pipeline.backends.info import BackendInfo
from ai_content_pipeline.backends.piper import PiperBackend
from ai_content_pipeline.backends.router import PersonaVoices
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.doctor import voice_report
from ai_content_pipeline.templates import load_persona, persona_from_voice, record_voice_file
from tests.cli_helpers import invoke

KNOWN = {"low", "high"}  # the tones this machine "has installed"


class ToneVoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tone: str | None = None


class ToneBackend(TTSBackend):
    """A tone per word; the persona's ``voice.tone.tone`` picks its pitch."""

    name = "tone"

    def __init__(self, **_: Any) -> None:
        self.model, self.sample_rate, self.device = "tones", 16000, "cpu"

    def load(self) -> None:
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        tone = (persona.voice.block("tone").tone if persona is not None else None) or "low"
        return Voice(name=tone, settings={"tone": tone}, seed=seed)

    def voice_installed(self, voice: Voice) -> bool:
        return voice.name in KNOWN

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        hz = {"low": 110.0, "high": 220.0}.get(voice.name, 440.0)
        t = np.arange(int(self.sample_rate * 0.35 * len(text.split())), dtype=np.float32) / self.sample_rate
        return (0.3 * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def tone():
    registry.register_backend(BackendInfo(
        name="tone", kind="tts", adapter=ToneBackend, persona_voice=ToneVoice, priority=1,
        persona_voice_name=lambda block: block.tone if block is not None else None,
        doctor=lambda **_: {"checks": {"tone": {"ok": True}}, "usable": True}))
    yield
    registry.unregister_backend("tts", "tone")


def _persona(folder, name: str, tone: str | None) -> str:
    path = folder / f"{name}.yaml"
    block = f"voice:\n  tone: {{tone: {tone}}}\n" if tone else ""
    path.write_text(f"name: {name}\ndisplay_name: {name.title()}\nstyle: calm\nseed: 7\n{block}")
    return str(path)


def test_auto_gives_each_persona_the_backend_that_has_its_voice(tone, tmp_path) -> None:
    speaker = registry.create_tts("auto")
    assert isinstance(speaker, PersonaVoices) and speaker.default == "piper"
    assert "tone" in speaker.candidates
    named = load_persona(_persona(tmp_path, "rosa", "high"))
    missing = load_persona(_persona(tmp_path, "ghost", "squeak"))  # names a tone that is not here
    plain = load_persona(_persona(tmp_path, "plain", None))
    assert speaker.backend_for(named).name == "tone"
    assert speaker.backend_for(missing).name == "piper" and speaker.backend_for(plain).name == "piper"
    voice = speaker.default_voice(named, 7)
    assert (voice.backend, voice.model, voice.name, voice.seed) == ("tone", "tones", "high", 7)
    assert speaker.rate_for(voice) == 16000
    # a voice given on the command line chooses one backend for every persona
    voice_file = tmp_path / "amy.onnx"
    voice_file.write_bytes(b"x")
    (tmp_path / "amy.onnx.json").write_text("{}")
    assert isinstance(registry.create_tts("auto", voice=str(voice_file)), PiperBackend)


def test_the_record_names_the_backend_and_voice_and_a_new_voice_revoices(tone, tmp_path) -> None:
    persona = _persona(tmp_path, "rosa", "high")
    record = orjson.dumps({"id": "a", "persona": "rosa", "text": "Here is Dreams by Fleetwood Mac."}) + b"\n"
    args = ["-p", persona, "--out-dir", str(tmp_path / "audio"), "--checkpoint", str(tmp_path / "ledger"),
            "--resume"]
    first = invoke(voice_cli.voice_command, "aicp-voice", args, input=record)
    assert first.exit_code == 0, first.stderr
    audio = orjson.loads(first.stdout)["audio"]
    assert (audio["backend"], audio["voice"], audio["sample_rate"]) == ("tone", "high", 16000)
    same = orjson.loads(invoke(voice_cli.voice_command, "aicp-voice", args, input=record).stdout)["audio"]
    assert same.get("skipped") is True and same["key"] == audio["key"]
    _persona(tmp_path, "rosa", "low")
    changed = orjson.loads(invoke(voice_cli.voice_command, "aicp-voice", args, input=record).stdout)["audio"]
    assert not changed.get("skipped") and changed["voice"] == "low" and changed["key"] != audio["key"]


def test_a_record_may_carry_a_piper_voice_name_but_not_a_file() -> None:
    named = persona_from_voice("max", {"seed": 1, "piper": {"model": "en_US-joe-medium"}}, "script.persona_voice")
    assert named.voice.block("piper").model == "en_US-joe-medium"
    assert record_voice_file(named, "piper") is None
    for value in ("voices/amy.onnx", "/etc/passwd", "amy.onnx", ".."):
        carried = persona_from_voice("max", {"piper": {"model": value}}, "script.persona_voice")
        assert carried.voice.block("piper").model is None
        assert record_voice_file(carried, "piper") == "voice.piper.model"


def test_the_older_piper_voice_key_still_names_the_model(tmp_path) -> None:
    path = tmp_path / "rosa.yaml"
    path.write_text("name: rosa\ndisplay_name: Rosa\nstyle: calm\nvoice:\n  piper: {voice: en_US-joe-medium}\n")
    assert load_persona(str(path)).voice.block("piper").model == "en_US-joe-medium"


def test_a_piper_voice_name_that_is_not_installed_is_a_record_error(tmp_path) -> None:
    persona = tmp_path / "rosa.yaml"
    persona.write_text("name: rosa\ndisplay_name: Rosa\nstyle: calm\nvoice:\n  piper: {model: en_GB-nobody-low}\n")
    record = orjson.dumps({"id": "a", "persona": "rosa", "text": "Hello there."}) + b"\n"
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--backend", "piper", "-p", str(persona), "--out-dir", str(tmp_path / "a")], input=record)
    error = orjson.loads(res.stdout)["error"]
    assert res.exit_code == 3 and "en_GB-nobody-low" in error["message"] and "en_US-joe-medium" in error["hint"]


def test_the_voice_report_says_which_voice_each_backend_falls_back_to(tone, tmp_path) -> None:
    report = voice_report(load_persona(_persona(tmp_path, "rosa", "high")), usable=["piper", "tone"])
    assert report["auto"] == {"backend": "tone", "voice": "high"}
    assert report["backends"]["tone"] == {"installed": True, "names": "high", "speaks": "high", "fallback": False}
    assert report["backends"]["piper"]["fallback"] is True
    assert report["backends"]["piper"]["speaks"] == "en_US-joe-medium"
    gone = voice_report(load_persona(_persona(tmp_path, "ghost", "squeak")), usable=["piper", "tone"])
    assert gone["auto"]["backend"] == "piper"
    assert gone["backends"]["tone"] == {"installed": True, "names": "squeak", "speaks": "low", "fallback": True}


def test_doctor_and_personas_show_list_the_voices_of_the_built_in_personas() -> None:
    res = invoke(cli, "aicp", ["doctor", "--json"])
    report = orjson.loads(res.stdout)
    assert set(report["voices"]) >= {"julie", "max", "sam"}
    assert report["voices"]["max"]["auto"] == {"backend": "piper", "voice": "en_US-joe-medium"}
    shown = invoke(cli, "aicp", ["personas", "show", "julie"])
    assert shown.exit_code == 0 and "# voices on this machine" in shown.stdout
    assert "piper falls back to en_US-joe-medium" in shown.stdout
    assert yaml.safe_load(shown.stdout)["name"] == "julie"  # still a persona file to copy
    if "kokoro" in report["usable"]["tts"]:
        assert report["voices"]["julie"]["auto"] == {"backend": "kokoro", "voice": "jf_gongitsune"}
        assert report["voices"]["sam"]["auto"]["backend"] == "kokoro"
