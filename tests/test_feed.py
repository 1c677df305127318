"""``aicp feed``: episode records into a podcast feed apps read (feedparser parses it back)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import feedparser
import numpy as np
import pytest
import soundfile as sf

from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.feed import PODCAST_NS
from tests.cli_helpers import invoke

BASE = "https://cdn.example.com/show"
NEW = ["--title", "Night Notes", "--link", "https://example.com/night-notes", "--base-url", BASE]
P = f"{{{PODCAST_NS}}}"


def _wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    sf.write(path, np.zeros(int(seconds * rate), dtype="float32"), rate)
    return path


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _feed(tmp_path: Path, *args: str, input: str = "", out: str = "site/feed.xml"):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return invoke(cli, "aicp", ["feed", "--out", out, *args], input=input)
    finally:
        os.chdir(cwd)


def _items(feed: Path) -> dict[str, ET.Element]:
    channel = ET.parse(feed).getroot().find("channel")
    assert channel is not None
    return {item.findtext("title") or "": item for item in channel.findall("item")}


@pytest.fixture
def show(tmp_path: Path) -> Path:
    _wav(tmp_path / "ep one.wav", 3.0)
    _wav(tmp_path / "ep2.wav", 62.4)
    (tmp_path / "ep one.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nHello.\n")
    _jsonl(tmp_path / "episodes.jsonl", [
        {"id": "ep1", "title": "Pilot", "date": "2026-11-01T08:00:00Z", "description": "The first one.",
         "mix": {"file": "ep one.wav", "seconds": 3.0, "type": "audio/wav", "captions": "ep one.vtt",
                 "chapters": [{"start": 1.5, "end": 3.0, "title": "Second"},
                              {"start": 0, "end": 1.5, "title": "First"}]}},
        {"id": "ep2", "topic": "Weather", "published": "Tue, 03 Nov 2026 09:30:00 +0000",
         "script": {"text": "Rain all week."}, "audio": {"path": "ep2.wav"}},
    ])
    return tmp_path


def test_the_feed_parses_and_carries_the_tags_podcast_apps_read(show: Path) -> None:
    r = _feed(show, *NEW, "--author", "Rosa", "--image", "cover.png", "--language", "en",
              "--category", "Arts/Books", "--explicit", "episodes.jsonl")
    assert (r.exit_code, r.stdout) == (0, "")
    assert r.stderr == "aicp feed: 2 added, 0 replaced, 0 kept -> site/feed.xml\n"
    parsed = feedparser.parse(str(show / "site/feed.xml"))
    assert not parsed.bozo and parsed.version == "rss20"
    assert parsed.feed.title == "Night Notes" and parsed.feed.link == "https://example.com/night-notes"
    assert parsed.feed.language == "en" and parsed.feed.author == "Rosa"
    assert parsed.feed.image.href == f"{BASE}/cover.png" and parsed.feed.itunes_explicit is True
    assert parsed.feed.tags[0].term == "Arts"
    assert parsed.feed.podcast_guid
    # newest first, each with enclosure (URL, length, type), duration, GUID, date, description
    weather, pilot = parsed.entries
    assert pilot.title == "Pilot" and weather.title == "Weather"
    assert pilot.enclosures == [{"href": f"{BASE}/ep%20one.wav", "length": str((show / "ep one.wav").stat().st_size),
                                 "type": "audio/wav"}]
    assert weather.enclosures[0]["length"] == str((show / "ep2.wav").stat().st_size)
    assert weather.enclosures[0]["type"] == "audio/wav"
    assert pilot.itunes_duration == "0:00:03" and weather.itunes_duration == "0:01:02"  # read from the file
    assert pilot.summary == "The first one." and weather.summary == "Rain all week."
    assert pilot.published_parsed[:4] == (2026, 11, 1, 8) and weather.published_parsed[:5] == (2026, 11, 3, 9, 30)
    assert pilot.id != weather.id and not pilot.guidislink
    items = _items(show / "site/feed.xml")
    chapters = items["Pilot"].find(f"{P}chapters")
    assert chapters is not None and chapters.attrib == {"url": f"{BASE}/ep%20one.chapters.json",
                                                        "type": "application/json+chapters"}
    transcript = items["Pilot"].find(f"{P}transcript")
    assert transcript is not None and transcript.attrib == {"url": f"{BASE}/ep%20one.vtt", "type": "text/vtt",
                                                            "rel": "captions"}
    assert items["Weather"].find(f"{P}chapters") is None and items["Weather"].find(f"{P}transcript") is None


def test_the_chapters_file_is_podcasting_2_json_chapters(show: Path) -> None:
    assert _feed(show, *NEW, "episodes.jsonl").exit_code == 0
    doc = json.loads((show / "site/ep one.chapters.json").read_text())
    assert doc["version"] == "1.2.0" and doc["title"] == "Pilot" and doc["podcastName"] == "Night Notes"
    assert doc["chapters"] == [{"startTime": 0.0, "endTime": 1.5, "title": "First"},
                               {"startTime": 1.5, "endTime": 3.0, "title": "Second"}]
    assert sorted(p.name for p in (show / "site").iterdir()) == ["ep one.chapters.json", "feed.xml"]


def test_subrip_captions_are_a_subrip_transcript(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi.\n")
    r = _feed(tmp_path, *NEW, input=json.dumps({"id": "a", "captions": "a.srt", "mix": {"file": "a.wav"}}) + "\n")
    assert r.exit_code == 0, r.stderr
    transcript = _items(tmp_path / "site/feed.xml")["a"].find(f"{P}transcript")
    assert transcript is not None and transcript.get("type") == "application/x-subrip"
    assert transcript.get("url") == f"{BASE}/a.srt"


def test_appending_keeps_the_episodes_and_their_guids(show: Path) -> None:
    assert _feed(show, *NEW, "episodes.jsonl").exit_code == 0
    first = {e.title: e.id for e in feedparser.parse(str(show / "site/feed.xml")).entries}
    _wav(show / "ep3.wav", 2.0)
    _jsonl(show / "more.jsonl", [{"id": "ep3", "title": "Third", "date": "2026-11-10", "mix": {"file": "ep3.wav"}}])
    r = _feed(show, "more.jsonl")  # the channel (title, link, base URL) comes from the feed
    assert (r.exit_code, r.stdout) == (0, "")
    assert r.stderr == "aicp feed: 1 added, 0 replaced, 2 kept -> site/feed.xml\n"
    parsed = feedparser.parse(str(show / "site/feed.xml"))
    after = {e.title: e.id for e in parsed.entries}
    assert {k: after[k] for k in first} == first and set(after) == {"Pilot", "Weather", "Third"}
    assert [e.title for e in parsed.entries] == ["Third", "Weather", "Pilot"]
    assert parsed.feed.title == "Night Notes" and parsed.entries[0].enclosures[0]["href"] == f"{BASE}/ep3.wav"
    assert _items(show / "site/feed.xml")["Pilot"].find(f"{P}transcript") is not None  # kept as it was

    # the same records again: replaced in place, same GUIDs, no duplicates
    r = _feed(show, "episodes.jsonl")
    assert r.exit_code == 0 and "0 added, 2 replaced, 1 kept" in r.stderr
    again = feedparser.parse(str(show / "site/feed.xml")).entries
    assert sorted((e.title, e.id) for e in again) == sorted(after.items())


def test_an_episode_whose_file_is_in_the_feed_keeps_its_guid_when_its_id_changed(show: Path) -> None:
    assert _feed(show, *NEW, "episodes.jsonl").exit_code == 0
    guid = {e.title: e.id for e in feedparser.parse(str(show / "site/feed.xml")).entries}["Weather"]
    _jsonl(show / "renamed.jsonl", [{"id": "weather-2", "title": "Weather (fixed)", "audio": {"path": "ep2.wav"}}])
    assert _feed(show, "renamed.jsonl").exit_code == 0
    entries = feedparser.parse(str(show / "site/feed.xml")).entries
    assert [e.id for e in entries if e.title == "Weather (fixed)"] == [guid] and len(entries) == 2


def test_records_come_from_stdin_and_a_records_own_guid_is_used(tmp_path: Path) -> None:
    _wav(tmp_path / "x.wav", 1.0)
    r = _feed(tmp_path, *NEW, "-", input=json.dumps({"guid": "tag:example.com,2026:x", "mix": {"file": "x.wav"}}))
    assert r.exit_code == 0, r.stderr
    assert feedparser.parse(str(tmp_path / "site/feed.xml")).entries[0].id == "tag:example.com,2026:x"


def test_failed_and_broken_records_are_left_out_and_named_exit_3(show: Path) -> None:
    _jsonl(show / "mixed.jsonl", [{"id": "bad", "error": {"stage": "mix", "message": "no song"}}, "not json",
                                  json.loads((show / "episodes.jsonl").read_text().splitlines()[0]),
                                  {"id": "odd", "error": "gave up", "mix": {"file": "ep2.wav"}}, "[1, 2]"])
    r = _feed(show, *NEW, "mixed.jsonl")
    assert (r.exit_code, r.stdout) == (3, "")
    lines = r.stderr.splitlines()
    assert lines[0] == "aicp feed: warning: mixed.jsonl line 1 left out: the record failed upstream: no song"
    assert lines[1].startswith("aicp feed: warning: mixed.jsonl line 2 left out: line 2 is not valid JSON")
    assert lines[2] == "aicp feed: warning: mixed.jsonl line 4 left out: the record failed upstream: gave up"
    assert lines[3] == ("aicp feed: warning: mixed.jsonl line 5 left out: line 5 is a JSON array, not an object")
    assert [e.title for e in feedparser.parse(str(show / "site/feed.xml")).entries] == ["Pilot"]


@pytest.mark.parametrize("record,args,message,hint", [
    ({"id": "a", "mix": {"file": "gone.mp3"}}, NEW,
     "aicp feed: error: - line 1: the episode's audio file (mix.file) gone.mp3 does not exist", "current folder"),
    ({"id": "a", "title": "no audio"}, NEW,
     "aicp feed: error: - line 1: the episode's audio file (mix.file) is missing", "mix.file"),
    ({"id": "a", "mix": {"file": "a.wav"}}, NEW[:4],
     "aicp feed: error: no --base-url: the enclosure URLs are the base URL and each audio file's name",
     "give --base-url"),
    ({"id": "a", "mix": {"file": "a.wav"}}, [*NEW[:4], "--base-url", "cdn.example.com"],
     "aicp feed: error: --base-url 'cdn.example.com' is not an http(s) URL", "https://"),
    ({"id": "a", "mix": {"file": "a.wav"}}, NEW[2:],
     "aicp feed: error: the feed needs a title", "--title"),
    ({"id": "a", "date": "last Tuesday", "mix": {"file": "a.wav"}}, NEW,
     "aicp feed: error: - line 1: date 'last Tuesday' is neither ISO 8601 nor RFC 2822", "2026-12-06"),
    ({"id": "a", "captions": "a.txt", "mix": {"file": "a.wav"}}, NEW,
     "aicp feed: error: - line 1: captions a.txt are neither WebVTT (.vtt) nor SubRip (.srt)", ".vtt or .srt"),
    ({"id": "a", "mix": {"file": "a.wav", "chapters": [{"title": "x"}]}}, NEW,
     "aicp feed: error: - line 1: chapter 1 has no start time in seconds", '"start"'),
    ({"id": "a", "mix": {"file": "noise.mp3"}}, NEW,
     "aicp feed: error: - line 1: the record gives no duration (mix.seconds) and noise.mp3 cannot be read for one",
     "mix.seconds"),
    ({"id": "a", "captions": "gone.vtt", "mix": {"file": "a.wav"}}, NEW,
     "aicp feed: error: - line 1: its captions file gone.vtt does not exist", "current folder"),
    ({"id": "a", "mix": {"file": "a.wav"}}, [*NEW, "--category", "Arts/Books/Poetry"],
     "aicp feed: error: --category 'Arts/Books/Poetry' has more than two levels", "Category/Subcategory"),
    ({"id": "a", "mix": {"file": "a.wav"}}, ["--title", "T", "--link", "example.com", *NEW[4:]],
     "aicp feed: error: --link 'example.com' is not an http(s) URL", "https://"),
    ({"id": "a", "mix": {"file": "a.wav"}}, [*NEW, "missing.jsonl"],
     "aicp feed: error: cannot read missing.jsonl: no such file", "standard input"),
    ({"id": "a", "mix": {"file": "a.wav"}}, [*NEW, "--image", "cover.gif"],
     "aicp feed: error: --image cover.gif does not end in .jpg or .png", "PNG"),
])
def test_what_cannot_be_published_stops_before_anything_is_written(
        tmp_path: Path, record: dict[str, Any], args: list[str], message: str, hint: str) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "a.txt").write_text("words")
    (tmp_path / "noise.mp3").write_bytes(b"not audio at all" * 8)
    r = _feed(tmp_path, *args, input=json.dumps(record) + "\n")
    assert (r.exit_code, r.stdout) == (2, "")
    first, second = r.stderr.splitlines()
    assert first == message and second.startswith("aicp feed: hint: ") and hint in second
    assert not (tmp_path / "site").exists()


def test_a_failed_append_leaves_the_feed_as_it_was(show: Path) -> None:
    assert _feed(show, *NEW, "episodes.jsonl").exit_code == 0
    before = (show / "site/feed.xml").read_bytes()
    r = _feed(show, input=json.dumps({"id": "new", "mix": {"file": "missing.wav"}}))
    assert r.exit_code == 2 and "missing.wav does not exist" in r.stderr
    assert (show / "site/feed.xml").read_bytes() == before
    assert not [p for p in (show / "site").iterdir() if p.name.endswith(".part")]


def test_an_out_file_that_is_not_a_feed_is_not_replaced(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "notes.xml").write_text("<html><body>mine</body></html>")
    r = _feed(tmp_path, *NEW, input=json.dumps({"mix": {"file": "a.wav"}}), out="notes.xml")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines()[0] == "aicp feed: error: --out notes.xml exists but is not an RSS feed"
    assert (tmp_path / "notes.xml").read_text() == "<html><body>mine</body></html>"


def test_two_episode_files_with_one_name_would_share_a_url(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _wav(tmp_path / "a/ep.wav", 1.0)
    _wav(tmp_path / "b/ep.wav", 2.0)
    r = _feed(tmp_path, *NEW, input=json.dumps({"id": "1", "mix": {"file": "a/ep.wav"}}) + "\n"
              + json.dumps({"id": "2", "mix": {"file": "b/ep.wav"}}) + "\n")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.startswith(f"aicp feed: error: - line 2: b/ep.wav would be published at {BASE}/ep.wav")


def test_help_names_the_url_rule_and_the_fields(tmp_path: Path) -> None:
    r = invoke(cli, "aicp", ["feed", "--help"])
    assert r.exit_code == 0 and r.stderr == ""
    assert "BASE/AUDIO-NAME" in r.stdout and "mix.chapters" in r.stdout and "--title-field" in r.stdout


def test_title_description_and_date_fields_can_be_named(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    record = {"id": "a", "meta": {"name": "Named", "blurb": "Blurb"}, "aired": "2026-01-02", "mix": {"file": "a.wav"}}
    r = _feed(tmp_path, *NEW, "--title-field", "meta.name", "--description-field", "meta.blurb",
              "--date-field", "aired", input=json.dumps(record))
    assert r.exit_code == 0, r.stderr
    entry = feedparser.parse(str(tmp_path / "site/feed.xml")).entries[0]
    assert (entry.title, entry.summary, entry.published_parsed[:3]) == ("Named", "Blurb", (2026, 1, 2))


def test_control_characters_and_lone_surrogates_become_text_xml_can_carry(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    record = ('{"id": "x", "title": "Bell\\u0007 one", "description": "a\\u0000b", '
              '"mix": {"file": "a.wav", "chapters": [{"start": 0, "title": "Intro\\u001b"}]}}')
    # a title from a command line in another encoding arrives with lone surrogates
    r = _feed(tmp_path, *NEW[2:], "--title", "Caf\udce9 Talk", "--author", "Zo\udcebl\u0001",
              input=record + "\n")
    assert (r.exit_code, r.stdout) == (0, ""), r.stderr
    parsed = feedparser.parse(str(tmp_path / "site/feed.xml"))
    assert not parsed.bozo and parsed.feed.title == "Caf\ufffd Talk" and parsed.feed.author == "Zo\ufffdl"
    entry = parsed.entries[0]
    assert (entry.title, entry.summary) == ("Bell one", "ab")
    doc = json.loads((tmp_path / "site/a.chapters.json").read_bytes())
    assert doc["chapters"] == [{"startTime": 0.0, "title": "Intro"}] and doc["podcastName"] == "Caf\ufffd Talk"


def test_a_file_name_that_is_not_utf8_is_percent_encoded_byte_for_byte() -> None:
    from ai_content_pipeline.feed import file_url

    assert file_url(BASE + "/", os.fsdecode(b"ep \xff#1.mp3")) == f"{BASE}/ep%20%FF%231.mp3"


@pytest.mark.parametrize("date", [1e300, -1e300, True, [2026], "2026-13-45"])
def test_a_date_out_of_range_or_of_another_type_is_an_error_not_a_traceback(tmp_path: Path, date: Any) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    r = _feed(tmp_path, *NEW, input=json.dumps({"id": "a", "date": date, "mix": {"file": "a.wav"}}))
    assert (r.exit_code, r.stdout) == (2, "")
    assert "is neither ISO 8601 nor RFC 2822" in r.stderr.splitlines()[0] and "Traceback" not in r.stderr


def test_an_empty_out_file_starts_a_new_feed(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "feed.xml").write_bytes(b"")
    r = _feed(tmp_path, *NEW, input=json.dumps({"id": "a", "mix": {"file": "a.wav"}}), out="feed.xml")
    assert r.exit_code == 0, r.stderr
    assert len(feedparser.parse(str(tmp_path / "feed.xml")).entries) == 1


@pytest.mark.parametrize("image", ["cover.jpeg", "cover.PNG", "https://example.com/cover.png?v=2"])
def test_cover_art_podcast_apps_would_not_get_is_refused(tmp_path: Path, image: str) -> None:
    # feedgen leaves out an itunes:image that does not end in .jpg or .png without a word
    _wav(tmp_path / "a.wav", 1.0)
    r = _feed(tmp_path, *NEW, "--image", image, input=json.dumps({"id": "a", "mix": {"file": "a.wav"}}))
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines()[0] == f"aicp feed: error: --image {image} does not end in .jpg or .png"


def test_the_feed_is_never_written_over_its_input(tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "episodes.jsonl", [{"id": "a", "mix": {"file": "a.wav"}}])
    before = src.read_bytes()
    r = _feed(tmp_path, *NEW, "episodes.jsonl", out="episodes.jsonl")
    assert (r.exit_code, r.stdout) == (2, "")
    assert "is the same file as input episodes.jsonl" in r.stderr and src.read_bytes() == before


def test_two_runs_on_one_feed_take_turns(show: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import filelock

    from ai_content_pipeline import feed

    assert _feed(show, *NEW, "episodes.jsonl").exit_code == 0
    before = (show / "site/feed.xml").read_bytes()
    monkeypatch.setattr(feed, "LOCK_WAIT_SECONDS", 0.2)
    other = filelock.FileLock(show / "site/.feed.xml.lock", is_singleton=False)  # a run writing the feed now
    with other:
        r = _feed(show, "episodes.jsonl")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines()[0] == ("aicp feed: error: --out site/feed.xml is being written by another "
                                        "aicp feed run (waited 0.2 s)")
    assert (show / "site/feed.xml").read_bytes() == before
    r = _feed(show, "episodes.jsonl")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (show / "site").iterdir()) == ["ep one.chapters.json", "feed.xml"]


def test_the_man_page_gives_the_feeds_own_exit_statuses() -> None:
    text = (Path(__file__).resolve().parents[1] / "man/man1/aicp-feed.1").read_text()
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXAMPLES", ".SH EXIT STATUS", ".SH URLS"):
        assert section in text, section
    assert ".SH EVENTS" not in text and "\\fB4\\fR" not in text  # no backend, no events
    assert all(f"\\fB{code}\\fR" in text for code in ("0", "1", "2", "3", "130"))
