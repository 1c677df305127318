"""``aicp-script --backend ollama`` end to end against the local fake Ollama server."""

from __future__ import annotations

import os

import orjson
import pytest

from ai_content_pipeline.backends import ollama as ollama_backend
from ai_content_pipeline.cli.script import script_command
from tests.cli_helpers import invoke, run_bin
from tests.conftest import EXAMPLES
from tests.ollama_server import OllamaServer, Reply, free_port

SONGS = os.path.join(EXAMPLES, "songs.jsonl")


def songs() -> list[dict]:
    with open(SONGS, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def records(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def aicp_script(*args: str):
    return invoke(script_command, "aicp-script", list(args))


@pytest.fixture
def server():
    with OllamaServer(models=["llama3.2"]) as srv:
        yield srv


def test_subprocess_run_writes_one_script_record_per_song_in_order(server):
    proc = run_bin("aicp-script", "--backend", "ollama", "--host", server.url, SONGS, timeout=120)
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, stderr
    out, expected = records(stdout), songs()
    assert [r["id"] for r in out] == [s["id"] for s in expected]
    for rec, song in zip(out, expected, strict=True):
        assert {k: rec[k] for k in song} == song  # every input field kept
        script = rec["script"]
        assert song["title"] in script["text"] and song["artist"] in script["text"]  # its own reply
        assert script["backend"] == "ollama" and script["model"] == "llama3.2"
        assert script["tokens"]["prompt"] > 0 and script["tokens"]["completion"] > 0
    assert f"{len(expected)} ok, 0 failed" in stderr and "Traceback" not in stderr
    assert len(server.requests_to("/api/chat")) == len(expected)


def test_jobs_overlap_requests_and_keep_input_order(server):
    # the first song answers last, so ordered output really has to wait for it
    server.reply_for = lambda body: Reply(
        delay=0.4 if "Bohemian Rhapsody" in body["messages"][-1]["content"] else 0.05)
    res = aicp_script("--backend", "ollama", "--host", server.url, "--jobs", "4", SONGS)
    assert res.exit_code == 0, res.stderr
    out, expected = records(res.stdout), songs()
    assert [r["id"] for r in out] == [s["id"] for s in expected]
    assert all(s["title"] in r["script"]["text"] for r, s in zip(out, expected, strict=True))
    assert 1 < server.max_in_flight <= 4


def test_model_is_unloaded_at_the_end_and_gone_from_ps(monkeypatch):
    monkeypatch.setattr(ollama_backend, "UNLOAD_WAIT_SECONDS", 3.0)  # fail fast, not after 30 s
    with OllamaServer(models=["llama3.2"], unload_delay=0.2) as srv:
        res = aicp_script("--backend", "ollama", "--host", srv.url, SONGS)
        assert res.exit_code == 0, res.stderr
        chats = srv.requests_to("/api/chat")
        assert {c.body["keep_alive"] for c in chats} == {"5m"}
        (unload,) = srv.unload_requests()
        assert unload.started > max(c.started for c in chats) and unload.body["keep_alive"] == 0
        assert srv.requests[-1].path == "/api/ps" and srv.loaded_now() == []


def test_keep_alive_option_is_sent_and_nothing_unloads(server):
    res = aicp_script("--backend", "ollama", "--host", server.url, "--keep-alive", "10m", SONGS)
    assert res.exit_code == 0, res.stderr
    assert {c.body["keep_alive"] for c in server.requests_to("/api/chat")} == {"10m"}
    assert server.unload_requests() == [] and server.loaded_now() == ["llama3.2:latest"]


def test_auto_picks_ollama_when_it_has_the_model(server):
    res = aicp_script("--host", server.url, SONGS)
    assert res.exit_code == 0, res.stderr
    assert {r["script"]["backend"] for r in records(res.stdout)} == {"ollama"}
    assert "backend auto" not in res.stderr


def test_missing_model_exits_4_with_pull_hint():
    with OllamaServer(models=["mistral"]) as srv:
        res = aicp_script("--backend", "ollama", "--host", srv.url, "--model", "llama3.2", SONGS)
        assert srv.requests_to("/api/chat") == []
    assert res.exit_code == 4 and res.stdout == ""
    assert "aicp-script: error: Ollama at" in res.stderr and "no model 'llama3.2'" in res.stderr
    assert "aicp-script: hint: run `ollama pull llama3.2`" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("backend", ["ollama", "auto"])
def test_nothing_listening_exits_4_with_serve_hint(backend):
    host = f"http://127.0.0.1:{free_port()}"
    proc = run_bin("aicp-script", "--backend", backend, "--model", "llama3.2", "--host", host, SONGS,
                   timeout=60)
    stderr = proc.stderr.decode()
    assert proc.returncode == 4 and proc.stdout == b""
    assert "ollama serve" in stderr and host in stderr and "Traceback" not in stderr


def test_one_http_500_fails_one_record_or_is_retried(server):
    server.script(Reply(status=500, error="llama runner process has terminated"))
    res = aicp_script("--backend", "ollama", "--host", server.url, SONGS)
    out = records(res.stdout)
    assert res.exit_code == 3 and len(out) == len(songs())
    assert out[0]["error"]["type"] == "TransientBackendError" and "script" not in out[0]
    assert all("script" in r for r in out[1:])

    server.script(Reply(status=500))
    res = aicp_script("--backend", "ollama", "--host", server.url, "--retries", "1", SONGS)
    assert res.exit_code == 0 and all("script" in r for r in records(res.stdout))
    assert "retry 1" in res.stderr


def test_best_of_sends_candidates_as_concurrent_requests_within_jobs(server):
    good = ("Good evening, night owls. This one takes me back to a long drive home under the stars, "
            "with the radio up and the windows down. Stay cozy, night owls. Here is Dreams by Fleetwood Mac.")
    seed_text = {}

    def reply(body):
        seed = body["options"]["seed"]
        seed_text.setdefault(seed, good if len(seed_text) % 2 else "Dreams.")
        return Reply(text=seed_text[seed], delay=0.1)

    server.reply_for = reply
    one = b'{"id": "s", "artist": "Fleetwood Mac", "title": "Dreams"}\n'
    res = invoke(script_command, "aicp-script",
                 ["--backend", "ollama", "--host", server.url, "--best-of", "4", "--jobs", "2", "--seed", "9"], one)
    assert res.exit_code == 0, res.stderr
    chats = server.requests_to("/api/chat")
    assert len(chats) == 4 and server.max_in_flight == 2  # concurrent, and never more than --jobs
    assert len({c.body["options"]["seed"] for c in chats}) == 4
    script = records(res.stdout)[0]["script"]
    # song-intro's closing line ("Here is…" and the catchphrase) ends the text, said once
    aired = good.replace(" Stay cozy, night owls. Here is Dreams by Fleetwood Mac.",
                         " Here is Dreams by Fleetwood Mac. Stay cozy, night owls.")
    assert script["text"] == aired and script["checks"]["passed"] is True
    assert [c["seed"] for c in script["checks"]["candidates"]][0] == 9
