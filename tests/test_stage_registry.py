"""The stage registry: the built-in kinds, what each declares, refinements, registering a kind."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.stages import registry
from ai_content_pipeline.stages.kind import StageKind, StepConfig
from ai_content_pipeline.stages.longform import LongformStage
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from tests.doubles import FakeLLM


def test_the_built_in_kinds_and_what_they_declare() -> None:
    assert registry.stage_types() == ("script", "voice", "mix")
    script, voice = registry.get("script"), registry.get("voice")
    assert (script.stage, script.options, script.backend, script.record_field) == (ScriptStage, ScriptOptions,
                                                                                   "llm", "script")
    assert (voice.stage, voice.options, voice.backend, voice.record_field) == (VoiceStage, VoiceOptions,
                                                                               "tts", "audio")
    assert voice.dirs == {"out_dir": ("audio", False)} and script.dirs == {"work_dir": ("longform", True)}
    assert [k.stage for k in registry.refinements("script")] == [LongformStage]


def test_the_registry_picks_long_form_for_a_sectioned_template_or_a_plan() -> None:
    assert type(registry.build_stage("script", FakeLLM(), ScriptOptions())) is ScriptStage
    assert type(registry.build_stage("script", FakeLLM(), ScriptOptions(template="podcast-longform"))) \
        is LongformStage
    plan = [{"name": "intro", "brief": "say hello", "words": 100}]
    assert type(registry.build_stage("script", FakeLLM(), ScriptOptions(sections=plan))) is LongformStage
    with pytest.raises(UsageError, match="long-form"):
        ScriptStage(FakeLLM(), ScriptOptions(template="podcast-longform"))  # only the registry builds it


def test_unknown_kinds_and_second_kinds_of_one_name_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown stage 'video'") as caught:
        registry.get("video")
    assert "script, voice" in (caught.value.hint or "")

    @dataclasses.dataclass
    class Options:
        strict: bool = False

    class Step(StepConfig):
        type: Literal["voice"]

    other = StageKind(name="voice", stage=VoiceStage, options=Options, step_model=Step)
    with pytest.raises(UsageError, match="registered twice"):
        registry.register_stage(other)
    assert registry.get("voice").options is VoiceOptions
    registry.register_stage(registry.get("voice"))  # the same object again: nothing happens
    assert registry.stage_types() == ("script", "voice", "mix")


def test_the_built_in_list_names_each_kinds_command_as_the_kind_does() -> None:
    """``aicp``'s stage commands come from the registry's built-in list (strings, read without
    importing a stage module); each agrees with the command its loaded kind declares."""
    from ai_content_pipeline.cli.main import COMMANDS

    commands = registry.builtin_commands()
    assert commands == {k.name: k.command for k in registry.kinds() if k.command}
    assert {name: COMMANDS[name] for name in commands} == commands


def test_the_fields_stages_add_are_the_kinds_record_fields() -> None:
    from ai_content_pipeline import records

    assert records.STAGE_FIELDS == {"script", "audio", "mix", "error", "_aicp"}

    @dataclasses.dataclass
    class Options:
        strict: bool = False

    class Step(StepConfig):
        type: Literal["caption"]

    caption = StageKind(name="caption", stage=VoiceStage, options=Options, step_model=Step, record_field="caption")
    registry.register_stage(caption)
    try:
        assert "caption" in records.STAGE_FIELDS
        rec = {"title": "T"}
        assert records.record_id({**rec, "caption": {"text": "x"}}) == records.record_id(rec)
    finally:
        registry.unregister_stage("caption")
    assert "caption" not in records.STAGE_FIELDS
