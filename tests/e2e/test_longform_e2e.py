"""Long-form scripts end to end on the real embedded model (SmolLM2-135M on llama.cpp)."""

import os
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline.stages.longform import CanonicalPack
from tests.cli_helpers import BIN, run_bin

pytestmark = pytest.mark.e2e
PLAN = ["Cold Open", "What Happened", "Why It Matters", "Deep Dive Part 1", "Deep Dive Part 2",
        "Deep Dive Part 3", "Rumor Watch", "What's Next", "Actionable Insights", "Wrap + Call to Action"]
TOPIC = {"id": "vinyl", "topic": "How vinyl records made a comeback",
         "notes": "sales grew for fifteen years in a row; pressing plants reopened"}


def events_of(stderr: bytes) -> list[dict]:
    return [orjson.loads(line) for line in stderr.splitlines()]


def check_script(script: dict, folder: Path) -> None:
    """Every section present once, in order, its chunk file on disk inside the stitched text."""
    assert [c["section"] for c in script["chunks"]] == PLAN
    assert sum(c["target"] for c in script["chunks"]) == 1200
    text = script["text"]
    position = -1
    for c in script["chunks"]:
        chunk = (folder / "chunks" / f"{c['index']:02d}.txt").read_text(encoding="utf-8")
        if not chunk:  # left out: nothing of it was a whole sentence that is not instruction text
            assert c["words"] == 0 and c["checks"]["failed"] == ["empty"]
            continue
        assert c["words"] == len(chunk.split()) > 0
        assert text.count(chunk) == 1 and text.index(chunk) > position
        position = text.index(chunk)
        assert c["shortfall"] == max(0, c["target"] - c["words"])
    assert not list((folder / "chunks").glob("*.part"))
    assert Path(script["path"]).read_text(encoding="utf-8") == text
    assert script["words"] == len(text.split())
    CanonicalPack.model_validate_json((folder / "pack.json").read_bytes())


@pytest.mark.long  # about 30 s; the 300-word best-of-2 episode and the resume test stay in make test
def test_a_1200_word_episode_section_by_section(tmp_path):
    work = tmp_path / "work"
    proc = run_bin("aicp-script", "--template", "podcast-longform", "--persona", "sam", "--seed", "4",
                   "--words", "1200", "--work-dir", str(work), "--stream",
                   input=orjson.dumps(TOPIC) + b"\n")
    assert proc.returncode == 0, proc.stderr
    [record] = [orjson.loads(x) for x in proc.stdout.splitlines()]
    script = record["script"]
    assert script["backend"] == "llamacpp" and script["template"] == "podcast-longform@3"
    check_script(script, work / "vinyl")
    events = events_of(proc.stderr)
    names = [e["event"] for e in events]
    assert names.count("chunk_start") == names.count("chunk_complete") == 10
    done = [e for e in events if e["event"] == "chunk_complete"]
    assert [e["chunk"] for e in done] == list(range(1, 11))
    assert all(e["tokens"]["completion"] > 0 for e in done)
    assert sum(e["words"] > 0 for e in done) >= 8  # a section may be left out (nothing whole and clean)


def test_sigkill_after_two_chunks_then_resume(tmp_path):
    work, ledger = tmp_path / "work", tmp_path / "run.ledger"
    src = tmp_path / "topic.jsonl"
    src.write_bytes(orjson.dumps(TOPIC) + b"\n")
    args = [os.path.join(BIN, "aicp-script"), "--template", "podcast-longform", "--persona", "sam",
            "--seed", "9", "--words", "1200", "--work-dir", str(work), "--checkpoint", str(ledger),
            "--stream", str(src)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    completed = 0
    for line in proc.stderr:
        if orjson.loads(line)["event"] == "chunk_complete":
            completed += 1
            if completed == 2:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.read() == b""
    chunks = work / "vinyl" / "chunks"
    kept = {name: (chunks / name).read_bytes() for name in ("01.txt", "02.txt")}
    inode = {name: (chunks / name).stat().st_ino for name in kept}
    checkpoint = work / "vinyl" / "checkpoint.jsonl"
    assert len(checkpoint.read_bytes().splitlines()) >= 3  # the pack and chunks 1-2

    resumed = subprocess.run([*args, "--resume"], capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    [record] = [orjson.loads(x) for x in resumed.stdout.splitlines()]
    script = record["script"]
    check_script(script, work / "vinyl")
    for name, data in kept.items():  # byte-identical, the very same files
        assert (chunks / name).read_bytes() == data and (chunks / name).stat().st_ino == inode[name]
    events = events_of(resumed.stderr)
    started = [e["chunk"] for e in events if e["event"] == "chunk_start"]
    reused = [e["chunk"] for e in events if e["event"] == "chunk_complete" and e.get("resumed")]
    assert reused[:2] == [1, 2] and 1 not in started and 2 not in started
    assert started == list(range(max(reused) + 1, 11))
    assert script["chunks"][0]["resumed"] and script["chunks"][1]["resumed"]
    assert script["pack"].get("resumed") is True
    # the ledger holds each chunk once: nothing was generated twice
    entries = [orjson.loads(x)["value"] for x in checkpoint.read_bytes().splitlines()]
    indexes = [e["index"] for e in entries if "index" in e]
    assert sorted(indexes) == list(range(1, 11))
