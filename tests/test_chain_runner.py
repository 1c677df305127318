"""The chain runner with backend doubles: order, unloads, outputs, errors, resume, cost, plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ai_content_pipeline.chain.runner import plan_chain, run_chain, step_cost
from ai_content_pipeline.chain.spec import Prices, load_chain
from ai_content_pipeline.errors import BackendUnavailable
from ai_content_pipeline.status import ExitStatus
from tests.chain_doubles import FakeFactory, SlowTTS, write_chain
from tests.doubles import FakeLLM, RecordingEmitter


def _records(path: str | Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


class WatchfulTTS(SlowTTS):
    """Remembers whether the LLM was still loaded when this TTS loaded."""

    def __init__(self, llm: FakeLLM) -> None:
        super().__init__()
        self.llm = llm
        self.llm_loaded_at_load: list[bool] = []

    def load(self) -> None:
        self.llm_loaded_at_load.append(self.llm.loaded)
        super().load()


def test_chain_runs_steps_in_order_and_writes_each_step(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    factory, em = FakeFactory(), RecordingEmitter()
    outcome = run_chain(spec, emitter=em, backend_factory=factory)

    assert outcome.exit_status == ExitStatus.SUCCESS and outcome.error is None
    assert factory.built == ["script", "voice"]
    scripts = _records(tmp_path / "out/01-script.jsonl")
    voiced = _records(tmp_path / "out/02-voice.jsonl")
    assert [r["id"] for r in scripts] == [r["id"] for r in voiced] == ["s1", "s2", "s3"]
    assert all("script" in r and "audio" in r for r in voiced)
    assert all(Path(r["audio"]["path"]).parent == tmp_path / "out/audio" for r in voiced)
    assert not list((tmp_path / "out").glob("*.part"))

    res = outcome.result
    assert res["success"] is True and res["steps_completed"] == res["total_steps"] == 2
    assert res["outputs"]["final"] == {"path": str(tmp_path / "out/02-voice.jsonl"), "step": 2, "type": "voice"}
    assert [s["path"] for s in res["outputs"]["steps"]] == [str(tmp_path / "out/01-script.jsonl"),
                                                           str(tmp_path / "out/02-voice.jsonl")]
    assert res["records"] == {"total": 3, "completed": 3, "failed": 0, "skipped": 0}
    assert res["tokens"]["completion"] > 0 and res["audio_seconds"] > 0
    names = em.names()
    assert names[0] == "pipeline_start" and names[-1] == "pipeline_complete"
    assert [f["step"] for e, f in em.events if e == "step_complete"] == [1, 2]


def test_llm_is_unloaded_before_the_tts_loads(tmp_path: Path) -> None:
    llm = FakeLLM()
    tts = WatchfulTTS(llm)
    em = RecordingEmitter()
    run_chain(load_chain(str(write_chain(tmp_path))), emitter=em, backend_factory=FakeFactory(llm, tts))

    assert tts.llm_loaded_at_load == [False]
    model_events = [(e, f["backend"]) for e, f in em.events if e in ("model_load", "model_unload")]
    assert model_events == [("model_load", "fake"), ("model_unload", "fake"),
                            ("model_load", "fake-tts"), ("model_unload", "fake-tts")]
    names = em.names()
    assert names.index("model_unload") < names.index("step_complete")


def test_a_failed_record_carries_its_error_through_later_steps(tmp_path: Path) -> None:
    llm = FakeLLM(fail_on=("Dreams",))
    factory = FakeFactory(llm)
    outcome = run_chain(load_chain(str(write_chain(tmp_path))), backend_factory=factory)

    assert outcome.exit_status == ExitStatus.PARTIAL
    assert outcome.result["success"] is True  # the chain finished; records tell the rest
    voiced = _records(tmp_path / "out/02-voice.jsonl")
    failed = [r for r in voiced if "error" in r]
    assert [r["id"] for r in failed] == ["s2"] and failed[0]["error"]["stage"] == "script"
    assert "audio" not in failed[0]
    assert len(factory.tts.calls) == 2  # the failed record was not voiced
    assert outcome.result["records"]["failed"] == 1


def test_on_error_stop_ends_the_chain_at_the_first_failed_record(tmp_path: Path) -> None:
    em = RecordingEmitter()
    factory = FakeFactory(FakeLLM(fail_on=("Dreams",)))
    spec = load_chain(str(write_chain(tmp_path, on_error="stop")))
    outcome = run_chain(spec, emitter=em, backend_factory=factory)

    assert outcome.exit_status == ExitStatus.ERROR
    assert factory.built == ["script"]
    errors = [f for e, f in em.events if e == "step_error"]
    assert len(errors) == 1 and errors[0]["step"] == 1 and "stopped at record 2" in errors[0]["error"]
    res = outcome.result
    assert res["success"] is False and res["steps_completed"] == 0
    assert res["error"]["step"] == 1 and res["outputs"]["final"] is None
    assert not (tmp_path / "out/01-script.jsonl").exists()


def test_unavailable_backend_is_a_step_error_with_exit_4(tmp_path: Path) -> None:
    em = RecordingEmitter()
    factory = FakeFactory()

    def broken(step: Any, notice: Any) -> Any:
        if step.type == "voice":
            raise BackendUnavailable("no voice here", hint="install piper")
        return factory(step, notice)

    outcome = run_chain(load_chain(str(write_chain(tmp_path))), emitter=em, backend_factory=broken)
    assert outcome.exit_status == ExitStatus.BACKEND_UNAVAILABLE
    step_error = next(f for e, f in em.events if e == "step_error")
    assert step_error == {"step": 2, "type": "voice", "error": "no voice here (install piper)"}
    res = outcome.result
    assert res["steps_completed"] == 1 and res["success"] is False
    assert res["outputs"]["final"]["path"] == str(tmp_path / "out/01-script.jsonl")
    assert res["error"]["type"] == "BackendUnavailable" and res["error"]["hint"] == "install piper"


def test_disabled_step_is_skipped(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)), ["steps.1.enabled=false"])
    factory, em = FakeFactory(), RecordingEmitter()
    outcome = run_chain(spec, emitter=em, backend_factory=factory)
    assert factory.built == ["script"]
    assert outcome.result["total_steps"] == 1 and outcome.result["success"] is True
    assert outcome.result["outputs"]["final"]["type"] == "script"
    assert not (tmp_path / "out/02-voice.jsonl").exists()


def test_resume_serves_finished_work_from_the_ledgers(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    run_chain(spec, backend_factory=FakeFactory())
    first = _records(tmp_path / "out/02-voice.jsonl")

    llm, tts, em = FakeLLM(), SlowTTS(), RecordingEmitter()
    outcome = run_chain(spec, emitter=em, resume=True, backend_factory=FakeFactory(llm, tts))
    assert outcome.exit_status == ExitStatus.SUCCESS
    assert llm.calls == [] and tts.calls == [] and "model_load" not in em.names()
    assert outcome.result["records"]["skipped"] == 3
    again = _records(tmp_path / "out/02-voice.jsonl")
    assert [r["audio"]["path"] for r in again] == [r["audio"]["path"] for r in first]


def test_params_reach_the_stage(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)), ["steps.0.params.variants=2", "steps.0.params.seed=5"])
    llm = FakeLLM()
    outcome = run_chain(spec, backend_factory=FakeFactory(llm))
    assert len(llm.calls) == 6 and {c["params"].seed for c in llm.calls} == {5, 6}
    assert outcome.result["records"]["total"] == 6


def test_price_table_gives_each_step_a_cost(tmp_path: Path) -> None:
    prices = {"per_1k_tokens": 2.0, "per_audio_minute": 0.5, "per_gpu_second": 100.0}
    em = RecordingEmitter()
    outcome = run_chain(load_chain(str(write_chain(tmp_path, prices=prices))), emitter=em,
                        backend_factory=FakeFactory())
    steps = outcome.result["outputs"]["steps"]
    tokens = steps[0]["tokens"]["prompt"] + steps[0]["tokens"]["completion"]
    assert steps[0]["cost"] == pytest.approx(tokens / 1000 * 2.0)  # device cpu: no GPU seconds
    assert steps[1]["cost"] == pytest.approx(steps[1]["audio_seconds"] / 60 * 0.5, abs=1e-5)
    assert outcome.result["total_cost"] == pytest.approx(steps[0]["cost"] + steps[1]["cost"], abs=1e-5)
    assert [f["cost"] for e, f in em.events if e == "step_complete"] == [steps[0]["cost"], steps[1]["cost"]]


def test_step_cost_counts_gpu_seconds_only_on_a_gpu() -> None:
    prices = Prices(per_gpu_second=2.0)
    assert step_cost(prices, 0, 0.0, 3.0, "cuda:0") == 6.0
    assert step_cost(prices, 0, 0.0, 3.0, "cpu") == 0.0
    assert step_cost(Prices(), 5000, 600.0, 3.0, "cuda") == 0.0  # no price table: cost 0


def test_plan_resolves_backends_without_building_them(tmp_path: Path) -> None:
    spec = load_chain(str(write_chain(tmp_path)))
    seen: list[str] = []

    def resolver(step: Any) -> tuple[str, str | None]:
        seen.append(step.type)
        if step.type == "voice":
            raise BackendUnavailable("no tts")
        return "llamacpp", "model.gguf"

    plan = plan_chain(spec, resolver)
    assert plan["records"] == 3 and plan["total_steps"] == 2 and plan["ok"] is False
    assert plan["steps"][0]["resolved_backend"] == "llamacpp" and plan["steps"][0]["model"] == "model.gguf"
    assert plan["steps"][1]["error"]["message"] == "no tts"
    assert plan["steps"][0]["output"] == str(tmp_path / "out/01-script.jsonl")
    assert seen == ["script", "voice"] and not (tmp_path / "out").exists()


def test_plan_with_default_resolver_picks_embedded_backends(tmp_path: Path) -> None:
    # conftest points OLLAMA_HOST at a closed port; no GPU here → llamacpp + piper
    plan = plan_chain(load_chain(str(write_chain(tmp_path))))
    assert [s.get("resolved_backend") for s in plan["steps"]] in (["llamacpp", "piper"],
                                                                  ["llamacpp", "chatterbox"])


def test_ollama_unload_reaches_the_server_before_the_tts_loads(tmp_path: Path) -> None:
    """The real Ollama backend against the local test server: keep_alive 0 and an empty
    /api/ps come before the voice step's model_load."""
    from ai_content_pipeline.backends.ollama import OllamaBackend
    from tests.ollama_server import OllamaServer

    with OllamaServer(unload_delay=0.2) as server:
        llm = OllamaBackend("llama3.2", host=server.url)
        seen_at_tts_load: list[tuple[int, list[str]]] = []

        class ServerWatchingTTS(SlowTTS):
            def load(self) -> None:
                seen_at_tts_load.append((len(server.unload_requests()), server.loaded_now()))
                super().load()

        em = RecordingEmitter()
        factory = FakeFactory(llm, ServerWatchingTTS())  # type: ignore[arg-type]
        outcome = run_chain(load_chain(str(write_chain(tmp_path))), emitter=em, backend_factory=factory)

    assert outcome.exit_status == ExitStatus.SUCCESS
    assert len(server.requests_to("/api/chat")) == 3
    assert seen_at_tts_load == [(1, [])]  # unloaded, and /api/ps empty, before the TTS loaded
    model_events = [(e, f["backend"]) for e, f in em.events if e in ("model_load", "model_unload")]
    assert model_events[:3] == [("model_load", "ollama"), ("model_unload", "ollama"), ("model_load", "fake-tts")]
