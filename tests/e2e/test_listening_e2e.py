"""The listening check with the real recogniser (PocketSphinx) on real Piper voicings: a good
file passes; silence, a cut file and a file of other text fail with their reasons; a voice that
says other text is a record error under --require-checks."""

from __future__ import annotations

import os

import numpy as np
import orjson
import pytest
import soundfile as sf

from ai_content_pipeline.backends.registry import create_tts
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.listen import RECALL_THRESHOLD, PocketSphinx, listen, listen_file
from tests.cli_helpers import invoke

pytestmark = pytest.mark.e2e

SCRIPTS = [
    {"id": "song-002", "artist": "Fleetwood Mac", "title": "Dreams", "year": 1977,
     "script": {"text": "Rise and shine, it's Max on the morning drive! Fleetwood Mac gave us Dreams back in "
                        "1977. Turn it up and get moving.", "persona": "max", "take": 0}},
    {"id": "song-003", "artist": "Michael Jackson", "title": "Billie Jean", "year": 1982,
     "script": {"text": "Back in 1982, Michael Jackson went into the studio and came out with Thriller. "
                        "From that record, this is Billie Jean. It still sounds fresh today.",
                "persona": "sam", "take": 0}},
]
DATA = b"".join(orjson.dumps(r) + b"\n" for r in SCRIPTS)


@pytest.fixture(scope="module")
def voiced(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("listen") / "audio"
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--backend", "piper", "--out-dir", str(out_dir), "--verify", "--require-checks"], DATA)
    assert res.exit_code == 0, res.stderr
    assert "audio checks: 2 passed, 0 failed" in res.stderr
    return [orjson.loads(line) for line in res.stdout.splitlines()]


def test_a_real_piper_voicing_passes(voiced) -> None:
    for record in voiced:
        checks = record["audio"]["checks"]
        assert checks["passed"] is True and checks["failed"] == []
        assert checks["details"]["listen"]["recall"] >= RECALL_THRESHOLD
        assert checks["details"]["listen"]["recogniser"] == "pocketsphinx"


def test_broken_files_fail_with_their_reasons(voiced) -> None:
    recogniser = PocketSphinx()
    first, second = voiced
    samples, rate = sf.read(first["audio"]["path"], dtype="float32")
    text = first["script"]["text"]
    silent = listen(np.zeros_like(samples), rate, text, recogniser, names=first)
    assert silent.failed == ["silent"]
    cut = listen(samples[: int(samples.size * 0.6)], rate, text, recogniser, names=first)
    assert "truncated" in cut.failed and not cut.passed
    other = listen_file(second["audio"]["path"], text, recogniser, names=first)
    assert "unintelligible" in other.failed and other.recall < 0.35


class OtherTextTTS:
    """Real Piper that says other text than it is given (a voice gone wrong)."""

    def __init__(self) -> None:
        self.piper = create_tts("piper")

    def __getattr__(self, name):
        return getattr(self.piper, name)

    def synthesize(self, text, voice):
        return self.piper.synthesize("The weather tomorrow brings cold rain over the hills, and a strong "
                                     "wind from the north until the evening.", voice)


def test_require_checks_makes_a_voice_that_says_other_text_a_record_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(voice_cli, "create_tts", lambda name, notice=None, **options: OtherTextTTS())
    out_dir = tmp_path / "audio"
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(out_dir), "--verify", "--require-checks"], DATA[: DATA.index(b"\n") + 1])
    assert res.exit_code == 3
    error = orjson.loads(res.stdout)["error"]
    assert error["type"] == "ChecksFailed" and "unintelligible" in error["checks"]["failed"]
    assert not out_dir.exists() or os.listdir(out_dir) == []
