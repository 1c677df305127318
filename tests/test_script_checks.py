"""Checked takes, best-of-N and batched generation in the script stage (test doubles only)."""

import orjson
import pytest

from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.errors import ConfigError, UsageError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage, candidate_seed
from tests.cli_helpers import invoke
from tests.doubles import FakeBatchLLM, FakeLLM, RecordingEmitter, SeededLLM, lines_of

SONG = {"id": "s1", "artist": "Sigur Rós", "title": "Hoppípolla"}
GOOD = ("Good evening, night owls. This one always takes me back to a snowy walk home, "
        "with children jumping in puddles and strings that swell like a warm tide. "
        "Stay cozy, night owls. Here is Hoppipolla by Sigur Ros.")
LONG_GOOD = GOOD + " It is a song I have loved for years, and I hope you love it too."
NO_NAMES = "Good evening, night owls. This one always takes me back to a snowy walk home. Enjoy it."
#: too short even with the closing line
SHORT = "Enjoy it."
ECHO = "Julie: Here is Hoppipolla by Sigur Ros, in three short sentences. Stay under the word limit."
#: song-intro's closing line for SONG's take 0, which the stage appends to the model's text
CLOSE = "Here is Hoppípolla by Sigur Rós. Stay cozy, night owls."
#: GOOD as aired: its own "Here is…" and catchphrase sentences said once, by the closing line
GOOD_AIRED = ("Good evening, night owls. This one always takes me back to a snowy walk home, "
              "with children jumping in puddles and strings that swell like a warm tide. " + CLOSE)


def run(llm, options=None, records=(SONG,), ledger=None, emitter=None):
    stage = ScriptStage(llm, options or ScriptOptions(), emitter or RecordingEmitter(), ledger)
    return stage, list(stage.run(lines_of(*records), total=len(records)))


def test_a_good_take_passes_and_says_so():
    stage, [out] = run(FakeLLM([GOOD]))
    assert out["script"]["checks"] == {"passed": True, "failed": []}
    assert stage.stats.checks_passed == 1 and stage.stats.as_dict()["checks"] == {"passed": 1, "failed": 0}


def test_a_failing_take_is_still_written_and_counted():
    em = RecordingEmitter()
    stage, [out] = run(FakeLLM([ECHO]), emitter=em)
    checks = out["script"]["checks"]
    assert checks["passed"] is False and checks["failed"] == ["no_echo"]
    assert any(d.startswith("label") for d in checks["details"]["no_echo"])
    assert stage.stats.completed == 1 and stage.stats.checks_failed == 1 and stage.stats.exit_status == 0
    complete = [f for e, f in em.events if e == "record_complete"][0]
    assert complete["checks"] == {"passed": False, "failed": ["no_echo"]}
    assert "checks: 0 passed, 1 failed" in stage.stats.summary()


def test_a_take_cut_by_max_tokens_is_trimmed_to_its_last_sentence():
    _, [out] = run(FakeLLM([GOOD + " And then the strings come in and"], done_reason="length"))
    s = out["script"]
    assert s["truncated"] is True and s["text"] == GOOD_AIRED and s["checks"]["passed"] is True


def test_an_uncut_take_that_stops_mid_sentence_fails_complete_and_is_kept():
    _, [out] = run(FakeLLM([GOOD + " And then"]))
    checks = out["script"]["checks"]
    assert out["script"]["text"].endswith("warm tide. And then " + CLOSE) and checks["failed"] == ["complete"]
    assert checks["details"]["complete"].endswith("And then")


def test_require_checks_makes_a_failing_take_a_record_error():
    em = RecordingEmitter()
    stage, out = run(FakeLLM([ECHO, GOOD]), ScriptOptions(require_checks=True),
                     records=[SONG, {**SONG, "id": "s2"}], emitter=em)
    assert out[0]["error"]["type"] == "ChecksFailed" and out[0]["error"]["checks"]["failed"] == ["no_echo"]
    assert out[0]["error"]["text"].startswith("Julie:") and "script" not in out[0]
    assert out[1]["script"]["checks"]["passed"] is True
    assert stage.stats.failed == 1 and stage.stats.completed == 1 and stage.stats.exit_status == 3
    assert stage.stats.checks_failed == 1 and em.names().count("record_error") == 1


def test_candidate_seeds_are_derived_and_stable():
    seeds = [candidate_seed(7, c) for c in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4 and seeds == [candidate_seed(7, c) for c in range(4)]
    assert 8 not in seeds  # does not collide with the next take's seed
    assert candidate_seed(None, 3) is None


def test_best_of_chooses_the_passing_candidate_closest_to_target():
    llm = SeededLLM([SHORT, ECHO, LONG_GOOD, GOOD])
    seeds = [candidate_seed(100, c) for c in range(4)]
    llm.replies = [None] * 4  # type: ignore[list-item]
    by_seed = dict(zip(seeds, [SHORT, ECHO, LONG_GOOD, GOOD], strict=True))
    llm.reply = lambda n, m, p: by_seed[p.seed]  # type: ignore[method-assign]
    _, [out] = run(llm, ScriptOptions(seed=100, best_of=4))
    s = out["script"]
    assert s["text"] == GOOD_AIRED and s["checks"]["chosen"] == 3 and s["checks"]["passed"] is True
    assert [c["seed"] for c in s["checks"]["candidates"]] == seeds
    assert [c["passed"] for c in s["checks"]["candidates"]] == [False, False, True, True]
    assert sorted(c["params"].seed for c in llm.calls) == sorted(seeds)
    assert s["tokens"]["prompt"] == 40  # every candidate's prompt counts (no shared prompt here)


def test_best_of_without_a_passing_candidate_keeps_the_fewest_failures():
    by_seed = {candidate_seed(5, 0): "Julie: " + SHORT, candidate_seed(5, 1): SHORT}
    llm = SeededLLM(["x"])
    llm.reply = lambda n, m, p: by_seed[p.seed]  # type: ignore[method-assign]
    _, [out] = run(llm, ScriptOptions(seed=5, best_of=2))
    assert [c["failed"] for c in out["script"]["checks"]["candidates"]] == [["no_echo", "length"], ["length"]]
    assert out["script"]["text"] == SHORT + " " + CLOSE and out["script"]["checks"]["chosen"] == 1
    assert out["script"]["checks"]["passed"] is False


def test_best_of_reruns_are_identical_and_the_key_includes_n():
    replies = [NO_NAMES, ECHO, LONG_GOOD, GOOD, GOOD + " Again."]
    _, a = run(SeededLLM(replies, delay=0.01), ScriptOptions(seed=3, best_of=4, jobs=4, variants=2))
    _, b = run(SeededLLM(replies), ScriptOptions(seed=3, best_of=4, jobs=1, variants=2))
    strip = [{k: v for k, v in r["script"].items() if k != "seconds"} for r in a]
    assert strip == [{k: v for k, v in r["script"].items() if k != "seconds"} for r in b]
    _, c = run(SeededLLM(replies), ScriptOptions(seed=3, best_of=1))
    assert c[0]["script"]["key"] != a[0]["script"]["key"]
    assert "candidates" not in c[0]["script"]["checks"]


def test_concurrent_candidates_stay_within_jobs():
    llm = SeededLLM([GOOD], delay=0.03)
    records = [{**SONG, "id": f"s{i}"} for i in range(4)]
    _, out = run(llm, ScriptOptions(seed=1, best_of=4, jobs=2), records=records)
    assert len(llm.calls) == 16 and llm.max_active <= 2 and llm.max_active == 2
    assert [r["id"] for r in out] == ["s0", "s1", "s2", "s3"]


def test_best_of_one_and_batch_one_use_the_plain_chat_path():
    llm = FakeBatchLLM([GOOD])
    _, [out] = run(llm, ScriptOptions(seed=1))
    assert llm.batches == [] and len(llm.calls) == 1 and "decoder" not in str(out)


def test_batch_keeps_b_records_in_flight_in_input_order():
    llm = FakeBatchLLM([GOOD, LONG_GOOD], delay=0.05)
    records = [{**SONG, "id": f"s{i}"} for i in range(7)]
    records.insert(3, {"id": "bad", "title": "no artist"})
    em = RecordingEmitter()
    stage, out = run(llm, ScriptOptions(seed=1, best_of=2, batch=3), records=records, emitter=em)
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert out[3]["error"]["field"] == "artist"
    # one call per take, 3 of them in flight at once (the backend decodes them together);
    # the bad record makes no request
    assert llm.batches == [[2]] * 7 and llm.max_active == 3 and set(llm.parallel) == {3}
    assert all(r["script"]["checks"]["chosen"] in (0, 1) for r in out if "script" in r)
    assert out[0]["script"]["tokens"] == {"prompt": 10, "completion": 14}  # prompt evaluated once
    assert stage.stats.completed == 7 and stage.stats.failed == 1


def test_batch_failure_of_one_request_fails_only_that_record():
    llm = FakeBatchLLM([GOOD], fail_on=("Title 1",))
    records = [{"id": f"s{i}", "artist": f"Artist {i}", "title": f"Title {i}"} for i in range(3)]
    _, out = run(llm, ScriptOptions(seed=1, batch=3), records=records)
    assert "error" in out[1] and "script" in out[0] and "script" in out[2]


def test_batch_keys_differ_from_sequential_keys_and_resume_serves_them(tmp_path):
    with Ledger(tmp_path / "l.jsonl") as ledger:
        _, first = run(FakeBatchLLM([GOOD]), ScriptOptions(seed=1, batch=2), ledger=ledger)
    _, seq = run(FakeBatchLLM([GOOD]), ScriptOptions(seed=1))
    assert first[0]["script"]["key"] != seq[0]["script"]["key"]
    llm = FakeBatchLLM([GOOD])
    with Ledger(tmp_path / "l.jsonl") as ledger:
        stage, again = run(llm, ScriptOptions(seed=1, batch=2, resume=True), ledger=ledger)
    assert llm.batches == [] and again[0]["script"]["skipped"] is True
    assert again[0]["script"]["text"] == first[0]["script"]["text"] and stage.stats.checks_passed == 1


def test_bad_best_of_and_batch_values_are_usage_errors():
    with pytest.raises(UsageError):
        ScriptStage(FakeLLM(), ScriptOptions(best_of=0))
    with pytest.raises(UsageError):
        ScriptStage(FakeLLM(), ScriptOptions(batch=65))


def _chain(tmp_path, params: str) -> str:
    songs = tmp_path / "songs.jsonl"
    songs.write_text(orjson.dumps(SONG).decode() + "\n")
    path = tmp_path / "chain.yaml"
    path.write_text(f"name: t\ninput: {songs}\noutput_dir: {tmp_path / 'out'}\nsteps:\n"
                    f"  - type: script\n    params: {params}\n")
    return str(path)


def test_chain_steps_take_best_of_batch_and_require_checks(tmp_path):
    spec = load_chain(_chain(tmp_path, "{best_of: 4, batch: 8, require_checks: true}"))
    assert spec.steps[0].params == {"best_of": 4, "batch": 8, "require_checks": True}
    with pytest.raises(ConfigError, match="best_of"):
        load_chain(_chain(tmp_path, "{best_of: 0}"))


def test_cli_best_of_and_require_checks(monkeypatch):
    from ai_content_pipeline.cli import script as script_cli

    llm = FakeLLM([ECHO])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    data = orjson.dumps(SONG) + b"\n"
    res = invoke(script_cli.script_command, "aicp-script", ["--best-of", "2", "--seed", "1"], data)
    assert res.exit_code == 0 and "checks: 0 passed, 1 failed" in res.stderr
    assert len(orjson.loads(res.stdout)["script"]["checks"]["candidates"]) == 2
    res = invoke(script_cli.script_command, "aicp-script", ["--require-checks", "--stream"], data)
    assert res.exit_code == 3 and orjson.loads(res.stdout)["error"]["type"] == "ChecksFailed"
    done = [orjson.loads(x) for x in res.stderr.splitlines() if '"run_complete"' in x][0]
    assert done["checks"] == {"passed": 0, "failed": 1} and done["records"]["failed"] == 1


def test_radio_api_passes_best_of_and_require_checks(tmp_path):
    from ai_content_pipeline.radio import GenerationPipeline, generate_batch_intros
    from tests.doubles import SpeechTTS

    llm = FakeLLM([ECHO])
    pipe = GenerationPipeline(tmp_path, llm=llm, tts=SpeechTTS(), best_of=2, require_checks=True, seed=1)
    [result] = list(generate_batch_intros(pipe, [{"id": "s1", "artist": "Sigur Rós", "title": "Hoppípolla"}]))
    assert result.success is False and "failed its checks: no_echo " in (result.error or "")
    assert len(llm.calls) == 2
    with pytest.raises(UsageError):
        GenerationPipeline(tmp_path, llm=FakeLLM(), tts=SpeechTTS(), best_of=99)


def test_chain_step_complete_counts_checks(tmp_path):
    from ai_content_pipeline.chain.runner import run_chain

    spec = load_chain(_chain(tmp_path, "{best_of: 2, require_checks: false}"))
    em = RecordingEmitter()
    result = run_chain(spec, emitter=em, backend_factory=lambda step, notice: FakeLLM([ECHO]))
    assert int(result.exit_status) == 0
    done = [f for e, f in em.events if e == "step_complete"][0]
    assert done["checks"] == {"passed": 0, "failed": 1}
    out = orjson.loads(open(spec.output_path(0), "rb").read())
    assert len(out["script"]["checks"]["candidates"]) == 2
