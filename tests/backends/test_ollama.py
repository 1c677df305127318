"""OllamaBackend on the production path (``ollama.Client``) against the local fake server."""

from __future__ import annotations

import os
import threading
import time

import httpx
import ollama
import orjson
import pytest

from ai_content_pipeline.backends import ollama as ollama_backend
from ai_content_pipeline.backends.base import GenerationParams, collect_reply
from ai_content_pipeline.backends.ollama import OllamaBackend, probe
from ai_content_pipeline.errors import BackendOutOfMemory, BackendUnavailable, TransientBackendError
from ai_content_pipeline.stages.common import with_retries
from ai_content_pipeline.status import ExitStatus
from tests.ollama_server import OllamaServer, Reply, free_port

MESSAGES = [{"role": "system", "content": "You are a DJ."},
            {"role": "user", "content": "Introduce Dreams by Fleetwood Mac."}]


@pytest.fixture
def server():
    with OllamaServer(models=["llama3.2"]) as srv:
        yield srv


def backend_for(srv: OllamaServer, **kw) -> OllamaBackend:
    return OllamaBackend(kw.pop("model", "llama3.2"), host=srv.url, **kw)


# -- the double itself speaks what the client expects --------------------------------------
def test_server_replies_parse_as_the_clients_own_types(server):
    with httpx.Client(base_url=server.url) as http:
        lines = http.post("/api/chat", json={"model": "llama3.2", "messages": MESSAGES}).text.splitlines()
        parts = [ollama.ChatResponse(**orjson.loads(line)) for line in lines]
        assert len(parts) > 2 and not any(p.done for p in parts[:-1])
        last = parts[-1]
        assert last.done and last.done_reason == "stop" and last.eval_count == len(parts) - 1
        assert last.prompt_eval_count and last.total_duration and last.total_duration > 0

        whole = ollama.ChatResponse(**http.post("/api/chat", json={
            "model": "llama3.2", "messages": MESSAGES, "stream": False}).json())
        assert whole.done and whole.message.content == "".join(p.message.content for p in parts)

        gen = [ollama.GenerateResponse(**orjson.loads(line)) for line in http.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "hi there"}).text.splitlines()]
        assert "".join(g.response or "" for g in gen) == "Echo: hi there" and gen[-1].done

        tags = ollama.ListResponse(**http.get("/api/tags").json())
        assert [m.model for m in tags.models] == ["llama3.2:latest"]
        ps = ollama.ProcessResponse(**http.get("/api/ps").json())
        assert [m.model for m in ps.models] == ["llama3.2:latest"] and ps.models[0].expires_at
        show = ollama.ShowResponse(**http.post("/api/show", json={"model": "llama3.2"}).json())
        assert show.details and show.details.family == "llama" and show.modelinfo

        missing = http.post("/api/show", json={"model": "nope"})
        assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}
        assert http.get("/api/version").json()["version"]

        unload = ollama.GenerateResponse(**http.post("/api/generate", json={
            "model": "llama3.2", "prompt": "", "keep_alive": 0}).json())
        assert unload.done_reason == "unload"
        assert ollama.ProcessResponse(**http.get("/api/ps").json()).models == []


# -- streaming, options, format ---------------------------------------------------------------
def test_streamed_text_is_assembled_with_token_counts(server):
    server.script(Reply(text="Here come the Dreams, friends."))
    pieces: list[str] = []
    result = collect_reply(backend_for(server), MESSAGES, GenerationParams(), on_text=pieces.append)
    assert result.text == "Here come the Dreams, friends."
    assert len(pieces) == 5  # one streamed piece per word
    assert result.completion_tokens == 5
    assert result.prompt_tokens == len(" ".join(m["content"] for m in MESSAGES).split())
    assert result.done_reason == "stop"
    body = server.requests_to("/api/chat")[0].body
    assert body["stream"] is True and body["messages"] == MESSAGES and body["model"] == "llama3.2"


def test_length_stop_is_reported(server):
    server.script(Reply(text="cut short", done_reason="length"))
    assert collect_reply(backend_for(server), MESSAGES, GenerationParams()).done_reason == "length"


def test_generation_params_map_to_ollama_options(server):
    b = backend_for(server)
    collect_reply(b, MESSAGES, GenerationParams(temperature=0.3, top_p=0.5, max_tokens=42, seed=7))
    collect_reply(b, MESSAGES, GenerationParams(temperature=0.0, top_p=1.0, max_tokens=9))
    with_seed, without = (r.body["options"] for r in server.requests_to("/api/chat"))
    assert with_seed == {"temperature": 0.3, "top_p": 0.5, "num_predict": 42, "seed": 7, "repeat_penalty": 1.1}
    assert without == {"temperature": 0.0, "top_p": 1.0, "num_predict": 9, "repeat_penalty": 1.1}


def test_json_schema_is_sent_as_format(server):
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    server.script(Reply(text='{"text": "hi"}'), Reply(text="plain"))
    b = backend_for(server)
    assert collect_reply(b, MESSAGES, GenerationParams(), json_schema=schema).text == '{"text": "hi"}'
    collect_reply(b, MESSAGES, GenerationParams())
    first, second = (r.body for r in server.requests_to("/api/chat"))
    assert first["format"] == schema and "format" not in second


# -- keep_alive and unloading ------------------------------------------------------------------
def test_default_keeps_model_during_run_then_unload_waits_for_ps(monkeypatch):
    monkeypatch.setattr(ollama_backend, "UNLOAD_WAIT_SECONDS", 3.0)
    with OllamaServer(models=["llama3.2"], unload_delay=0.35) as srv:
        b = backend_for(srv)
        collect_reply(b, MESSAGES, GenerationParams())
        assert srv.requests_to("/api/chat")[0].body["keep_alive"] == "5m"
        assert srv.loaded_now() == ["llama3.2:latest"] and b.loaded_models() >= {"llama3.2"}
        t0 = time.monotonic()
        b.unload()
        took = time.monotonic() - t0
        (unload,) = srv.unload_requests()
        assert unload.body["keep_alive"] == 0 and unload.body["model"] == "llama3.2"
        polls = [r for r in srv.requests_to("/api/ps") if r.started > unload.started]
        assert len(polls) >= 2  # it saw the model still listed, then gone
        assert took >= 0.3 and srv.loaded_now() == [] and not b.loaded


def test_explicit_keep_alive_leaves_model_loaded(server):
    b = backend_for(server, keep_alive="10m")
    collect_reply(b, MESSAGES, GenerationParams())
    b.unload()
    assert server.requests_to("/api/chat")[0].body["keep_alive"] == "10m"
    assert server.unload_requests() == [] and server.loaded_now() == ["llama3.2:latest"]


def test_unload_before_any_request_sends_nothing(server):
    backend_for(server).unload()
    assert server.requests == []


# -- failures -----------------------------------------------------------------------------------
def test_missing_model_is_unavailable_with_pull_hint(server):
    b = backend_for(server, model="qwen2.5:7b")
    with pytest.raises(BackendUnavailable) as info:
        collect_reply(b, MESSAGES, GenerationParams())
    assert info.value.exit_status == ExitStatus.BACKEND_UNAVAILABLE == 4
    assert "ollama pull qwen2.5:7b" in info.value.hint and "qwen2.5:7b" in info.value.message
    assert server.requests_to("/api/chat") == []  # found out by /api/show before generating


def test_connection_refused_is_unavailable_with_serve_hint():
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailable) as info:
        OllamaBackend("llama3.2", host=host).load()
    assert info.value.exit_status == 4 and "ollama serve" in info.value.hint and host in info.value.message
    assert probe(host) is None


def test_failing_show_at_load_is_unavailable_not_a_record_error():
    with OllamaServer(fail_paths={"/api/show": 500}) as srv:
        with pytest.raises(BackendUnavailable) as info:
            backend_for(srv).load()
    assert info.value.exit_status == 4 and "500" in info.value.message and "ollama run" in info.value.hint


def test_server_gone_mid_run_is_unavailable():
    with OllamaServer() as srv:
        b = backend_for(srv)
        collect_reply(b, MESSAGES, GenerationParams())
    with pytest.raises(BackendUnavailable):
        collect_reply(b, MESSAGES, GenerationParams())
    b.unload()  # best effort, no error when nobody listens


@pytest.mark.parametrize("reply", [
    Reply(status=500, error="llama runner process has terminated"),
    Reply(status=503, error="server busy"),
    Reply(text="one two three four", cut_after=2),
    Reply(text="one two three four", cut_after=2, cut_partial=True),
    Reply(text="one two three four", cut_after=4),  # everything but the done line
    Reply(text="one two three four", cut_after=1, stream_error="runner crashed"),
], ids=["http500", "http503", "cut", "cut-mid-line", "cut-before-done", "error-line"])
def test_server_failures_are_transient(server, reply):
    server.script(reply)
    with pytest.raises(TransientBackendError) as info:
        collect_reply(backend_for(server), MESSAGES, GenerationParams())
    assert info.value.transient and info.value.exit_status == ExitStatus.PARTIAL


@pytest.mark.parametrize("error", [
    "model requires more system memory (5.6 GiB) than is available (2.1 GiB)",
    "llama runner process has terminated: error loading model: unable to allocate CUDA0 buffer",
    "llama runner process has terminated: cudaMalloc failed: out of memory",
])
def test_server_out_of_memory_ends_the_run_with_a_hint(server, error):
    """Every later record would fail the same way: one clear error, not a failed record each."""
    server.script(Reply(status=500, error=error))
    with pytest.raises(BackendOutOfMemory) as info:
        collect_reply(backend_for(server), MESSAGES, GenerationParams())
    assert "smaller model" in info.value.hint and info.value.exit_status == 1


def test_slow_reply_past_timeout_is_transient(server):
    server.script(Reply(delay=1.0))
    b = backend_for(server, timeout=0.3)
    b.load()
    with pytest.raises(TransientBackendError, match="did not answer"):
        collect_reply(b, MESSAGES, GenerationParams())


def test_retries_recover_from_one_http_500(server):
    server.script(Reply(status=500), Reply(text="second time lucky"))
    b = backend_for(server)
    seen: list[str] = []
    result = with_retries(lambda: collect_reply(b, MESSAGES, GenerationParams()), 2, delay=0.01,
                          on_retry=lambda n, e: seen.append(e.message))
    assert result.text == "second time lucky"
    assert len(server.requests_to("/api/chat")) == 2 and seen == ["Ollama answered HTTP 500: internal server error"]


def test_concurrent_requests_share_one_client(server):
    server.reply_for = lambda body: Reply(chunk_delay=0.05)
    b = backend_for(server)
    b.load()
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        msgs = [{"role": "user", "content": f"record {i}"}]
        results[i] = collect_reply(b, msgs, GenerationParams()).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: f"Echo: record {i}" for i in range(4)}
    assert server.max_in_flight > 1


# -- a real server, only when one is named -------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.skipif(not os.environ.get("AICP_TEST_OLLAMA_HOST"), reason="AICP_TEST_OLLAMA_HOST not set")
def test_real_ollama_round_trip():
    host = os.environ["AICP_TEST_OLLAMA_HOST"]
    model = os.environ.get("AICP_TEST_OLLAMA_MODEL", "llama3.2")
    available = probe(host, timeout=3.0)
    if available is None or model not in available:
        pytest.skip(f"no model {model!r} at {host}")
    b = OllamaBackend(model, host=host)
    result = collect_reply(b, MESSAGES, GenerationParams(max_tokens=24, seed=1, temperature=0))
    assert result.text.strip() and result.completion_tokens > 0 and result.prompt_tokens > 0
    b.unload()
    assert model not in b.loaded_models()
