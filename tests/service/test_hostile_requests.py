"""Hostile requests to the API: what a client gets back names nothing on the server's disk,
and the values a client sends come back as sent."""

from __future__ import annotations

import os
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.service.conftest import Service

GENERATE = "/api/v1/generate"


def test_detailed_health_names_no_server_path_and_no_pid(svc: Service) -> None:
    svc.worker().run_once()  # a worker row with its pid
    text = svc.client.get("/api/v1/health/detailed").text
    for path in (str(Path(svc.settings.data_dir).resolve()), sys.prefix, os.getcwd()):
        assert path not in text, path
    assert f'"pid":{os.getpid()}' not in text.replace(" ", "")


@pytest.mark.parametrize("raw", [b"-0", b"-0.0", b"1e-400", b"1E+999999999", b"9" * 5000, b"0.1e1"])
def test_a_record_number_comes_back_with_its_value(svc: Service, raw: bytes) -> None:
    """Kept as the commands keep it: the same number (``-0`` may come back as ``0``, ``0.1e1``
    as ``1.0``), digits a double cannot hold as written."""
    body = b'{"template": "song-intro", "records": [{"id": "a", "title": "T", "artist": "A", "n": ' + raw + b"}]}"
    r = svc.client.post(GENERATE, content=body, headers={"content-type": "application/json"})
    assert r.status_code in (202, 422), r.text
    if r.status_code == 422:
        assert "records.0.n" in r.text
        return
    job_id = r.json()["generation_id"]
    svc.worker().run_once()
    got = svc.client.get(f"{GENERATE}/{job_id}")
    assert got.status_code == 200
    sent = Decimal(raw.decode())
    back = re.search(rb'"n":\s*([-+.0-9eE]+)', got.content)
    assert back is not None and Decimal(back.group(1).decode()) == sent
    if len(raw) > 16:
        assert back.group(1) == raw


@pytest.mark.parametrize("text", ["a\u2028b\u2029c", "nul\u0000x", "\ufeffbom", "e\u0301"])
def test_a_record_string_comes_back_as_sent(svc: Service, text: str) -> None:
    job_id = svc.submit({"template": "song-intro", "records": [{"id": "a", "title": "T", "artist": "A",
                                                                "note": text, text: 1}]})
    svc.worker().run_once()
    record = svc.client.get(f"{GENERATE}/{job_id}").json()["records"][0]
    assert record["note"] == text and record[text] == 1
