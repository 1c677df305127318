"""A template's closing line (``close:``): rendered from the record, appended to the model's
text once, checked with it, part of the take's key, shown by ``aicp templates show``."""

import orjson
import pytest

from ai_content_pipeline.checks import Checks, evaluate, with_close
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.errors import ConfigError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.templates import load_persona, load_template
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter, lines_of

SONG = {"id": "s1", "artist": "Sigur Rós", "title": "Hoppípolla"}
FEELING = "This one always takes me back to a snowy walk home, with strings that swell like a warm tide."

CLOSING = """\
name: closing
version: 1
required: [artist, title]
target_words: 20
checks:
  mentions: [artist, title]
  no_echo: true
  grounded: true
  length: {min: 0.5, max: 1.5}
  complete: true
system: You are a DJ.
user: Say one warm sentence about "{{ title }}".
close: >-
  Here is {{ title }} by {{ artist }},
  on Radio Nowhere.
"""


def stage_for(tmp_path, replies, text=CLOSING, ledger=None, **options):
    path = tmp_path / "closing.yaml"
    path.write_text(text, encoding="utf-8")
    return ScriptStage(FakeLLM(replies), ScriptOptions(template=str(path), persona="julie", **options),
                       RecordingEmitter(), ledger)


def test_the_close_is_rendered_from_the_record_and_said_after_the_model_text(tmp_path):
    stage = stage_for(tmp_path, [FEELING])
    [out] = list(stage.run(lines_of(SONG), total=1))
    script = out["script"]
    assert script["text"] == FEELING + " Here is Hoppípolla by Sigur Rós, on Radio Nowhere."
    assert script["words"] == len(script["text"].split())
    # the model named nothing: the close's names count for mentions, its words are given (grounded)
    assert script["checks"] == {"passed": True, "failed": []}
    prompt = stage.backend.calls[0]["messages"][-1]["content"]
    assert "Here is" not in prompt and "Nowhere" not in prompt


def test_a_sentence_of_the_close_the_model_said_itself_is_said_once(tmp_path):
    said = f"{FEELING} here is HOPPIPOLLA by sigur ros, on radio nowhere!"
    [out] = list(stage_for(tmp_path, [said]).run(lines_of(SONG), total=1))
    assert out["script"]["text"] == FEELING + " Here is Hoppípolla by Sigur Rós, on Radio Nowhere."
    assert out["script"]["text"].lower().count("here is") == 1


def test_with_close_keeps_other_sentences_and_does_not_mend_a_cut_one():
    close = "Here is Song by Artist. Stay cozy."
    assert with_close("I love it. Stay cozy. What a night.", close) == "I love it. What a night. " + close
    assert with_close("I love it and", close) == "I love it and " + close
    assert with_close("Here is Song by Artist.", close) == close
    assert with_close("I love it.", "  ") == "I love it."


def test_a_text_cut_before_the_close_fails_complete():
    close = "Here is Song by Artist."
    text = with_close("I love it and", close)
    verdict = evaluate(text, Checks(), context={}, prompt="Say one sentence.", target_words=10, close=close)
    assert verdict["failed"] == ["complete"] and verdict["details"]["complete"].endswith("I love it and")
    whole = evaluate(with_close("I love it.", close), Checks(), context={}, prompt="Say one sentence.",
                     target_words=10, close=close)
    assert whole["passed"] is True


def test_grounded_takes_the_close_as_given_but_not_a_name_only_the_model_said():
    checks = Checks(grounded=True)
    close = "Here is Song by Artist, on Radio Nowhere."
    ok = evaluate("I love it. " + close, checks, context={"title": "Song", "artist": "Artist"},
                  prompt="Say one sentence.", target_words=10, close=close)
    assert ok["passed"] is True
    invented = evaluate("I heard it in Berlin. " + close, checks, context={"title": "Song", "artist": "Artist"},
                        prompt="Say one sentence.", target_words=10, close=close)
    assert invented["details"]["grounded"] == ["Berlin"]


def test_the_take_key_changes_with_the_close_and_resume_serves_the_closed_text(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    [first] = list(stage_for(tmp_path, [FEELING], ledger=ledger).run(lines_of(SONG), total=1))
    other = CLOSING.replace("on Radio Nowhere", "on Radio Somewhere")
    [second] = list(stage_for(tmp_path, [FEELING], text=other).run(lines_of(SONG), total=1))
    assert first["script"]["key"] != second["script"]["key"]
    resumed_stage = stage_for(tmp_path, ["never asked"], ledger=ledger, resume=True)
    [resumed] = list(resumed_stage.run(lines_of(SONG), total=1))
    assert resumed["script"]["text"] == first["script"]["text"] and not resumed_stage.backend.calls


@pytest.mark.parametrize("extra", ["dialogue: true\n", "sections: [{name: a, brief: b, words: 10}]\n"])
def test_a_dialogue_or_long_form_template_has_no_close(tmp_path, extra):
    path = tmp_path / "bad.yaml"
    path.write_text(CLOSING + extra, encoding="utf-8")
    with pytest.raises(ConfigError, match="close"):
        load_template(str(path))


def test_song_intro_closes_with_the_song_and_the_catchphrase():
    template = load_template("song-intro")
    persona = load_persona("julie")
    messages, ctx = template.request(SONG, persona)
    close = template.closing(ctx)
    assert close == f"Here is Hoppípolla by Sigur Rós. {ctx['catchphrase']}"
    assert ctx["catchphrase"] in persona.catchphrases and "Here is" not in messages[-1]["content"]


def test_templates_show_prints_the_close_and_only_where_a_template_has_one():
    shown = invoke(cli, "aicp", ["templates", "show", "song-intro"])
    assert shown.exit_code == 0 and "close:" in shown.stdout and "Here is {{ title }} by {{ artist }}" in shown.stdout
    outro = orjson.loads(invoke(cli, "aicp", ["templates", "show", "station-id", "--json"]).stdout)
    assert "close" not in outro


def test_song_outro_back_announces_the_song_and_names_the_next_one_when_given():
    template = load_template("song-outro")
    persona = load_persona("max")
    _, ctx = template.request(SONG, persona)
    assert template.closing(ctx) == "That was Hoppípolla by Sigur Rós."
    record = {**SONG, "next_title": "Heroes", "next_artist": "David Bowie"}
    messages, ctx = template.request(record, persona)
    assert template.closing(ctx) == "That was Hoppípolla by Sigur Rós. Next up, Heroes by David Bowie."
    assert "Heroes" not in messages[-1]["content"]  # the model is not asked to say what the close says
    # under a time limit the model is told the words left to it
    messages, ctx = template.request(record, persona, max_words=30)
    assert ctx["close_words"] == 12 and "Stay under 18 words." in messages[-1]["content"]
