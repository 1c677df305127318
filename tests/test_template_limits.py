"""A template render is bounded in time and memory: what would run without end or build
hundreds of MB is refused quickly, as a template error (exit 2) naming the template."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import orjson
import pytest
from yaml import safe_dump as yaml_dump

from ai_content_pipeline.chain import runner
from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.errors import InputError
from ai_content_pipeline.templates import (
    MAX_PROMPT_CHARS,
    Template,
    TemplateLimitError,
    load_persona,
    sandbox,
)
from tests.chain_doubles import FakeFactory, write_chain
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM

#: Each would run for minutes or hours, or allocate gigabytes, without the sandbox's limits.
ATTACKS = [
    "{{ ((9**999)**999)**999 }}",
    "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
    "{% for a in range(99999) %}{% for b in range(99999) if b < 0 %}{% endfor %}{% endfor %}",
    "{{ '{:>300000000}'.format(1) }}",
    "{{ '{:{}}'.format(1, 10**9) }}",
    "{{ '{0:>{1}}'.format('x', 999999999) }}",
    "{{ '{:.999999999f}'.format(1.5) }}",
    "{{ ('{:>999999999}'|safe).format(1) }}",
    "{{ '{x:>999999999}'.format_map({'x': 1}) }}",
    "{{ 'x'.center(300000000) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.rjust(10**9, '-') }}",
    "{{ '1'.zfill(10**9) }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ ('x'|safe)|center(10**9) }}",
    '{{ "x" * 10**9 }}',
    "{{ 10**9 * 'x' }}",
    "{{ [0] * 10**9 }}",
    "{{ (0,) * 10**9 }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ '%*s' % (-10**9, 'x') }}",
    "{{ '%-*s'|format(-10**9, 'x') }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%.999999999f' % 1.5 }}",
    "{{ '%(a)999999999s' % {'a': 1} }}",
    "{{ '%999999999d'|format(1) }}",
    "{{ '%*s'|format(10**9, 'x') }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(0) }}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% macro f() %}{{ caller() }}{% endmacro %}{% macro g() %}{% call f() %}{{ g() }}{% endcall %}"
    "{% endmacro %}{{ g() }}",
    "{% for x in range(3) recursive %}{{ loop(range(3)) }}{% endfor %}",
    "{{ range(99999)|join('x' * 1000) }}",
    "{{ ('x' * 1000).join(range(99999)|map('string')) }}",
    "{{ range(99999)|map('string')|map('center', 99999)|join }}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{{ loop.cycle('', '') }}{% endfor %}{% endfor %}",
    "{{ ('x ' * 2000000)|wordwrap(1, wrapstring='yyyyyyyy') }}",
    "{{ ('x' * 4000000)|wordwrap(3) }}",
    "{{ ('x ' * 2000000)|wordwrap(1) }}",
    "{{ ('a.com ' * 600000)|urlize }}",
    "{{ ('a.com ' * 15000)|urlize(none, false, 'x' * 4000) }}",
    "{{ ('a.com ' * 15000)|urlize(rel='x' * 4000) }}",
    "{{ ({'a': range(99999)|list})|pprint }}",
    "{{ (range(99999)|list)|tojson(2) }}",
    "{{ ('x\n' * 2000000)|indent(1000) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ 'x\nx'|indent('y' * 4000000) }}",
    "{{ lipsum(10**9) }}",
    "{{ lipsum(5, max=10**9) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ['x' * 4000000 ~ i] %}"
    "{% endfor %}",
    "{% set ns = namespace(x=9) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "{{ ('x' * 4000000).replace('x', 'yy') }}",
    "{{ ('x' * 4000000)|replace('x', 'yy') }}",
    "{{ ('x' * 4000000).replace('', 'y') }}",
    "{{ ('x' * 4000000).translate({120: 'yyyy'}) }}",
    "{{ ('\t' * 1000000).expandtabs(1000) }}",
    "{{ range(10)|batch(10**9, 'x')|list }}",
    "{{ range(10)|slice(10**9)|list }}",
    "{{ [1]|tojson(indent=10**9) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
    "{{ ('x' * 4000000)|list|length }}",
    "{{ ('\"' * 4000000)|forceescape }}",
    "{{ ([[1] * 100000] * 100000)|sum(start=[]) }}",
    "{% for a in range(99999) %}{{ range(99999)|sum }}{% endfor %}",
    "{% for a in range(99999) %}{{ (range(99999)|list)|length }}{% endfor %}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{{ 'a'.upper() }}{% endfor %}{% endfor %}",
    "{{ 'x' * 4000000 ~ 'x' * 4000000 }}",
]


def _render(user: str) -> None:
    Template(name="evil", system="s", user=user).messages({"title": "T"}, load_persona("julie"))


@pytest.mark.parametrize("user", ATTACKS)
def test_a_render_that_would_run_away_stops_quickly_in_bounded_memory(monkeypatch, user: str) -> None:
    monkeypatch.setattr(sandbox, "MAX_STEPS", 200_000)  # the suite's time; the real limit is tested below
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateLimitError) as caught:
            _render(user)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < sandbox.RENDER_SECONDS + 5
    assert peak < 160 * 1024 * 1024, peak
    error = caught.value
    assert error.exit_status == 2 and "template 'evil'" in error.message and "limit" in error.message


@pytest.mark.parametrize("user", [
    "{% for i in range(99999) %}{% filter center(99999) %}x{% endfilter %}{% endfor %}",
    "{% for i in range(99999) %}{{ title * 4000 }}{% endfor %}",
])
def test_a_prompt_that_grows_past_its_limit_stops_while_it_streams(user: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="template 'evil' made a user prompt of more than") as caught:
            _render(user)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_PROMPT_CHARS * 4, peak  # the prompt so far, never the whole output
    assert caught.value.exit_status == 3  # the record's long fields may be why: that record fails


def test_nested_loops_stop_at_the_step_limit() -> None:
    started = time.monotonic()
    # the step limit, or on a machine too busy to take a million steps in time, the clock
    limits = f"more than {sandbox.MAX_STEPS:,} loop iterations|took longer than {sandbox.RENDER_SECONDS:g} seconds"
    with pytest.raises(TemplateLimitError, match=limits) as caught:
        _render("{% for a in range(99999) %}{% for b in range(99999) %}{% for c in range(99999) %}"
                "{% endfor %}{% endfor %}{% endfor %}")
    assert time.monotonic() - started < sandbox.RENDER_SECONDS + 5 and caught.value.exit_status == 2


def test_a_render_past_its_seconds_stops(monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "RENDER_SECONDS", 0.0)
    with pytest.raises(TemplateLimitError, match="longer than 0 seconds"):
        _render("{% for i in range(10) %}{{ i }}{% endfor %}")


@pytest.mark.parametrize("user", [
    "{{ 'x' * 1000 }}{{ [0] * 1000 }}{{ 2 ** 64 }}{{ 9 ** 999 }}{{ '%5d' % 3 }}{{ '{:>10}'.format(1) }}",
    "{{ 'x'|center(80) }}{{ 'a\nb'|indent(4) }}{{ lipsum(2) }}{{ range(5)|join(', ') }}{{ [1, [2]]|tojson(2) }}",
    "{{ ('word ' * 15000)|wordwrap(72) }}{{ ('see https://example.com and more ' * 2000)|urlize }}{{ [1, 2]|pprint }}",
    "{% for s in range(100) %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}{{ 'x' ~ 'y' }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(30) }}",
    "{{ 'abc'.replace('b', 'xyz') }}{{ 'x\ty'.expandtabs(4) }}{{ range(10)|batch(3, 0)|list }}",
])
def test_ordinary_templates_render_as_plain_jinja2_renders_them(user: str) -> None:
    """The limits refuse nothing an ordinary template does, and change none of its text."""
    import jinja2

    messages = Template(name="ordinary", system="s", user=user).messages({"title": "T"}, load_persona("julie"))
    if "lipsum" not in user:  # lipsum's words are random
        assert messages[-1]["content"].strip() == jinja2.Environment().from_string(user).render(title="T").strip()


def test_a_template_past_a_limit_stops_aicp_script_with_exit_2(monkeypatch, tmp_path: Path) -> None:
    template = tmp_path / "loops.yaml"
    template.write_text(yaml_dump({"name": "loops", "system": "s",
                                   "user": "{% for a in range(99999) %}{% for b in range(99999) %}"
                                           "{% endfor %}{% endfor %}"}))
    llm = FakeLLM()
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    res = invoke(script_cli.script_command, "aicp-script", ["-t", str(template)],
                 input=b'{"artist": "A", "title": "T"}\n')
    assert res.exit_code == 2 and llm.calls == [] and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert any("template 'loops'" in line and str(template) in line and "render limit" in line
               for line in lines), res.stderr
    assert "Traceback" not in res.stderr


def test_a_template_past_a_limit_fails_a_chain_as_a_template_error(monkeypatch, tmp_path: Path) -> None:
    from tests.test_fault_exits import aicp

    monkeypatch.setattr(runner, "create_backend", FakeFactory())
    template = tmp_path / "wide.yaml"
    template.write_text(yaml_dump({"name": "wide", "system": "s", "user": "{{ 'x'.center(10**9) }}"}))
    path = write_chain(tmp_path)
    code, out, err = aicp(["run-chain", "--config", str(path), "--set", f"steps.0.template={template}"])
    assert code == 2, err
    result = orjson.loads(out)
    assert result["success"] is False and result["error"]["type"] == "TemplateLimitError"
    assert "center() width" in result["error"]["message"]


@pytest.mark.parametrize(("user", "says"), [
    ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "nested too deeply to compile"),
    ("{{ " + "[" * 3000 + "1" + "]" * 3000 + " }}", "nested too deeply to compile"),
    ("{% if 1 %}" * 1000 + "x" + "{% endif %}" * 1000, "nested too deeply to compile"),
    ("{% for i in range(2) %}" * 120 + "x" + "{% endfor %}" * 120, "nested too deeply to compile"),
    ("{{ 1" + " + 1" * 30000 + " }}", "nested too deeply to compile"),
    ("{{ title }}" * 10_001, "has 10001 Jinja2 tags; the limit is 10000"),
    ("{{ [" + "1, " * 60_000 + "1] }}", "Jinja2 expressions and statements; the limit is 50000"),
    ("{{ " + "9" * 5000 + " }}", "cannot be compiled: Exceeds the limit"),
])
def test_a_template_too_big_or_deep_to_compile_is_refused_when_loaded(tmp_path: Path, user: str, says: str) -> None:
    from ai_content_pipeline.errors import ConfigError
    from ai_content_pipeline.templates import load_template

    path = tmp_path / "deep.yaml"
    path.write_text(yaml_dump({"name": "deep", "system": "s", "user": user}, width=10**9))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=says) as caught:
        load_template(str(path))
    assert time.monotonic() - started < 15
    assert f"template file {path}: prompt 'user'" in caught.value.message and caught.value.exit_status == 2
