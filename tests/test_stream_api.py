"""The emitter API at its public import path, ai_content_pipeline.cli.stream."""

from __future__ import annotations

import datetime
import inspect
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline.cli.stream import NullEmitter, StreamEmitter

COMMON = {"schema_version", "event", "timestamp", "elapsed_seconds"}


def every_event(em) -> None:
    """Call each named event method once."""
    em.pipeline_start("chain", 2, {"steps": 2})
    em.step_start(1, "script", "m")
    em.record_start(0, "a")
    em.record_complete(0, "a", words=3)
    em.record_error(1, "b", {"message": "x"})
    em.record_skipped(2, "c")
    em.progress(3, 1, 1, 1)
    em.model_load("llamacpp", "m", "cpu", 0.1)
    em.model_unload("llamacpp", "m", "cpu", 0.1)
    em.chunk_start("a", 1, "intro", 50)
    em.chunk_progress("a", 1, 10, 2)
    em.chunk_complete("a", 1)
    em.message("hello")
    em.step_complete(1, 0.0, "out.jsonl", 1.0)
    em.step_error(2, "boom", "voice")
    em.pipeline_complete({"status": "ok"})


def lines(text: str) -> list[dict]:
    assert text.endswith("\n") or text == ""
    return [orjson.loads(line) for line in text.splitlines()]


def test_exact_signatures():
    sig = inspect.signature
    assert str(sig(StreamEmitter)).startswith("(enabled: 'bool' = False")
    assert list(sig(StreamEmitter.pipeline_start).parameters) == ["self", "name", "total_steps", "config"]
    assert sig(StreamEmitter.pipeline_start).parameters["config"].default is None
    assert list(sig(StreamEmitter.step_start).parameters) == ["self", "step_index", "step_type", "model"]
    params = sig(StreamEmitter.step_complete).parameters
    assert list(params)[:5] == ["self", "step_index", "cost", "output_path", "duration"]
    assert (params["cost"].default, params["output_path"].default, params["duration"].default) == (0.0, None, 0.0)
    assert list(sig(StreamEmitter.step_error).parameters) == ["self", "step_index", "error", "step_type"]
    assert list(sig(StreamEmitter.pipeline_complete).parameters) == ["self", "result"]
    for name in ("pipeline_start", "step_start", "step_complete", "step_error", "pipeline_complete",
                 "record_start", "record_complete", "record_error", "record_skipped", "progress",
                 "model_load", "model_unload", "chunk_start", "chunk_progress", "chunk_complete"):
        assert callable(getattr(NullEmitter(), name))


def test_disabled_emitter_and_null_emitter_print_nothing(capsys):
    every_event(StreamEmitter())
    every_event(StreamEmitter(enabled=False))
    every_event(NullEmitter())
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_only_pipeline_complete_goes_to_stdout(capsys):
    every_event(StreamEmitter(enabled=True))
    out, err = capsys.readouterr()
    stdout, stderr = lines(out), lines(err)
    assert [e["event"] for e in stdout] == ["pipeline_complete"]
    assert stdout[0]["status"] == "ok" and COMMON <= set(stdout[0])
    assert "pipeline_complete" not in {e["event"] for e in stderr}
    assert [e["event"] for e in stderr][:3] == ["pipeline_start", "step_start", "record_start"]
    assert len(stderr) == 15
    now = time.time()
    for e in stderr + stdout:
        assert COMMON <= set(e)
        assert e["schema_version"] == "1"
        assert abs(e["timestamp"] - now) < 60
        assert 0 <= e["elapsed_seconds"] < 60


def test_fields_of_the_pipeline_events(capsys):
    em = StreamEmitter(enabled=True)
    em.pipeline_start("radio", 3, config={"a": 1})
    em.step_start(2, "voice", model="piper")
    em.step_start(3, "script")
    em.step_complete(2, cost=0.25, output_path=Path("out/x.jsonl"), duration=1.23456)
    em.step_complete(3)
    em.step_error(3, ValueError("broke"), step_type="script")
    em.step_error(4, "plain")
    ev = lines(capsys.readouterr().err)
    assert {k: ev[0][k] for k in ("event", "name", "total_steps", "config")} == \
        {"event": "pipeline_start", "name": "radio", "total_steps": 3, "config": {"a": 1}}
    assert (ev[1]["step"], ev[1]["type"], ev[1]["model"]) == (2, "voice", "piper")
    assert ev[2]["model"] is None
    assert (ev[3]["step"], ev[3]["cost"], ev[3]["output"], ev[3]["duration_seconds"]) == \
        (2, 0.25, "out/x.jsonl", 1.235)
    assert (ev[4]["cost"], ev[4]["output"], ev[4]["duration_seconds"]) == (0.0, None, 0.0)
    assert (ev[5]["event"], ev[5]["step"], ev[5]["type"], ev[5]["error"]) == \
        ("step_error", 3, "script", "broke")
    assert ev[6]["type"] is None and ev[6]["error"] == "plain"


def test_pipeline_complete_carries_the_result_keys(capsys):
    em = StreamEmitter(enabled=True)
    em.pipeline_complete({"status": "ok", "output": Path("a/b.jsonl"), 3: "x",
                          "when": datetime.datetime(2024, 1, 2, 3, 4, 5), "event": "not-this"})
    out, err = capsys.readouterr()
    assert err == ""
    (e,) = lines(out)
    assert e["event"] == "pipeline_complete" and e["schema_version"] == "1"
    assert e["status"] == "ok" and e["output"] == "a/b.jsonl" and e["3"] == "x"
    assert isinstance(e["when"], str) and e["when"].startswith("2024-01-02")
    assert isinstance(e["elapsed_seconds"], float)


def test_values_json_cannot_hold_become_strings(capsys):
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    StreamEmitter(enabled=True).pipeline_start("x", 1, config={"path": Path("/tmp/p"), "obj": Thing()})
    (e,) = lines(capsys.readouterr().err)
    assert e["config"] == {"path": "/tmp/p", "obj": "a thing"}


def test_elapsed_seconds_grows_across_a_sleep(capsys):
    em = StreamEmitter(enabled=True)
    em.message("one")
    time.sleep(0.05)
    em.message("two")
    em.message("three")
    a, b, c = lines(capsys.readouterr().err)
    assert b["elapsed_seconds"] - a["elapsed_seconds"] >= 0.04
    assert c["elapsed_seconds"] >= b["elapsed_seconds"]
    assert b["timestamp"] >= a["timestamp"]
    assert round(b["elapsed_seconds"], 3) == b["elapsed_seconds"]  # millisecond precision


def test_writes_to_sys_stderr_as_it_is_at_call_time(monkeypatch):
    em = StreamEmitter(enabled=True)  # created before stderr is replaced
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    em.message("late")
    assert lines(buf.getvalue())[0]["message"] == "late"


def test_lines_stay_whole_and_ordered_under_threads():
    buf = io.StringIO()
    em = StreamEmitter(enabled=True, stream=buf)

    def work(n: int) -> None:
        for i in range(100):
            em.record_complete(i, f"t{n}", text="x" * 200)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = lines(buf.getvalue())
    assert len(events) == 400
    elapsed = [e["elapsed_seconds"] for e in events]
    assert elapsed == sorted(elapsed)


@pytest.mark.parametrize("module", ["ai_content_pipeline.events", "ai_content_pipeline.radio"])
def test_core_modules_import_no_click_and_no_engine(module):
    code = (f"import sys, {module}; "
            "bad = {'click', 'llama_cpp', 'torch', 'piper', 'onnxruntime', 'chatterbox'} & set(sys.modules); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
