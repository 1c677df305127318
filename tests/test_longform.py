"""Long-form scripts (stages/longform.py) with a scripted LLM double."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from ai_content_pipeline.backends.base import ChatChunk, GenerationParams
from ai_content_pipeline.errors import ConfigError, RecordError, TransientBackendError, UsageError
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages import longform
from ai_content_pipeline.stages.longform import (
    CanonicalPack,
    pack_schema,
    parse_pack,
    plan_for,
    rolling_summary,
    scale_plan,
)
from ai_content_pipeline.stages.registry import build_stage
from ai_content_pipeline.stages.script import ScriptOptions
from ai_content_pipeline.templates import load_template
from ai_content_pipeline.text import split_sentences
from tests.doubles import FakeLLM, RecordingEmitter, lines_of

PLAN = ["Cold Open", "What Happened", "Why It Matters", "Deep Dive Part 1", "Deep Dive Part 2",
        "Deep Dive Part 3", "Rumor Watch", "What's Next", "Actionable Insights", "Wrap + Call to Action"]
TOPIC = {"id": "ep1", "topic": "Alpha radio", "notes": "started in 1999"}


class LongformLLM(FakeLLM):
    """Answers a JSON-schema request with a pack, every other request with prose.

    The prose has ``ratio`` times the words the request's token budget is for, in short
    whole sentences naming the section. ``fail(user, n)`` may raise.
    """

    def __init__(self, *, ratio: float = 1.0, pack: str | None = None,
                 fail: Callable[[str, int], None] | None = None,
                 on_token: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.pack = pack
        self.fail = fail
        self.on_token = on_token

    def chat(self, messages: list[dict[str, str]], params: GenerationParams, *,
             json_schema: dict[str, Any] | None = None) -> Iterator[ChatChunk]:
        self.load()
        user = messages[-1]["content"]
        n = len(self.calls)
        self.calls.append({"messages": messages, "params": params, "json_schema": json_schema})
        if self.fail is not None:
            self.fail(messages[0]["content"] + "\n" + user, n)
        if "JSON object" in user:
            topic = re.search(r"Topic: (.*?)\.", user).group(1)  # type: ignore[union-attr]
            text = self.pack or orjson.dumps({
                "title": f"{topic} show", "key_facts": [f"{topic} began in 1999."],
                "names": ["Ann Lee"], "numbers": ["3 stations"], "outline": PLAN}).decode()
            pieces = [text]
        else:
            wanted = round((params.max_tokens - 16) / 1.6)  # the budget follows the word target
            text = self.prose(section_of(user), max(1, int(wanted * self.ratio)), params, messages)
            pieces = [w + " " for w in text.split(" ")]
        for piece in pieces:
            if self.on_token is not None:
                self.on_token(piece)
            yield ChatChunk(text=piece)
        yield ChatChunk(done=True, prompt_tokens=20, completion_tokens=len(pieces), done_reason="stop")

    def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
        """``count`` words in whole sentences of six words, each naming ``section``."""
        tag = re.sub(r"\W", "", section)
        return " ".join(f"{tag}{k}." if k % 6 == 5 or k == count - 1 else f"W{k}" if k % 6 == 0 else f"w{k}"
                        for k in range(count))

    def sections_asked(self) -> list[str]:
        return [section_of(call["messages"][-1]["content"]) for call in self.calls if call["json_schema"] is None]


def asks_for(section: str, user: str) -> bool:
    """Whether a request carries the brief of plan section ``section``."""
    [brief] = [s.brief for s in load_template("podcast-longform").sections if s.name == section]
    return brief in user


def section_of(user: str) -> str:
    """The plan section whose brief a request carries."""
    [name] = [s.name for s in load_template("podcast-longform").sections if s.brief in user]
    return name


def run_stage(llm: FakeLLM, tmp_path: Path, *records: dict[str, Any], emitter: Any = None,
              ledger: Ledger | None = None, **opts: Any) -> list[dict[str, Any]]:
    opts.setdefault("words", 1000)
    options = ScriptOptions(template="podcast-longform", persona="sam",
                            work_dir=str(tmp_path / "work"), **opts)
    stage = build_stage("script", llm, options, emitter or RecordingEmitter(), ledger)
    return list(stage.run(lines_of(*records)))


# -- plans --------------------------------------------------------------------------
def test_builtin_plan_is_the_10000_word_episode() -> None:
    t = load_template("podcast-longform")
    assert [s.name for s in t.sections] == PLAN
    assert [s.words for s in t.sections] == [400, 1600, 1400, 1500, 1500, 1500, 700, 600, 500, 300]
    assert sum(s.words for s in t.sections) == 10_000


@pytest.mark.parametrize("total", [1200, 2000, 10_000, 25_000])
def test_scaled_plan_sums_to_the_total_in_proportion(total: int) -> None:
    plan = scale_plan(load_template("podcast-longform").sections, total)
    assert sum(s.words for s in plan) == total
    assert [s.name for s in plan] == PLAN
    assert plan[1].words == round(1600 * total / 10_000)


def test_chain_sections_replace_the_template_plan_and_are_validated() -> None:
    t = load_template("podcast-longform")
    plan = plan_for(t, [{"name": "A", "brief": "a", "words": 100}, {"name": "B", "brief": "b", "words": 300}],
                    words=200)
    assert [(s.name, s.words) for s in plan] == [("A", 50), ("B", 150)]
    with pytest.raises(ConfigError, match=r"sections: 0.words"):
        plan_for(t, [{"name": "A", "brief": "a", "words": 0}])
    with pytest.raises(ConfigError, match="no sections"):
        plan_for(load_template("podcast-segment"))


# -- canonical pack -------------------------------------------------------------------
def test_pack_schema_bounds_the_reply_and_parse_validates() -> None:
    schema = pack_schema()
    assert set(schema["required"]) == {"title", "key_facts", "names", "numbers", "outline"}
    assert schema["properties"]["key_facts"]["maxItems"] == 5
    good = {"title": "T", "key_facts": ["f"], "names": [], "numbers": [], "outline": ["a"]}
    assert parse_pack("```json\n" + orjson.dumps(good).decode() + "\n```") == CanonicalPack(**good)
    with pytest.raises(ValueError, match="no JSON object"):
        parse_pack("Sure, here are the facts.")
    with pytest.raises(ValueError, match="key_facts"):
        parse_pack(orjson.dumps({**good, "key_facts": []}).decode())
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_pack('{"title": "T",}')


def test_rolling_summary_keeps_only_last_sentences() -> None:
    done = [("A", "One. Two. Three is last."), ("B", "Alpha. Beta. Gamma.")]
    assert rolling_summary(done) == ["A: Three is last.", "B: Beta. Gamma."]


# -- a whole run ----------------------------------------------------------------------
def test_run_writes_every_chunk_in_order_with_checkpoints(tmp_path: Path) -> None:
    llm, em = LongformLLM(), RecordingEmitter()
    [out] = run_stage(llm, tmp_path, TOPIC, emitter=em, seed=7)
    script = out["script"]
    folder = tmp_path / "work" / "ep1"
    assert [c["section"] for c in script["chunks"]] == PLAN
    assert [c["index"] for c in script["chunks"]] == list(range(1, 11))
    plan = plan_for(load_template("podcast-longform"), words=1000)
    assert [c["target"] for c in script["chunks"]] == [s.words for s in plan]
    files = sorted(p.name for p in (folder / "chunks").iterdir())
    assert files == [f"{i:02d}.txt" for i in range(1, 11)]
    texts = [(folder / "chunks" / f).read_text() for f in files]
    assert script["text"] == "\n\n".join(texts) == Path(script["path"]).read_text()
    assert script["words"] == sum(c["words"] for c in script["chunks"])
    for c in script["chunks"]:
        assert c["words"] == c["target"] and c["shortfall"] == 0 and c["continuations"] == 0
        assert c["tokens"]["completion"] > 0 and c["seconds"] >= 0
    assert {"template", "persona", "take", "backend", "model", "tokens", "seconds", "key"} <= set(script)
    assert script["template"] == "podcast-longform@3" and script["persona"] == "sam"
    # the pack came first, schema-constrained; every request has a system message
    assert llm.calls[0]["json_schema"] == pack_schema()
    assert orjson.loads((folder / "pack.json").read_bytes())["title"] == "Alpha radio show"
    assert all(c["messages"][0]["role"] == "system" for c in llm.calls)
    # max_tokens follows the word target; later chunks see the pack and the previous chunk
    for call, section in zip(llm.calls[1:], plan, strict=True):
        assert call["params"].max_tokens == math.ceil(section.words * 1.6) + 16
    third = llm.calls[3]["messages"]
    assert "Alpha radio began in 1999." in third[0]["content"] and "Ann Lee" in third[0]["content"]
    # the previous section's last sentences come as the host's own turn, after its request
    assert [m["role"] for m in third] == ["system", "user", "assistant", "user"]
    assert section_of(third[1]["content"]) == "What Happened" and "WhatHappened" in third[2]["content"]
    assert third[2]["content"] in texts[1]
    # events: start before complete for each chunk, in order
    chunk_events = [(n, f["chunk"]) for n, f in em.events if n.startswith("chunk_")]
    assert chunk_events == [(n, i) for i in range(1, 11) for n in ("chunk_start", "chunk_complete")]
    # checkpoint ledger: the pack and ten chunks
    assert len(Ledger(folder / "checkpoint.jsonl")) == 11


def test_short_chunks_are_continued_a_bounded_number_of_times(tmp_path: Path) -> None:
    llm, em = LongformLLM(ratio=0.3), RecordingEmitter()
    [out] = run_stage(llm, tmp_path, TOPIC, emitter=em, words=2000)
    chunks = out["script"]["chunks"]
    assert len(chunks) == len(PLAN)
    assert all(c["continuations"] == 2 for c in chunks)
    assert len(llm.calls) == 1 + 3 * 10
    for c in chunks:  # 0.3 of the target, then 0.3 of what was missing, twice
        assert 0 < c["shortfall"] == c["target"] - c["words"]
    follow = llm.calls[2]["messages"]
    assert [m["role"] for m in follow] == ["system", "user", "assistant", "user"]
    assert follow[-1]["content"].startswith("Go on:")
    warnings = [f["message"] for n, f in em.events if n == "message" and f["level"] == "warning"]
    assert any("words short of its" in w for w in warnings)


def test_a_failed_chunk_stops_its_record_and_resume_keeps_completed_chunks(tmp_path: Path) -> None:
    def fail(user: str, n: int) -> None:
        if asks_for("Deep Dive Part 1", user) and "Alpha" in user:
            raise RecordError("engine fell over", stage="script")

    other = {"id": "ep2", "topic": "Beta radio"}
    first = LongformLLM(fail=fail)
    out1, out2 = run_stage(first, tmp_path, TOPIC, other)
    assert out1["error"]["chunk"] == 4 and out1["error"]["section"] == "Deep Dive Part 1"
    assert "chunk 4 (Deep Dive Part 1) failed: engine fell over" in out1["error"]["message"]
    assert "script" in out2  # the batch went on
    chunks = tmp_path / "work" / "ep1" / "chunks"
    assert sorted(p.name for p in chunks.glob("*.txt")) == ["01.txt", "02.txt", "03.txt"]
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in chunks.glob("*.txt")}
    (chunks / "04.part").write_text("half a sentence from a killed run")

    again, em = LongformLLM(), RecordingEmitter()
    [out] = run_stage(again, tmp_path, TOPIC, emitter=em, resume=True)
    assert again.sections_asked() == PLAN[3:]  # no pack, no chunks 1-3
    assert all(c["json_schema"] is None for c in again.calls)
    for name, (data, mtime) in before.items():
        assert (chunks / name).read_bytes() == data and (chunks / name).stat().st_mtime_ns == mtime
    assert not list(chunks.glob("*.part"))
    resumed = [f["chunk"] for n, f in em.events if n == "chunk_complete" and f.get("resumed")]
    started = [f["chunk"] for n, f in em.events if n == "chunk_start"]
    assert resumed == [1, 2, 3] and started == list(range(4, 11))
    assert [c["section"] for c in out["script"]["chunks"]] == PLAN
    assert out["script"]["pack"]["resumed"] is True


def test_with_overwrite_a_record_starts_over(tmp_path: Path) -> None:
    run_stage(LongformLLM(), tmp_path, TOPIC)
    llm = LongformLLM()
    run_stage(llm, tmp_path, TOPIC, overwrite=True)
    assert llm.sections_asked() == PLAN and llm.calls[0]["json_schema"] is not None


def test_without_resume_or_overwrite_an_earlier_runs_work_files_stop_the_run(tmp_path: Path) -> None:
    run_stage(LongformLLM(), tmp_path, TOPIC)
    before = {p: p.read_bytes() for p in (tmp_path / "work").rglob("*") if p.is_file()}
    llm = LongformLLM()
    with pytest.raises(UsageError, match=r"long-form work file .*ep1.* exists") as caught:
        run_stage(llm, tmp_path, TOPIC)
    assert caught.value.exit_status == 2 and "--overwrite" in (caught.value.hint or "")
    assert llm.calls == []  # refused before the first request
    assert {p: p.read_bytes() for p in (tmp_path / "work").rglob("*") if p.is_file()} == before


def test_finished_records_come_from_the_record_ledger_on_resume(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "run.ledger")
    [first] = run_stage(LongformLLM(), tmp_path, TOPIC, ledger=ledger)
    llm = LongformLLM()
    [again] = run_stage(llm, tmp_path, TOPIC, ledger=ledger, resume=True)
    assert llm.calls == [] and again["script"]["skipped"] is True
    assert again["script"]["text"] == first["script"]["text"]


def test_retries_apply_per_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"left": 1}

    def flaky(user: str, n: int) -> None:
        if asks_for("Why It Matters", user) and state["left"]:
            state["left"] -= 1
            raise TransientBackendError("stream cut")

    monkeypatch.setattr(longform, "with_retries", _no_sleep_retries)
    [ok] = run_stage(LongformLLM(fail=flaky), tmp_path, TOPIC, retries=1)
    state["left"] = 1
    [bad] = run_stage(LongformLLM(fail=flaky), tmp_path, {**TOPIC, "id": "ep9"}, retries=0)
    assert [c["section"] for c in ok["script"]["chunks"]] == PLAN
    assert bad["error"]["chunk"] == 3 and "stream cut" in bad["error"]["message"]


def _no_sleep_retries(fn: Any, retries: int, **kw: Any) -> Any:
    from ai_content_pipeline.stages.common import with_retries
    return with_retries(fn, retries, delay=0, **kw)


def test_a_pack_that_does_not_validate_fails_the_record_and_keeps_the_raw_reply(tmp_path: Path) -> None:
    llm = LongformLLM(pack='{"title": "only a title"}')
    [out] = run_stage(llm, tmp_path, TOPIC)
    err = out["error"]
    assert err["part"] == "pack" and err["chunk"] == 1 and "key_facts" in err["message"]
    assert Path(err["raw"]).read_text() == '{"title": "only a title"}'
    assert llm.sections_asked() == []


def test_tokens_are_on_disk_while_a_chunk_streams(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    chunks = tmp_path / "work" / "ep1" / "chunks"
    streamed: list[str] = []
    current = [""]

    def on_token(piece: str) -> None:
        parts = list(chunks.glob("*.part")) if chunks.is_dir() else []
        if parts:
            if parts[0].name != current[0]:  # a new chunk began
                current[0] = parts[0].name
                streamed.clear()
            seen.append(("".join(streamed), parts[0].read_text()))
        streamed.append(piece)

    run_stage(LongformLLM(on_token=on_token), tmp_path, TOPIC, words=300)
    # every earlier token of the chunk was on disk before the next arrived
    checks = [(want, got) for want, got in seen if want]
    assert len(checks) > 50 and all(got == want for want, got in checks)


def test_chunk_progress_is_sent_at_most_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.25
        return now[0]

    monkeypatch.setattr(longform, "_clock", clock)
    em = RecordingEmitter()
    run_stage(LongformLLM(), tmp_path, TOPIC, emitter=em, words=400)
    progress = [f for n, f in em.events if n == "chunk_progress"]
    assert progress and all(f["words"] > 0 and f["chars"] > 0 for f in progress)
    assert len(progress) <= now[0] + 1


# -- command line ------------------------------------------------------------------------
def test_cli_words_and_work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.cli import script as cli_script

    monkeypatch.setattr(cli_script, "create_llm", lambda *a, **k: LongformLLM())
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(TOPIC) + b"\n")
    result = CliRunner().invoke(cli_script.script_command, [
        "-t", "podcast-longform", "-p", "sam", "--words", "800", "--work-dir", str(tmp_path / "w"),
        "--stream", str(src)])
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()
    script = orjson.loads(line)["script"]
    assert sum(c["target"] for c in script["chunks"]) == 800
    assert script["path"] == str(tmp_path / "w" / "ep1" / "script.txt")
    events = [orjson.loads(x)["event"] for x in result.stderr.splitlines()]
    assert events.count("chunk_complete") == 10 and events.count("chunk_start") == 10


def test_cli_rejects_a_tiny_word_total(tmp_path: Path) -> None:
    from ai_content_pipeline.cli import script as cli_script

    result = CliRunner().invoke(cli_script.script_command, ["-t", "podcast-longform", "--words", "5"])
    assert result.exit_code == 2 and "--words" in result.stderr and result.stdout == ""


# -- the example chain: topics → long-form script → speech ---------------------------------
def test_podcast_chain_example_runs_script_then_voice(tmp_path: Path) -> None:
    from ai_content_pipeline.chain.runner import run_chain
    from ai_content_pipeline.chain.spec import load_chain
    from tests.chain_doubles import FakeFactory, SlowTTS
    from tests.conftest import EXAMPLES

    spec = load_chain(str(Path(EXAMPLES) / "podcast.yaml"), [
        f"input={Path(EXAMPLES) / 'topics-longform.jsonl'}", f"output_dir={tmp_path / 'out'}",
        "steps.0.params.words=300"])
    factory = FakeFactory(LongformLLM(), SlowTTS())
    result = run_chain(spec, backend_factory=factory)
    assert result.exit_status == 0
    topics = [orjson.loads(x) for x in (Path(EXAMPLES) / "topics-longform.jsonl").read_bytes().splitlines()]
    spoken = " ".join(text for text, _ in factory.tts.calls)
    for topic in topics:
        chunks = tmp_path / "out" / "longform" / topic["id"] / "chunks"  # the chain's own work_dir
        texts = [p.read_text() for p in sorted(chunks.glob("*.txt"))]
        assert len(texts) == 10
        for text in texts:  # every section was voiced, chunked by sentences
            assert text.split()[-1] in spoken
    assert max(len(text) for text, _ in factory.tts.calls) <= 400


def test_a_failed_work_file_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """Work files (``script.txt``, raw chunks, ``pack.json``) go through ``files.write_atomic``:
    a write that fails midway leaves the file as it was and no ``*.tmp``/``.part`` beside it."""
    import os

    from ai_content_pipeline.stages import longform

    target = tmp_path / "script.txt"
    target.write_bytes(b"old")

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        longform.write_atomic(target, lambda fh: fh.write(b"new text"))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["script.txt"]


# -- what reaches the text: no instruction text, no cut sentence, best-of per section -------------
def assert_no_instruction_text(text: str, plan: list[Any]) -> None:
    """No section name, no five words of a brief or of the template's instructions, no
    numbering, label, heading, preamble or markdown in ``text``."""
    from ai_content_pipeline.checks import check_instructions, echo_phrases, fold

    template = load_template("podcast-longform")
    folded = f" {fold(text)} "
    for section in plan:
        assert section.name.lower() not in text.lower(), section.name
        for gram in echo_phrases(section.brief, {}):
            assert f" {gram} " not in folded, gram
    instructions = " ".join([template.prompts["continue"], template.prompts_source("system"),
                             template.prompts_source("user")]) if hasattr(template, "prompts_source") else ""
    for gram in echo_phrases(instructions, {}):
        assert f" {gram} " not in folded, gram
    assert check_instructions(text, [s.name for s in plan]) == []
    assert "say something new" not in text.lower()
    assert not re.search(r"\b(?:part|section)\s+\w+\s+of\s+\w+|\w+:\s*;|\bwords?\b|\d+\s+of\s+10", text, re.I)


#: Ways a model reads a section plan out: (before the prose, after it).
ECHOES = [
    ("Part {n} of 10: {name}\n\n", ""),
    ("## {name}\n", "\n\nNow write part {m} of 10."),
    ("Section: {name}\nNumbers: ; ; .\n", ""),
    ("**{name}**\n\n", "\n\n(Word count: 180)"),
    ("Sure! Here is part {n} of the episode:\n\n", "\n\nI hope this helps!"),
    ("Podcast episode: Alpha radio show. Facts: Alpha radio began in 1999.\n", ""),
    ("{brief}\n\n", ""),
    ("So, {brief_lower} ", " Do not greet the listeners again."),
    ("- {name}\n- Names: Ann Lee\n\n", "\n\nSECTION {m} OF 10"),
    ("1. {name}\n", "\n\n---\n\nEnd of part {n}."),
    ("", " Say something new and funny, but not too serious."),
]


class EchoingLLM(LongformLLM):
    """Wraps every section's prose in one of :data:`ECHOES` (picked by ``shape``, or in turn)."""

    def __init__(self, shape: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shape = shape

    def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
        plan = load_template("podcast-longform").sections
        n = [s.name for s in plan].index(section) + 1
        before, after = ECHOES[self.shape if self.shape is not None else (n - 1) % len(ECHOES)]
        brief = plan[n - 1].brief
        fill = {"n": n, "m": n + 1, "name": section, "brief": brief, "brief_lower": brief[0].lower() + brief[1:]}
        return before.format(**fill) + super().prose(section, count, params, messages) + after.format(**fill)


@pytest.mark.parametrize("shape", [*range(len(ECHOES)), None])
def test_plan_lines_a_model_reads_out_never_reach_the_text(tmp_path: Path, shape: int | None) -> None:
    [out] = run_stage(EchoingLLM(shape), tmp_path, TOPIC, words=600, seed=3)
    script = out["script"]
    plan = plan_for(load_template("podcast-longform"), words=600)
    assert_no_instruction_text(script["text"], plan)
    assert "no_echo" not in script["checks"]["failed"]
    assert [s["section"] for s in script["checks"]["sections"]] == PLAN
    removed = [r for c in script["chunks"] for r in c["checks"].get("removed", [])]
    assert removed or shape == 4  # what was taken out is on the record (a chatty wrapper goes unrecorded)
    for c in script["chunks"]:  # the prose itself is kept: every sentence naming the section
        assert re.sub(r"\W", "", c["section"]) in (tmp_path / "work" / "ep1" / "chunks" / f"{c['index']:02d}.txt").read_text()


class CuttingLLM(LongformLLM):
    """Every reply opens by carrying on a cut sentence and ends in the middle of one."""

    def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
        return "and the rest of it. " + super().prose(section, count, params, messages) + " Then the band walked"


def test_a_section_boundary_never_cuts_a_sentence(tmp_path: Path) -> None:
    from ai_content_pipeline.checks import cut_joins, ends_on_sentence, starts_on_sentence

    [out] = run_stage(CuttingLLM(ratio=0.5), tmp_path, TOPIC, words=600)
    script = out["script"]
    texts = [(tmp_path / "work" / "ep1" / "chunks" / f"{i:02d}.txt").read_text() for i in range(1, 11)]
    assert script["text"] == "\n\n".join(texts)
    assert cut_joins(texts) == [] and script["checks"]["cut_joins"] == []
    for text in texts:
        assert starts_on_sentence(text) and ends_on_sentence(text)
        for paragraph in text.split("\n\n"):  # continuations join on whole sentences too
            assert starts_on_sentence(paragraph) and ends_on_sentence(paragraph)
    assert "walked" not in script["text"] and "the rest of it" not in script["text"]
    assert "complete" not in script["checks"]["failed"]


def test_joins_of_pieces_are_checked() -> None:
    from ai_content_pipeline.checks import cut_joins

    assert cut_joins(["One. Two.", "Three!", "“Four,” she said."]) == []
    assert cut_joins(["One. Two", "Three.", "and four.", "… five.", "Six."]) == [1, 2, 3]


class SeedPickedLLM(LongformLLM):
    """Candidate 0 of every section (the section's own seed) reads its instructions out; the
    other candidates write clean prose."""

    def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
        text = super().prose(section, count, params, messages)
        first_seeds = {9 + longform.SEED_STRIDE * (i + 1 + longform.CONTINUATION_OFFSET * k)
                       for i in range(10) for k in range(3)}
        return f"Write about {count} words. Part one of ten. {text}" if params.seed in first_seeds else text


def test_best_of_per_section_keeps_a_candidate_that_passes(tmp_path: Path) -> None:
    from ai_content_pipeline.stages.script import candidate_seed

    llm = SeedPickedLLM()
    [out] = run_stage(llm, tmp_path, TOPIC, words=600, seed=9, best_of=2)
    script = out["script"]
    assert script["checks"]["passed"] is True, script["checks"]
    assert script["checks"]["sections"] == [{"index": i, "section": n, "failed": []} for i, n in enumerate(PLAN, 1)]
    for c in script["chunks"]:
        checks = c["checks"]
        assert checks["chosen"] == 1 and checks["passed"] is True
        assert [x["passed"] for x in checks["candidates"]] == [False, True]
        assert checks["candidates"][0]["failed"] == ["no_echo"]
        assert [x["seed"] for x in checks["candidates"]] == [
            candidate_seed(9 + longform.SEED_STRIDE * c["index"], k) for k in range(2)]
    assert "Write about" not in script["text"] and "Part one" not in script["text"]
    assert len(llm.sections_asked()) == 20  # two candidates a section
    assert script["tokens"]["completion"] == sum(c["tokens"]["completion"] for c in script["chunks"]) + 1


def test_with_no_clean_candidate_the_instruction_sentences_are_dropped(tmp_path: Path) -> None:
    [out] = run_stage(SeedPickedLLM(), tmp_path, TOPIC, words=600, seed=9)  # best-of 1: no clean candidate
    script = out["script"]
    assert "Write about" not in script["text"] and "Part one" not in script["text"]
    assert script["checks"]["passed"] is True  # the checks are of the text written
    for c in script["chunks"]:
        assert c["checks"]["removed"][:2] == [f"Write about {c['target']} words.", "Part one of ten."]
        assert "candidates" not in c["checks"]


def test_script_checks_name_the_sections_that_failed(tmp_path: Path) -> None:
    class Inventing(LongformLLM):
        def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
            tag = re.sub(r"\W", "", section).lower()
            text = " ".join(f"Alpha radio began in 1999, said w{tag}{k}." for k in range(max(1, count // 7)))
            return text + " It sold 4,000,000 copies in Berlin." if section == "Rumor Watch" else text

    options = ScriptOptions(template="podcast-longform", persona="sam", words=600, work_dir=str(tmp_path / "w"))
    stage = build_stage("script", Inventing(), options, RecordingEmitter())
    stage.section_checks = stage.section_checks.model_copy(update={"grounded": True})
    [out] = list(stage.run(lines_of(TOPIC)))
    checks = out["script"]["checks"]
    assert checks["passed"] is False and checks["failed"] == ["grounded"]
    assert [s["section"] for s in checks["sections"] if s["failed"]] == ["Rumor Watch"]
    assert {"4,000,000", "Berlin"} <= set(checks["details"]["grounded"])


def test_a_section_with_no_whole_sentence_is_written_again(tmp_path: Path) -> None:
    class Unfinished(LongformLLM):
        def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
            text = super().prose(section, count, params, messages)
            return text.replace(".", "") if params.seed == 5 + longform.SEED_STRIDE else text

    llm = Unfinished()
    [out] = run_stage(llm, tmp_path, TOPIC, words=600, seed=5)
    first = out["script"]["chunks"][0]
    assert llm.sections_asked()[:2] == ["Cold Open", "Cold Open"]
    assert first["checks"]["chosen"] == 1 and first["checks"]["candidates"][0]["failed"] == ["complete"]
    assert first["checks"]["passed"] is True
    assert out["script"]["checks"]["cut_joins"] == []


@pytest.mark.parametrize(("text", "kind"), [
    ("Now write part 5 of 10.", "numbering"), ("PART 2 OF 10", "numbering"), ("Section three of ten.", "numbering"),
    ("Part 3: the story\nVinyl.", "heading"), ("## The story", "heading"), ("**The story**", "heading"),
    ("Numbers: ; ; .", "label"), ("Key facts: vinyl.", "label"), ("It grew. Names: Ann Lee.", "label"),
    ("Write about 200 words.", "instruction"), ("Do not greet the listeners again.", "instruction"),
    ("Sure! Here is part two of the episode.", "preamble"), ("I hope this helps!", "sign-off"),
    ("- one\n- two", "markdown"), ("Welcome to Rumor Watch, everyone.", "plan"),
])
def test_instruction_text_is_found(text: str, kind: str) -> None:
    from ai_content_pipeline.checks import check_instructions

    assert any(f.startswith(kind) for f in check_instructions(text, PLAN)), check_instructions(text, PLAN)


@pytest.mark.parametrize("text", [
    "Part one of our story begins in 1948.", "So what happened next? Nobody knew.",
    "It matters because the numbers grew: sales doubled.", "Here is the thing about vinyl.",
    "Let me know if you have a favourite record.", "The first section of the shop sold jazz.",
    "Why it matters is simple.", "History tells us a lot.",
])
def test_ordinary_speech_is_no_instruction_text(text: str) -> None:
    from ai_content_pipeline.checks import check_instructions

    assert check_instructions(text, [*PLAN, "History"]) == []


def test_a_list_a_model_writes_is_said_as_sentences() -> None:
    text, removed = longform.clean_section(
        "Here are three tips.\n1. Buy a record player\n- **Visit** a store\n- Names: Ann Lee\n---\nThat is all. And the",
        "Actionable Insights", PLAN)
    assert text == "Here are three tips.\nBuy a record player.\nVisit a store.\nThat is all."
    assert removed == ["- Names: Ann Lee", "---", "And the"]


def test_a_section_far_short_of_its_target_is_written_again(tmp_path: Path) -> None:
    class Terse(LongformLLM):
        def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
            terse = params.seed == 5 + longform.SEED_STRIDE or params.seed == 5 + longform.SEED_STRIDE * (
                1 + longform.CONTINUATION_OFFSET)
            return "The debate is over." if terse else super().prose(section, count, params, messages)

    [out] = run_stage(Terse(), tmp_path, TOPIC, words=600, seed=5)
    first = out["script"]["chunks"][0]
    assert first["checks"]["candidates"][0]["words"] == 4 and first["checks"]["chosen"] == 1
    assert first["words"] == first["target"]


def test_a_section_that_repeats_the_hosts_last_words_loses_the_repeat(tmp_path: Path) -> None:
    class Parroting(LongformLLM):
        def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
            before = messages[-2]["content"] if messages[-2]["role"] == "assistant" else ""
            return f"{before} {super().prose(section, count, params, messages)}".strip()

    [out] = run_stage(Parroting(), tmp_path, TOPIC, words=600)
    texts = [(tmp_path / "work" / "ep1" / "chunks" / f"{i:02d}.txt").read_text() for i in range(1, 11)]
    for before, text in zip(texts, texts[1:], strict=False):
        last = split_sentences(before)[-1]
        assert last not in text
    assert all(c["checks"]["removed"] for c in out["script"]["chunks"][1:])


def test_a_brief_read_out_is_caught_when_the_pack_outline_repeats_it(tmp_path: Path) -> None:
    briefs = [s.brief for s in load_template("podcast-longform").sections]
    pack = orjson.dumps({"title": "Alpha radio show", "key_facts": ["Alpha radio began in 1999."],
                         "names": ["Ann Lee", "people", "the listeners"], "numbers": [], "outline": briefs}).decode()
    [out] = run_stage(EchoingLLM(7, pack=pack), tmp_path, TOPIC, words=600, seed=3)
    assert_no_instruction_text(out["script"]["text"], plan_for(load_template("podcast-longform"), words=600))


def test_a_brief_read_out_around_a_word_the_pack_names_is_caught(tmp_path: Path) -> None:
    class Paraphrasing(LongformLLM):
        def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
            return super().prose(section, count, params, messages) + " It is about what people are saying that isn't true."

    pack = orjson.dumps({"title": "Alpha radio show", "key_facts": ["Alpha radio began in 1999."],
                         "names": ["Ann Lee", "people"], "numbers": [], "outline": []}).decode()
    [out] = run_stage(Paraphrasing(pack=pack), tmp_path, TOPIC, words=600)
    assert "what people are saying" not in out["script"]["text"]


def test_a_section_that_is_only_instruction_text_is_left_out_not_read_out(tmp_path: Path) -> None:
    class Echoing(LongformLLM):
        def prose(self, section: str, count: int, params: GenerationParams, messages: list[dict[str, str]]) -> str:
            return "Write about 90 words. Part six of ten." if section == "Deep Dive Part 3" else \
                super().prose(section, count, params, messages)

    em = RecordingEmitter()
    [out] = run_stage(Echoing(), tmp_path, TOPIC, words=600, emitter=em)
    script = out["script"]
    assert "Write about" not in script["text"] and "\n\n\n" not in script["text"]
    [sixth] = [c for c in script["chunks"] if c["section"] == "Deep Dive Part 3"]
    assert sixth["words"] == 0 and sixth["checks"]["failed"] == ["empty"]
    assert script["checks"]["cut_joins"] == [] and "empty" in script["checks"]["failed"]
    assert any("left out" in f.get("message", "") for n, f in em.events if n == "message")
