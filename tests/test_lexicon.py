"""The pronunciation lexicon: how entries match text, where they come from, and the errors a bad
lexicon file or persona block gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ai_content_pipeline.errors import ConfigError, UsageError
from ai_content_pipeline.lexicon import Lexicon, RunLexicon, entries_of, load_lexicon_file
from ai_content_pipeline.templates import (
    Personas,
    as_data,
    load_persona,
    persona_from_voice,
    persona_voice,
)

VOCE = {"say": "voh-SAY eh LEEN-dah", "phonemes": "vo.ˈse ɛ ˈlĩ.dɐ"}


def lexicon(table: dict) -> Lexicon:
    return Lexicon(entries_of(table, "test"))


def said(table: dict, text: str, phonemes: bool = False) -> str:
    """The text with respellings in place; phoneme parts as ``[[IPA]]``."""
    parts, _, _ = lexicon(table).parts(text, phonemes)
    return "".join(p.text if p.phonemes is None else f"[[{p.phonemes}]]" for p in parts)


@pytest.mark.parametrize(("text", "expected"), [
    ("Björk sings", "byerk sings"),
    ("BJÖRK sings", "byerk sings"),                     # case-insensitive
    ("björk sings", "byerk sings"),
    ("Bjo\u0308rk sings", "byerk sings"),                # decomposed ö (NFD) matches the composed entry
    ("Ｂｊöｒｋ sings", "byerk sings"),                   # full-width letters (NFKC)
    ("Björks sing", "Björks sing"),                     # whole words only: no match inside a word
    ("aBjörk", "aBjörk"),
    ("Björk_2", "Björk_2"),
    ("(Björk), Björk. Björk's", "(byerk), byerk. byerk's"),  # punctuation is a word boundary
    ("Bjork", "Bjork"),                                 # a different spelling is a different word
    ("ﬁ Björk\u00a0", "ﬁ byerk\u00a0"),                   # a ligature and a no-break space around it
])
def test_a_word_matches_whole_case_insensitive_and_unicode_normalised(text: str, expected: str) -> None:
    assert said({"Björk": "byerk"}, text) == expected


def test_the_longest_entry_wins_at_one_place_and_phrases_span_any_white_space() -> None:
    table = {"Linda": "LIN-dah", "Você É Linda": "voh-SAY eh LEEN-dah", "Você": "voh-SAY"}
    assert said(table, "Você É Linda!") == "voh-SAY eh LEEN-dah!"
    assert said(table, "Você  é\nLINDA tonight") == "voh-SAY eh LEEN-dah tonight"
    assert said(table, "Você e Linda") == "voh-SAY e LIN-dah"  # é and e differ: two entries match
    assert said(table, "Linda, Você") == "LIN-dah, voh-SAY"


def test_apostrophes_and_no_break_spaces_in_a_phrase_match_the_plain_ones() -> None:
    table = {"Guns N' Roses": "gunz en rozez", "Sinéad O'Connor": "shin-AYD oh-CON-er"}
    assert said(table, "Guns N’ Roses and Sinéad\u00a0O’Connor.") == "gunz en rozez and shin-AYD oh-CON-er."


def test_the_leftmost_match_wins_when_two_entries_overlap() -> None:
    assert said({"New York": "noo york", "York City": "york sitty"}, "New York City") == "noo york City"


def test_words_with_regex_characters_and_no_letters_match_literally() -> None:
    table = {"AC/DC": "ay see dee see", "P!nk": "pink", "!!!": "chk chk chk", "a.b": "ay bee"}
    assert said(table, "AC/DC, P!nk and !!! tonight; axb") == "ay see dee see, pink and chk chk chk tonight; axb"


def test_phonemes_go_to_an_engine_that_takes_them_and_the_respelling_to_the_others() -> None:
    table = {"Você É Linda": VOCE}
    assert said(table, "I love Você É Linda.", phonemes=True) == "I love [[vo.ˈse ɛ ˈlĩ.dɐ]]."
    assert said(table, "I love Você É Linda.", phonemes=False) == "I love voh-SAY eh LEEN-dah."
    parts, used, unsaid = lexicon({"Você": {"phonemes": "vo.ˈse"}}).parts("Você sings", False)
    assert [p.text for p in parts] == ["Você sings"] and used == [] and [e.word for e in unsaid] == ["Você"]


def test_the_key_part_names_only_what_reaches_the_engine() -> None:
    lx = lexicon({"Você É Linda": VOCE, "Björk": "byerk", "Elsewhere": "else where"})
    assert lx.used("Björk and Você É Linda", True) == [["Björk", "byerk", None], ["Você É Linda", None, VOCE["phonemes"]]]
    assert lx.used("Björk and Você É Linda", False) == [["Björk", "byerk", None], ["Você É Linda", VOCE["say"], None]]
    assert lx.used("nothing here", True) == []


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "says"), [
    ("Björk: [1, 2]\n", ["lexicon file {f}:1: entry 'Björk'"]),
    ("Björk:\n  sey: byerk\n", ["{f}:1: entry 'Björk': sey: Extra inputs are not permitted"]),
    ("ok: fine\nBjörk: {}\n", ["{f}:2: entry 'Björk': give say (a respelling) or phonemes (IPA)"]),
    ("Björk:\n", ["{f}:1: entry 'Björk': give say"]),
    ("Björk: {say: ''}\n", ["entry 'Björk': say: String should have at least 1 character"]),
    ("Björk: {phonemes: 'bj[ɜː]k'}\n", ["entry 'Björk': phonemes may not hold [ or ]"]),
    ("1999: nineteen ninety-nine\n", ["{f}:1: entry 1999: a word must be a string"]),
    ("'  ': blank\n", ["entry '  ': a word is 1-200 characters"]),
    ("Björk: a\nBJÖRK: b\n", ["{f}:2: entries 'Björk' and 'BJÖRK' name the same word"]),
    ("- Björk\n", ["lexicon file {f} must be a mapping"]),
    ("Björk: byerk\nBjörk: other\n", ["lexicon file {f}:2: not valid YAML", "duplicate"]),
    ("Björk: [unclosed\n", ["lexicon file {f}", "not valid YAML"]),
])
def test_a_bad_lexicon_file_is_a_config_error_naming_the_file_line_and_entry(
        tmp_path: Path, text: str, says: list[str]) -> None:
    path = write(tmp_path / "names.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_lexicon_file(path)
    for part in says:
        assert part.format(f=path) in caught.value.message, caught.value.message
    assert caught.value.exit_status == 2


def test_a_missing_lexicon_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="lexicon file .*none.yaml does not exist"):
        load_lexicon_file(tmp_path / "none.yaml")
    assert not load_lexicon_file(write(tmp_path / "empty.yaml", "# nothing yet\n"))


def test_user_folder_then_persona_then_files_later_ones_winning(tmp_path: Path) -> None:
    home = Path(os.environ["AICP_HOME"])
    (home / "lexicon").mkdir()
    write(home / "lexicon" / "a.yaml", "Björk: from-user-a\nSigur Rós: see-ur rose\nLinda: user-linda\n")
    write(home / "lexicon" / "b.yaml", "Björk: from-user-b\n")
    write(home / "lexicon" / ".hidden.yaml", "Björk: hidden\n")
    (home / "personas").mkdir()
    write(home / "personas" / "rosa.yaml", "name: rosa\ndisplay_name: Rosa\nstyle: warm\n"
                                           "lexicon:\n  Linda: {say: persona-linda}\n  Björk: persona-bjork\n")
    given = write(tmp_path / "given.yaml", "Björk: from-file\n")
    run = RunLexicon([given], home / "lexicon")
    rosa = load_persona("rosa")
    assert said_with(run.for_persona(None), "Björk Linda Sigur Rós") == "from-file user-linda see-ur rose"
    assert said_with(run.for_persona(rosa), "Björk Linda Sigur Rós") == "from-file persona-linda see-ur rose"
    assert said_with(RunLexicon([], home / "lexicon").for_persona(rosa), "Björk") == "persona-bjork"
    assert said_with(RunLexicon([], home / "lexicon").for_persona(None), "Björk") == "from-user-b"


def said_with(lx: Lexicon, text: str) -> str:
    return "".join(p.text for p in lx.parts(text, False)[0])


def test_a_persona_lexicon_is_validated_with_the_persona(tmp_path: Path) -> None:
    bad = write(tmp_path / "rosa.yaml", "name: rosa\ndisplay_name: Rosa\nstyle: warm\nlexicon:\n  Björk: {sey: x}\n")
    with pytest.raises(ConfigError, match=r"rosa.yaml: lexicon.Björk.sey: Extra inputs"):
        load_persona(str(bad))
    twice = write(tmp_path / "max.yaml", "name: max\ndisplay_name: Max\nstyle: loud\nlexicon:\n  Björk: a\n  björk: b\n")
    with pytest.raises(ConfigError, match="entries 'Björk' and 'björk' name the same word"):
        load_persona(str(twice))


def test_a_persona_lexicon_travels_with_the_script_record(tmp_path: Path) -> None:
    path = write(tmp_path / "rosa.yaml", "name: rosa\ndisplay_name: Rosa\nstyle: warm\n"
                                         "lexicon:\n  Você: {phonemes: vo.ˈse}\n  Björk: byerk\n")
    rosa = load_persona(str(path))
    carried = persona_voice(rosa)
    assert carried["lexicon"] == {"Você": {"phonemes": "vo.ˈse"}, "Björk": {"say": "byerk"}}
    assert as_data(rosa)["lexicon"] == carried["lexicon"]  # what aicp personas show prints
    rebuilt = persona_from_voice("rosa", carried, "script.persona_voice")
    assert said_with(RunLexicon().for_persona(rebuilt), "Björk") == "byerk"
    assert "lexicon" not in persona_voice(load_persona("julie"))  # no entries: the record is as before
    record = {"script": {"persona": "rosa", "persona_voice": {**carried, "lexicon": {"Björk": {"sey": 1}}}}}
    with pytest.raises(Exception, match=r"script.persona_voice.lexicon.Björk.sey"):
        Personas(None, required=False).for_record(record, ("script.persona",),
                                                  carried=("script.persona", "script.persona_voice"))
