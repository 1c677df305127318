"""``aicp voices say`` (one line to a file, real Piper) and ``aicp voices list``; ``aicp-voice
--lexicon``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import soundfile as sf

from ai_content_pipeline.backends import chatterbox
from ai_content_pipeline.backends.piper import bundled_voice_paths
from ai_content_pipeline.backends.registry import register_backend, unregister_backend
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke
from tests.doubles import FakeTTS, SpeechTTS

NAMES = 'Você É Linda:\n  say: voh-SAY eh LEEN-dah\n  phonemes: "vo.ˈse ɛ ˈlĩ.dɐ"\n'


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def aicp(*args: str, input: bytes = b"") -> Any:
    return invoke(cli, "aicp", list(args), input)


def test_voices_say_writes_a_wav_with_real_piper(tmp_path: Path) -> None:
    out = tmp_path / "try.wav"
    plain = aicp("voices", "say", "Tonight: Você É Linda.", "-o", str(out), "--backend", "piper")
    assert plain.exit_code == 0, plain.stderr
    audio = json.loads(plain.stdout)
    assert audio["path"] == str(out) and audio["backend"] == "piper" and audio["lexicon"] == []
    data, rate = sf.read(out)
    assert rate == 22050 and len(data) / rate == pytest.approx(audio["seconds"], abs=0.01) and audio["seconds"] > 0.5
    assert plain.stderr == ""

    names = write(tmp_path / "names.yaml", NAMES)
    said = aicp("voices", "say", "Tonight: Você É Linda.", "-o", str(tmp_path / "try.flac"),
                "--backend", "piper", "--lexicon", names)
    assert said.exit_code == 0, said.stderr
    fixed = json.loads(said.stdout)
    assert fixed["lexicon"] == ["Você É Linda"] and fixed["format"] == "flac"
    assert fixed["key"] != audio["key"]
    assert sf.info(tmp_path / "try.flac").frames != sf.info(out).frames  # said differently


def test_voices_say_refuses_to_replace_a_file_and_overwrite_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "try.wav"
    out.write_bytes(b"mine")
    # --voice-backend: the option's first spelling, still accepted
    refused = aicp("voices", "say", "Hello there, friends.", "-o", str(out), "--voice-backend", "piper")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert f"audio file {out} exists" in refused.stderr and "--overwrite" in refused.stderr
    assert out.read_bytes() == b"mine"
    replaced = aicp("voices", "say", "Hello there, friends.", "-o", str(out), "--backend", "piper", "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert sf.info(out).samplerate == 22050


@pytest.mark.parametrize(("args", "says"), [
    (["   ", "-o", "{tmp}/a.wav"], "there is no text to say"),
    (["Hi there.", "-o", "{tmp}/a.aiff"], "cannot tell the audio format of"),
    (["Hi there.", "-o", "{tmp}/a.wav", "--lexicon", "{tmp}/bad.yaml"], "bad.yaml:2: entry 'Björk': sey: Extra"),
    (["Hi there.", "-o", "{tmp}/a.wav", "--lexicon", "{tmp}/none.yaml"], "none.yaml does not exist"),
    (["Hi there.", "-o", "{tmp}/a.wav", "--persona", "nobody"], "unknown persona 'nobody'"),
])
def test_voices_say_usage_errors_come_before_any_backend_is_made(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], says: str) -> None:
    write(tmp_path / "bad.yaml", "ok: fine\nBjörk: {sey: x}\n")
    made: list[str] = []
    monkeypatch.setattr("ai_content_pipeline.backends.registry.create_tts", lambda *a, **k: made.append("tts"))
    result = aicp("voices", "say", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and result.stdout == "" and says in result.stderr, result.stderr
    assert made == [] and not (tmp_path / "a.wav").exists()


def test_voices_list_names_the_bundled_piper_voice_and_voice_files_found(tmp_path: Path) -> None:
    bundled = bundled_voice_paths()
    assert bundled is not None
    home = Path(os.environ["AICP_HOME"]) / "voices"
    home.mkdir()
    for folder, name in ((home, "de_DE-thorsten-low"), (tmp_path, "pt_BR-faber-medium")):
        shutil.copy(bundled[0], folder / f"{name}.onnx")
        config = json.loads(bundled[1].read_text(encoding="utf-8"))
        config["language"] = {"code": name[:5]}
        (folder / f"{name}.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    (tmp_path / "lonely.onnx").write_bytes(b"no config beside it")
    result = aicp("voices", "list", "--dir", str(tmp_path))
    assert result.exit_code == 0 and result.stderr == ""
    voices = [orjson.loads(line) for line in result.stdout.splitlines()]
    piper = [(v["name"], v["source"], v["language"], v["voice"]) for v in voices if v["backend"] == "piper"]
    assert piper == [("en_US-joe-medium", "bundled", "en_US", str(bundled[0])),
                     ("de_DE-thorsten-low", "user", "de_DE", str(home / "de_DE-thorsten-low.onnx")),
                     ("pt_BR-faber-medium", "folder", "pt_BR", str(tmp_path / "pt_BR-faber-medium.onnx"))]
    assert all(v["sample_rate"] == 22050 and v["description"] for v in voices if v["backend"] == "piper")


def test_voices_list_names_what_each_installed_backend_offers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chatterbox, "chatterbox_available", lambda: False)
    assert {orjson.loads(line)["backend"] for line in aicp("voices", "list").stdout.splitlines()} == {"piper"}
    monkeypatch.setattr(chatterbox, "chatterbox_available", lambda: True)
    register_backend(name="kokoro-like", kind="tts", adapter=FakeTTS,
                     list_voices=lambda folders=(): [{"name": "af_heart", "voice": "af_heart", "source": "bundled",
                                                      "description": "a voice of its own"}])
    try:
        lines = [orjson.loads(line) for line in aicp("voices", "list").stdout.splitlines()]
    finally:
        unregister_backend("tts", "kokoro-like")
    cb = [v for v in lines if v["backend"] == "chatterbox"]
    assert [v["name"] for v in cb] == ["default", "clone"] and "clone from audio_prompt" in cb[1]["description"]
    assert {"backend": "kokoro-like", "name": "af_heart", "voice": "af_heart", "source": "bundled",
            "description": "a voice of its own"} in lines


SCRIPTS = orjson.dumps({"id": "s1", "script": {"text": "Here is Você É Linda by Linda.", "take": 0}}) + b"\n"


def test_aicp_voice_lexicon_respells_for_an_engine_without_phoneme_input(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tts = SpeechTTS()
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    first = write(tmp_path / "a.yaml", NAMES + "Linda: LIN-dah\n")
    second = write(tmp_path / "b.yaml", "linda: LEEN-dah\n")
    result = invoke(voice_cli.voice_command, "aicp-voice",
                    ["--out-dir", str(tmp_path / "audio"), "--lexicon", first, "--lexicon", second], SCRIPTS)
    assert result.exit_code == 0, result.stderr
    assert tts.calls[0][0] == "Here is voh-SAY eh LEEN-dah by LEEN-dah."


def test_aicp_voice_with_a_bad_lexicon_stops_before_the_model_loads(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    tts = SpeechTTS()
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    bad = write(tmp_path / "bad.yaml", "Linda: {phonemes: '[x]'}\n")
    result = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "audio"), "--lexicon", bad],
                    SCRIPTS)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"lexicon file {bad}:1: entry 'Linda': phonemes may not hold [ or ]" in result.stderr
    assert tts.loads == 0


def test_aicp_voice_never_writes_its_checkpoint_over_a_lexicon_file(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    tts = SpeechTTS()
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    first = write(tmp_path / "a.yaml", "Linda: LIN-dah\n")
    second = write(tmp_path / "b.yaml", "Linda: LEEN-dah\n")
    result = invoke(voice_cli.voice_command, "aicp-voice",
                    ["--out-dir", str(tmp_path / "audio"), "--lexicon", first, "--lexicon", second,
                     "--checkpoint", second], SCRIPTS)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"--checkpoint {second} is the same file as --lexicon (2) {second}" in result.stderr
    assert Path(second).read_text(encoding="utf-8") == "Linda: LEEN-dah\n" and tts.loads == 0
