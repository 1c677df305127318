"""The prompt context is merged from a record's fields, the persona, the template's own values
and a run's ``extra_context``: a key aicp sets itself is refused in ``extra_context`` (exit 2,
naming the key), never a ``TypeError``; a record's own ``target_words`` that is not a number of
words fails that record only."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from ai_content_pipeline.chain import runner
from ai_content_pipeline.errors import InputError, UsageError
from ai_content_pipeline.stages.script import ScriptOptions
from ai_content_pipeline.templates import RESERVED_CONTEXT, load_persona, load_template
from tests.chain_doubles import FakeFactory, chain_data
from tests.test_data_safety import jsonl, out_records, script
from tests.test_fault_exits import aicp

RECORD = {"artist": "Queen", "title": "Bohemian Rhapsody"}


def _chain(tmp_path: Path, extra: object) -> Path:
    data = chain_data(tmp_path)
    data["steps"][0]["params"]["extra_context"] = extra
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("key", RESERVED_CONTEXT + ("self",))
def test_a_reserved_extra_context_key_is_refused_before_any_record(key: str) -> None:
    options = ScriptOptions(extra_context={key: "x"})
    if key == "self":  # not one the context sets: a plain name for the template
        options.validate()
        return
    with pytest.raises(UsageError, match=f"extra_context key '{key}' is set by aicp itself"):
        options.validate()


@pytest.mark.parametrize("key", ["record", "persona", "catchphrase", "target_words", "self"])
def test_a_library_call_with_a_reserved_key_is_a_usage_error_not_a_type_error(key: str) -> None:
    template, persona = load_template("song-intro"), load_persona("julie")
    if key == "self":
        assert template.messages(RECORD, persona, self="x")[1]["content"]
        return
    with pytest.raises(UsageError, match=f"'{key}'"):
        template.messages(RECORD, persona, **{key: "x"})


@pytest.mark.parametrize("extra", [{"take": 3}, {"persona": "max"}, {"record": {}}, {"sections": []}])
def test_a_chain_with_a_reserved_key_exits_2_naming_it(monkeypatch, tmp_path: Path, extra: dict) -> None:
    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    path = _chain(tmp_path, extra)
    key = next(iter(extra))
    for args in ([], ["--dry-run"]):
        code, out, err = aicp(["run-chain", "--config", str(path), *args])
        assert code == 2, err
        assert f"steps.0.params.extra_context: Value error, extra_context key '{key}'" in err
        assert "TypeError" not in err and "Traceback" not in err


def test_a_chain_with_an_own_extra_context_key_renders_it(monkeypatch, tmp_path: Path) -> None:
    factory = FakeFactory()
    monkeypatch.setattr(runner, "create_backend", factory)
    code, out, err = aicp(["run-chain", "--config", str(_chain(tmp_path, {"slogan": "all hits"})),
                           "--set", "steps.1.enabled=false"])
    assert code == 0, err
    assert orjson.loads(out.splitlines()[-1])["success"] is True


def test_a_records_bad_target_words_fails_that_record_only(monkeypatch) -> None:
    records = [{**RECORD, "id": "a", "target_words": "abc"}, {**RECORD, "id": "b", "target_words": 1e300},
               {**RECORD, "id": "c", "target_words": 0}, {**RECORD, "id": "d", "target_words": 40},
               {**RECORD, "id": "e"}]
    res, llm = script(monkeypatch, [], jsonl(records))
    assert res.exit_code == 3, res.stderr
    out = {r["id"]: r for r in out_records(res.stdout)}
    for rid in "abc":
        assert out[rid]["error"]["field"] == "target_words", out[rid]
        assert "whole number of words" in out[rid]["error"]["message"]
    assert "error" not in out["d"] and "error" not in out["e"] and len(llm.calls) == 2
    assert "unexpected" not in res.stderr


def test_a_records_target_words_sets_the_prompts_length() -> None:
    template, persona = load_template("song-intro"), load_persona("julie")
    _, ctx = template.request({**RECORD, "target_words": 25}, persona)
    assert ctx["target_words"] == 25
    with pytest.raises(InputError):
        template.request({**RECORD, "target_words": True}, persona)
