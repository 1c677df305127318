import io

import orjson
import pytest

from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.jsonl import RecordWriter, count_records, parse_line, read_records


def test_bad_lines_become_error_objects_and_reading_goes_on(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n[1, 2]\n\n\xff\xfe\n{"b": 2}\n')
    lines = list(read_records([str(path)]))
    assert [ln.line for ln in lines] == [1, 2, 3, 5, 6]
    assert lines[0].record == {"a": 1} and lines[0].error is None
    assert lines[1].error["type"] == "InputError" and lines[1].error["line"] == 2
    assert "not valid JSON" in lines[1].error["message"]
    assert "not an object" in lines[2].error["message"]
    assert "UTF-8" in lines[3].error["message"]
    assert lines[4].record == {"b": 2}
    assert all(ln.error["stage"] == "input" for ln in lines[1:4])


def test_stdin_and_crlf():
    stdin = io.BytesIO(b'{"x": 1}\r\n{"x": 2}\r\n')
    assert [ln.record for ln in read_records(["-"], stdin=stdin)] == [{"x": 1}, {"x": 2}]


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        list(read_records([str(tmp_path / "nope.jsonl")]))


def test_count_records_files_and_regular_stdin(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n')
    assert count_records([str(path)]) == 2
    with open(path, "rb") as fh:
        assert count_records(["-"], stdin=fh) == 2
        assert fh.tell() == 0  # rewound for the reader
    assert count_records(["-"], stdin=io.BytesIO(b"{}\n")) is None  # not a regular file


def test_writer_one_compact_line_per_record_flushed():
    class Sink(io.BytesIO):
        flushes = 0

        def flush(self):
            Sink.flushes += 1

    sink = Sink()
    writer = RecordWriter(sink)
    writer.write({"a": 1, "path": __import__("pathlib").Path("/x")})
    writer.write({"b": "é"})
    lines = sink.getvalue().split(b"\n")
    assert lines[0] == b'{"a":1,"path":"/x"}' and orjson.loads(lines[1]) == {"b": "é"}
    assert Sink.flushes == 2 and writer.count == 2


def test_parse_line_keeps_unicode():
    assert parse_line('{"t": "Beyoncé"}'.encode(), 1).record == {"t": "Beyoncé"}
