"""Chain test helpers: chain files in tmp dirs, a backend factory of doubles, and a CLI with doubles.

``python -m tests.chain_doubles run-chain --config X ...`` runs the real ``aicp``
group with every chain step's backend replaced by :class:`FakeLLM` /
:class:`FakeTTS` (``AICP_FAKE_DELAY`` seconds per synthesis slows the voice step
down, for kill tests, and ``AICP_FAKE_LLM_DELAY`` each script; ``AICP_FAKE_WRITE_DELAY`` seconds holds each audio file under its
temporary name; ``AICP_FAKE_FAIL`` makes records whose prompt contains it fail).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from ai_content_pipeline.errors import RecordError
from tests.doubles import FakeLLM, FakeTTS

SONGS = [
    {"id": "s1", "artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975},
    {"id": "s2", "artist": "Fleetwood Mac", "title": "Dreams", "year": 1977},
    {"id": "s3", "artist": "Nirvana", "title": "Smells Like Teen Spirit", "year": 1991},
]


def write_songs(path: Path, songs: list[dict[str, Any]] | None = None) -> Path:
    """Write ``songs`` (default :data:`SONGS`) as JSON Lines."""
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in (songs or SONGS)))
    return path


def chain_data(tmp: Path, **top: Any) -> dict[str, Any]:
    """A two-step chain (script → voice) over :data:`SONGS` in ``tmp``; ``top`` overrides keys."""
    data: dict[str, Any] = {
        "name": "test-chain",
        "input": str(write_songs(tmp / "songs.jsonl")),
        "output_dir": str(tmp / "out"),
        "steps": [
            {"type": "script", "template": "song-intro", "persona": "julie", "backend": "auto",
             "params": {"variants": 1, "temperature": 0.8}},
            {"type": "voice", "backend": "auto", "params": {"format": "wav", "loudness": -16}},
        ],
    }
    data.update(top)
    return data


def write_chain(tmp: Path, name: str = "pipeline.yaml", **top: Any) -> Path:
    """Write :func:`chain_data` as YAML and return its path."""
    path = tmp / name
    path.write_text(yaml.safe_dump(chain_data(tmp, **top), sort_keys=False), encoding="utf-8")
    return path


class SlowTTS(FakeTTS):
    """FakeTTS with speech-like length (0.4 s per word, passes the voice stage's checks).

    :param delay: seconds to sleep per call (so a test can kill the voice step mid-way).
    """

    def __init__(self, delay: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.delay = delay

    def synthesize(self, text: str, voice: Any) -> np.ndarray:
        self.calls.append((text, voice))
        self.events.append("synthesize")
        if self.delay:
            time.sleep(self.delay)
        if any(s in text for s in self.fail_on):
            raise RecordError("forced synthesis failure", stage="voice")
        n = int(self.sample_rate * 0.4 * max(1, len(text.split())))
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


class FakeFactory:
    """A ``backend_factory`` that hands out doubles and remembers them per step type."""

    def __init__(self, llm: FakeLLM | None = None, tts: FakeTTS | None = None) -> None:
        self.llm = llm or FakeLLM()
        self.tts = tts or SlowTTS()
        self.built: list[str] = []

    def __call__(self, step: Any, notice: Any) -> Any:
        self.built.append(step.type)
        return self.llm if step.type == "script" else self.tts


def _env_factory() -> FakeFactory:
    fail = os.environ.get("AICP_FAKE_FAIL")
    delay = float(os.environ.get("AICP_FAKE_DELAY", "0"))
    llm_delay = float(os.environ.get("AICP_FAKE_LLM_DELAY", "0"))
    return FakeFactory(FakeLLM(fail_on=(fail,) if fail else (), delay=llm_delay), SlowTTS(delay))


def main(argv: list[str]) -> int:
    """Run the ``aicp`` group with doubles as every chain step's backend (and as the
    backends of ``aicp script`` / ``aicp voice``)."""
    from ai_content_pipeline.chain import runner
    from ai_content_pipeline.cli import script as script_cli
    from ai_content_pipeline.cli import voice as voice_cli
    from ai_content_pipeline.cli.errors import run_cli
    from ai_content_pipeline.cli.main import cli

    factory = _env_factory()
    write_delay = float(os.environ.get("AICP_FAKE_WRITE_DELAY", "0"))
    if write_delay:  # hold each audio file in its temporary name, for kill-mid-write tests
        from ai_content_pipeline import audio

        real_write = audio.write_atomic

        def slow_write(target: Any, fill: Any, *a: Any, **k: Any) -> Any:
            def slow_fill(handle: Any) -> None:
                fill(handle)
                handle.flush()
                time.sleep(write_delay)

            return real_write(target, slow_fill, *a, **k)

        audio.write_atomic = slow_write  # type: ignore[assignment]
    runner.create_backend = factory  # type: ignore[assignment]
    script_cli.create_llm = lambda *a, **k: factory.llm  # type: ignore[assignment]
    voice_cli.create_tts = lambda *a, **k: factory.tts  # type: ignore[assignment]
    return run_cli(cli, "aicp", argv)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.exit(code)
