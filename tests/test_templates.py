import pytest

from ai_content_pipeline.errors import ConfigError, InputError, UsageError
from ai_content_pipeline.templates import list_personas, list_templates, load_persona, load_template


def test_builtins_load_and_list():
    names = {t["name"] for t in list_templates()}
    assert {"song-intro", "song-outro", "station-id", "podcast-segment"} <= names
    personas = {p["name"] for p in list_personas()}
    assert len(personas) >= 3


def test_render_song_intro_with_optional_fields():
    t = load_template("song-intro")
    p = load_persona("julie")
    msgs = t.messages({"artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975}, p)
    assert msgs[0]["role"] == "system" and "Julie" in msgs[0]["content"]
    assert "Bohemian Rhapsody" in msgs[1]["content"] and "1975" in msgs[1]["content"]
    assert "album" not in msgs[1]["content"]
    assert t.ref == "song-intro@5"


def test_missing_required_field_names_the_field():
    t = load_template("song-intro")
    with pytest.raises(InputError, match="'artist'") as exc:
        t.messages({"title": "x"}, load_persona("max"))
    assert exc.value.extra["field"] == "artist"


def test_undefined_variable_in_user_template_is_a_record_error(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsystem: s\nuser: 'Hello {{ nickname }}'\n")
    with pytest.raises(InputError, match="nickname"):
        load_template(str(path)).messages({}, load_persona("julie"))


def test_unknown_names_and_bad_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown template"):
        load_template("nope")
    with pytest.raises(UsageError, match="unknown persona"):
        load_persona("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsystem: s\nuser: u\ntarget_words: -3\n")
    with pytest.raises(ConfigError, match="target_words"):
        load_template(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: b\nsystem: s\nuser: '{% if %}'\n")
    with pytest.raises(ConfigError, match="syntax"):
        load_template(str(broken))


def test_catchphrase_is_deterministic_per_record_and_take():
    p = load_persona("max")
    rec = {"artist": "a", "title": "b"}
    assert p.catchphrase_for(rec, 0) == p.catchphrase_for(rec, 0)
    assert p.catchphrase_for(rec, 0) in p.catchphrases


@pytest.mark.parametrize("value", ["evil.yaml", "evil.yml", "./evil", "/etc/passwd", "a/b", "..", "../personas/julie",
                                   "café", " evil.yaml "])
def test_a_record_names_a_persona_never_a_file(monkeypatch, tmp_path, value):
    """Record data is never used as a file path: ``Personas.for_record`` refuses anything but a
    plain name before it looks anything up (only the command line's default may be a file)."""
    from ai_content_pipeline.templates import Personas, store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text("name: evil\ndisplay_name: Evil\nstyle: x\n")
    personas = Personas("julie")
    looked_up: list[str] = []
    real = store._resolve
    monkeypatch.setattr(store, "_resolve", lambda ref, kind: looked_up.append(ref) or real(ref, kind))
    for field in ("persona", "dj"):
        with pytest.raises(InputError, match=f"field '{field}' is not a persona name") as caught:
            personas.for_record({field: value})
        assert caught.value.extra["field"] == field
    assert looked_up == []
    # the same file given on the command line is read, and records may then use its name
    from_file = Personas("./evil.yaml")
    assert from_file.for_record({"dj": "evil"}).display_name == "Evil"
    assert looked_up == ["./evil.yaml"]


def test_an_unknown_record_persona_gets_each_name_once_in_its_hint(tmp_path):
    from ai_content_pipeline.templates import Personas

    with pytest.raises(InputError) as caught:
        Personas("julie").for_record({"dj": "nobody"})
    assert caught.value.hint == "choose one of: julie, max, sam (your own: aicp personas new NAME)"
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text("name: rosa\ndisplay_name: Rosa\nstyle: x\n")
    with pytest.raises(InputError) as caught:  # a persona file's name is one a record may use
        Personas(str(rosa)).for_record({"dj": "nobody"})
    assert caught.value.hint == "choose one of: julie, max, sam, rosa (your own: aicp personas new NAME)"
