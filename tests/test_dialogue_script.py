"""Dialogue templates in the script stage, the CLI, chains and the service (LLM test doubles)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from ai_content_pipeline.chain.runner import run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.errors import ConfigError, UsageError
from ai_content_pipeline.service.requests import (
    GenerateRequest,
    RequestProblem,
    build_chain,
    validate_chain,
)
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage, candidate_seed
from ai_content_pipeline.templates import load_template
from ai_content_pipeline.templates.models import Template
from tests.chain_doubles import FakeFactory
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter, SeededLLM, lines_of

TOPIC = {"id": "t1", "topic": "How vinyl records made a comeback",
         "notes": "sales grew for more than fifteen years in a row; record stores and pressing plants reopened"}
SONG = {"id": "s1", "artist": "Bill Evans", "title": "Peace Piece"}
# what a small model writes when the prompt ends on "Sam:": Sam's line first, then labels
GOOD = ("Welcome back! Today we talk about how vinyl records made a comeback, and why people love them again.\n"
        "JULIE: I love vinyl records, Sam. Sales grew for more than fifteen years in a row, and that is something.\n"
        "**Sam:** Record stores reopened too. People like to hold the music in their hands and read the sleeve.\n"
        "Julie - And the pressing plants reopened as well. It really is a comeback for vinyl records.\n"
        "Sam: So the takeaway is simple. Find a record store near you and go and listen together.\n"
        "Julie: Yes, go and listen to some vinyl records this week. It is a warm and lovely sound.")
MONOLOGUE = ("Welcome back! Today we talk about how vinyl records made a comeback. Sales grew for more than "
             "fifteen years in a row. Record stores reopened. Pressing plants reopened. People love to hold the "
             "music in their hands again, and they like to read the sleeve while it plays. Go find a record "
             "store near you and listen this week.")
MESSY = GOOD.replace("Record stores reopened too.", "(laughs) Record stores reopened too.")
BANTER = ("Good morning, everybody, it is time for some calm piano!\n"
          "Julie: Oh, I love this one, Max. It is so gentle.\n"
          "Max: It sure is. Here is Peace Piece by Bill Evans.")


def run(llm, options, records=(TOPIC,), emitter=None):
    stage = ScriptStage(llm, options, emitter or RecordingEmitter())
    return stage, list(stage.run(lines_of(*records), total=len(records)))


#: the one-call dialogue templates (the model writes the whole conversation in one reply)
ONE_CALL = Path(__file__).resolve().parent.parent / "bench" / "templates"
PODCAST_ONE_CALL = str(ONE_CALL / "podcast-dialogue-v1.yaml")
BANTER_ONE_CALL = str(ONE_CALL / "radio-banter-v1.yaml")


def dialogue(**kw) -> ScriptOptions:
    return ScriptOptions(template=PODCAST_ONE_CALL, **kw)


# -- the script object ---------------------------------------------------------------------
def test_a_dialogue_take_gets_turns_labelled_text_and_passes_its_checks():
    em = RecordingEmitter()
    stage, [out] = run(FakeLLM([GOOD]), dialogue(personas=["sam", "julie"]), emitter=em)
    s = out["script"]
    assert [t["speaker"] for t in s["turns"]] == ["sam", "julie", "sam", "julie", "sam", "julie"]
    assert s["turns"][0]["text"].startswith("Welcome back!") and s["turns"][3]["text"].startswith("And the pressing")
    lines = s["text"].split("\n")
    assert [line.split(":")[0] for line in lines] == ["Sam", "Julie"] * 3
    assert s["words"] == sum(len(t["text"].split()) for t in s["turns"])  # labels not counted
    assert s["persona"] == "sam" and s["hosts"] == ["sam", "julie"]
    assert set(s["hosts_voice"]) == {"sam", "julie"} and s["hosts_voice"]["julie"]["seed"] == 1101
    assert s["checks"] == {"passed": True, "failed": []}, s["checks"]
    complete = [f for e, f in em.events if e == "record_complete"]
    assert complete[0]["turns"] == 6


def test_the_prompt_gets_each_hosts_name_and_style_and_ends_on_the_openers_label():
    llm = FakeLLM([GOOD])
    run(llm, dialogue(personas=["julie", "max"]))
    system, user = (m["content"] for m in llm.calls[0]["messages"])
    assert "Julie" in system and "Max" in system and "warm and unhurried" in system and "high-energy" in system
    assert user.endswith("Julie:") and TOPIC["topic"] in user


@pytest.mark.parametrize("reply,failed", [
    (MONOLOGUE, "speakers"), (MESSY, "clean_turns"),
    (GOOD.replace("JULIE: I love", "SAM: I love"), "alternate"),
    ("Narrator: Meanwhile.\n" + GOOD, "stray"),
    (GOOD + "\nProducer: That's a wrap.", "stray"),
    (GOOD.replace("how vinyl records made a comeback", "bicycles").replace("vinyl", "bike").replace(
        "record", "bike").replace("Record", "Bike"), "topic"),
])
def test_a_dialogue_that_breaks_a_rule_fails_the_check_named_for_it(reply, failed):
    _, [out] = run(FakeLLM([reply]), dialogue())
    assert failed in out["script"]["checks"]["failed"], out["script"]["checks"]


def test_best_of_keeps_the_candidate_that_passes_and_require_checks_rejects_a_failing_dialogue():
    llm = SeededLLM()
    by_seed = dict(zip([candidate_seed(5, c) for c in range(3)], [MONOLOGUE, MESSY, GOOD], strict=True))
    llm.reply = lambda n, m, p: by_seed[p.seed]  # type: ignore[method-assign]
    _, [out] = run(llm, dialogue(best_of=3, seed=5))
    checks = out["script"]["checks"]
    assert checks["chosen"] == 2 and checks["passed"] is True and len(out["script"]["turns"]) == 6
    assert [c["passed"] for c in checks["candidates"]] == [False, False, True]
    stage, [bad] = run(FakeLLM([MONOLOGUE]), dialogue(require_checks=True))
    assert bad["error"]["type"] == "ChecksFailed" and "speakers" in bad["error"]["checks"]["failed"]
    assert stage.stats.exit_status == 3


def test_radio_banter_is_a_few_lines_that_name_the_song():
    _, [out] = run(FakeLLM([BANTER]), ScriptOptions(template=BANTER_ONE_CALL), records=[SONG])
    s = out["script"]
    assert s["hosts"] == ["max", "julie"] and [t["speaker"] for t in s["turns"]] == ["max", "julie", "max"]
    assert s["checks"]["passed"] is True, s["checks"]


# -- who the hosts are ---------------------------------------------------------------------
def test_without_personas_the_templates_default_hosts_speak_and_one_persona_opens_with_a_default():
    _, [out] = run(FakeLLM([GOOD]), dialogue())
    assert out["script"]["hosts"] == ["sam", "julie"]
    _, [out] = run(FakeLLM([GOOD]), dialogue(persona="max"))
    assert out["script"]["hosts"] == ["max", "sam"]
    _, [out] = run(FakeLLM([GOOD]), dialogue(persona="julie"))
    assert out["script"]["hosts"] == ["julie", "sam"]


def test_a_records_hosts_field_wins_and_its_persona_field_opens():
    records = [{**TOPIC, "id": "a", "hosts": ["max", "julie"]}, {**TOPIC, "id": "b", "persona": "julie"},
               {**TOPIC, "id": "c"}]
    _, out = run(FakeLLM([GOOD]), dialogue(personas=["sam", "max"]), records=records)
    assert [r["script"]["hosts"] for r in out] == [["max", "julie"], ["julie", "sam"], ["sam", "max"]]
    assert out[0]["script"]["persona"] == "max"


@pytest.mark.parametrize("hosts,message", [
    (["sam"], "names 1 hosts"), (["sam", "julie", "max"], "names 3 hosts"), ("sam", "must be a list"),
    (["sam", "sam"], "twice"), (["sam", "nobody"], "nobody"), (["sam", "../x.yaml"], "not a persona name"),
    (["sam", 3], "persona name"),
])
def test_a_records_bad_hosts_field_is_that_records_error(hosts, message):
    stage, [out] = run(FakeLLM([GOOD]), dialogue(), records=[{**TOPIC, "hosts": hosts}])
    assert out["error"]["field"].startswith("hosts") and message in out["error"]["message"], out["error"]
    assert stage.stats.failed == 1


def test_a_one_voice_template_ignores_a_hosts_field_and_refuses_several_personas():
    _, [out] = run(FakeLLM(["Here is Peace Piece by Bill Evans. Enjoy."]), ScriptOptions(),
                   records=[{**SONG, "hosts": ["sam", "max"]}])
    assert "turns" not in out["script"] and out["script"]["persona"] == "julie"
    with pytest.raises(UsageError, match="one speaker"):
        ScriptOptions(personas=["sam", "julie"]).validate()
    with pytest.raises(UsageError, match="at most 2 hosts"):
        dialogue(personas=["sam", "julie", "max"]).validate()
    with pytest.raises(UsageError, match="twice"):
        dialogue(personas=["sam", "sam"]).validate()
    with pytest.raises(UsageError, match="no sections"):
        dialogue(sections=[{"name": "a", "brief": "b", "words": 100}]).validate()


def test_persona_files_can_be_hosts(tmp_path):
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text("name: rosa\ndisplay_name: Rosa\nstyle: You are bright.\n")
    reply = GOOD.replace("JULIE", "ROSA").replace("Julie", "Rosa")
    _, out = run(FakeLLM([reply]), dialogue(personas=["sam", str(rosa)], persona="sam"),
                 records=[TOPIC, {**TOPIC, "id": "t2", "hosts": ["rosa", "sam"]}])
    assert out[0]["script"]["hosts"] == ["sam", "rosa"] and out[0]["script"]["checks"]["passed"], out[0]["script"]
    assert out[1]["script"]["hosts"] == ["rosa", "sam"]  # a record names the run's persona file by its name


# -- the command line ----------------------------------------------------------------------
@pytest.fixture
def llm(monkeypatch):
    fake = FakeLLM([GOOD])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: fake)
    return fake


def test_cli_persona_repeated_gives_the_hosts_in_order(llm):
    res = invoke(script_cli.script_command, "aicp-script",
                 ["-t", "podcast-dialogue", "--persona", "julie", "-p", "sam", "--stream"], orjson.dumps(TOPIC) + b"\n")
    assert res.exit_code == 0, res.stderr
    [rec] = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert rec["script"]["hosts"] == ["julie", "sam"] and rec["script"]["persona"] == "julie"
    events = [orjson.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert [e["turns"] for e in events if e["event"] == "record_complete"] == [len(rec["script"]["turns"])]


def test_cli_one_persona_on_a_one_voice_template_is_unchanged_and_two_are_a_usage_error(llm):
    song = orjson.dumps(SONG) + b"\n"
    res = invoke(script_cli.script_command, "aicp-script", ["-p", "max"], song)
    assert res.exit_code == 0 and orjson.loads(res.stdout)["script"]["persona"] == "max"
    assert "turns" not in orjson.loads(res.stdout)["script"]
    res = invoke(script_cli.script_command, "aicp-script", ["-p", "max", "-p", "julie"], song)
    assert res.exit_code == 2 and res.stdout == "" and "one speaker" in res.stderr


def test_cli_recheck_of_an_edited_dialogue_reads_its_turns_again(llm):
    res = invoke(script_cli.script_command, "aicp-script", ["-t", "podcast-dialogue"], orjson.dumps(TOPIC) + b"\n")
    rec = orjson.loads(res.stdout)
    lines = rec["script"]["text"].split("\n")
    assert lines[-1].startswith("Julie: ")
    rec["script"]["text"] = "\n".join([*lines[:-1], "Sam: " + lines[-1].removeprefix("Julie: ")])
    res = invoke(script_cli.script_command, "aicp-script", ["-t", "podcast-dialogue", "--recheck"],
                 orjson.dumps(rec) + b"\n")
    out = orjson.loads(res.stdout)["script"]
    assert out["edited"] is True and [t["speaker"] for t in out["turns"]][-2:] == ["sam", "sam"]
    assert "alternate" in out["checks"]["failed"]


# -- chains and the service ----------------------------------------------------------------
def _chain(tmp_path: Path, params: dict, persona: str | None = None) -> Path:
    (tmp_path / "topics.jsonl").write_bytes(orjson.dumps(TOPIC) + b"\n")
    step = {"type": "script", "template": "podcast-dialogue", "params": params}
    if persona:
        step["persona"] = persona
    data = {"name": "d", "input": str(tmp_path / "topics.jsonl"), "output_dir": str(tmp_path / "out"), "steps": [step]}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_chain_steps_params_personas_are_the_hosts(tmp_path):
    outcome = run_chain(load_chain(str(_chain(tmp_path, {"personas": ["max", "julie"]}))),
                        backend_factory=FakeFactory(FakeLLM([GOOD.replace("Sam", "Max").replace("SAM", "MAX")])))
    assert outcome.exit_status == 0
    [rec] = [orjson.loads(x) for x in (tmp_path / "out/01-script.jsonl").read_bytes().splitlines()]
    assert rec["script"]["hosts"] == ["max", "julie"] and len(rec["script"]["turns"]) == 6


@pytest.mark.parametrize("params,persona,message", [
    ({"personas": ["sam", "nobody"]}, None, "steps.0.params.personas: unknown persona 'nobody'"),
    ({"personas": ["sam", "julie", "max"]}, None, "at most 2 hosts"),
    ({"personas": ["sam", "julie"]}, "max", "not the first"),
    ({"personas": "sam"}, None, "steps.0.params.personas"),
])
def test_a_chain_with_bad_personas_is_refused_naming_the_key(tmp_path, params, persona, message):
    with pytest.raises(ConfigError, match=message):
        load_chain(str(_chain(tmp_path, params, persona)))


def test_the_service_takes_personas_and_refuses_unknown_hosts(tmp_path):
    req = GenerateRequest(template="podcast-dialogue", personas=["julie", "sam"], records=[TOPIC])
    chain, _, where = build_chain(req)
    assert chain["steps"][0]["params"]["personas"] == ["julie", "sam"]
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(TOPIC) + b"\n")
    validate_chain(chain, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), where)
    with pytest.raises(RequestProblem, match="personas.1"):
        build_chain(GenerateRequest(template="podcast-dialogue", personas=["julie", "rosa"], records=[TOPIC]))
    with pytest.raises(RequestProblem, match="records.0.hosts.1"):
        build_chain(GenerateRequest(template="podcast-dialogue", records=[{**TOPIC, "hosts": ["sam", "./x"]}]))
    with pytest.raises(RequestProblem) as too_many:
        chain, _, where = build_chain(GenerateRequest(template="podcast-dialogue", personas=["julie", "sam", "max"],
                                                      records=[TOPIC]))
        validate_chain(chain, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), where)
    assert too_many.value.field == "personas"
    with pytest.raises(ValueError, match="not both"):
        GenerateRequest(template="podcast-dialogue", persona="sam", personas=["sam", "julie"], records=[TOPIC])


# -- the template schema -------------------------------------------------------------------
def test_the_built_in_dialogue_templates_declare_hosts_and_their_checks():
    for name in ("podcast-dialogue", "radio-banter"):
        t = load_template(name)
        assert t.dialogue and t.hosts is not None and (t.hosts.min, t.hosts.max) == (2, 2)
        assert {"speakers", "turn_words", "clean_turns", "alternate", "stray"} <= set(t.checks.names())
    assert "stray" not in load_template("song-intro").checks.names()


@pytest.mark.parametrize("extra,message", [
    ({"checks": {"speakers": 2}}, "a dialogue check"),
    ({"hosts": {"min": 2, "max": 2}}, "only a dialogue template"),
    ({"dialogue": True, "hosts": {"min": 3, "max": 2}}, "hosts.max"),
    ({"dialogue": True, "hosts": {"default": ["sam", "sam"]}}, "twice"),
    ({"dialogue": True, "turns": 4, "sections": [{"name": "a", "brief": "b", "words": 10}]}, "has no turns"),
])
def test_a_template_with_dialogue_fields_it_may_not_have_is_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        Template.model_validate({"name": "x", "system": "s", "user": "u", **extra})
