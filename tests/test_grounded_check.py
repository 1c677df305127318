"""The `grounded` check: every name and number of a take comes from what the take was given."""

import pytest

from ai_content_pipeline.checks import Checks, check_grounded, choose, evaluate
from ai_content_pipeline.errors import ConfigError
from ai_content_pipeline.templates import load_persona, load_template


def grounded(record, text, template="song-intro", persona="julie", take=0):
    t = load_template(template)
    messages, ctx = t.request(record, load_persona(persona), take=take)
    return check_grounded(text, "\n".join(m["content"] for m in messages), ctx)


JONI = {"id": "j", "artist": "Joni Mitchell", "title": "A Case of You", "year": 1971, "album": "Blue"}
QUEEN = {"id": "q", "artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975, "album": "A Night at the Opera"}
JACKSON = {"id": "m", "artist": "Michael Jackson", "title": "Billie Jean", "year": 1982, "album": "Thriller"}


@pytest.mark.parametrize("record, text, claims", [
    (JONI, "Here is Joni Mitchell, who died in 2018 at 37, with A Case of You.", ["2018", "37"]),
    (QUEEN, "Bohemian Rhapsody by Queen, featuring the iconic song 'Lemonade' by John Taylor.",
     ["Lemonade", "John Taylor"]),
    (JACKSON, "Billie Jean by Michael Jackson, the song of his performance at the 1985 Winter Olympics in Berlin.",
     ["1985", "Winter Olympics", "Berlin"]),
    (QUEEN, "Bohemian Rhapsody. Mr. Mercury wrote it with B. B. King, a No. 1 for nine weeks in '76.",
     ["Mr. Mercury", "B. B. King", "No. 1", "'76"]),
    (QUEEN, 'Bohemian Rhapsody, from the debut album "On Top of the World" by Queen.', ["On Top of the World"]),
])
def test_a_take_with_facts_it_was_not_given_fails_and_names_them(record, text, claims):
    assert grounded(record, text) == claims


@pytest.mark.parametrize("text", [
    "Good evening, night owls! Tonight on Night Owl FM, Julie here. Here is Queen's Bohemian Rhapsody, "
    "from 1975, off A Night at the Opera. Stay cozy, night owls.",
    "It's Friday night and I'm Julie. This one takes me back to a rainy walk home in the mid-'70s, "
    "one of those nights. Let the night play on. Bohemian Rhapsody, by Queen.",
    "Welcome back to Night Owl FM. The Seventies gave us this: Queen, Bohemian Rhapsody, "
    "nineteen seventy-five. Enjoy it.",
    'Ladies and gentlemen, "Bohemian Rhapsody" from the 1970s! Queen\'s "A Night at the Opera" is '
    "the album, and it still feels like the 20th century's best night out.",
])
def test_a_take_that_uses_only_given_facts_persona_names_and_common_words_passes(text):
    assert grounded(QUEEN, text) == []


def test_the_persona_and_its_station_are_given_facts():
    text = "Hi, I'm Max, on Power 101 Morning Drive! Turn it up! Queen, Bohemian Rhapsody."
    assert grounded(QUEEN, text, persona="max") == []
    assert grounded(QUEEN, text, persona="julie") == ["Max", "Power 101 Morning Drive"]


def test_names_match_without_their_accents_and_invented_accented_names_fail():
    evora = {"id": "e", "artist": "Cesária Évora", "title": "Sodade", "year": 1992, "album": "Miss Perfumado"}
    assert grounded(evora, "Cesaria Evora sings Sodade, from Miss Perfumado.") == []
    assert grounded(evora, "CESÁRIA ÉVORA's Sodade. Stay cozy, night owls.") == []
    assert grounded(evora, "Sodade, by Cesária Évora and her friend Zoë Müller of São Vicente.") == [
        "Zoë Müller of São Vicente"]
    bjork = {"id": "b", "artist": "Björk", "title": "Hyperballad"}
    assert grounded(bjork, "Bjork, Hyperballad.") == []


@pytest.mark.parametrize("text, claims", [
    ("Queen's Bohemian Rhapsody came out in nineteen seventy-five.", []),
    ("Queen's Bohemian Rhapsody came out back in seventy-five, in '75.", []),
    ("Queen's Bohemian Rhapsody came out in nineteen eighty-five.", ["nineteen eighty-five"]),
    ("Bohemian Rhapsody by Queen: Freddie Mercury was thirty-seven.", ["Freddie Mercury", "thirty-seven"]),
    ("Queen sold two thousand and five copies of Bohemian Rhapsody.", ["two thousand and five"]),
    ("One of the best: two legends, three chords, a million hearts. Bohemian Rhapsody by Queen.", []),
    ("Bohemian Rhapsody was a number one hit for Queen in the eighties.", ["number one", "eighties"]),
    ("Bohemian Rhapsody by Queen, from the '80s, a No. 1 in the 1960s.", ["'80s", "No. 1", "1960s"]),
])
def test_numbers_in_words_and_in_digits_must_be_given(text, claims):
    assert grounded(QUEEN, text) == claims


def test_the_template_text_is_given():
    # the song-outro record names the next song (its closing line says it); saying it is no invention
    record = {**QUEEN, "next_title": "Heroes", "next_artist": "David Bowie"}
    text = "That was Queen with Bohemian Rhapsody. Next up, Heroes by David Bowie."
    assert grounded(record, text, template="song-outro") == []
    assert grounded(QUEEN, text, template="song-outro") == ["Heroes", "David Bowie"]


def test_evaluate_fails_grounded_and_lists_the_claims():
    t = load_template("song-intro")
    messages, ctx = t.request(JACKSON, load_persona("julie"))
    prompt = "\n".join(m["content"] for m in messages)
    text = ("Billie Jean by Michael Jackson, from 1982, the song of his performance at the 1985 Winter "
            "Olympics in Berlin. Stay cozy, night owls. It is on Thriller, and it still shines tonight.")
    result = evaluate(text, t.checks, context=ctx, prompt=prompt, target_words=60)
    assert result["passed"] is False and "grounded" in result["failed"]
    assert result["details"]["grounded"] == ["1985", "Winter Olympics", "Berlin"]
    off = t.checks.model_copy(update={"grounded": False})
    assert "grounded" not in evaluate(text, off, context=ctx, prompt=prompt, target_words=60)["failed"]


def test_the_builtin_take_templates_turn_grounded_on():
    for name in ("song-intro", "song-outro", "podcast-segment"):
        assert load_template(name).checks.grounded is True, name
        assert "grounded" in load_template(name).checks.names()
    assert Checks().grounded is False and "grounded" not in Checks().names()


def test_a_templates_checks_block_turns_grounded_on_or_off(tmp_path):
    body = "name: mine\nsystem: You are a DJ.\nuser: Introduce {{ title }}.\nchecks:\n  grounded: {on}\n"
    for on in (True, False):
        path = tmp_path / f"mine-{on}.yaml"
        path.write_text(body.replace("{on}", str(on).lower()), encoding="utf-8")
        assert (load_template(str(path)).checks.grounded, "grounded" in load_template(str(path)).checks.names()) == (
            on, on)
    path = tmp_path / "bad.yaml"
    path.write_text(body.replace("{on}", "sometimes"), encoding="utf-8")
    with pytest.raises(ConfigError):
        load_template(str(path))


def test_best_of_prefers_a_grounded_candidate_when_none_passes_every_check():
    near_but_invents = {"words": 60, "failed": ["grounded"]}
    far_but_grounded = {"words": 20, "failed": ["length"]}
    assert choose([near_but_invents, far_but_grounded], 60) == 1
    # a grounded candidate comes first even when it fails more of the other checks
    assert choose([{"words": 60, "failed": ["grounded"]}, {"words": 60, "failed": ["length", "complete"]}], 60) == 1
    # among grounded ones (or among ungrounded ones), fewer failed checks come first
    assert choose([{"words": 60, "failed": ["mentions", "length"]}, {"words": 20, "failed": ["length"]}], 60) == 1
    assert choose([{"words": 60, "failed": ["grounded", "length"]}, {"words": 20, "failed": ["grounded"]}], 60) == 1
    # a candidate passing everything wins over all
    assert choose([far_but_grounded, {"words": 10, "failed": []}, near_but_invents], 60) == 1


def test_the_script_stage_keeps_the_grounded_candidate_among_equally_failing_ones():
    from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage, candidate_seed
    from tests.doubles import RecordingEmitter, SeededLLM, lines_of

    song = {"id": "s1", "artist": "Sigur Rós", "title": "Hoppípolla"}
    invents = ("Good evening, night owls. This one always takes me back to a snowy walk home, with "
               "strings that swell like a warm tide. It won a Grammy in 1987 in Paris. "
               "Stay cozy, night owls. Here is Hoppipolla by Sigur Ros.")
    short = "Here is Hoppipolla by Sigur Ros. Stay cozy, night owls."
    by_seed = {candidate_seed(5, 0): invents, candidate_seed(5, 1): short}
    llm = SeededLLM(["x"])
    llm.reply = lambda n, m, p: by_seed[p.seed]  # type: ignore[method-assign]
    stage = ScriptStage(llm, ScriptOptions(seed=5, best_of=2), RecordingEmitter(), None)
    [out] = list(stage.run(lines_of(song), total=1))
    checks = out["script"]["checks"]
    assert [c["failed"] for c in checks["candidates"]] == [["grounded"], ["length"]]
    # short's sentences are song-intro's closing line, said once, as the record spells the names
    assert out["script"]["text"] == "Here is Hoppípolla by Sigur Rós. Stay cozy, night owls."
    assert checks["chosen"] == 1 and checks["passed"] is False


def test_a_runaway_take_is_judged_without_error_or_delay():
    import time

    texts = ["9" * 5000 + " and the " + "7" * 5000 + "th", "one " * 5000, "Queen in Berlin. " * 5000]
    start = time.perf_counter()
    results = [grounded(QUEEN, text) for text in texts]
    assert results[0] == ["9" * 5000, "7" * 5000 + "th"] and results[1] == [] and results[2] == ["Berlin"]
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("text, claims", [
    ('Here is "Bohemian Rhapsody," Staying up with Queen tonight.', []),
    ('Queen and “Bohemian Rhapsody” Listening to it again feels new.', []),
    ('Queen and "Bohemian Rhapsody" Freddie Mercury sang it.', ["Freddie Mercury"]),
    ('Bohemian Rhapsody by Queen, from "Jazz".', ["Jazz"]),
])
def test_a_lone_capital_after_a_closing_quote_opens_a_sentence(text, claims):
    # small models start a sentence after a quoted title without an end mark
    assert grounded(QUEEN, text) == claims


@pytest.mark.parametrize("record, text, claims", [
    ({"id": "g", "artist": "Herbert Grönemeyer", "title": "Männer", "year": 1984},
     "Maenner by Herbert Groenemeyer, and Mä at the Groenemeyer house.", ["Mä"]),
    ({"id": "k", "artist": "Kyu Sakamoto", "title": "Ue o Muite Arukō", "year": 1961},
     "Ue o Muite Arukou by Kyu Sakamoto; Ue o Muite Arukoo, Ue o Muite Aruko.", []),
    ({"id": "f", "artist": "Luis Fonsi feat. Daddy Yankee", "title": "Despacito", "year": 2017},
     "Despacito, by Luis Fonsi featuring Daddy Yankee, Fonsi's song ft. Yankee, Daddy Yankee's verse.", []),
    ({"id": "p", "artist": "Édith Piaf", "title": "La Vie en rose", "year": 1947},
     "La Vie En Rose by EDITH PIAF, the forties, the '40s, Piaf's song from nineteen forty-seven.", []),
])
def test_spellings_of_given_names_and_years_are_given(record, text, claims):
    assert grounded(record, text) == claims


def test_an_opening_verb_before_given_words_is_no_claim():
    veloso = {"id": "v", "artist": "Caetano Veloso", "title": "Você É Linda", "year": 1983,
              "notes": "Caetano Veloso helped start the Tropicália movement in Brazil"}
    assert grounded(veloso, "Mentioning the Tropicália movement adds a warm touch. Você É Linda.") == []
    assert grounded(veloso, "Remembering Caetano Veloso tonight: Você É Linda.") == []
    # the words after it must still be given
    assert grounded(veloso, "Featuring Freddie Mercury on Você É Linda.") == ["Featuring Freddie Mercury"]
    assert grounded(veloso, "Bowling Green heard Você É Linda.") == ["Bowling Green"]


def test_a_peoples_word_formed_on_a_given_place_is_given():
    song = {"id": "k", "artist": "Kyu Sakamoto", "title": "Sukiyaki", "notes": "a hit in Japan, Korea, Mexico and Brazil"}
    assert grounded(song, "Sukiyaki by Kyu Sakamoto, loved by Japanese, Korean, Mexican and Brazilian fans.") == []
    assert grounded(song, "Sukiyaki by Kyu Sakamoto, loved by Chinese fans in Italian towns.") == ["Chinese", "Italian"]
