"""podcast-dialogue end to end on the real embedded model (SmolLM2-135M on llama.cpp)."""

import os

import orjson
import pytest

from tests.cli_helpers import run_bin
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.e2e
TOPICS = os.path.join(EXAMPLES, "topics.jsonl")


def test_two_topics_become_conversations_read_into_turns_and_checked(tmp_path):
    two = tmp_path / "two.jsonl"
    two.write_bytes(b"".join(open(TOPICS, "rb").readlines()[:2]))
    proc = run_bin("aicp-script", "--backend", "llamacpp", "-t", "podcast-dialogue", "-p", "sam", "-p", "julie",
                   "--best-of", "2", "--batch", "2", "--seed", "1", "--stream", str(two), timeout=1200)
    assert proc.returncode == 0, proc.stderr
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in out] == ["topic-001", "topic-002"]
    events = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith(b"{")]
    complete = {e["id"]: e["turns"] for e in events if e["event"] == "record_complete"}
    for rec in out:
        s = rec["script"]
        assert s["hosts"] == ["sam", "julie"] and s["template"] == "podcast-dialogue@1"
        speakers = [t["speaker"] for t in s["turns"]]
        assert set(speakers) <= {"sam", "julie"}, s["text"]
        # a host who never speaks is caught by the speakers check, never passed silently
        if set(speakers) != {"sam", "julie"}:
            assert "speakers" in s["checks"]["failed"], s["checks"]
        assert all(t["text"].strip() for t in s["turns"]) and complete[rec["id"]] == len(s["turns"])
        labelled = [line.split(":", 1)[0] for line in s["text"].splitlines()]
        assert [label for label in labelled if label in ("Sam", "Julie")] == [
            {"sam": "Sam", "julie": "Julie"}[t["speaker"]] for t in s["turns"]]
        assert s["words"] == sum(len(t["text"].split()) for t in s["turns"])
        assert len(s["checks"]["candidates"]) == 2
