"""Several Ollama hosts: requests spread with --jobs per host, failover, exit 4 only when all are down."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ai_content_pipeline.backends.ollama_pool import OllamaPool, parse_hosts
from ai_content_pipeline.backends.registry import create_llm
from ai_content_pipeline.cli.script import script_command
from tests.cli_helpers import invoke
from tests.ollama_server import OllamaServer, Reply, free_port

SONGS = [{"id": f"s{i}", "artist": f"Artist {i}", "title": f"Song {i}"} for i in range(12)]


def _input(tmp: Path, n: int = 12) -> Path:
    path = tmp / "songs.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SONGS[:n]))
    return path


def _run(path: Path, hosts: list[str], *extra: str) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], str]:
    args = ["--backend", "ollama", "--stream", "--seed", "1", *extra, str(path)]
    for h in hosts:
        args[:0] = ["--host", h]
    r = invoke(script_command, "aicp-script", args)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    return r.exit_code, records, events, r.stderr


def test_parse_hosts() -> None:
    assert parse_hosts(["a:1,b:2", "http://c:3/", "a:1"]) == ["http://a:1", "http://b:2", "http://c:3"]
    assert parse_hosts(None, {"OLLAMA_HOSTS": "x:1, y:2"}) == ["http://x:1", "http://y:2"]
    assert isinstance(create_llm("ollama", host="127.0.0.1:1,127.0.0.1:2"), OllamaPool)


def test_requests_spread_over_hosts_jobs_per_host_order_kept(tmp_path: Path) -> None:
    slow = Reply(text="A fine intro.", chunk_delay=0.05)
    with OllamaServer(reply_for=lambda body: slow) as a, OllamaServer(reply_for=lambda body: slow) as b:
        code, records, events, err = _run(_input(tmp_path), [a.url, b.url], "--jobs", "2")
        assert code == 0, err
        assert [r["id"] for r in records] == [s["id"] for s in SONGS]
        hosts = [r["script"]["host"] for r in records]
        assert set(hosts) == {a.url, b.url} and min(hosts.count(a.url), hosts.count(b.url)) >= 3
        assert a.max_in_flight <= 2 and b.max_in_flight <= 2 and a.max_in_flight + b.max_in_flight >= 3
        done = [e for e in events if e["event"] == "record_complete"]
        assert {e["host"] for e in done} == {a.url, b.url}
        for srv in (a, b):  # unloaded on every host
            assert srv.unload_requests() and srv.loaded_now() == []


def test_a_host_that_refuses_connections_is_taken_out(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with OllamaServer() as srv:
        code, records, events, err = _run(_input(tmp_path), [closed, srv.url], "--jobs", "2")
        assert code == 0, err
        assert [r["id"] for r in records] == [s["id"] for s in SONGS]
        assert all(r["script"]["host"] == srv.url and "error" not in r for r in records)
        notes = [e["message"] for e in events if e["event"] == "message" and closed in e["message"]]
        assert notes and "taken out of rotation" in notes[0]


def test_a_host_that_dies_mid_run_hands_its_records_to_the_others(tmp_path: Path) -> None:
    served = {"n": 0}
    lock = threading.Lock()
    holder: dict[str, OllamaServer] = {}

    def dying(body: dict[str, Any]) -> Reply:
        with lock:
            served["n"] += 1
            if served["n"] == 2:  # mid-run, with replies in flight on this host
                threading.Timer(0.1, holder["a"].kill).start()
        return Reply(text="One two three four five six seven eight.", chunk_delay=0.04)

    with OllamaServer(reply_for=dying) as a, OllamaServer(
            reply_for=lambda body: Reply(text="A fine intro for you.", chunk_delay=0.05)) as b:
        holder["a"] = a
        code, records, events, err = _run(_input(tmp_path), [a.url, b.url], "--jobs", "2")
        assert code == 0, err
        assert [r["id"] for r in records] == [s["id"] for s in SONGS]   # every record once, in order
        assert not any("error" in r for r in records)
        assert not any(e["event"] == "record_error" for e in events)
        assert a.dead, (served, [r["script"]["host"] for r in records])
        assert sum(r["script"]["host"] == b.url for r in records) >= 6
        from_a = sum(r["script"]["host"] == a.url for r in records)
        assert len(a.requests_to("/api/chat")) > from_a  # replies cut by the kill were sent to b
        assert any(e["event"] == "message" and a.url in e["message"] and "taken out" in e["message"]
                   for e in events)
        assert b.unload_requests()


def test_a_host_that_keeps_failing_is_taken_out(tmp_path: Path) -> None:
    with OllamaServer(reply_for=lambda body: Reply(status=500, error="boom")) as bad, OllamaServer() as good:
        code, records, events, err = _run(_input(tmp_path), [bad.url, good.url], "--jobs", "1")
        assert code == 0, err
        assert [r["id"] for r in records] == [s["id"] for s in SONGS]
        assert all(r["script"]["host"] == good.url for r in records)
        assert len(bad.requests_to("/api/chat")) == 3
        assert any(e["event"] == "message" and bad.url in e["message"] and "3 requests in a row" in e["message"]
                   for e in events)
        for srv in (bad, good):  # a host taken out that still answers is unloaded too
            assert srv.unload_requests() and srv.loaded_now() == [], srv.url


def test_exit_4_only_when_every_host_is_down(tmp_path: Path) -> None:
    one, two = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    code, records, events, err = _run(_input(tmp_path, 3), [one, two])
    assert code == 4 and records == []
    last = events[-1]
    assert last["event"] == "error" and one in last["message"] and two in last["message"]


def test_a_chain_step_takes_a_list_of_hosts(tmp_path: Path) -> None:
    from ai_content_pipeline.chain.runner import run_chain
    from ai_content_pipeline.chain.spec import load_chain
    from tests.chain_doubles import write_chain, write_songs

    with OllamaServer() as a, OllamaServer() as b:
        songs = write_songs(tmp_path / "in.jsonl", SONGS[:6])
        config = write_chain(tmp_path, input=str(songs), steps=[
            {"type": "script", "backend": "ollama", "host": [a.url, b.url], "params": {"jobs": 1}}])
        outcome = run_chain(load_chain(str(config)))
        assert outcome.exit_status == 0
        records = [json.loads(x) for x in Path(outcome.result["outputs"]["final"]["path"]).read_text().splitlines()]
        assert {r["script"]["host"] for r in records} == {a.url, b.url}
        assert a.unload_requests() and b.unload_requests()


def test_a_host_without_the_model_is_taken_out_at_load(tmp_path: Path) -> None:
    with OllamaServer(models=["other"]) as lacking, OllamaServer() as good:
        code, records, events, err = _run(_input(tmp_path, 4), [lacking.url, good.url])
        assert code == 0, err
        assert all(r["script"]["host"] == good.url for r in records)
        assert any(e["event"] == "message" and lacking.url in e["message"] and "no model" in e["message"]
                   for e in events)
        assert lacking.requests_to("/api/chat") == []


def _flaky(failures: int, text: str = "A fine intro for you.") -> Any:
    """Replies HTTP 500 to the first ``failures`` chat requests, then streams ``text``."""
    seen = {"n": 0}
    lock = threading.Lock()

    def reply(body: dict[str, Any]) -> Reply:
        with lock:
            seen["n"] += 1
            n = seen["n"]
        return Reply(status=500, error="busy") if n <= failures else Reply(text=text, chunk_delay=0.03)
    return reply


def test_a_host_taken_out_rejoins_after_the_cool_down(tmp_path: Path, monkeypatch: Any) -> None:
    from ai_content_pipeline.backends import ollama_pool

    monkeypatch.setattr(ollama_pool, "REJOIN_SECONDS", 0.3)
    with OllamaServer(reply_for=_flaky(3)) as a, OllamaServer(
            reply_for=lambda body: Reply(text="A fine intro for you.", chunk_delay=0.03)) as b:
        code, records, events, err = _run(_input(tmp_path), [a.url, b.url], "--jobs", "1")
        assert code == 0, err
        assert [r["id"] for r in records] == [s["id"] for s in SONGS] and not any("error" in r for r in records)
        notes = [e["message"] for e in events if e["event"] == "message" and a.url in e["message"]]
        assert any("taken out" in n for n in notes) and any("back in rotation" in n for n in notes), notes
        assert any(r["script"]["host"] == a.url for r in records)   # it served again after rejoining


def test_a_host_that_fails_everything_does_not_rejoin_at_once_exit_4(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with OllamaServer(reply_for=lambda body: Reply(status=500, error="boom")) as bad:
        code, records, events, err = _run(_input(tmp_path, 6), [bad.url, closed], "--jobs", "1")
        assert code == 4 and "every Ollama host is down" in err
        assert len(bad.requests_to("/api/chat")) <= 3 * 4   # retries of at most a few records, no rejoin loop
        assert not any(e["event"] == "message" and "back in rotation" in e["message"] for e in events)


def test_ollama_hosts_env_spreads_aicp_script_and_a_chain_step(tmp_path: Path, monkeypatch: Any) -> None:
    from ai_content_pipeline.chain.runner import run_chain
    from ai_content_pipeline.chain.spec import load_chain
    from tests.chain_doubles import write_chain, write_songs

    slow = Reply(text="A fine intro.", chunk_delay=0.03)
    with OllamaServer(reply_for=lambda body: slow) as a, OllamaServer(reply_for=lambda body: slow) as b:
        monkeypatch.setenv("OLLAMA_HOSTS", f"{a.url},{b.url}")
        code, records, events, err = _run(_input(tmp_path, 8), [], "--jobs", "1")
        assert code == 0, err
        assert {r["script"]["host"] for r in records} == {a.url, b.url}
        assert a.max_in_flight <= 1 and b.max_in_flight <= 1
        songs = write_songs(tmp_path / "in.jsonl", SONGS[:6])
        config = write_chain(tmp_path, input=str(songs), steps=[
            {"type": "script", "backend": "ollama", "params": {"jobs": 1}}])
        outcome = run_chain(load_chain(str(config)))
        assert outcome.exit_status == 0
        chained = [json.loads(x) for x in Path(outcome.result["outputs"]["final"]["path"]).read_text().splitlines()]
        assert {r["script"]["host"] for r in chained} == {a.url, b.url}


@pytest.mark.parametrize("form", ["--host repeated", "--host comma list", "--set steps.0.host"])
def test_run_chain_hosts_override_the_script_steps_hosts(form: str, tmp_path: Path) -> None:
    """``aicp run-chain --host`` (repeated or a comma list) and the older ``--set`` both replace
    the chain file's host of a script step."""
    from ai_content_pipeline.cli.chain import run_chain_command
    from tests.chain_doubles import write_chain, write_songs

    closed = f"http://127.0.0.1:{free_port()}"
    with OllamaServer() as a, OllamaServer() as b:
        songs = write_songs(tmp_path / "in.jsonl", SONGS[:6])
        config = write_chain(tmp_path, input=str(songs), steps=[
            {"type": "script", "backend": "ollama", "host": closed, "params": {"jobs": 1}}])
        args = {"--host repeated": ["--host", a.url, "--host", b.url],
                "--host comma list": ["--host", f"{a.url},{b.url}"],
                "--set steps.0.host": ["--set", f"steps.0.host={a.url},{b.url}"]}[form]
        r = invoke(run_chain_command, "aicp run-chain", ["--config", str(config), *args])
        assert r.exit_code == 0, r.stderr
        final = json.loads(r.stdout)["outputs"]["final"]["path"]
        records = [json.loads(x) for x in Path(final).read_text().splitlines()]
        assert {rec["script"]["host"] for rec in records} == {a.url, b.url}
        assert a.unload_requests() and b.unload_requests()


def test_a_host_back_without_the_model_stays_out(tmp_path: Path, monkeypatch: Any) -> None:
    """Rejoining asks for the model too (``/api/tags``), not only ``/api/version``: a host
    restarted without the model would fail requests again."""
    from ai_content_pipeline.backends import ollama_pool

    monkeypatch.setattr(ollama_pool, "REJOIN_SECONDS", 0.3)
    servers: list[OllamaServer] = []

    def fail_then_forget(body: dict[str, Any]) -> Reply:
        servers[0].models = set()  # the host "restarts" without the model
        return Reply(status=500, error="busy")

    with OllamaServer(reply_for=fail_then_forget) as a, OllamaServer(
            reply_for=lambda body: Reply(text="A fine intro for you.", chunk_delay=0.05)) as b:
        servers.append(a)
        code, records, events, err = _run(_input(tmp_path), [a.url, b.url], "--jobs", "1")
        assert code == 0, err
        assert all(r["script"]["host"] == b.url for r in records)
        notes = [e["message"] for e in events if e["event"] == "message" and a.url in e["message"]]
        assert any("taken out" in n for n in notes) and not any("back in rotation" in n for n in notes), notes


def test_a_host_without_scheme_or_port_is_ollamas_port(monkeypatch: Any) -> None:
    """``gpu1`` means what it means to the Ollama client, port 11434, also for the pool and doctor."""
    from ai_content_pipeline.backends.ollama import default_host, host_url

    assert parse_hosts(["gpu1", "http://gpu1:11434/", "gpu2:8080"]) == ["http://gpu1:11434", "http://gpu2:8080"]
    assert host_url("http://gpu1") == "http://gpu1" and host_url("[::1]") == "http://[::1]:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu3")
    assert default_host() == "http://gpu3:11434"


def test_a_host_that_never_answered_costs_nothing_at_unload(tmp_path: Path) -> None:
    """A host that accepts connections but never replies is taken out at load; the unload at the
    end does not probe it again (it would wait the 2 s probe timeout for nothing)."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        with OllamaServer() as srv:
            pool = OllamaPool("llama3.2", hosts=[srv.url, f"http://127.0.0.1:{silent.getsockname()[1]}"],
                              timeout=0.3)
            pool.load()
            assert pool.hosts[1].down is not None and pool.hosts[0].down is None
            t0 = time.monotonic()
            pool.unload()
            assert time.monotonic() - t0 < 1.5  # no 2 s liveness probe of the silent host
            assert srv.unload_requests()
    finally:
        silent.close()


@pytest.mark.parametrize("host", ["127.0.0.1:1/\x1b[2J", "http://127.0.0.1:1/\x1b", "gpu 1"])
def test_a_host_with_a_control_character_or_space_is_a_usage_error(host: str, tmp_path: Path,
                                                                   monkeypatch: Any) -> None:
    """It reached httpx, which raised InvalidURL: exit 1 'unexpected' with the report-it hint."""
    import subprocess
    import sys

    code, records, events, err = _run(_input(tmp_path, 1), [host])
    assert code == 2 and records == [] and "is not a URL" in err and "\x1b" not in err
    env = {**__import__("os").environ, "OLLAMA_HOST": host}
    out = subprocess.run([sys.executable, "-c", "from ai_content_pipeline.cli.main import main; main()",
                          "doctor", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and out.stdout == "" and "is not a URL" in out.stderr, out.stderr
