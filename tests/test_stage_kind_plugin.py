"""A stage kind registered from this one file runs everywhere a built-in kind runs: as a chain
step, through ``aicp run-chain --stream`` (its events in the documented shape) and as a service
job, with no product file naming it. The toy kind ``upper`` uppercases ``script.text`` and uses
no model, so it has no backend at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
import yaml
from click.testing import CliRunner

from ai_content_pipeline import eventdocs
from ai_content_pipeline.chain.runner import plan_chain, run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.errors import ConfigError
from ai_content_pipeline.jsonl import InputLine
from ai_content_pipeline.records import record_id
from ai_content_pipeline.stages import registry
from ai_content_pipeline.stages.common import Stage
from ai_content_pipeline.stages.kind import StageKind, StepConfig
from tests.doubles import RecordingEmitter

RECORDS = [{"id": f"s{i}", "script": {"text": f"good evening, song {i}"}} for i in range(3)]


@dataclass
class UpperOptions:
    """``upper`` options: ``strict`` (the chain's ``on_error: stop``), ``field`` to uppercase."""

    strict: bool = False
    field: Literal["text"] = "text"


class UpperStage(Stage):
    """Uppercases ``script.text`` of each record; no model."""

    stage = "upper"
    persona_required = False

    def run(self, lines: Iterable[InputLine], total: int | None = None) -> Iterator[dict[str, Any]]:
        if total is not None:
            self.stats.total = total
        with self._backend_run():
            for index, line in enumerate(lines):
                yield self._each(index, line, lambda record, i=index: self._upper(i, record))

    def _upper(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        rid = record_id(record)
        self.tracker.start(index, rid)
        script = dict(record.get("script") or {})
        script[self.options.field] = str(script.get(self.options.field, "")).upper()
        self.tracker.complete(index, rid, words=len(script[self.options.field].split()))
        return {**record, "script": script}


class UpperStep(StepConfig):
    type: Literal["upper"]


UPPER = StageKind(name="upper", stage=UpperStage, options=UpperOptions, step_model=UpperStep,
                  record_field="script")


@pytest.fixture
def upper() -> Iterator[StageKind]:
    registry.register_stage(UPPER)
    try:
        yield UPPER
    finally:
        registry.unregister_stage("upper")


def write_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RECORDS))
    return path


def write_chain(tmp_path: Path, **params: Any) -> Path:
    chain = {"name": "shout", "input": str(write_input(tmp_path)), "output_dir": str(tmp_path / "out"),
             "steps": [{"type": "upper", **({"params": params} if params else {})}]}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain), encoding="utf-8")
    return path


def test_a_registered_kind_runs_as_a_chain_step_without_a_backend(tmp_path: Path, upper: StageKind) -> None:
    def no_backend(step: Any, notice: Any) -> Any:
        raise AssertionError("a kind without a model gets no backend")

    emitter = RecordingEmitter()
    outcome = run_chain(load_chain(str(write_chain(tmp_path))), emitter=emitter, backend_factory=no_backend)
    assert outcome.error is None and outcome.result["success"] is True
    out = [orjson.loads(line) for line in (tmp_path / "out" / "01-upper.jsonl").read_bytes().splitlines()]
    assert [r["script"]["text"] for r in out] == [f"GOOD EVENING, SONG {i}" for i in range(3)]
    assert outcome.result["outputs"]["final"]["type"] == "upper"
    assert "model_load" not in emitter.names()
    plan = plan_chain(load_chain(str(write_chain(tmp_path))))
    assert plan["ok"] and plan["steps"][0]["resolved_backend"] is None


def test_the_kinds_params_are_checked_like_a_built_in_kinds(tmp_path: Path, upper: StageKind) -> None:
    with pytest.raises(ConfigError, match=r"steps\.0\.params\.colour: unknown upper parameter 'colour'"):
        load_chain(str(write_chain(tmp_path, colour="red")))
    with pytest.raises(ConfigError, match=r"steps\.0\.params\.strict: 'strict' is set by the chain"):
        load_chain(str(write_chain(tmp_path, strict=True)))


def test_an_unregistered_kind_is_refused_naming_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"steps\.0: Input tag 'upper' .*'script', 'voice'"):
        load_chain(str(write_chain(tmp_path)))


def test_run_chain_stream_sends_the_kinds_events_in_the_documented_shape(tmp_path: Path,
                                                                         upper: StageKind) -> None:
    from ai_content_pipeline.cli.main import cli

    res = CliRunner().invoke(cli, ["run-chain", "--config", str(write_chain(tmp_path)), "--stream"])
    assert res.exit_code == 0, res.stderr
    events = [orjson.loads(line) for line in res.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert set(names) <= eventdocs.names()
    assert names[:2] == ["pipeline_start", "step_start"] and names[-1] == "step_complete"
    start = events[1]
    assert start["type"] == "upper" and start["model"] is None and start["step"] == 1
    records = [e for e in events if e["event"] == "record_complete"]
    assert [(e["id"], e["stage"], e["step"]) for e in records] == [("s0", "upper", 1), ("s1", "upper", 1),
                                                                  ("s2", "upper", 1)]
    done = events[-1]
    assert {"step", "cost", "output", "duration_seconds", "type", "records", "tokens"} <= set(done)
    assert done["records"]["completed"] == 3 and done["output"].endswith("01-upper.jsonl")
    result = orjson.loads(res.stdout)
    assert result["event"] == "pipeline_complete" and result["success"] is True
    assert {"schema_version", "timestamp", "elapsed_seconds"} <= set(result)


def test_a_service_job_runs_the_kind(tmp_path: Path, upper: StageKind) -> None:
    from tests.service.conftest import make_service

    service = make_service(tmp_path, None)
    svc = next(service)
    try:
        jid = svc.submit({"records": RECORDS, "chain": {"steps": [{"type": "upper"}]}})
        svc.worker().run_once()
        body = svc.client.get(f"/api/v1/generate/{jid}").json()
        assert body["status"] == "completed", body
        texts = [r["script"]["text"] for r in body["records"]]
        assert texts == [f"GOOD EVENING, SONG {i}" for i in range(3)]
    finally:
        service.close()
