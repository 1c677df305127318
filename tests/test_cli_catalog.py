"""`aicp templates list|show` and `aicp personas list|show`: JSON Lines lists, YAML or JSON items."""

import orjson

from ai_content_pipeline.cli.main import cli
from tests.cli_helpers import invoke


def lines(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def test_templates_list_and_show():
    res = invoke(cli, "aicp", ["templates", "list"])
    assert res.exit_code == 0 and res.stderr == ""
    by_name = {t["name"]: t for t in lines(res.stdout)}
    assert {"song-intro", "song-outro", "station-id", "podcast-segment", "podcast-longform"} <= set(by_name)
    assert by_name["song-intro"]["required"] == ["artist", "title"]
    assert by_name["podcast-longform"]["sections"] == 10
    shown = orjson.loads(invoke(cli, "aicp", ["templates", "show", "song-intro", "--json"]).stdout)
    assert shown["name"] == "song-intro" and "{{ title }}" in shown["user"] and shown["params"]["max_tokens"] > 0


def test_personas_list_and_show():
    res = invoke(cli, "aicp", ["personas", "list"])
    assert res.exit_code == 0
    assert [p["name"] for p in lines(res.stdout)] == ["julie", "max", "sam"]
    max_ = orjson.loads(invoke(cli, "aicp", ["personas", "show", "max", "--json"]).stdout)
    assert max_["catchphrases"] and max_["voice"]["piper"]["length_scale"] == 0.92 and max_["seed"] == 2202


def test_unknown_name_is_a_usage_error():
    res = invoke(cli, "aicp", ["personas", "show", "ghost"])
    assert res.exit_code == 2 and res.stdout == "" and "unknown persona 'ghost'" in res.stderr
