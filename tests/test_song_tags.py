"""Records that name their song's audio file get the artist, title, album, year and genre they
lack from the file's tags (files written here with soundfile and tagged with mutagen)."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TALB, TCON, TDRC, TIT2, TPE1
from mutagen.mp4 import MP4
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from ai_content_pipeline.songtags import SongTags, TagsUnreadable, read_tags
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM, RecordingEmitter, lines_of

TAGS = {"artist": "Queen", "title": "Bohemian Rhapsody", "album": "A Night at the Opera",
        "year": 1975, "genre": "Rock"}


def _tone(path, fmt: str, subtype: str | None = None) -> None:
    rate = 22050
    t = np.arange(rate // 2) / rate
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format=fmt, subtype=subtype)


def _id3(tags: ID3, date: str = "1975-10-31", genre: str = "Rock") -> None:
    tags.add(TPE1(encoding=3, text=["Queen"]))
    tags.add(TIT2(encoding=3, text=["Bohemian Rhapsody"]))
    tags.add(TALB(encoding=3, text=["A Night at the Opera"]))
    tags.add(TDRC(encoding=3, text=[date]))
    tags.add(TCON(encoding=3, text=[genre]))


def mp3(path, **kw):
    _tone(path, "MP3")
    tags = ID3()
    _id3(tags, **kw)
    tags.save(str(path))
    return path


def flac(path):
    _tone(path, "FLAC")
    f = FLAC(str(path))
    f.update({"ARTIST": "Queen", "TITLE": "Bohemian Rhapsody", "ALBUM": "A Night at the Opera",
              "DATE": "1975", "GENRE": "Rock"})
    f.save()
    return path


def ogg(path):
    _tone(path, "OGG", "VORBIS")
    f = OggVorbis(str(path))
    f.update({"artist": "Queen", "title": "Bohemian Rhapsody", "album": "A Night at the Opera",
              "date": "1975-10-31", "genre": "Rock"})
    f.save()
    return path


def wav_id3(path):
    _tone(path, "WAV")
    f = WAVE(str(path))
    f.add_tags()
    _id3(f.tags)
    f.save()
    return path


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, payload: bytes) -> bytes:
    return _box(kind, b"\0\0\0\0" + payload)


def m4a(path):
    """An M4A container (no audio frames: nothing here encodes AAC) that mutagen then tags."""
    mvhd = _full_box(b"mvhd", struct.pack(">IIII", 0, 0, 1000, 500) + b"\0" * 80)
    mdhd = _full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 22050, 11025, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", struct.pack(">I4s12s", 0, b"soun", b"\0" * 12) + b"\0")
    moov = _box(b"moov", mvhd + _box(b"trak", _box(b"mdia", mdhd + hdlr)))
    path.write_bytes(_box(b"ftyp", b"M4A \0\0\0\0M4A mp42isom") + moov)
    f = MP4(str(path))
    f.add_tags()
    f.tags.update({"\xa9ART": ["Queen"], "\xa9nam": ["Bohemian Rhapsody"], "\xa9alb": ["A Night at the Opera"],
                   "\xa9day": ["1975-10-31T00:00:00Z"], "\xa9gen": ["Rock"]})
    f.save()
    return path


@pytest.mark.parametrize("make, name", [(mp3, "song.mp3"), (flac, "song.flac"), (ogg, "song.ogg"),
                                        (wav_id3, "song.wav"), (m4a, "song.m4a")])
def test_tags_are_read_from_each_format(tmp_path, make, name):
    assert read_tags(make(tmp_path / name)) == TAGS


def test_a_numbered_id3_genre_is_named_and_a_bare_year_read(tmp_path):
    tags = read_tags(mp3(tmp_path / "s.mp3", date="1975", genre="(17)"))
    assert tags["genre"] == "Rock" and tags["year"] == 1975
    assert "year" not in read_tags(mp3(tmp_path / "blank.mp3", date="0000"))


def test_a_file_without_tags_gives_nothing_and_bad_files_raise(tmp_path):
    _tone(tmp_path / "plain.wav", "WAV")
    assert read_tags(tmp_path / "plain.wav") == {}
    (tmp_path / "notes.mp3").write_text("not audio at all\n" * 20)
    with pytest.raises(TagsUnreadable, match="notes.mp3"):
        read_tags(tmp_path / "notes.mp3")
    with pytest.raises(TagsUnreadable, match="not found"):
        read_tags(tmp_path / "gone.flac")
    with pytest.raises(TagsUnreadable, match="not a file"):
        read_tags(tmp_path)


def run(records, options=None, replies=("Here is Bohemian Rhapsody by Queen.",), emitter=None):
    llm = FakeLLM(list(replies))
    stage = ScriptStage(llm, options or ScriptOptions(), emitter or RecordingEmitter())
    return llm, stage, list(stage.run(lines_of(*records), total=len(records)))


def test_a_record_naming_its_file_gets_the_fields_it_lacks(tmp_path):
    path = str(mp3(tmp_path / "song.mp3"))
    llm, _, [out] = run([{"id": "s1", "file": path}])
    assert "error" not in out
    assert {k: out[k] for k in TAGS} == TAGS and out["file"] == path
    prompt = llm.calls[0]["messages"][-1]["content"]
    assert '"Bohemian Rhapsody" by Queen, from 1975, on the album "A Night at the Opera"' in prompt


def test_the_records_own_fields_win_over_the_tags(tmp_path):
    path = str(flac(tmp_path / "song.flac"))
    record = {"id": "s1", "file": path, "artist": "Freddie Mercury", "title": "Bo Rhap", "year": None,
              "album": "  "}
    llm, _, [out] = run([record])
    assert out["artist"] == "Freddie Mercury" and out["title"] == "Bo Rhap"
    assert out["year"] == 1975 and out["album"] == "A Night at the Opera" and out["genre"] == "Rock"
    assert '"Bo Rhap" by Freddie Mercury' in llm.calls[0]["messages"][-1]["content"]


def test_the_grounded_check_takes_facts_from_the_tags(tmp_path):
    path = str(m4a(tmp_path / "song.m4a"))
    take = ("Good evening, night owls. From the album A Night at the Opera, a Rock landmark of 1975. "
            "Here is Bohemian Rhapsody by Queen.")
    _, _, [tagged] = run([{"id": "s1", "file": path}], replies=[take])
    assert "grounded" not in tagged["script"]["checks"]["failed"]
    _, _, [untagged] = run([{"id": "s1", "file": path, "artist": "Queen", "title": "Bohemian Rhapsody"}],
                           ScriptOptions(song_field=None), replies=[take])
    assert "grounded" in untagged["script"]["checks"]["failed"]
    assert "1975" in untagged["script"]["checks"]["details"]["grounded"]  # a year only the tags gave


def test_an_unreadable_file_warns_once_per_record_and_the_record_goes_on(tmp_path):
    em = RecordingEmitter()
    records = [{"id": "s1", "file": str(tmp_path / "gone.mp3"), "artist": "Queen", "title": "Bohemian Rhapsody"},
               {"id": "s2", "file": str(tmp_path / "gone.mp3")}]
    _, stage, out = run(records, ScriptOptions(variants=2), emitter=em)
    assert [("script" in r) for r in out] == [True, True, False, False]
    assert out[2]["error"]["field"] == "artist"  # nothing filled it: the template's own error
    warnings = [f["message"] for e, f in em.events if e == "message" and f.get("level") == "warning"]
    assert len([w for w in warnings if "gone.mp3 not found" in w]) == 2
    assert any(w.startswith("record s1: song file") and w.endswith("its tags were not read") for w in warnings)


def test_the_song_field_is_an_option(tmp_path, monkeypatch):
    from ai_content_pipeline.cli import script as script_cli

    path = str(ogg(tmp_path / "song.ogg"))
    llm = FakeLLM(["Here is Bohemian Rhapsody by Queen."])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    data = orjson.dumps({"id": "s1", "song": path}) + b"\n"
    res = invoke(script_cli.script_command, "aicp-script", ["--song-field", "song"], data)
    assert res.exit_code == 0, res.stderr
    assert orjson.loads(res.stdout)["album"] == "A Night at the Opera"
    off = invoke(script_cli.script_command, "aicp-script", ["--song-field", ""],
                 orjson.dumps({"id": "s1", "file": path}) + b"\n")
    assert off.exit_code == 3 and "missing field 'artist'" in off.stdout


def test_each_file_is_read_once_per_run(tmp_path, monkeypatch):
    from ai_content_pipeline import songtags

    path = str(mp3(tmp_path / "song.mp3"))
    reads = []
    real = songtags.read_tags
    monkeypatch.setattr(songtags, "read_tags", lambda p: reads.append(p) or real(p))
    tags = SongTags()
    for _ in range(3):
        record, problem = tags.fill({"id": "x", "file": path})
        assert problem is None and record["title"] == "Bohemian Rhapsody"
    assert reads == [path]


def test_service_jobs_read_no_file_a_record_names():
    from ai_content_pipeline.service.requests import GenerateRequest, RequestProblem, build_chain

    records = [{"id": "a", "file": "/etc/passwd"}]
    simple, _, _ = build_chain(GenerateRequest.model_validate({"records": records}))
    assert simple["steps"][0]["params"]["song_field"] is None
    chain, _, _ = build_chain(GenerateRequest.model_validate(
        {"records": records, "chain": {"steps": [{"type": "script"}, {"type": "voice"}]}}))
    assert chain["steps"][0]["params"] == {"song_field": None} and "params" not in chain["steps"][1]
    for body, field in [({"params": {"song_field": "file"}}, "params.song_field"),
                        ({"chain": {"steps": [{"type": "script", "params": {"song_field": "f"}}]}},
                         "chain.steps.0.params.song_field")]:
        with pytest.raises(RequestProblem) as caught:
            build_chain(GenerateRequest.model_validate({"records": records, **body}))
        assert caught.value.field == field
