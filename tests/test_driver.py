"""The one driver (stages/driver.py): every front end's steps run on it, with one set of events,
one failure rule and one cost sum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ai_content_pipeline.chain.spec import Prices
from ai_content_pipeline.errors import BackendUnavailable
from ai_content_pipeline.stages.driver import Driver, StepPlan, step_label
from ai_content_pipeline.stages.script import ScriptOptions
from ai_content_pipeline.stages.step import StepInput
from ai_content_pipeline.stages.voice import VoiceOptions
from tests.doubles import FakeLLM, RecordingEmitter, SpeechTTS, lines_of

SONGS = [{"id": f"s{i}", "artist": "A", "title": f"T{i}"} for i in range(3)]


def _source() -> StepInput:
    lines = lines_of(*SONGS)
    return StepInput(lines, len(lines))


def _plans(tmp_path: Path, voiced: Any = None, **llm: Any) -> tuple[list[StepPlan], list[dict[str, Any]]]:
    texts: list[dict[str, Any]] = []
    return [StepPlan("script", 1, options=ScriptOptions(), backend=FakeLLM(**llm), output=texts),
            StepPlan("voice", 2, options=VoiceOptions(out_dir=str(tmp_path / "audio")), backend=SpeechTTS(),
                     output=voiced)], texts


def test_a_chain_in_memory_hands_each_step_the_records_of_the_one_before(tmp_path: Path) -> None:
    emitter, voiced = RecordingEmitter(), []
    plans, texts = _plans(tmp_path, voiced)
    outcome = Driver(emitter, name="two").run(plans, _source, read_first=True)
    assert outcome.error is None and int(outcome.exit_status) == 0
    assert [r["id"] for r in texts] == [r["id"] for r in voiced] == ["s0", "s1", "s2"]
    assert all(r["audio"]["path"] for r in voiced)
    names = emitter.names()
    assert names[0] == "pipeline_start" and names[-1] == "pipeline_complete" and "run_complete" not in names
    assert [(n, f["step"]) for n, f in emitter.events if n.startswith("step_")] == \
        [("step_start", 1), ("step_complete", 1), ("step_start", 2), ("step_complete", 2)]


def test_a_command_is_a_chain_of_one_step_with_the_commands_events(tmp_path: Path) -> None:
    emitter, out = RecordingEmitter(), []
    plan = StepPlan("script", options=ScriptOptions(), backend=FakeLLM(), output=out.append)
    driver = Driver(emitter, chain=False)
    driver.run([plan], _source)
    assert len(out) == 3 and driver.stats is not None and driver.stats.completed == 3
    names = emitter.names()
    assert names[-1] == "run_complete" and not any(n.startswith(("pipeline_", "step_")) for n in names)


def test_one_failure_rule_a_chain_reports_what_a_command_raises(tmp_path: Path) -> None:
    plans, _ = _plans(tmp_path, unavailable=True)
    emitter = RecordingEmitter()
    outcome = Driver(emitter).run(plans, _source, read_first=True)
    assert isinstance(outcome.error, BackendUnavailable) and outcome.exit_status == outcome.error.exit_status
    assert [n for n, _ in emitter.events if n.startswith("step_")] == ["step_start", "step_error"]
    assert outcome.result["error"]["step"] == 1 and outcome.result["steps_completed"] == 0
    with pytest.raises(BackendUnavailable):
        Driver(RecordingEmitter(), chain=False).run(plans[:1], _source)


def test_one_cost_sum(tmp_path: Path) -> None:
    plans, _ = _plans(tmp_path, [])
    emitter = RecordingEmitter()
    outcome = Driver(emitter, prices=Prices(per_1k_tokens=2.0, per_audio_minute=0.5)).run(plans, _source,
                                                                                           read_first=True)
    costs = [f["cost"] for n, f in emitter.events if n == "step_complete"]
    assert all(c > 0 for c in costs) and outcome.result["total_cost"] == pytest.approx(sum(costs), abs=1e-6)
    assert Driver(RecordingEmitter()).run(_plans(tmp_path / "b", [])[0], _source,
                                          read_first=True).result["total_cost"] == 0


def test_records_given_to_the_caller_come_the_last_one_after_the_model_unloaded(tmp_path: Path) -> None:
    plans, _ = _plans(tmp_path)  # the voice step's output None: yielded
    tts = plans[1].backend
    seen = [(r["id"], tts.loaded) for r in Driver(RecordingEmitter()).stream(plans, _source, read_first=True)]
    assert seen[:2] == [("s0", True), ("s1", True)] and seen[2] == ("s2", False)


def test_resume_needs_a_ledger_whatever_the_front_end() -> None:
    from ai_content_pipeline.errors import UsageError

    plan = StepPlan("script", options=ScriptOptions(resume=True), backend=FakeLLM(), output=[].append)
    with pytest.raises(UsageError, match="--resume needs"):
        Driver(chain=False).run([plan], _source)
    outcome = Driver().run([plan], _source)
    assert isinstance(outcome.error, UsageError) and outcome.result["error"]["step"] is None


def test_step_labels() -> None:
    assert step_label(1, "script") == "01-script" and step_label(12, "voice") == "12-voice"
