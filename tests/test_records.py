from ai_content_pipeline.records import get_path, record_id, slugify, word_count


def test_given_ids_are_kept_when_safe():
    assert record_id({"id": "song-001"}) == "song-001"


def test_unsafe_ids_are_cleaned_and_stay_distinct():
    a = record_id({"id": "../../etc/passwd"})
    b = record_id({"id": "..//etc/passwd"})
    for rid in (a, b):
        assert "/" not in rid and ".." not in rid and rid
    assert a != b
    assert len(record_id({"id": "x" * 500})) <= 64


def test_derived_id_is_stable_across_stages():
    rec = {"artist": "Queen", "title": "Bohemian Rhapsody"}
    rid = record_id(rec)
    assert rid.startswith("bohemian-rhapsody-")
    assert record_id({**rec, "script": {"text": "hi"}, "audio": {}}) == rid
    assert record_id({**rec, "year": 1975}) != rid


def test_numeric_id():
    assert record_id({"id": 7}) == "7"


def test_slugify_and_helpers():
    assert slugify("Beyoncé / Crazy in Love") == "Beyonce-Crazy-in-Love"
    assert get_path({"a": {"b": {"c": 1}}}, "a.b.c") == 1
    assert get_path({"a": 1}, "a.b") is None
    assert word_count(" one two\nthree ") == 3
