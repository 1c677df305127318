"""Hostile inputs of the kinds a user or a client can hand the commands: each is refused
quickly, with a clear error, in bounded memory."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.templates import Template, TemplateLimitError, load_persona, sandbox
from tests.cli_helpers import invoke

_SHARED = "{% set a = range(99999)|list %}"

#: A list holding the same long list many times is small to make and huge to print, compare
#: or sort, in one call the render clock cannot interrupt: each ran for minutes or filled memory.
SHARED_VALUE_ATTACKS = [
    _SHARED + "{{ [a] * 99999 }}",
    _SHARED + "{{ ([a] * 99999)|tojson }}",
    _SHARED + "{{ ([a] * 99999)|string|length }}",
    _SHARED + "{{ ([a] * 99999)|join(',')|length }}",
    _SHARED + "{{ (([a] * 99999) ~ '')|length }}",
    _SHARED + "{{ ('%s' % ([a] * 99999,))|length }}",
    _SHARED + "{{ '{}'.format([a] * 99999)|length }}",
    _SHARED + "{{ ([a] * 99999)|e|length }}",
    _SHARED + "{{ ([a] * 99999)|center(5)|length }}",
    _SHARED + "{{ ([a] * 99999)|max|length }}",
    _SHARED + "{{ ([a] * 99999)|sort|length }}",
    _SHARED + "{{ (a[:-1] + [7]) in [a] * 99999 }}",
    _SHARED + "{{ [a] * 99999 == [a[:-1] + [7]] * 99999 }}",
    "{% set big = 'y' * 4000000 %}{{ [big, big, big] }}",
    "{% set n = 9**3000 %}{{ [n] * 99999 }}",
    "{% set n = 9**3000 %}{{ ([n] * 99999)|tojson|length }}",
    "{% set n = 9**3000 %}{{ ([n] * 99999)|join|length }}",
]


@pytest.mark.parametrize("user", SHARED_VALUE_ATTACKS)
def test_a_value_too_large_to_print_or_compare_is_refused_before_it_is_built(monkeypatch, user: str) -> None:
    monkeypatch.setattr(sandbox, "MAX_NODES", 200_000)  # the suite's time; the real limit is tested below
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateLimitError) as caught:
            Template(name="evil", system="s", user=user).messages({"title": "T"}, load_persona("julie"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < sandbox.RENDER_SECONDS + 10
    assert peak < 160 * 1024 * 1024, peak
    assert caught.value.exit_status == 2 and "limit" in caught.value.message


@pytest.mark.parametrize(("user", "expected"), [
    ("{{ (range(1000)|list)|length }} {{ [1, 2] == [1, 2] }} {{ 3 in [1, 2, 3] }}", "1000 True True"),
    ("{{ ['a', 'b']|join(', ') }} {{ {'k': [1, 2]} }} {{ 'x' is string }}", "a, b {'k': [1, 2]} True"),
    ("{{ (range(50000)|list)|string|length > 0 }}", "True"),
])
def test_ordinary_values_still_print_and_compare(user: str, expected: str) -> None:
    messages = Template(name="ok", system="s", user=user).messages({"title": "T"}, load_persona("julie"))
    assert messages[1]["content"] == expected


def test_the_real_value_limit_stops_a_shared_list_too() -> None:
    with pytest.raises(TemplateLimitError, match="1,000,000 values|4,194,304 characters"):
        Template(name="evil", system="s", user=SHARED_VALUE_ATTACKS[0]).messages({}, load_persona("julie"))


def test_a_chain_file_of_tens_of_thousands_of_steps_is_refused_quickly(tmp_path, monkeypatch) -> None:
    """1 MB of one-line steps parsed and validated for minutes; the file's value count is capped."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text('{"title": "T"}\n')
    chain = tmp_path / "c.yaml"
    chain.write_text("name: x\ninput: in.jsonl\noutput_dir: o\nsteps:\n" + "  - type: script\n" * 60000)
    started = time.monotonic()
    result = invoke(cli, "aicp", ["run-chain", "--config", str(chain)])
    assert time.monotonic() - started < 20
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "more than 10,000 values" in result.stderr and "c.yaml:" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_take_log_cell_of_many_megabytes_is_shown_cut_and_whole_in_json(tmp_path) -> None:
    import sqlite3

    from ai_content_pipeline.takelog import TakeLog

    path = tmp_path / "takes.db"
    log = TakeLog(path, "aicp script")
    log.add_script("r1", 0, {"text": "short", "template": "x"})
    log.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE takes SET text = ?, params = ?", ("y" * 20_000_000, '"' + "p" * 5_000_000 + '"'))
    tracemalloc.start()
    try:
        shown = invoke(cli, "aicp", ["logs", "--log", str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shown.exit_code == 0, shown.stderr
    assert len(shown.stdout) < 3_000_000
    assert "(18,951,424 more characters; --json shows the whole text)" in shown.stdout
    assert "(3,951,424 more characters)" in shown.stdout
    assert peak < 160 * 1024 * 1024, peak
    whole = invoke(cli, "aicp", ["logs", "--log", str(path), "--json"])
    assert whole.exit_code == 0 and '"text":"' + "y" * 20_000_000 + '"' in whole.stdout
