"""Cancelling a chain from outside (``cancel`` callable): record and long-form chunk boundaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ai_content_pipeline.chain.runner import run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.stages.common import Cancelled
from ai_content_pipeline.stages.registry import build_stage
from ai_content_pipeline.stages.script import ScriptOptions
from ai_content_pipeline.status import ExitStatus
from tests.chain_doubles import FakeFactory, write_chain
from tests.doubles import RecordingEmitter, lines_of
from tests.test_longform import TOPIC, LongformLLM


def _records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_cancel_in_voice_step_keeps_finished_records_and_unloads(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    em = RecordingEmitter()
    # cancel once the first voice record finished
    def cancel() -> bool:
        return any(e == "record_complete" and f.get("stage") == "voice" for e, f in em.events)

    outcome = run_chain(spec, emitter=em, backend_factory=FakeFactory(), cancel=cancel)

    assert outcome.exit_status == ExitStatus.INTERRUPTED
    assert isinstance(outcome.error, Cancelled)
    assert outcome.result["error"]["type"] == "Cancelled" and outcome.result["error"]["step"] == 2
    voiced = _records(tmp_path / "out/02-voice.jsonl")
    assert [r["id"] for r in voiced] == ["s1"] and Path(voiced[0]["audio"]["path"]).is_file()
    assert len(list((tmp_path / "out/audio").glob("*.wav"))) == 1
    names = em.names()
    # the TTS model is unloaded before the step reports its error; the run still closes
    assert names.index("model_unload", names.index("step_start", 1)) < names.index("step_error")
    assert names[-1] == "pipeline_complete"
    assert not list((tmp_path / "out").glob("*.part"))


def test_cancel_before_any_step_runs_nothing(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    factory, em = FakeFactory(), RecordingEmitter()
    outcome = run_chain(spec, emitter=em, backend_factory=factory, cancel=lambda: True)
    assert outcome.exit_status == ExitStatus.INTERRUPTED and factory.built == []
    assert outcome.result["steps_completed"] == 0


def test_no_cancel_runs_to_the_end(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    outcome = run_chain(spec, backend_factory=FakeFactory(), cancel=lambda: False)
    assert outcome.exit_status == ExitStatus.SUCCESS and len(_records(tmp_path / "out/02-voice.jsonl")) == 3


def test_longform_cancel_stops_between_chunks(tmp_path: Path) -> None:
    em = RecordingEmitter()
    def cancel() -> bool:  # after the second chunk is checkpointed
        return sum(1 for e, _ in em.events if e == "chunk_complete") >= 2

    stage = build_stage("script", LongformLLM(), ScriptOptions(template="podcast-longform", words=300,
                                                    work_dir=str(tmp_path / "lf")), em)
    stage.cancel = cancel
    try:
        list(stage.run(lines_of(TOPIC)))
    except Cancelled:
        pass
    else:
        raise AssertionError("the stage did not stop")
    chunks = sorted(p.name for p in (tmp_path / "lf/ep1/chunks").iterdir())
    assert chunks == ["01.txt", "02.txt"]
    assert [f["chunk"] for e, f in em.events if e == "chunk_start"] == [1, 2]
    assert em.names()[-1] == "model_unload"
