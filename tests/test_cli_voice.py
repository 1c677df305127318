"""``aicp-voice`` through aicp's real top-level handler, with a TTS double; stdout and stderr apart."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import orjson
import soundfile as sf

from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.errors import BackendUnavailable
from tests.chatterbox_doubles import make_checkpoint
from tests.cli_helpers import invoke
from tests.doubles import SpeechTTS

SCRIPTS = b"".join(orjson.dumps(r) + b"\n" for r in [
    {"id": "s1", "script": {"text": "Good evening, night owls. Here is Queen.", "persona": "julie", "take": 0}},
    {"id": "s2", "script": {"text": "Turn it up! This is Max with Dreams.", "persona": "max", "take": 0}},
])


def records(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def use(monkeypatch, tts) -> list[dict]:
    seen: list[dict] = []

    def create(name, notice=None, **options):
        seen.append({"name": name, **options})
        return tts

    monkeypatch.setattr(voice_cli, "create_tts", create)
    return seen


def test_voices_records_to_stdout_and_files(monkeypatch, tmp_path) -> None:
    tts = SpeechTTS()
    seen = use(monkeypatch, tts)
    out_dir = tmp_path / "a"
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(out_dir), "--format", "flac", "--sample-rate", "24000", "--loudness", "-18"],
                 SCRIPTS)
    assert res.exit_code == 0, res.stderr
    out = records(res.stdout)
    assert [r["id"] for r in out] == ["s1", "s2"]
    assert sorted(os.listdir(out_dir)) == ["s1_julie_0.flac", "s2_max_0.flac"]
    data, rate = sf.read(out[0]["audio"]["path"])
    assert rate == 24000 and abs(out[0]["audio"]["loudness_lufs"] + 18) < 1
    assert "2 ok, 0 failed" in res.stderr and "{" not in res.stderr  # a human summary, no JSON
    assert seen[0]["name"] == "auto" and seen[0]["device"] is None


def test_stream_events_go_to_stderr(monkeypatch, tmp_path) -> None:
    use(monkeypatch, SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path), "--stream"], SCRIPTS)
    events = [orjson.loads(line)["event"] for line in res.stderr.splitlines()]
    assert events.index("model_load") < events.index("record_complete") < events.index("model_unload")
    assert "progress" in events and events[-1] == "run_complete"
    assert len(records(res.stdout)) == 2


def test_partial_failure_exits_3_and_strict_exits_1(monkeypatch, tmp_path) -> None:
    bad = SCRIPTS + b'{"id": "x"}\nnot json\n'
    use(monkeypatch, SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path), "-q"], bad)
    assert res.exit_code == 3 and res.stderr == ""
    out = records(res.stdout)
    assert out[2]["error"]["stage"] == "voice" and out[3]["error"]["line"] == 4
    use(monkeypatch, SpeechTTS())
    strict = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "strict"), "--strict"],
                    b'{"id": "x"}\n' + SCRIPTS)
    assert strict.exit_code == 1 and strict.stdout == "" and "--strict" in strict.stderr


def test_resume_skips_without_loading(monkeypatch, tmp_path) -> None:
    ck = str(tmp_path / "voice.ledger")
    args = ["--out-dir", str(tmp_path / "o"), "--checkpoint", ck]
    use(monkeypatch, SpeechTTS())
    assert invoke(voice_cli.voice_command, "aicp-voice", args, SCRIPTS).exit_code == 0
    tts = SpeechTTS()
    use(monkeypatch, tts)
    res = invoke(voice_cli.voice_command, "aicp-voice", [*args, "--resume"], SCRIPTS)
    assert res.exit_code == 0 and tts.loads == 0
    out = records(res.stdout)
    assert len(out) == len(SCRIPTS.splitlines())
    assert all(r["audio"]["skipped"] for r in out)
    assert "2 skipped" in res.stderr


def test_usage_errors_exit_2(monkeypatch, tmp_path) -> None:
    use(monkeypatch, SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--resume"], SCRIPTS)
    assert res.exit_code == 2 and "--checkpoint" in res.stderr and res.stdout == ""
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--persona", "nobody"], SCRIPTS)
    assert res.exit_code == 2 and "unknown persona" in res.stderr
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--format", "aiff"], SCRIPTS)
    assert res.exit_code == 2


def test_real_registry_errors(tmp_path) -> None:
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--backend", "piper", "--voice", str(tmp_path / "none.onnx")], SCRIPTS)
    assert res.exit_code == 2 and "none.onnx does not exist" in res.stderr and res.stdout == ""
    ckpt = make_checkpoint(tmp_path / "ckpt", skip="s3gen.safetensors")
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--backend", "chatterbox", "--checkpoint-dir", str(ckpt)], SCRIPTS)
    assert res.exit_code == 4 and "s3gen.safetensors" in res.stderr and "hint:" in res.stderr


def test_backend_unavailable_exits_4(monkeypatch, tmp_path) -> None:
    class Down(SpeechTTS):
        def load(self) -> None:
            raise BackendUnavailable("the voice is gone", hint="reinstall it")

    use(monkeypatch, Down())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path)], SCRIPTS)
    assert res.exit_code == 4 and "the voice is gone" in res.stderr and "reinstall it" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_ctrl_c_exits_130_with_nothing_half_written(monkeypatch, tmp_path) -> None:
    def interrupted(handle, *args, **kwargs):
        handle.write(b"RIFF partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", interrupted)
    tts = SpeechTTS()
    use(monkeypatch, tts)
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "o")], SCRIPTS)
    assert res.exit_code == 130 and "interrupted" in res.stderr
    assert os.listdir(tmp_path / "o") == [] and tts.events[-1] == "unload"


def test_help_does_not_import_engines() -> None:
    code = (
        "import sys\n"
        "from ai_content_pipeline.cli.errors import run_cli\n"
        "from ai_content_pipeline.cli.main import cli\n"
        "from ai_content_pipeline.cli.voice import voice_command\n"
        "run_cli(voice_command, 'aicp-voice', ['--help']); run_cli(cli, 'aicp', ['voice', '--help'])\n"
        "heavy = [m for m in ('torch', 'chatterbox', 'piper', 'onnxruntime', 'pyloudnorm') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "--no-barrier" in out and "--checkpoint-dir" in out and "130 interrupted" in out


def test_mp3_bitrate_flag(monkeypatch, tmp_path) -> None:
    use(monkeypatch, SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(tmp_path), "--format", "mp3", "--bitrate", "64", "--sample-rate", "44100"], SCRIPTS)
    assert res.exit_code == 0, res.stderr
    for rec in records(res.stdout):
        audio = rec["audio"]
        kbps = audio["size"] * 8 / audio["seconds"] / 1000
        assert abs(kbps - 64) < 8, kbps
        decoded, _ = sf.read(audio["path"], dtype="float32")
        assert 20 * np.log10(np.max(np.abs(decoded))) <= -1.0
    wav = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path), "--bitrate", "64"], SCRIPTS)
    assert wav.exit_code == 2 and "--bitrate applies to mp3" in wav.stderr and wav.stdout == ""
    bad = invoke(voice_cli.voice_command, "aicp-voice", ["--format", "mp3", "--bitrate", "999"], SCRIPTS)
    assert bad.exit_code == 2


CHECKED = b"".join(orjson.dumps(r) + b"\n" for r in [
    {"id": "ok", "script": {"text": "Here is Queen with Bohemian Rhapsody.", "persona": "julie", "take": 0,
                            "checks": {"passed": True, "failed": []}}},
    {"id": "bad", "script": {"text": "Staying under 60 words, here it is.", "persona": "julie", "take": 0,
                             "checks": {"passed": False, "failed": ["mentions", "no_echo"]}}},
    {"id": "old", "script": {"text": "A script written before checks existed.", "persona": "julie", "take": 0}},
])


def test_a_script_that_failed_its_checks_is_voiced_with_a_warning_and_counted(monkeypatch, tmp_path) -> None:
    use(monkeypatch, SpeechTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "a")], CHECKED)
    assert res.exit_code == 0, res.stderr
    out = records(res.stdout)
    assert [r["id"] for r in out] == ["ok", "bad", "old"] and all("audio" in r for r in out)
    warnings = [line for line in res.stderr.splitlines() if "failed its checks" in line]
    assert warnings == ["aicp-voice: warning: record bad: voicing a script that failed its checks "
                        "(mentions, no_echo)"]
    assert "checks: 1 passed, 1 failed" in res.stderr


def test_require_checks_does_not_voice_a_script_that_failed_them(monkeypatch, tmp_path) -> None:
    use(monkeypatch, SpeechTTS())
    out_dir = tmp_path / "a"
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(out_dir), "--require-checks"], CHECKED)
    assert res.exit_code == 3
    out = records(res.stdout)
    assert "audio" in out[0] and "audio" in out[2] and "audio" not in out[1]
    error = out[1]["error"]
    assert error["type"] == "ChecksFailed" and error["stage"] == "voice"
    assert error["checks"]["failed"] == ["mentions", "no_echo"] and "not voiced" in error["message"]
    assert sorted(os.listdir(out_dir)) == ["ok_julie_0.wav", "old_julie_0.wav"]  # no file for "bad"


def test_checks_concern_only_the_script_text(monkeypatch, tmp_path) -> None:
    """--text-field names another field: the script's checks are not about what is voiced."""
    use(monkeypatch, SpeechTTS())
    lines = b"".join(orjson.dumps({**orjson.loads(line), "note": "Plain words to read."}) + b"\n"
                     for line in CHECKED.splitlines())
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(tmp_path / "a"), "--require-checks", "--text-field", "note"], lines)
    assert res.exit_code == 0, res.stderr
    assert "failed its checks" not in res.stderr and "checks:" not in res.stderr


def test_an_empty_text_field_is_script_text_for_the_checks_too(monkeypatch, tmp_path) -> None:
    """`--text-field ''` voices script.text (as unset): --require-checks must still hold."""
    use(monkeypatch, SpeechTTS())
    out_dir = tmp_path / "a"
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(out_dir), "--require-checks", "--text-field", ""], CHECKED)
    assert res.exit_code == 3
    assert records(res.stdout)[1]["error"]["type"] == "ChecksFailed" and "bad_julie_0.wav" not in os.listdir(out_dir)


def test_a_long_list_of_failed_checks_is_named_in_short(monkeypatch, tmp_path) -> None:
    use(monkeypatch, SpeechTTS())
    many = orjson.dumps({"id": "bad", "script": {"text": "Some words to read here.", "persona": "julie",
                                                   "checks": {"passed": False,
                                                              "failed": [f"c{i}" for i in range(10_000)]}}})
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "a")], many + b"\n")
    assert res.exit_code == 0, res.stderr
    flat = " ".join(line.removeprefix("aicp-voice: ") for line in res.stderr.splitlines())
    assert "voicing a script that failed its checks (c0, c1, c2, c3, c4 and 9995 more)" in flat
    assert "c5," not in flat and len(res.stderr.splitlines()) < 5
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "b"), "--require-checks"],
                 many + b"\n")
    assert res.exit_code == 3 and len(records(res.stdout)[0]["error"]["message"]) < 200
