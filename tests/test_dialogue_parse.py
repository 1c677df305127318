"""Reading a model's dialogue reply into turns, and the dialogue checks (no model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_content_pipeline.checks import Checks, check_topic, evaluate, fold
from ai_content_pipeline.dialogue import (
    Host,
    check_alternate,
    check_clean_turns,
    check_speakers,
    check_turn_words,
    parse,
)

HOSTS = (Host("sam", "Sam"), Host("julie", "Julie"))


def turns(reply: str, hosts=HOSTS) -> list[tuple[str, str]]:
    return [(t.speaker, t.text) for t in parse(reply, hosts).turns]


@pytest.mark.parametrize("sam,julie", [
    ("Sam:", "Julie:"), ("SAM:", "JULIE:"), ("sam:", "julie:"), ("**Sam:**", "**Julie:**"),
    ("**Sam**:", "**Julie**:"), ("*Sam:*", "*Julie:*"), ("__Sam__:", "__Julie__:"), ("Sam -", "Julie -"),
    ("Sam —", "Julie —"), ("Sam –", "Julie –"), ("[Sam]:", "[Julie]:"), ("Sam (smiling):", "Julie (laughing):"),
    ("DJ Sam:", "DJ Julie:"), ("Host Sam:", "Host Julie:"), ("- Sam:", "- Julie:"), ("> **SAM:**", "> **JULIE:**"),
    ("Sam:", "julie -"), ("**SAM** —", "*Julie*:"),
])
def test_labels_in_the_forms_small_models_write_start_turns(sam, julie):
    reply = f"{sam} Welcome back to the show.\n{julie} Thanks, it is good to be here.\n{sam} Let us begin."
    assert turns(reply) == [("sam", "Welcome back to the show."), ("julie", "Thanks, it is good to be here."),
                            ("sam", "Let us begin.")]


def test_a_label_may_be_the_display_name_the_persona_name_or_a_first_name():
    hosts = (Host("dj-rosa", "Rosa Martinez"), Host("kai", "Kai"))
    reply = "Rosa Martinez: One.\nKai: Two.\ndj-rosa: Three.\nKAI: Four.\nRosa: Five."
    assert [s for s, _ in turns(reply, hosts)] == ["dj-rosa", "kai", "dj-rosa", "kai", "dj-rosa"]


def test_the_text_becomes_one_labelled_line_per_turn_and_reads_back_the_same():
    d = parse("**SAM:** Hello there.\n\nJULIE - Hi, Sam.\nHow are you?\n", HOSTS)
    assert d.text == "Sam: Hello there.\nJulie: Hi, Sam. How are you?"
    assert d.turn_list() == [{"speaker": "sam", "text": "Hello there."},
                             {"speaker": "julie", "text": "Hi, Sam. How are you?"}]
    assert d.spoken == "Hello there.\nHi, Sam. How are you?" and d.words == 7
    assert parse(d.text, HOSTS) == d


def test_text_before_the_first_label_is_the_openers_line_the_prompt_began():
    d = parse("Welcome to the show, everyone.\nJulie: Glad to be here.", HOSTS)
    assert [(t.speaker, t.text) for t in d.turns] == [("sam", "Welcome to the show, everyone."),
                                                      ("julie", "Glad to be here.")]
    assert d.stray == []


def test_text_before_the_openers_own_label_is_stray_and_fails_the_stray_check():
    d = parse("# Episode 12: Bicycles\nSam: Hello.\nJulie: Hi.", HOSTS)
    assert d.stray == ["# Episode 12: Bicycles"] and [t.speaker for t in d.turns] == ["sam", "julie"]
    assert d.text.startswith("# Episode 12: Bicycles\nSam: Hello.")
    verdict = evaluate(d.text, Checks(), context={}, prompt="", target_words=3, dialogue=d)
    assert "stray" in verdict["failed"] and verdict["details"]["stray"] == ["# Episode 12: Bicycles"]


@pytest.mark.parametrize("label", ["Narrator:", "Host 2:", "Guest:", "Alex:", "**Producer:**", "SPEAKER 3:"])
def test_a_line_labelled_with_no_hosts_name_is_stray_never_dropped(label):
    d = parse(f"Sam: Hello.\n{label} Something they say.\nJulie: Hi.", HOSTS)
    assert [t.speaker for t in d.turns] == ["sam", "julie"]
    assert d.stray == [f"{label} Something they say."] and f"{label} Something they say." in d.text
    assert parse(d.text, HOSTS) == d


@pytest.mark.parametrize("line", ["Fun fact: bikes are old.", "Remember: always wear a helmet.",
                                  "The takeaway: ride more.", "Well - I think so."])
def test_a_colon_or_dash_in_ordinary_speech_is_no_label(line):
    assert turns(f"Sam: Hello.\n{line}\nJulie: Hi.") == [("sam", f"Hello. {line}"), ("julie", "Hi.")]


def test_a_label_after_a_sentence_inside_a_line_starts_a_turn():
    assert turns("Sam: Great point. Julie: Thanks! **Sam:** Sure.") == [
        ("sam", "Great point."), ("julie", "Thanks!"), ("sam", "Sure.")]
    assert turns("Sam: I told Julie: no way.") == [("sam", "I told Julie: no way.")]


def test_no_label_at_all_is_one_turn_of_the_opener_and_empty_turns_are_left_out():
    assert turns("Just one voice here.") == [("sam", "Just one voice here.")]
    assert turns("Sam:\nJulie: Hi.\nSam:") == [("julie", "Hi.")]
    assert turns('Sam: "Quoted line."') == [("sam", "Quoted line.")]


_NAMES = st.sampled_from(["Sam", "SAM", "sam", "**Sam:**", "Julie", "JULIE", "**Julie**", "*Julie*"])
_WORDS = st.lists(st.sampled_from(["hello", "there", "vinyl", "records", "are", "back", "really", "yes"]),
                  min_size=1, max_size=8).map(lambda w: " ".join(w).capitalize() + ".")
_SEPS = st.sampled_from([": ", " - ", " — ", ":"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_NAMES, _SEPS, _WORDS), min_size=1, max_size=8))
def test_any_labelled_reply_gives_its_turns_in_order_and_rereads_the_same(lines):
    reply = "\n".join(f"{name}{'' if name.endswith(':**') else sep}{text}" if not name.endswith(":**")
                      else f"{name} {text}" for name, sep, text in lines)
    d = parse(reply, HOSTS)
    want = [("sam" if "sam" in name.lower() else "julie", text) for name, _, text in lines]
    assert [(t.speaker, t.text) for t in d.turns] == want and d.stray == []
    assert parse(d.text, HOSTS) == d


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("SamJulieNrtox :*-—_[]()#.!?\n\"'")), max_size=200))
def test_no_word_of_any_reply_is_lost_and_the_text_rereads_the_same(reply):
    d = parse(reply, HOSTS)
    kept = set(fold(d.text).split())
    labels = {"sam", "julie", "dj", "host"}
    assert {w for w in fold(reply).split() if w not in labels} <= kept
    assert parse(d.text, HOSTS) == d


# -- the dialogue checks ------------------------------------------------------------------
def test_speakers_needs_n_turns_from_each_host():
    d = parse("Sam: A.\nJulie: B.\nSam: C.", HOSTS)
    assert check_speakers(d, 1) is None
    assert check_speakers(d, 2) == {"turns": {"sam": 2, "julie": 1}, "min": 2}
    assert check_speakers(parse("Just Sam talking.", HOSTS), 1) == {"turns": {"sam": 1, "julie": 0}, "min": 1}


def test_turn_words_names_the_long_turns():
    d = parse("Sam: " + "word " * 30 + "end.\nJulie: Short.", HOSTS)
    assert check_turn_words(d, 40) == [] and check_turn_words(d, 20) == ["turn 1 (sam): 31 words"]


@pytest.mark.parametrize("inside", ["(laughs)", "[music]", "*sighs*", "[Music fades]", "**pauses**",
                                    "(both laugh)", "_whispers_"])
def test_a_stage_direction_inside_a_turn_fails_clean_turns(inside):
    d = parse(f"Sam: Hello there. {inside} Welcome.\nJulie: Hi.", HOSTS)
    assert check_clean_turns(d) == [f"turn 1 (sam): {inside}"]


@pytest.mark.parametrize("inside", ["I said, Julie: and you?", "Hello. Host: welcome.", "So. Narrator: later that day.",
                                    "Hi! **Guest 2:** thanks."])
def test_a_speaker_label_inside_a_turn_fails_clean_turns(inside):
    d = parse(f"Sam: {inside}\nJulie: Hi.", HOSTS)
    assert check_clean_turns(d) and check_clean_turns(d)[0].startswith("turn 1 (sam): ")


def test_plain_speech_passes_clean_turns():
    d = parse("Sam: It sold 10 million copies (in 1977), a record. Great!\nJulie: Yes - truly.", HOSTS)
    assert check_clean_turns(d) == []


def test_alternate_names_a_host_speaking_twice_in_a_row():
    assert check_alternate(parse("Sam: A.\nJulie: B.\nSam: C.", HOSTS)) == []
    assert check_alternate(parse("Sam: A.\nSam: B.\nJulie: C.", HOSTS)) == ["turns 1-2: sam"]


def test_topic_is_named_by_most_of_its_key_words():
    ctx = {"topic": "Why cities are planting more trees"}
    assert check_topic("More trees in the city: they plant them everywhere.", ["topic"], ctx) == []
    assert check_topic("Bicycles are great.", ["topic"], ctx) == ["topic"]
    assert check_topic("Anything.", ["topic"], {}) == []


def test_the_text_checks_run_on_what_the_hosts_say_not_on_the_labels():
    d = parse("Sam: Vinyl records are back.\nJulie: Yes, vinyl records are selling again.", HOSTS)
    checks = Checks(length={"min": 0.5, "max": 1.5}, speakers=1, turn_words=20, clean_turns=True, alternate=True,
                    topic=["topic"])
    verdict = evaluate(d.text, checks, context={"topic": "How vinyl records made a comeback"},
                       prompt="Talk about it.", target_words=11, dialogue=d)
    assert verdict == {"passed": True, "failed": []}  # the labels "Sam:" are no echo, and not counted
