"""The script checks: each check on texts that must pass and texts that must fail."""

import pytest

from ai_content_pipeline.checks import (
    Checks,
    check_mentions,
    check_no_echo,
    choose,
    echo_phrases,
    ends_on_sentence,
    evaluate,
    fold,
    trim_to_sentence,
)
from ai_content_pipeline.templates import load_persona, load_template

SONG = {"id": "s1", "artist": "Sigur Rós", "title": "Hoppípolla", "year": 2005}


def request(record=SONG, template="song-intro", persona="julie"):
    t = load_template(template)
    messages, ctx = t.request(record, load_persona(persona))
    return t, "\n".join(m["content"] for m in messages), ctx


def test_fold_drops_case_accents_and_punctuation():
    assert fold("Sigur Rós") == "sigur ros"
    assert fold("What’s Going On?") == "whats going on"
    assert fold("Mötley Crüe") == "motley crue"
    assert fold("Røyksopp & Robyn") == "royksopp and robyn"
    assert fold("AC/DC") == "ac dc"


@pytest.mark.parametrize("text", [
    "Here is Sigur Ros with Hoppipolla.",
    "SIGUR RÓS — “Hoppípolla”!",
    "hoppipolla, by sigur ros, from 2005.",
])
def test_mentions_pass_whatever_the_spelling(text):
    assert check_mentions(text, ["artist", "title"], SONG) == []


@pytest.mark.parametrize("text, missing", [
    ('Lyrically: "Nevermind" and I\'m here to help you sing.', ["artist", "title"]),
    ("Here is Sigur Ros, a band from Iceland.", ["title"]),
    ("Sigurd Rossi sings Hoppipolla.", ["artist"]),  # not the same words
])
def test_mentions_fail_when_a_name_is_missing(text, missing):
    assert check_mentions(text, ["artist", "title"], SONG) == missing


def test_mentions_allow_common_short_forms():
    rec = {"artist": "The Beatles", "title": "Here Comes the Sun (Remastered 2009)"}
    assert check_mentions("The Beatles! Here Comes the Sun.", ["artist", "title"], rec) == []
    assert check_mentions("Beatles fans: Here Comes the Sun.", ["artist", "title"], rec) == []
    rec = {"artist": "Bob Marley and the Wailers", "title": "Redemption Song"}
    assert check_mentions("Bob Marley & the Wailers, Redemption Song.", ["artist", "title"], rec) == []
    assert check_mentions("Bob Marley sings Redemption Song.", ["artist", "title"], rec) == []
    assert check_mentions("AC/DC: Back in Black", ["artist"], {"artist": "ACDC"}) == []


@pytest.mark.parametrize(("artist", "text"), [
    ("Beyoncé feat. Jay-Z", "Here is Beyonce with Crazy in Love."),
    ("Beyoncé feat. Jay-Z", "Here is Beyoncé featuring Jay-Z: Crazy in Love."),
    ("Mark Ronson ft. Bruno Mars", "Mark Ronson and Crazy in Love."),
    ("Daft Punk featuring Pharrell Williams", "Crazy in Love, by Daft Punk."),
])
def test_mentions_a_featured_credit_names_the_main_artist(artist, text):
    assert check_mentions(text, ["artist", "title"], {"artist": artist, "title": "Crazy in Love"}) == []
    assert check_mentions("Crazy in Love.", ["artist"], {"artist": artist}) == ["artist"]


@pytest.mark.parametrize("text", [
    "Nirvana's Smells Like Teen Spirit.",
    "NIRVANA’S “Smells Like Teen Spirit”!",
    "Smells Like Teen Spirit, the song that made Nirvana`s name.",
])
def test_mentions_a_possessive_names_its_owner(text):
    rec = {"artist": "Nirvana", "title": "Smells Like Teen Spirit"}
    assert check_mentions(text, ["artist", "title"], rec) == []


def test_mentions_a_possessive_keeps_titles_with_apostrophes():
    rec = {"artist": "Marvin Gaye", "title": "What's Going On"}
    assert check_mentions("Marvin Gaye's What’s Going On.", ["artist", "title"], rec) == []
    assert check_mentions("Marvin Gaye: Whats Going On.", ["artist", "title"], rec) == []
    assert check_mentions("Marvin Gaye: What Going On.", ["artist", "title"], rec) == ["title"]


def test_mentions_skip_absent_fields_and_take_the_first_present_alternative():
    ctx = {"persona": {"station": "Night Owl FM"}, "station": None}
    assert check_mentions("This is Night Owl FM.", [["station", "persona.station"], "album"], ctx) == []
    assert check_mentions("This is radio.", [["station", "persona.station"]], ctx) == ["persona.station"]


@pytest.mark.parametrize("text", [
    "Good evening, night owls. Here is Sigur Ros with Hoppipolla, a song about jumping in puddles.",
    "From 2005, this is Hoppipolla by Sigur Ros. Stay cozy, night owls.",
    "I remember the first time I heard it. It felt like snow falling.",
])
def test_no_echo_passes_ordinary_intros(text):
    _, prompt, ctx = request()
    assert check_no_echo(text, prompt, ctx) == []


@pytest.mark.parametrize("text, what", [
    ("Hoppipolla by Sigur Ros, ending with Staying under 60 words.", "word budget"),
    ("Here it is in three short sentences: Hoppipolla.", "sentence count"),
    ("Here's the intro: Hoppipolla by Sigur Ros.", "preamble"),
    ("Julie: Good evening. Hoppipolla by Sigur Ros.", "label"),
    ("As an AI, I love Hoppipolla by Sigur Ros.", "assistant"),
    ("I will say one warm sentence about Hoppipolla by Sigur Ros.", "prompt"),
    ("This is how this song makes you feel: Hoppipolla.", "prompt"),
    ("*soft piano music*\nHoppipolla by Sigur Ros.", "stage direction"),
])
def test_no_echo_catches_instructions_and_meta_text(text, what):
    _, prompt, ctx = request()
    found = check_no_echo(text, prompt, ctx)
    assert any(f.startswith(what) for f in found), found


def test_echo_phrases_come_from_the_rendered_prompt_without_the_records_values():
    _, prompt, ctx = request()
    phrases = echo_phrases(prompt, ctx)
    assert "say one warm sentence about" in phrases
    assert not any("hoppipolla" in p or "sigur" in p for p in phrases)
    # a different prompt, different phrases: nothing is a fixed list
    _, prompt2, ctx2 = request({"topic": "Bees"}, "podcast-segment", "sam")
    assert "open with a hook explain" in echo_phrases(prompt2, ctx2)


def test_length_window_around_the_target():
    t, prompt, ctx = request()
    ok = "Sigur Ros, Hoppipolla. " + "word " * 40
    assert "length" not in evaluate(ok.strip() + ".", t.checks, context=ctx, prompt=prompt, target_words=60)["failed"]
    short = evaluate("Hoppipolla by Sigur Ros.", t.checks, context=ctx, prompt=prompt, target_words=60)
    assert short["failed"] == ["length"] and short["details"]["length"] == {"words": 4, "min": 30, "max": 90}
    long = evaluate("Hoppipolla by Sigur Ros. " + "more " * 100 + ".", t.checks, context=ctx, prompt=prompt,
                    target_words=60)
    assert "length" in long["failed"] and long["passed"] is False


@pytest.mark.parametrize("text, ok", [
    ("It ends here.", True), ("Does it?", True), ('She said "go."', True), ("Wow!)", True),
    ("It ends with a comma,", False), ("And then the", False), ("", False),
])
def test_ends_on_sentence(text, ok):
    assert ends_on_sentence(text) is ok


@pytest.mark.parametrize("text, expected", [
    ("One sentence. Two sentences. And a third that was cut", "One sentence. Two sentences."),
    ("Dr. Smith said hi. Then the model went on and", "Dr. Smith said hi."),
    ('He said "go!" Then', 'He said "go!"'),
    ("Already whole.", "Already whole."),
    ("no sentence ends here", "no sentence ends here"),
])
def test_trim_to_sentence(text, expected):
    assert trim_to_sentence(text) == expected


def test_evaluate_reports_every_failed_check_in_order():
    t, prompt, ctx = request()
    result = evaluate("Julie: Stay under 60 words and", t.checks, context=ctx, prompt=prompt, target_words=60)
    assert result["passed"] is False
    assert result["failed"] == ["mentions", "no_echo", "grounded", "length", "complete"]
    good = ("Good evening, night owls. This one always takes me back to a snowy walk home. "
            "Children jumping in puddles, strings swelling like a warm tide, and a voice singing "
            "in a language of its own. Stay cozy, night owls. Here is Hoppípolla by Sigur Rós.")
    assert evaluate(good, t.checks, context=ctx, prompt=prompt, target_words=60) == {"passed": True, "failed": []}


def test_a_template_without_a_checks_block_runs_no_echo_and_complete():
    assert Checks().names() == ["no_echo", "complete"]
    assert load_template("song-intro").checks.names() == ["mentions", "no_echo", "grounded", "length", "complete"]


def test_every_builtin_template_declares_checks():
    for name in ("song-intro", "song-outro", "station-id", "podcast-segment", "podcast-longform"):
        t = load_template(name)
        assert t.checks.length is not None and t.checks.no_echo and t.checks.complete


def test_choose_prefers_passing_then_closest_then_fewest_failed():
    assert choose([{"words": 60, "failed": ["mentions"]}, {"words": 40, "failed": []},
                   {"words": 55, "failed": []}], 60) == 2
    assert choose([{"words": 60, "failed": ["mentions", "length"]}, {"words": 10, "failed": ["length"]}], 60) == 1
    assert choose([{"words": 50, "failed": []}, {"words": 70, "failed": []}], 60) == 0  # tie: lower index
    with pytest.raises(ValueError):
        choose([], 60)


def test_templates_show_and_list_print_the_checks():
    import orjson

    from ai_content_pipeline.cli.catalog import templates_list, templates_show
    from tests.cli_helpers import invoke

    res = invoke(templates_show, "aicp templates show", ["song-intro", "--json"], b"")
    shown = orjson.loads(res.stdout)["checks"]
    assert shown == {"mentions": ["artist", "title"], "no_echo": True, "grounded": True,
                     "length": {"min": 0.5, "max": 1.5}, "complete": True}
    listed = [orjson.loads(x) for x in invoke(templates_list, "aicp templates list", [], b"").stdout.splitlines()]
    assert {t["name"]: t["checks"] for t in listed}["station-id"] == ["mentions", "no_echo", "length", "complete"]


def test_trimming_and_sentence_splits_are_the_same_from_many_threads_at_once():
    """The stage trims takes in its worker threads (``--jobs``/``--batch``) and the voice stage
    splits sentences in its own: one shared pysbd ``Segmenter`` keeps the text it segments
    on itself, so two threads at once got each other's sentences (a take trimmed wrongly,
    or not at all: a --batch 5 text differed from the --batch 2 one now and then)."""
    from concurrent.futures import ThreadPoolExecutor

    from ai_content_pipeline.text import split_sentences

    texts = [f"Song {i} is here. It was made in {1990 + i} by band {i}. And now the cut-off wor{'d' * i}"
             for i in range(40)]
    want_trim = [trim_to_sentence(t) for t in texts]
    want_split = [split_sentences(t) for t in texts]
    assert want_trim[3] == "Song 3 is here. It was made in 1993 by band 3."
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(trim_to_sentence, texts)) == want_trim
            assert list(pool.map(split_sentences, texts)) == want_split
