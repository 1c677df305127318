"""The step primitive (stages/step.py) and what it guarantees to every front end."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from ai_content_pipeline.chain.runner import run_chain
from ai_content_pipeline.chain.spec import load_chain
from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.events import NullEmitter
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.commands import run_script, run_voice
from ai_content_pipeline.stages.common import RecordTracker
from ai_content_pipeline.stages.registry import STAGE_TYPES, options_class, stage_class
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.stages.step import StageRun, countable, open_input
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from tests.chain_doubles import FakeFactory, write_chain
from tests.doubles import FakeLLM, RecordingEmitter, SpeechTTS, lines_of


def test_the_registry_holds_the_real_classes() -> None:
    assert set(STAGE_TYPES) == {"script", "voice", "mix"}
    assert (stage_class("script"), options_class("script")) == (ScriptStage, ScriptOptions)
    assert (stage_class("voice"), options_class("voice")) == (VoiceStage, VoiceOptions)
    with pytest.raises(UsageError, match="unknown stage 'video'"):
        stage_class("video")


@pytest.fixture
def closed_ledgers(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of the ledgers closed during a test."""
    closed: list[Path] = []
    real = Ledger.close

    def close(self: Ledger) -> None:
        closed.append(self.path)
        real(self)

    monkeypatch.setattr(Ledger, "close", close)
    return closed


def test_a_step_writes_every_record_and_closes_its_ledger(tmp_path: Path, closed_ledgers: list[Path]) -> None:
    emitter = RecordingEmitter()
    out: list[dict[str, Any]] = []
    with StageRun("script", FakeLLM(), ScriptOptions(), emitter=emitter, checkpoint=tmp_path / "l.jsonl") as run:
        written = run.run(lines_of({"id": "a", "artist": "A", "title": "T"}, b"not json"), out.append, 2)
    assert written == len(out) == 2
    assert out[0]["script"]["text"] and "error" in out[1]
    assert run.stats.completed == 1 and run.stats.failed == 1
    assert closed_ledgers == [tmp_path / "l.jsonl"] and (tmp_path / "l.jsonl").is_file()
    assert emitter.names()[-1] == "model_unload"


def test_a_stage_that_cannot_be_built_leaves_no_ledger_open(tmp_path: Path, closed_ledgers: list[Path]) -> None:
    step = StageRun("script", FakeLLM(), ScriptOptions(template="no-such-template"), emitter=NullEmitter(),
                checkpoint=tmp_path / "l.jsonl")
    with pytest.raises(UsageError), step:
        pass
    assert closed_ledgers == [tmp_path / "l.jsonl"]


@pytest.fixture
def input_passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the file of every pass over input lines (counting or reading), in order."""
    from ai_content_pipeline import jsonl

    passes: list[str] = []
    real = jsonl.iter_lines

    def iter_lines(handle: Any, limit: int) -> Any:
        passes.append(str(getattr(handle, "name", handle)))
        return real(handle, limit)

    monkeypatch.setattr(jsonl, "iter_lines", iter_lines)  # every reader of lines (shards too) goes through it
    return passes


def test_the_chain_reads_its_input_once(tmp_path: Path, input_passes: list[str]) -> None:
    """A chain reads its input once: counting it is not a second pass."""
    emitter = RecordingEmitter()
    spec = load_chain(str(write_chain(tmp_path)))
    outcome = run_chain(spec, emitter=emitter, backend_factory=FakeFactory())
    assert outcome.error is None
    assert input_passes.count(spec.input) == 1  # step 2 knows step 1 wrote 3 records
    assert input_passes.count(str(spec.output_path(0))) == 1  # step 2 reads step 1's records once
    totals = {(f["step"], f["total"]) for e, f in emitter.events if e == "progress"}
    assert totals == {(1, 3), (2, 3)}


@pytest.mark.parametrize("ending", ["success", "backend error", "interrupt"])
def test_the_chain_deletes_its_input_spool_however_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         ending: str) -> None:
    """The chain's input, spooled to a temporary file, is deleted when the chain ends: after
    ``pipeline_complete``, also when a step fails or the run is interrupted."""
    from ai_content_pipeline.errors import BackendUnavailable
    from ai_content_pipeline.stages.step import SpooledLines

    spools: list[SpooledLines] = []
    real_init = SpooledLines.__init__

    def init(self: SpooledLines, lines: Any) -> None:
        real_init(self, lines)
        spools.append(self)

    monkeypatch.setattr(SpooledLines, "__init__", init)
    emitter = RecordingEmitter()
    factory = FakeFactory()

    def backends(step: Any, notice: Any) -> Any:
        assert len(spools) == 1 and not spools[0]._file.closed  # open while the steps run
        if ending == "backend error":
            raise BackendUnavailable("no model here")
        if ending == "interrupt":
            raise KeyboardInterrupt
        return factory(step, notice)

    spec = load_chain(str(write_chain(tmp_path)))
    if ending == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            run_chain(spec, emitter=emitter, backend_factory=backends)
    else:
        outcome = run_chain(spec, emitter=emitter, backend_factory=backends)
        assert (outcome.error is None) == (ending == "success")
        assert emitter.names()[-1] == "pipeline_complete"
    assert len(spools) == 1 and spools[0]._file.closed


def _songs_file(path: Path, n: int = 3) -> Path:
    path.write_bytes(b"".join(orjson.dumps({"id": f"s{i}", "artist": "A", "title": f"T{i}"}) + b"\n"
                              for i in range(n)) + b"\n\nnot json\n")
    return path


@pytest.mark.parametrize("shard", [None, "1/2"])
def test_a_script_run_reads_a_file_once_and_knows_its_total_first(tmp_path: Path, input_passes: list[str],
                                                                  shard: str | None) -> None:
    """run_script reads a file once: its total is known first without a second pass."""
    from ai_content_pipeline.shards import ShardRun, parse

    source = _songs_file(tmp_path / "in.jsonl")
    emitter, out = RecordingEmitter(), []
    sharded = ShardRun(parse(shard)) if shard else None
    run_script([str(source)], ScriptOptions(), backend=FakeLLM(), emitter=emitter, write=out.append,
               shard=sharded)
    assert input_passes == [str(source)]
    expected = 4 if shard is None else 2  # 3 songs and a bad line; shard 1/2: lines 0 and 2 of 0-3
    assert len(out) == expected
    totals = [f["total"] for e, f in emitter.events if e == "progress"]
    assert len(totals) == expected and set(totals) == {expected}  # known from the first record on


@pytest.mark.parametrize("barrier", [True, False])
def test_a_voice_run_reads_a_file_once_and_knows_its_total_first(tmp_path: Path, input_passes: list[str],
                                                                 barrier: bool) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps({"id": f"s{i}", "script": {"text": "Good evening, this is the show."}})
                                + b"\n" for i in range(3)))
    emitter, out = RecordingEmitter(), []
    run_voice([str(source)], VoiceOptions(out_dir=str(tmp_path / "audio")), backend=SpeechTTS(),
              emitter=emitter, write=out.append, barrier=barrier)
    assert input_passes == [str(source)] and len(out) == 3
    assert {f["total"] for e, f in emitter.events if e == "progress"} == {3}


def test_a_pipe_is_read_lazily_with_no_total(tmp_path: Path) -> None:
    """Standard input from a pipe is not spooled: the first record is processed before the
    second line is read, and the total stays unknown."""
    read: list[int] = []

    class Pipe:
        def __iter__(self) -> Any:
            for i in range(2):
                read.append(i)
                yield orjson.dumps({"id": f"s{i}", "artist": "A", "title": "T"}) + b"\n"

    llm = FakeLLM()
    seen: list[tuple[int, int]] = []
    emitter = RecordingEmitter()
    run_script(["-"], ScriptOptions(), backend=llm, emitter=emitter,
               write=lambda r: seen.append((len(read), len(llm.calls))), stdin=Pipe())  # type: ignore[arg-type]
    assert seen == [(1, 1), (2, 2)]
    assert {f["total"] for e, f in emitter.events if e == "progress"} == {None}


def test_open_input_spools_regular_files_only(tmp_path: Path) -> None:
    source = _songs_file(tmp_path / "in.jsonl", 2)
    with open_input([str(source)]) as lines:
        assert lines.total == 3  # two songs and a bad line; blank lines do not count
        assert [line.line for line in lines] == [1, 2, 5]
        source.unlink()  # read once: replayed from the spool, the file is not needed again
        assert len(list(lines)) == 3
    with open(_songs_file(tmp_path / "again.jsonl", 2), "rb") as handle:
        assert countable(["-"], stdin=handle) and open_input(["-"], stdin=handle).total == 3
    assert not countable(["-"], stdin=io.BytesIO(b"{}\n"))
    assert open_input(["-"], stdin=io.BytesIO(b"{}\n")).total is None
    assert open_input(["-"], stdin=io.BytesIO(b"{}\n"), spool=True).total == 1  # the voice barrier


class _SlowCounts:
    """Stats whose ``completed`` takes a moment to read: unlocked ``+= 1`` from threads lose counts."""

    total: int | None = None
    failed = 0
    skipped = 0

    def __init__(self) -> None:
        self._completed = 0

    @property
    def completed(self) -> int:
        value = self._completed
        time.sleep(0.0005)
        return value

    @completed.setter
    def completed(self, value: int) -> None:
        self._completed = value


def test_record_counts_from_worker_threads_are_not_lost() -> None:
    stats: Any = _SlowCounts()
    tracker = RecordTracker(NullEmitter(), stats, "script")
    workers = [threading.Thread(target=lambda: [tracker.complete(i, f"r{i}") for i in range(20)])
               for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert stats.completed == 8 * 20


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every template or persona lookup (``(kind, ref)``) during a test."""
    from ai_content_pipeline.templates import store

    seen: list[tuple[str, str]] = []
    real = store._resolve

    def resolve(ref: str, kind: str) -> Any:
        seen.append((kind, ref))
        return real(ref, kind)

    monkeypatch.setattr(store, "_resolve", resolve)
    return seen


def test_a_run_loads_its_template_and_each_persona_once(tmp_path: Path, resolved: list[tuple[str, str]]) -> None:
    """run_script looks the template up once and each persona once, not once per record
    (counted below any cache, so a cache cannot hide repeats)."""
    source = tmp_path / "in.jsonl"
    songs = [{"id": f"s{i}", "artist": "A", "title": "T", **({"dj": "max"} if i % 2 else {})} for i in range(4)]
    source.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in songs))
    out: list[dict[str, Any]] = []
    run_script([str(source)], ScriptOptions(persona="julie"), backend=FakeLLM(), emitter=NullEmitter(),
               write=out.append)
    assert [r["script"]["persona"] for r in out] == ["julie", "max", "julie", "max"]
    assert sorted(resolved) == [("persona", "julie"), ("persona", "max"), ("template", "song-intro")]
    scripts = tmp_path / "scripts.jsonl"
    scripts.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in out))
    resolved.clear()
    voiced: list[dict[str, Any]] = []
    run_voice([str(scripts)], VoiceOptions(out_dir=str(tmp_path / "a"), persona="julie"), backend=SpeechTTS(),
              emitter=NullEmitter(), write=voiced.append)
    assert [r["audio"]["path"].rsplit("/", 1)[1] for r in voiced] == \
        ["s0_julie_0.wav", "s1_max_0.wav", "s2_julie_0.wav", "s3_max_0.wav"]
    assert resolved == [("persona", "julie")]  # max: from the settings the script stage carried


def test_a_persona_edited_during_a_run_reaches_the_next_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_content_pipeline.templates import user_folder

    folder = user_folder("persona")
    folder.mkdir(parents=True, exist_ok=True)
    rosa = folder / "rosa.yaml"
    rosa.write_text("name: rosa\ndisplay_name: Rosa One\nstyle: calm\n")

    class Editing(FakeLLM):
        def reply(self, n: int, messages: Any, params: Any) -> str:
            rosa.write_text("name: rosa\ndisplay_name: Rosa Two, longer\nstyle: calm\n")
            return "Hello there."

    llm = Editing()
    songs = [{"id": f"s{i}", "artist": "A", "title": "T", "dj": "rosa"} for i in range(2)]
    with StageRun("script", llm, ScriptOptions(), emitter=NullEmitter()) as run:
        run.run(lines_of(*songs), lambda r: None, 2)
    systems = [c["messages"][0]["content"] for c in llm.calls]
    assert all("Rosa One" in s for s in systems), systems  # one version of the file for the whole run
    with StageRun("script", llm, ScriptOptions(), emitter=NullEmitter()) as run:
        run.run(lines_of(songs[0]), lambda r: None, 1)
    assert "Rosa Two" in llm.calls[-1]["messages"][0]["content"]
