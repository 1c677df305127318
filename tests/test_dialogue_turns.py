"""Dialogues written turn by turn (templates with ``turns``): one call per host's line (LLM doubles)."""

from __future__ import annotations

import re

import pytest

from ai_content_pipeline.dialogue import Host, clean_turn
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.dialogue_turns import LAST_TURN_TRIES, TURN_TRIES, turn_seed
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage, candidate_seed
from ai_content_pipeline.templates import load_template
from ai_content_pipeline.templates.models import Template
from tests.doubles import FakeBatchLLM, FakeLLM, RecordingEmitter, lines_of

TOPIC = {"id": "t1", "topic": "How vinyl records made a comeback",
         "notes": "sales grew for more than fifteen years in a row; record stores and pressing plants reopened"}
SONG = {"id": "s1", "artist": "Bill Evans", "title": "Peace Piece"}
HOSTS = [Host("sam", "Sam"), Host("julie", "Julie")]
# what each host says at turn k (1-based) of a podcast dialogue
LINES = {
    1: "Welcome back, everyone! Today we talk about how vinyl records made a comeback.",
    2: "I love vinyl records, Sam. Sales grew for more than fifteen years in a row.",
    3: "Record stores reopened too. People like to hold the music in their hands.",
    4: "And the pressing plants reopened as well. It is a real comeback.",
    5: "So find a record store near you and listen together this week.",
    6: "Yes, go and listen to some vinyl records. Thank you, Sam, and thank you all for listening.",
}
SPEAKER = re.compile(r"You are (\w+)")


def turn_of(messages) -> int:
    """The turn a request asks for, read from the line it answers (the user message)."""
    user = messages[-1]["content"]
    return next((k + 1 for k, line in LINES.items() if line == user), 1)


class TurnLLM(FakeLLM):
    """Answers each turn request with its scripted line; ``override(turn, attempt_seed)`` may
    replace it."""

    def __init__(self, override=None, **kw):
        super().__init__(**kw)
        self.override = override

    def reply(self, n, messages, params):
        k = turn_of(messages)
        said = self.override(k, params.seed, messages) if self.override else None
        return LINES[k] if said is None else said


def run(llm, options, records=(TOPIC,), emitter=None, ledger=None):
    stage = ScriptStage(llm, options, emitter or RecordingEmitter(), ledger)
    return stage, list(stage.run(lines_of(*records), total=len(records)))


def dialogue(**kw) -> ScriptOptions:
    return ScriptOptions(template="podcast-dialogue", personas=["sam", "julie"], **kw)


def test_each_turn_is_one_call_for_the_host_whose_turn_it_is_answering_the_line_before():
    em = RecordingEmitter()
    llm = TurnLLM()
    _, [out] = run(llm, dialogue(seed=3), emitter=em)
    s = out["script"]
    assert len(llm.calls) == load_template("podcast-dialogue").turns == 6
    assert [SPEAKER.search(c["messages"][0]["content"]).group(1) for c in llm.calls] == ["Sam", "Julie"] * 3
    # turn k > 1 answers the line of turn k - 1; the speaker's own line before it is its own turn
    assert [c["messages"][-1]["content"] for c in llm.calls[1:]] == [LINES[k] for k in range(1, 6)]
    assert llm.calls[2]["messages"][1] == {"role": "assistant", "content": LINES[1]}
    assert [t["speaker"] for t in s["turns"]] == ["sam", "julie"] * 3
    assert [t["text"] for t in s["turns"]] == [LINES[k] for k in range(1, 7)]
    assert s["text"].split("\n")[1] == f"Julie: {LINES[2]}"
    assert s["checks"] == {"passed": True, "failed": []}, s["checks"]
    assert [f["turns"] for e, f in em.events if e == "record_complete"] == [6]
    assert [c["params"].seed for c in llm.calls] == [3, *(turn_seed(3, k, 0) for k in range(2, 7))]


def test_a_reply_is_cut_to_the_speakers_own_line():
    reply = ('**Sam:** (laughs) "Great point, Julie. Vinyl sounds warm." *smiles*\n'
             "Julie: I agree with you there.")
    assert clean_turn(reply, HOSTS) == ("Great point, Julie. Vinyl sounds warm.",
                                        ["**Sam:**", "Julie: I agree with you there.", "(laughs)", "*smiles*"])
    assert clean_turn("Julie says: I love it. It is a", HOSTS)[0] == "I love it."
    assert clean_turn("One. Two three. Four five six.", HOSTS, max_words=3)[0] == "One. Two three."
    assert clean_turn("(music)", HOSTS)[0] == ""


def test_a_turn_that_fails_its_checks_is_asked_again_with_a_derived_seed():
    def invent(k, seed, _):
        return "Doctor Zanzibar of Plutonia Records told me so." if k == 3 and seed == turn_seed(3, 3, 0) else None

    llm = TurnLLM(invent)
    _, [out] = run(llm, dialogue(seed=3))
    seeds = [c["params"].seed for c in llm.calls]
    assert len(llm.calls) == 7 and seeds[2:4] == [turn_seed(3, 3, 0), turn_seed(3, 3, 1)]
    assert out["script"]["turns"][2]["text"] == LINES[3] and out["script"]["checks"]["passed"] is True


def julie_only_laughs(k, seed, messages):
    """Julie answers Sam's third line with a stage direction only; Sam then goes on."""
    if messages[-1]["content"] != LINES[3]:
        return None
    return "(laughs)" if SPEAKER.search(messages[0]["content"]).group(1) == "Julie" else LINES[5]


def test_a_turn_that_never_passes_is_kept_at_its_best_and_the_scripts_checks_still_judge_it():
    llm = TurnLLM(julie_only_laughs)
    _, [out] = run(llm, dialogue(seed=3))
    assert len(llm.calls) == 5 + TURN_TRIES  # turn 4 asked TURN_TRIES times, then left out (nothing said)
    s = out["script"]
    assert [t["speaker"] for t in s["turns"]] == ["sam", "julie", "sam", "sam", "julie"]
    assert "alternate" in s["checks"]["failed"] and s["checks"]["passed"] is False
    stage, [bad] = run(TurnLLM(julie_only_laughs), dialogue(seed=3, require_checks=True))
    assert bad["error"]["type"] == "ChecksFailed" and stage.stats.exit_status == 3


def test_the_last_banter_line_must_name_the_song_or_it_is_asked_again():
    lines = {1: "Good morning, everybody, it is time for some calm piano!",
             2: "Oh, I love this one, Max. It is so gentle.",
             3: "It sure is, Julie. Just listen to those soft chords.",
             4: "Here is Peace Piece by Bill Evans."}

    class Banter(FakeLLM):
        def reply(self, n, messages, params):
            user = messages[-1]["content"]
            k = next((i + 1 for i, line in lines.items() if line == user), 1)
            return "It is a lovely tune for the morning." if k == 4 and params.seed == turn_seed(7, 4, 0) else lines[k]

    llm = Banter()
    _, [out] = run(llm, ScriptOptions(template="radio-banter", seed=7), records=[SONG])
    s = out["script"]
    assert len(llm.calls) == 5 and s["turns"][-1]["text"] == lines[4]
    assert [t["speaker"] for t in s["turns"]] == ["max", "julie", "max", "julie"]
    assert s["checks"]["passed"] is True, s["checks"]

    class Unnamed(Banter):
        def reply(self, n, messages, params):
            said = super().reply(n, messages, params)
            return "It is a lovely tune for the morning." if said == lines[4] else said

    llm = Unnamed()
    _, [out] = run(llm, ScriptOptions(template="radio-banter", seed=7), records=[SONG])
    assert len(llm.calls) == 3 + LAST_TURN_TRIES  # the last turn gets more tries than the others
    assert out["script"]["checks"]["failed"] == ["mentions"]  # and the script's own check still fails it


def test_best_of_writes_whole_candidates_side_by_side_in_one_batch_per_turn():
    llm = FakeBatchLLM(list(LINES.values()))
    llm.reply = lambda n, m, p: LINES[turn_of(m)]  # type: ignore[method-assign]
    _, [out] = run(llm, dialogue(seed=5, best_of=3))
    assert llm.batches == [[1, 1, 1]] * 6  # turn k of the three candidates together
    checks = out["script"]["checks"]
    assert [c["seed"] for c in checks["candidates"]] == [candidate_seed(5, c) for c in range(3)]
    assert checks["passed"] is True and checks["chosen"] == 0


def test_a_finished_take_is_served_from_the_ledger_on_resume(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    _, [first] = run(TurnLLM(), dialogue(seed=3), ledger=ledger)
    llm = TurnLLM()
    _, [again] = run(llm, dialogue(seed=3, resume=True), ledger=ledger)
    assert llm.calls == [] and again["script"]["turns"] == first["script"]["turns"]
    assert again["script"]["skipped"] is True


def test_a_template_written_turn_by_turn_gets_the_turn_keys_and_a_one_call_template_may_not_have_turns():
    t = load_template("podcast-dialogue")
    assert t.turns == 6 and "{{ speaker.display_name }}" in t.system
    with pytest.raises(ValueError, match="only a dialogue template"):
        Template.model_validate({"name": "x", "system": "s", "user": "u", "turns": 4})
    with pytest.raises(ValueError, match="turns"):
        Template.model_validate({"name": "x", "system": "s", "user": "u", "dialogue": True, "turns": 1})


# -- long-form dialogue: sections as a conversation --------------------------------------------
ADJECTIVES = ("warm bright odd calm bold deep fair glad keen kind late loud mild neat pale rare rich "
              "ripe safe slow soft sour tall thin tidy vast wild wise young").split()


class Echoing(FakeLLM):
    """Says a line of its own at each call, naming the topic and no number (so every turn passes)."""

    def reply(self, n, messages, params):
        a, b, c = (ADJECTIVES[(n * 3 + i) % len(ADJECTIVES)] for i in range(3))
        return f"{a.capitalize()} and {b}: how vinyl records made a comeback is {c}."


def test_a_long_form_dialogue_is_its_sections_turns_each_section_answering_the_last_line_before_it():
    from ai_content_pipeline.stages.registry import build_stage

    llm = Echoing()
    options = ScriptOptions(template="podcast-longform-dialogue", words=200, seed=2)
    stage = build_stage("script", llm, options, RecordingEmitter())
    assert type(stage) is ScriptStage  # not the one-voice long-form stage
    [out] = list(stage.run(lines_of(TOPIC), total=1))
    s = out["script"]
    plan = stage.turn_plan
    assert [n for _, n in plan] == [max(2, round(sec["words"] / 20)) for sec, _ in plan]
    assert len(s["turns"]) == len(llm.calls) == sum(n for _, n in plan)
    assert [t["speaker"] for t in s["turns"]] == ["sam", "julie"] * (len(s["turns"]) // 2)
    first_of_2 = plan[0][1]  # section 2's first turn (0-based index)
    system = llm.calls[first_of_2]["messages"][0]["content"]
    assert plan[1][0]["brief"] in system and "without a new greeting" in system
    assert llm.calls[first_of_2]["messages"][-1]["content"] == s["turns"][first_of_2 - 1]["text"]
    assert "without a new greeting" not in llm.calls[first_of_2 + 1]["messages"][0]["content"]
    assert s["checks"]["passed"] is True, s["checks"]
    assert s["words"] == sum(len(t["text"].split()) for t in s["turns"])


def test_sections_go_only_to_a_dialogue_template_that_has_them():
    with pytest.raises(Exception, match="takes no sections"):
        dialogue(sections=[{"name": "a", "brief": "b", "words": 100}]).validate()
    plan = [{"name": "Only", "brief": "Talk it over.", "words": 60}]
    stage = ScriptStage(Echoing(), ScriptOptions(template="podcast-longform-dialogue", sections=plan))
    assert stage.turn_plan == [(plan[0], 3)]


def test_the_cli_writes_a_long_form_dialogue_without_a_work_folder(monkeypatch, tmp_path):
    import orjson

    from ai_content_pipeline.cli import script as script_cli
    from tests.cli_helpers import invoke

    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: Echoing())
    taken = tmp_path / "taken"
    taken.write_text("a file where a work folder would go")
    res = invoke(script_cli.script_command, "aicp-script",
                 ["-t", "podcast-longform-dialogue", "--words", "100", "--work-dir", str(taken / "work"), "-p", "julie",
                  "-p", "max"], orjson.dumps(TOPIC) + b"\n")
    assert res.exit_code == 0, res.stderr
    s = orjson.loads(res.stdout)["script"]
    assert s["hosts"] == ["julie", "max"] and len(s["turns"]) == 10 and taken.is_file()
