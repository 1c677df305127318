"""A TTS backend from one file: this module is a whole third-party backend (a sine tone with
its own settings and persona voice block) and the tests that it is chosen like a built-in:
``aicp-voice --backend sine`` (with its own flag, ``--sine-seconds-per-word``), a chain's voice
step ``backend: sine`` (with its own key, ``seconds_per_word``), a persona's
``voice: {sine: ...}`` block, a service request, ``aicp doctor``, and an entry point naming
it; no product file knows it."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from ai_content_pipeline.backends import registry
from ai_content_pipeline.backends.base import TTSBackend, Voice
from ai_content_pipeline.backends.info import BackendInfo
from ai_content_pipeline.backends.settings import Setting
from ai_content_pipeline.limits import Limit

# -- the backend: everything a third-party package would ship --------------------------------
#: What ``create_tts("sine", ...)`` passes on (every other option is left out): the flag
#: ``--sine-seconds-per-word`` and the chain step key ``seconds_per_word``, checked by range.
SETTINGS = (
    Setting("seconds_per_word", "float", limit=Limit(float, 0, 2, min_open=True), metavar="SECONDS",
            help="length of the tone of one word"),
    Setting("device", choices=("auto", "cuda", "mps", "cpu"), default="auto", unset="auto", flag="--device",
            show_default=True, help="ignored (a tone needs no device)."),
)


class SineVoice(BaseModel):
    """A persona's ``voice.sine`` block."""

    model_config = ConfigDict(extra="forbid")
    frequency: float = Field(220.0, gt=20, le=4000)


class SineBackend(TTSBackend):
    """A tone per word at a speech-like rate (the voice checks pass it), pitched by the persona."""

    name = "sine"

    def __init__(self, seconds_per_word: float = 0.35, device: str | None = None) -> None:
        self.seconds_per_word = seconds_per_word
        self.device = device or "cpu"
        self.model = "sine"
        self.sample_rate = 16000

    def load(self) -> None:
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        frequency = persona.voice.block("sine").frequency if persona is not None else 220.0
        return Voice(name=f"sine-{frequency:g}", settings={"frequency": frequency}, seed=seed)

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        n = int(self.sample_rate * self.seconds_per_word * max(1, len(text.split())))
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)  # syllable-like level changes
        return (0.3 * envelope * np.sin(2 * np.pi * voice.settings["frequency"] * t)).astype(np.float32)


def _doctor(**_: Any) -> dict[str, Any]:
    return {"checks": {"sine": {"ok": True, "version": "1.0"}}, "usable": True}


BACKEND = BackendInfo(name="sine", kind="tts", adapter=SineBackend, settings=SETTINGS,
                      persona_voice=SineVoice, doctor=_doctor, summary="a sine tone per word")


# -- the tests ----------------------------------------------------------------------------------
SCRIPTS = b"".join(orjson.dumps(r) + b"\n" for r in [
    {"id": "s1", "script": {"text": "Good evening, night owls. Here is Queen.", "take": 0}},
    {"id": "s2", "script": {"text": "Turn it up! This is Dreams.", "take": 0}},
])
PERSONA = """\
name: robot
display_name: Robot
style: Short.
seed: 7
voice:
  sine: {frequency: 330}
  piper: {length_scale: 1.1}
"""


@pytest.fixture
def sine():
    info = registry.register_backend(BACKEND)
    yield info
    registry.unregister_backend("tts", "sine")


def _persona(tmp_path: Path, text: str = PERSONA) -> Path:
    path = tmp_path / "robot.yaml"
    path.write_text(text)
    return path


def test_aicp_voice_backend_sine_speaks_with_the_persona_block(sine, tmp_path) -> None:
    from ai_content_pipeline.cli import voice as voice_cli
    from tests.cli_helpers import invoke

    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--backend", "sine", "-p", str(_persona(tmp_path)), "--out-dir", str(tmp_path / "a"),
                  "--exaggeration", "1.0"],  # a chatterbox option: left out for sine, not a TypeError
                 SCRIPTS)
    assert res.exit_code == 0, res.stderr
    out = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert [r["audio"]["backend"] for r in out] == ["sine", "sine"]
    assert {r["audio"]["voice"] for r in out} == {"sine-330"}
    assert all(Path(r["audio"]["path"]).is_file() for r in out)


def test_the_choices_and_help_list_it_and_unregistering_removes_it(sine) -> None:
    from ai_content_pipeline.cli import voice as voice_cli
    from tests.cli_helpers import invoke

    assert "sine" in registry.TTS_CHOICES and registry.names("tts")[-1] == "sine"
    assert "[auto|piper|kokoro|chatterbox|sine]" in invoke(voice_cli.voice_command, "aicp-voice", ["--help"]).stdout
    registry.unregister_backend("tts", "sine")
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--backend", "sine"], SCRIPTS)
    assert res.exit_code == 2 and res.stdout == "" and "'sine' is not one of" in res.stderr


def test_a_persona_loaded_while_it_was_registered_forgets_its_block_once_unregistered(sine) -> None:
    """The persona cache follows the registry: a built-in persona loaded with ``sine`` registered
    carries a ``sine`` block, and once ``sine`` is gone its records must not (the voice stage
    refuses a block no backend declares)."""
    from ai_content_pipeline.templates import load_persona, persona_voice

    assert "sine" in persona_voice(load_persona("julie"))
    registry.unregister_backend("tts", "sine")
    assert "sine" not in persona_voice(load_persona("julie"))


def test_a_chain_voice_step_with_backend_sine(sine, tmp_path) -> None:
    from ai_content_pipeline.cli.main import cli
    from tests.cli_helpers import invoke

    (tmp_path / "in.jsonl").write_bytes(SCRIPTS)
    chain = tmp_path / "chain.yaml"
    chain.write_text(f"name: toy\ninput: {tmp_path / 'in.jsonl'}\noutput_dir: {tmp_path / 'out'}\n"
                     f"steps:\n  - type: voice\n    backend: sine\n    persona: {_persona(tmp_path)}\n")
    res = invoke(cli, "aicp", ["run-chain", "--config", str(chain)])
    assert res.exit_code == 0, res.stderr
    voiced = [orjson.loads(line) for line in (tmp_path / "out" / "01-voice.jsonl").read_bytes().splitlines()]
    assert [r["audio"]["backend"] for r in voiced] == ["sine", "sine"]
    assert voiced[0]["audio"]["voice"] == "sine-330"


def test_the_persona_voice_block_is_validated_by_the_backend_model(sine, tmp_path) -> None:
    from ai_content_pipeline.errors import AicpError
    from ai_content_pipeline.templates import load_persona, persona_from_voice, persona_voice

    persona = load_persona(str(_persona(tmp_path)))
    assert persona.voice.block("sine").frequency == 330 and persona.voice.piper.length_scale == 1.1
    carried = persona_voice(persona)
    assert carried["sine"] == {"frequency": 330.0} and carried["seed"] == 7
    assert persona_from_voice("robot", carried, "script.persona_voice").voice.block("sine").frequency == 330
    with pytest.raises(AicpError, match=r"voice\.sine\.frequency"):
        load_persona(str(_persona(tmp_path, PERSONA.replace("330", "9999"))))
    with pytest.raises(AicpError, match=r"voice\.sine\.pitch"):
        load_persona(str(_persona(tmp_path, PERSONA.replace("frequency", "pitch"))))
    registry.unregister_backend("tts", "sine")
    with pytest.raises(AicpError, match=r"voice\.sine"):  # no backend of that name: an unknown key
        load_persona(str(_persona(tmp_path)))


def test_doctor_lists_it(sine, capsys) -> None:
    from ai_content_pipeline.cli.errors import run_cli
    from ai_content_pipeline.cli.main import cli

    code = run_cli(cli, "aicp", ["doctor", "--json", "--host", "http://127.0.0.1:9"])
    report = orjson.loads(capsys.readouterr().out)
    assert report["checks"]["sine"] == {"ok": True, "version": "1.0"}
    assert "sine" in report["usable"]["tts"] and report["auto"]["tts"] != "sine"  # auto keeps its order
    assert code in (0, 4)


def test_an_installed_entry_point_registers_it(monkeypatch) -> None:
    """What ``[project.entry-points."ai_content_pipeline.backends.tts"] sine = "...:BACKEND"``
    gives an installed package: the name at once, the module imported when first needed."""
    found = {"llm": {}, "tts": {"sine": EntryPoint("sine", f"{__name__}:BACKEND", registry.ENTRY_POINT_GROUPS["tts"])}}
    monkeypatch.setattr(registry, "_entry_points", found)
    monkeypatch.setattr(registry, "_loaded", {})
    assert "sine" in registry.TTS_CHOICES
    tts = registry.create_tts("sine", voice=None, seconds_per_word=0.5)
    assert isinstance(tts, SineBackend) and tts.seconds_per_word == 0.5
    broken = {"llm": {}, "tts": {"sine": EntryPoint("sine", "no_such_module:BACKEND", "x")}}
    monkeypatch.setattr(registry, "_entry_points", broken)
    monkeypatch.setattr(registry, "_loaded", {})
    from ai_content_pipeline.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="cannot be loaded"):
        registry.create_tts("sine")
    assert "sine" not in [b.name for b in registry.backends("tts")]  # listings leave it out


def test_a_built_in_backend_is_described_in_its_own_module() -> None:
    for kind, table in registry.BUILTINS.items():
        for name in table:
            info = registry.get(kind, name)
            assert (info.kind, info.name) == (kind, name) and info.load("doctor") is not None
    assert registry.LLM_CHOICES == ("auto", *registry.names("llm")) and "llamacpp" in registry.LLM_CHOICES


def test_a_service_request_may_name_it(sine) -> None:
    from pydantic import ValidationError

    from ai_content_pipeline.service.requests import GenerateRequest

    body = {"records": [{"id": "s1", "title": "Queen"}], "voice": True, "voice_backend": "sine"}
    assert GenerateRequest.model_validate(body).voice_backend == "sine"
    registry.unregister_backend("tts", "sine")
    with pytest.raises(ValidationError, match="unknown backend 'sine'"):
        GenerateRequest.model_validate(body)


def test_an_installed_package_is_found_by_the_console_scripts(tmp_path) -> None:
    """A distribution on the path whose metadata names this module in the entry point group:
    ``aicp-voice`` (a fresh process, no register_backend) lists it and speaks with it."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "aicp_sine-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aicp-sine\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUPS['tts']}]\nsine = {__name__}:BACKEND\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)])}
    voice = os.path.join(os.path.dirname(sys.executable), "aicp-voice")
    shown = subprocess.run([voice, "--help"], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert "[auto|piper|kokoro|chatterbox|sine]" in shown.stdout
    done = subprocess.run([voice, "--backend", "sine", "--out-dir", str(tmp_path / "a")], input=SCRIPTS,
                          capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line)["audio"]["backend"] for line in done.stdout.splitlines()] == ["sine", "sine"]


def _seconds(path: Path) -> float:
    import soundfile

    return float(soundfile.info(str(path)).duration)


def test_its_own_flag_is_in_the_help_checked_by_its_range_and_reaches_it(sine, tmp_path) -> None:
    from ai_content_pipeline.cli import voice as voice_cli
    from tests.cli_helpers import invoke

    shown = invoke(voice_cli.voice_command, "aicp-voice", ["--help"]).stdout
    assert "--sine-seconds-per-word SECONDS" in shown and "sine: length of the tone of one word" in shown
    assert "chatterbox: the torch device" in shown and "sine: ignored" in shown  # a shared flag lists both
    runs = {}
    for value in ("0.3", "0.6"):
        res = invoke(voice_cli.voice_command, "aicp-voice",
                     ["--backend", "sine", "--sine-seconds-per-word", value, "--out-dir", str(tmp_path / value)],
                     SCRIPTS)
        assert res.exit_code == 0, res.stderr
        runs[value] = [_seconds(Path(orjson.loads(line)["audio"]["path"])) for line in res.stdout.splitlines()]
    assert all(b > 1.8 * a for a, b in zip(runs["0.3"], runs["0.6"], strict=True))
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--backend", "sine", "--sine-seconds-per-word", "9"],
                 SCRIPTS)
    assert res.exit_code == 2 and res.stdout == "" and "--sine-seconds-per-word" in res.stderr
    registry.unregister_backend("tts", "sine")
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--sine-seconds-per-word", "0.5"], SCRIPTS)
    assert res.exit_code == 2 and "No such option" in res.stderr  # gone with its backend


def _chain(tmp_path: Path, step: str) -> Path:
    (tmp_path / "in.jsonl").write_bytes(SCRIPTS)
    chain = tmp_path / "chain.yaml"
    chain.write_text(f"name: toy\ninput: {tmp_path / 'in.jsonl'}\noutput_dir: {tmp_path / 'out'}\n"
                     f"steps:\n  - type: voice\n    backend: sine\n{step}")
    return chain


def test_a_chain_step_sets_its_own_setting_checked_by_its_model(sine, tmp_path) -> None:
    from ai_content_pipeline.chain.runner import create_backend
    from ai_content_pipeline.chain.spec import load_chain
    from ai_content_pipeline.errors import ConfigError

    spec = load_chain(str(_chain(tmp_path, "    seconds_per_word: 0.5\n")))
    tts = create_backend(spec.steps[0], lambda *a: None)
    assert isinstance(tts, SineBackend) and tts.seconds_per_word == 0.5
    with pytest.raises(ConfigError, match=r"chain\.yaml:7: steps\.0\.seconds_per_word: sine: .*less than or equal to 2"):
        load_chain(str(_chain(tmp_path, "    seconds_per_word: 9\n")))
    with pytest.raises(ConfigError, match=r"steps\.0\.pitch: .*the TTS backend 'sine' has no setting 'pitch'") as err:
        load_chain(str(_chain(tmp_path, "    pitch: 3\n")))
    assert "seconds_per_word" in (err.value.hint or "")
    with pytest.raises(ConfigError, match=r"steps\.0\.checkpoint_dir: .*'sine' has no setting 'checkpoint_dir'"):
        load_chain(str(_chain(tmp_path, "    checkpoint_dir: /models\n")))  # chatterbox's, not sine's


def test_a_service_request_sets_its_own_setting(sine, tmp_path) -> None:
    from ai_content_pipeline.service.requests import (
        GenerateRequest,
        RequestProblem,
        build_chain,
        validate_chain,
    )

    body = {"records": [{"id": "s1", "title": "Queen"}], "voice": True, "voice_backend": "sine"}

    def check(settings: dict[str, Any]) -> dict[str, Any]:
        chain, _, where = build_chain(GenerateRequest.model_validate({**body, "voice_settings": settings}))
        return validate_chain(chain, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), where)

    (tmp_path / "in.jsonl").write_text("{}\n")
    assert check({"seconds_per_word": 0.5})["steps"][1]["seconds_per_word"] == 0.5
    with pytest.raises(RequestProblem, match=r"^voice_settings\.seconds_per_word: sine: "):
        check({"seconds_per_word": 9})
    with pytest.raises(RequestProblem, match=r"^voice_settings\.model: no TTS backend has a setting 'model'"):
        check({"model": "/etc/passwd"})  # a step key that is no setting never passes as one
