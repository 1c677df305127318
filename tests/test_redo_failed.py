"""``aicp-script --resume --redo-failed``: the takes whose checks failed are made again with
derived seeds (reruns identical), the others served from the ledger."""

from __future__ import annotations

import shutil

import orjson
import pytest

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.stages.script import redo_seed
from tests.cli_helpers import invoke
from tests.doubles import MENTIONS_TEMPLATE, FakeLLM

TEMPLATE = MENTIONS_TEMPLATE

SONGS = b"".join(orjson.dumps({"id": f"s{i}", "artist": f"A{i}", "title": f"T{i}"}) + b"\n" for i in range(4))


class SeedLLM(FakeLLM):
    """Its reply depends on the request's seed and song only: a take in ``bad`` (``(seed,
    title)``) leaves the artist out (fails ``mentions``), any other names both."""

    def __init__(self, bad: set[tuple[int, str]]) -> None:
        super().__init__()
        self.bad = bad

    def reply(self, n, messages, params):
        title, artist = messages[-1]["content"].split("|")
        if (params.seed, title) in self.bad:
            return f"Here is {title}, seed {params.seed}."
        return f"Here is {title} by {artist}, seed {params.seed}."


@pytest.fixture
def template(tmp_path):
    path = tmp_path / "check-intro.yaml"
    path.write_text(TEMPLATE)
    return str(path)


def run(monkeypatch, llm, args):
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    res = invoke(script_cli.script_command, "aicp-script", args, SONGS)
    return res, [orjson.loads(line) for line in res.stdout.splitlines()]


def without_timing(records):
    return [{**r, "script": {k: v for k, v in r["script"].items() if k != "seconds"}} for r in records]


def test_only_failed_takes_are_made_again_and_two_reruns_are_identical(monkeypatch, tmp_path, template):
    first_redo = redo_seed(7, 1, "")
    bad = {(7, "T1"), (7, "T3"), (first_redo, "T3")}  # T3 fails its first redo too
    ledger = tmp_path / "run.ledger"
    base = ["-t", template, "--seed", "7", "--checkpoint", str(ledger)]
    res, first = run(monkeypatch, SeedLLM(bad), base)
    assert res.exit_code == 0, res.stderr
    assert [r["script"]["checks"]["passed"] for r in first] == [True, False, True, False]
    shutil.copy(ledger, tmp_path / "copy.ledger")

    outs = []
    for path in (ledger, tmp_path / "copy.ledger"):  # two reruns from the same ledger
        llm = SeedLLM(bad)
        res, out = run(monkeypatch, llm, ["-t", template, "--seed", "7", "--checkpoint", str(path),
                                          "--resume", "--redo-failed", "--stream"])
        assert res.exit_code == 0, res.stderr
        assert [c["params"].seed for c in llm.calls] == [first_redo, first_redo]  # T1 and T3 only
        outs.append(out)
        events = [orjson.loads(line) for line in res.stderr.splitlines()]
        done = [e for e in events if e["event"] == "run_complete"][0]
        assert done["redone"] == 2 and done["records"]["skipped"] == 2
        assert [e["attempt"] for e in events if e["event"] == "record_complete"] == [1, 1]
    assert without_timing(outs[0]) == without_timing(outs[1])
    out = outs[0]
    assert out[0] == first[0] | {"script": {**first[0]["script"], "skipped": True}}  # served as it was
    assert out[1]["script"]["checks"]["passed"] and out[1]["script"]["attempt"] == 1
    assert out[3]["script"]["checks"]["passed"] is False and out[3]["script"]["attempt"] == 1
    assert out[1]["script"]["key"] == first[1]["script"]["key"]  # the take keeps its ledger key

    llm = SeedLLM(bad)  # the take that failed again is redone again: attempt 2
    res, again = run(monkeypatch, llm, [*base, "--resume", "--redo-failed"])
    assert [c["params"].seed for c in llm.calls] == [redo_seed(7, 2, "")]
    assert again[3]["script"]["attempt"] == 2 and again[3]["script"]["checks"]["passed"]
    assert again[1]["script"]["skipped"] and again[1]["script"]["text"] == out[1]["script"]["text"]
    assert "1 redone" in res.stderr

    llm = SeedLLM(bad)  # the ledger holds the newest attempts: a plain resume serves them all
    res, served = run(monkeypatch, llm, [*base, "--resume"])
    assert llm.calls == [] and [r["script"]["text"] for r in served] == [r["script"]["text"] for r in again]
    assert all(r["script"]["checks"]["passed"] for r in served)


def test_a_take_without_a_seed_is_redone_with_a_seed_derived_from_its_key(monkeypatch, tmp_path, template):
    class Unseeded(FakeLLM):
        def reply(self, n, messages, params):
            return "no artist here." if params.seed is None else f"{messages[-1]['content']} with a seed."

    ledger = tmp_path / "run.ledger"
    run(monkeypatch, Unseeded(), ["-t", template, "--checkpoint", str(ledger)])
    shutil.copy(ledger, tmp_path / "copy.ledger")
    seeds = []
    for path in (ledger, tmp_path / "copy.ledger"):
        llm = Unseeded()
        res, out = run(monkeypatch, llm, ["-t", template, "--checkpoint", str(path), "--resume", "--redo-failed"])
        assert res.exit_code == 0 and all(r["script"]["checks"]["passed"] for r in out)
        seeds.append([c["params"].seed for c in llm.calls])
    assert seeds[0] == seeds[1] == [redo_seed(None, 1, r["script"]["key"]) for r in out]
    assert len(set(seeds[0])) == 4


def test_redo_failed_needs_resume(monkeypatch, tmp_path, template):
    res, out = run(monkeypatch, SeedLLM(set()), ["-t", template, "--checkpoint", str(tmp_path / "l"),
                                                  "--redo-failed"])
    assert res.exit_code == 2 and out == []
    assert "--redo-failed needs --resume" in res.stderr and "Traceback" not in res.stderr
    res, out = run(monkeypatch, SeedLLM(set()), ["-t", "podcast-longform", "--checkpoint", str(tmp_path / "l"),
                                                  "--resume", "--redo-failed"])
    assert res.exit_code == 2 and "redo_failed applies to one-call templates" in res.stderr


def test_a_chain_step_redoes_failed_takes_with_resume_and_needs_it(tmp_path):
    from ai_content_pipeline.chain.runner import run_chain
    from ai_content_pipeline.chain.spec import load_chain
    from ai_content_pipeline.status import ExitStatus
    from tests.chain_doubles import FakeFactory, write_chain

    # the chain's songs: "Dreams" fails with the first seed; every voice step is off
    bad = {(3, "Dreams")}
    spec = load_chain(str(write_chain(tmp_path)), ["steps.0.params.seed=3", "steps.1.enabled=false"])
    spec.steps[0].template = str(tmp_path / "check-intro.yaml")
    (tmp_path / "check-intro.yaml").write_text(TEMPLATE)
    assert run_chain(spec, backend_factory=FakeFactory(SeedLLM(bad))).exit_status == ExitStatus.SUCCESS
    redo = load_chain(str(write_chain(tmp_path)), ["steps.0.params.seed=3", "steps.1.enabled=false",
                                                   "steps.0.params.redo_failed=true"])
    redo.steps[0].template = spec.steps[0].template
    refused = run_chain(redo, backend_factory=FakeFactory(SeedLLM(bad)))
    assert refused.exit_status == ExitStatus.USAGE and "redo_failed needs --resume" in refused.result["error"]["message"]
    llm = SeedLLM(bad)
    outcome = run_chain(redo, resume=True, backend_factory=FakeFactory(llm))
    assert outcome.exit_status == ExitStatus.SUCCESS
    assert [c["params"].seed for c in llm.calls] == [redo_seed(3, 1, "")]
    step = outcome.result["outputs"]["steps"][0]
    assert step["redone"] == 1 and step["checks"] == {"passed": 3, "failed": 0}
