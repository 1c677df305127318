"""Values through the API: a record's values come back out exactly as the commands keep them,
or the request is refused with a 422 naming the field and leaves nothing on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_content_pipeline import jsonl
from ai_content_pipeline.records import STAGE_FIELDS
from tests.service.conftest import SONGS, Service

GENERATE = "/api/v1/generate"


def _post(svc: Service, text: str | bytes) -> Any:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return svc.client.post(GENERATE, content=data, headers={"content-type": "application/json"})


def _kept(svc: Service) -> tuple[int, int]:
    """(job folders on disk, job rows in the database)."""
    jobs = Path(svc.settings.data_dir) / "jobs"
    return len(list(jobs.iterdir())) if jobs.is_dir() else 0, svc.store.list_jobs(None, 1, 0)[1]


def _nothing_left(svc: Service, before: tuple[int, int] = (0, 0)) -> None:
    assert _kept(svc) == before


def _record_body(value_text: str) -> str:
    return '{"template": "song-intro", "records": [{"id": "r1", "artist": "A", "title": "T", "v": ' \
        + value_text + "}]}"


def _run(svc: Service, job_id: str) -> dict[str, Any]:
    assert svc.worker().run_once()
    r = svc.client.get(f"{GENERATE}/{job_id}")
    assert r.status_code == 200
    body = jsonl.loads(r.content)  # read back the way the commands read records
    assert body["status"] in ("completed", "partial"), body
    return dict(body)


@pytest.mark.parametrize("number", [
    "1e400", "-1e400", "1E-400", "123456789012345678901234567890", "-98765432109876543210",
    "18446744073709551616", "0.1000000000000000055511151231257827", "3.14159265358979323846264338327950288",
    "9223372036854775807", "-9223372036854775808", "1" * 4500,
])
def test_numbers_come_back_as_the_commands_write_them(svc: Service, number: str) -> None:
    r = _post(svc, _record_body(f"[{number}, {{\"n\": {number}}}]"))
    assert r.status_code == 202, r.text
    out = _run(svc, r.json()["generation_id"])["records"][0]
    command = jsonl.dumps(jsonl.loads(f"[{number}, {{\"n\": {number}}}]"))  # what aicp script writes back
    assert jsonl.dumps(out["v"]) == command
    assert number.encode() in command or "e" in number.lower()  # byte-exact where the commands are


@pytest.mark.parametrize(("value", "field"), [
    ("NaN", "records.0.v"),
    ("[1, Infinity]", "records.0.v.1"),
    ("{\"a\": -Infinity}", "records.0.v.a"),
    ('"\\ud800"', "records.0.v"),
    ('"ok \\udfff then"', "records.0.v"),
    ('{"\\ud83d": 1}', "records.0.v.\\ud83d"),
    ("[" * 300 + "]" * 300, "records.0.v"),
])
def test_values_the_commands_refuse_are_422_naming_the_field_and_leave_nothing(
        svc: Service, value: str, field: str) -> None:
    r = _post(svc, _record_body(value))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["type"] == "InvalidRequest" and err["field"] == field
    _nothing_left(svc)


@pytest.mark.parametrize(("body", "field"), [
    ('{"records": [{"id": "a"}], "params": {"temperature": 1e400}}', "params.temperature"),
    ('{"records": [{"id": "a"}], "params": {"seed": 123456789012345678901234567890}}', "params.seed"),
    ('{"records": [{"id": "a"}], "params": {"x": ' + "[" * 300 + "]" * 300 + "}}", "params"),
    ('{"records": [{"id": "a"}], "chain": {"steps": [{"type": "script", "params": '
     + '{"a": ' * 400 + "1" + "}" * 400 + "}]}}", "chain"),
    ('{"records": [{"id": "a"}], "chain": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}", "body"),
    ("[" * 20000 + "]" * 20000, "body"),
    ('{"records": [{"id": "a"}]', "body"),
    (b'{"records": [{"id": "\xff"}]}', "body"),
])
def test_settings_out_of_range_or_too_deep_are_422(svc: Service, body: str | bytes, field: str) -> None:
    r = _post(svc, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field and "Traceback" not in r.text
    _nothing_left(svc)


def test_a_submit_that_fails_while_storing_leaves_no_folder(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    def broken(*a: Any, **k: Any) -> Any:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(svc.store, "create", broken)
    with TestClient(svc.client.app, raise_server_exceptions=False) as client:
        assert client.post(GENERATE, json={"records": SONGS}).status_code == 507  # a full disk: Insufficient Storage
    _nothing_left(svc)


@pytest.mark.parametrize(("path", "headers"), [
    (f"{GENERATE}/JOB?records_offset=99999999999999999999", {}),
    (f"{GENERATE}/JOB?records_offset=-1", {}),
    (f"{GENERATE}?offset=99999999999999999999", {}),
    (f"{GENERATE}/JOB/events?after=99999999999999999999", {}),
    (f"{GENERATE}/JOB/events", {"Last-Event-ID": "99999999999999999999"}),
    (f"{GENERATE}/JOB/events", {"Last-Event-ID": "\u00b2"}),
    (f"{GENERATE}/JOB/events", {"Last-Event-ID": "-3"}),
    (f"{GENERATE}/JOB/events", {"Last-Event-ID": "7abc"}),
])
def test_out_of_range_integers_in_queries_and_headers_are_422(svc: Service, path: str,
                                                              headers: dict[str, str]) -> None:
    job_id = svc.submit({"records": SONGS[:1]})
    r = svc.client.get(path.replace("JOB", job_id), headers={k: v.encode() for k, v in headers.items()})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "InvalidRequest" and r.json()["error"]["field"]


def test_the_largest_offsets_are_answered(svc: Service) -> None:
    job_id = svc.submit({"records": SONGS[:1]})
    svc.worker().run_once()
    big = 2**63 - 1
    assert svc.client.get(f"{GENERATE}/{job_id}", params={"records_offset": big}).json()["records"] == []
    assert svc.client.get(GENERATE, params={"offset": big}).json()["items"] == []
    events = svc.client.get(f"{GENERATE}/{job_id}/events", headers={"Last-Event-ID": str(big)})
    assert events.status_code == 200 and "data:" not in events.text


# -- any JSON value in a record: the same value out, or a 422 ------------------------------------
class Raw:
    """A JSON number given as its text (``1e400``, 30 digits, ``NaN``)."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value: Any) -> str:
    """JSON text of ``value``; strings with ``\\u`` escapes (so lone surrogates can be sent)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    return json.dumps(value)


_text = st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
                max_size=8)
_numbers = st.one_of(
    st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True).map(Raw),
    st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(Raw),
)
_values = st.recursive(st.one_of(st.none(), st.booleans(), _numbers, _text),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(_text, inner, max_size=4)),
                       max_leaves=12)
_RESERVED = STAGE_FIELDS | {"id", "persona", "dj", "artist", "title"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(_text.filter(lambda k: k not in _RESERVED), _values, min_size=1, max_size=3))
def test_any_json_value_in_a_record_comes_out_the_same_or_is_422(svc: Service, fields: dict[str, Any]) -> None:
    record_text = '{"id": "r1", "artist": "A", "title": "T"' + "".join(
        f", {json.dumps(k)}: {encode(v)}" for k, v in fields.items()) + "}"
    line = jsonl.parse_line(record_text.encode("utf-8"), 1)  # what the commands make of it
    before = _kept(svc)
    r = _post(svc, '{"template": "song-intro", "records": [' + record_text + "]}")
    if line.record is None:
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"].startswith("records.0")
        _nothing_left(svc, before)
        return
    assert r.status_code == 202, (record_text, r.text)
    out = _run(svc, r.json()["generation_id"])["records"][0]
    for key, value in line.record.items():
        assert jsonl.dumps(out[key]) == jsonl.dumps(value), key


def test_numbers_survive_either_database(dbsvc: Service) -> None:
    """The job's input is kept in the database too (a worker on another host writes it from
    there): the same numbers on SQLite and PostgreSQL."""
    numbers = "[1e400, 123456789012345678901234567890, 0.1000000000000000055511151231257827]"
    r = _post(dbsvc, _record_body(numbers))
    assert r.status_code == 202, r.text
    job = dbsvc.store.get(r.json()["generation_id"])
    assert job is not None and jsonl.dumps(job.inputs[0]["v"]) == numbers.replace(", ", ",").encode()
    (Path(dbsvc.settings.data_dir) / "jobs" / job.id / "input.jsonl").unlink()  # as on another host
    assert jsonl.dumps(_run(dbsvc, job.id)["records"][0]["v"]) == numbers.replace(", ", ",").encode()
