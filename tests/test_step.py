"""The step primitive (stages/step.py) and what it guarantees to every front end (issue 15)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ai_content_pipeline.chain.runner import run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.events import NullEmitter
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages import step as step_module
from ai_content_pipeline.stages.common import RecordTracker
from ai_content_pipeline.stages.registry import STAGE_TYPES, options_class, stage_class
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.stages.step import Step
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from tests.chain_doubles import FakeFactory, write_chain
from tests.doubles import FakeLLM, RecordingEmitter, lines_of


def test_the_registry_holds_the_real_classes() -> None:
    assert set(STAGE_TYPES) == {"script", "voice"}
    assert (stage_class("script"), options_class("script")) == (ScriptStage, ScriptOptions)
    assert (stage_class("voice"), options_class("voice")) == (VoiceStage, VoiceOptions)
    with pytest.raises(UsageError, match="unknown stage 'video'"):
        stage_class("video")


@pytest.fixture
def closed_ledgers(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of the ledgers closed during a test."""
    closed: list[Path] = []
    real = Ledger.close

    def close(self: Ledger) -> None:
        closed.append(self.path)
        real(self)

    monkeypatch.setattr(Ledger, "close", close)
    return closed


def test_a_step_writes_every_record_and_closes_its_ledger(tmp_path: Path, closed_ledgers: list[Path]) -> None:
    emitter = RecordingEmitter()
    out: list[dict[str, Any]] = []
    with Step("script", FakeLLM(), ScriptOptions(), emitter=emitter, checkpoint=tmp_path / "l.jsonl") as run:
        written = run.run(lines_of({"id": "a", "artist": "A", "title": "T"}, b"not json"), out.append, 2)
    assert written == len(out) == 2
    assert out[0]["script"]["text"] and "error" in out[1]
    assert run.stats.completed == 1 and run.stats.failed == 1
    assert closed_ledgers == [tmp_path / "l.jsonl"] and (tmp_path / "l.jsonl").is_file()
    assert emitter.names()[-1] == "model_unload"


def test_a_stage_that_cannot_be_built_leaves_no_ledger_open(tmp_path: Path, closed_ledgers: list[Path]) -> None:
    step = Step("script", FakeLLM(), ScriptOptions(template="no-such-template"), emitter=NullEmitter(),
                checkpoint=tmp_path / "l.jsonl")
    with pytest.raises(UsageError), step:
        pass
    assert closed_ledgers == [tmp_path / "l.jsonl"]


def test_the_chain_counts_its_input_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[list[Any]] = []
    real = step_module.count_records

    def counting(sources: Any, **kw: Any) -> int | None:
        counted.append(list(sources))
        return real(sources, **kw)

    monkeypatch.setattr(step_module, "count_records", counting)
    emitter = RecordingEmitter()
    outcome = run_chain(load_chain(str(write_chain(tmp_path))), emitter=emitter, backend_factory=FakeFactory())
    assert outcome.error is None
    assert len(counted) == 1  # the chain input; step 2 knows step 1 wrote 3 records
    totals = {(f["step"], f["total"]) for e, f in emitter.events if e == "progress"}
    assert totals == {(1, 3), (2, 3)}


class _SlowCounts:
    """Stats whose ``completed`` takes a moment to read: unlocked ``+= 1`` from threads lose counts."""

    total: int | None = None
    failed = 0
    skipped = 0

    def __init__(self) -> None:
        self._completed = 0

    @property
    def completed(self) -> int:
        value = self._completed
        time.sleep(0.0005)
        return value

    @completed.setter
    def completed(self, value: int) -> None:
        self._completed = value


def test_record_counts_from_worker_threads_are_not_lost() -> None:
    stats: Any = _SlowCounts()
    tracker = RecordTracker(NullEmitter(), stats, "script")
    workers = [threading.Thread(target=lambda: [tracker.complete(i, f"r{i}") for i in range(20)])
               for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert stats.completed == 8 * 20
