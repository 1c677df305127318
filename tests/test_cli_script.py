import orjson
import pytest

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.errors import BackendUnavailable
from tests.cli_helpers import invoke
from tests.doubles import FakeLLM

SONGS = b"".join(
    orjson.dumps({"id": f"s{i}", "artist": f"A{i}", "title": f"T{i}"}) + b"\n" for i in range(3)
)


@pytest.fixture
def llm(monkeypatch):
    fake = FakeLLM()
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: fake)
    return fake


def records(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def test_stdout_is_data_only_and_stderr_has_summary(llm):
    res = invoke(script_cli.script_command, "aicp-script", ["--template", "song-intro"], SONGS)
    assert res.exit_code == 0
    out = records(res.stdout)
    assert [r["id"] for r in out] == ["s0", "s1", "s2"] and all("script" in r for r in out)
    assert res.stdout.count("\n") == 3 and " " not in res.stdout.splitlines()[0][:20]  # compact
    assert "aicp-script: 3 ok, 0 failed, 0 skipped" in res.stderr


def test_stream_events_on_stderr(llm):
    res = invoke(script_cli.script_command, "aicp-script", ["--stream"], SONGS)
    events = [orjson.loads(line) for line in res.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert names.count("record_start") == 3 and names.count("record_complete") == 3
    assert names.index("model_load") < names.index("record_complete")
    assert names.index("model_unload") > max(i for i, n in enumerate(names) if n == "record_complete")
    assert names[-1] == "run_complete"
    for e in events:
        assert e["schema_version"] == "1" and {"timestamp", "elapsed_seconds"} <= set(e)
    prog = [e for e in events if e["event"] == "progress"][-1]
    assert prog["total"] is None and prog["completed"] == 3  # a pipe: size unknown
    assert len(records(res.stdout)) == 3


def test_quiet_prints_nothing_on_success(llm):
    res = invoke(script_cli.script_command, "aicp-script", ["-q"], SONGS)
    assert res.exit_code == 0 and res.stderr == ""


def test_partial_failure_exits_3(llm):
    res = invoke(script_cli.script_command, "aicp-script", [], SONGS + b"not json\n")
    assert res.exit_code == 3
    assert records(res.stdout)[-1]["error"]["line"] == 4


def test_strict_exits_1_with_message(llm):
    res = invoke(script_cli.script_command, "aicp-script", ["--strict"], b"not json\n" + SONGS)
    assert res.exit_code == 1 and "--strict" in res.stderr and "Traceback" not in res.stderr


def test_usage_errors_exit_2(llm):
    res = invoke(script_cli.script_command, "aicp-script", ["--template", "nope"], SONGS)
    assert res.exit_code == 2 and "unknown template 'nope'" in res.stderr and res.stdout == ""
    res = invoke(script_cli.script_command, "aicp-script", ["--resume"], SONGS)
    assert res.exit_code == 2 and "--checkpoint" in res.stderr
    res = invoke(script_cli.script_command, "aicp-script", ["--variants", "0"], SONGS)
    assert res.exit_code == 2


def test_backend_unavailable_exits_4_with_hint(monkeypatch):
    def boom(*a, **k):
        raise BackendUnavailable("cannot reach Ollama at http://x", hint="is `ollama serve` running?")

    monkeypatch.setattr(script_cli, "create_llm", boom)
    res = invoke(script_cli.script_command, "aicp-script", [], SONGS)
    assert res.exit_code == 4 and "ollama serve" in res.stderr and "Traceback" not in res.stderr


def test_traceback_only_when_asked(monkeypatch):
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: FakeLLM(unavailable=True))
    res = invoke(script_cli.script_command, "aicp-script", [], SONGS)
    assert res.exit_code == 4 and "Traceback" not in res.stderr
    res = invoke(script_cli.script_command, "aicp-script", ["--traceback"], SONGS)
    assert res.exit_code == 4 and "Traceback" in res.stderr


def test_checkpoint_and_resume(tmp_path, llm):
    ck = str(tmp_path / "run.ledger")
    invoke(script_cli.script_command, "aicp-script", ["--checkpoint", ck, "--seed", "1"], SONGS)
    calls = len(llm.calls)
    res = invoke(script_cli.script_command, "aicp-script", ["--checkpoint", ck, "--seed", "1", "--resume"], SONGS)
    assert res.exit_code == 0 and len(llm.calls) == calls
    out = records(res.stdout)
    assert len(out) == len(SONGS.splitlines())
    assert all(r["script"]["skipped"] for r in out)


def test_help_documents_exit_codes_and_does_not_import_engines():
    code = (
        "import sys\n"
        "from ai_content_pipeline.cli.errors import run_cli\n"
        "from ai_content_pipeline.cli.main import cli\n"
        "from ai_content_pipeline.cli.script import script_command\n"
        "run_cli(cli, 'aicp', ['--help']); run_cli(script_command, 'aicp-script', ['--help'])\n"
        "run_cli(cli, 'aicp', ['script', '--help'])\n"
        "heavy = [m for m in ('llama_cpp', 'torch', 'onnxruntime', 'piper', 'chatterbox') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "Exit status:" in out and "4 backend unavailable" in out and "130 interrupted" in out


def test_fatal_errors_are_json_events_with_stream(monkeypatch):
    def boom(*a, **k):
        raise BackendUnavailable("cannot reach Ollama at http://x", hint="is `ollama serve` running?")

    monkeypatch.setattr(script_cli, "create_llm", boom)
    res = invoke(script_cli.script_command, "aicp-script", ["--stream"], SONGS)
    event = orjson.loads(res.stderr)
    assert res.exit_code == 4 and event["event"] == "error" and event["exit_code"] == 4
    assert "ollama serve" in event["hint"] and event["schema_version"] == "1"
    res = invoke(script_cli.script_command, "aicp-script", ["--stream", "--template", "nope"], SONGS)
    assert res.exit_code == 2 and orjson.loads(res.stderr)["event"] == "error"


def test_summary_line_names_the_command_once(llm):
    res = invoke(script_cli.script_command, "aicp-script", [], SONGS)
    assert res.stderr.splitlines()[-1].startswith("aicp-script: 3 ok, 0 failed, 0 skipped; ")


def test_closed_stdout_ends_quietly_with_141():
    # click turns an EPIPE OSError into exit 1 unless the writer hides it: the run exits 141.
    import subprocess
    import sys

    from tests.conftest import ROOT

    many = SONGS * 400
    proc = subprocess.Popen([sys.executable, "-m", "tests.chain_doubles", "script"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(many)
    proc.stdin.close()
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert orjson.loads(first)["id"] == "s0"
    assert b"Traceback" not in err and b"Broken pipe" not in err


def test_threads_reach_the_llamacpp_backend_and_are_range_checked(monkeypatch):
    """--threads sets llama.cpp's CPU threads; unset, the backend picks its own default."""
    seen: list[dict] = []

    def create(*a, **k):
        seen.append(k)
        return FakeLLM()

    monkeypatch.setattr(script_cli, "create_llm", create)
    res = invoke(script_cli.script_command, "aicp-script", ["--threads", "1"], SONGS)
    assert res.exit_code == 0, res.stderr
    res = invoke(script_cli.script_command, "aicp-script", [], SONGS)
    assert res.exit_code == 0, res.stderr
    assert seen[0]["n_threads"] == 1 and "n_threads" not in seen[1]
    res = invoke(script_cli.script_command, "aicp-script", ["--threads", "0"], SONGS)
    assert res.exit_code == 2 and res.stdout == "" and "--threads" in res.stderr


def test_threads_beyond_the_cpus_of_this_process_get_a_warning(monkeypatch):
    """The llamacpp backend warns when it is built (the command only passes --threads on)."""
    from ai_content_pipeline.backends import llamacpp, registry

    def build(name, **options):  # the real llamacpp backend is built (not loaded); a fake one runs
        registry.create_llm("llamacpp", **options)
        return FakeLLM()

    monkeypatch.setattr(script_cli, "create_llm", build)
    monkeypatch.setattr(llamacpp, "default_threads", lambda: 2)
    res = invoke(script_cli.script_command, "aicp-script", ["--threads", "3"], SONGS)
    assert res.exit_code == 0 and "--threads 3 is more than the 2 CPUs" in res.stderr
    res = invoke(script_cli.script_command, "aicp-script", ["--threads", "2"], SONGS)
    assert res.exit_code == 0 and "--threads" not in res.stderr
    res = invoke(script_cli.script_command, "aicp-script", ["--threads", "513"], SONGS)
    assert res.exit_code == 2 and res.stdout == ""
