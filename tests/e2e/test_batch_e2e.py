"""Batched generation on the real embedded model: the llama.cpp batch decoder, best-of-N, --batch."""

import os

import orjson
import pytest

from ai_content_pipeline.backends.base import BatchRequest, GenerationParams, collect_reply
from ai_content_pipeline.backends.llamacpp import LlamaCppBackend
from ai_content_pipeline.stages.script import ScriptOptions, ScriptStage
from ai_content_pipeline.templates import load_persona, load_template
from tests.cli_helpers import run_bin
from tests.conftest import EXAMPLES
from tests.doubles import RecordingEmitter, lines_of

pytestmark = pytest.mark.e2e
SONGS = [orjson.loads(line) for line in open(os.path.join(EXAMPLES, "songs.jsonl"), "rb")]


@pytest.fixture(scope="module")
def backend():
    b = LlamaCppBackend()
    b.load()
    yield b
    b.unload()


def messages(i: int) -> list[dict[str, str]]:
    return load_template("song-intro").messages(SONGS[i], load_persona("julie"))


def params(seed: int, temperature: float = 0.7, max_tokens: int = 40) -> GenerationParams:
    return GenerationParams(temperature=temperature, top_p=0.9, max_tokens=max_tokens, seed=seed,
                            repeat_penalty=1.15)


def test_candidates_share_one_prompt_and_are_reproducible_in_any_batch(backend):
    seeds = [params(s) for s in (11, 12, 13)]
    alone = backend.generate_batch([BatchRequest(messages(0), seeds)])[0]
    mixed = backend.generate_batch([BatchRequest(messages(1), [params(5)]), BatchRequest(messages(0), seeds)])
    assert isinstance(alone, list) and isinstance(mixed[1], list)
    assert [c.text for c in alone] == [c.text for c in mixed[1]]  # same seed, same text, whatever the batch
    assert len({c.text for c in alone}) == 3  # different seeds, different candidates
    assert alone[0].prompt_tokens > 20 and [c.prompt_tokens for c in alone[1:]] == [0, 0]  # evaluated once
    assert all(0 < c.completion_tokens <= 40 and c.done_reason in ("stop", "length") for c in alone)


def test_batched_text_is_the_sequential_path_text_for_the_same_seed(backend):
    """Flash attention off in the decoder's context, as in the Llama's: the same logits, so
    the same sampled text as create_chat_completion (with it on, the texts drifted apart)."""
    for i, seed in ((2, 1), (7, 5)):
        one = collect_reply(backend, messages(i), params(seed, max_tokens=30)).text
        batched = backend.generate_batch([BatchRequest(messages(i), [params(seed, max_tokens=30)])])[0]
        assert isinstance(batched, list) and batched[0].text.strip() == one.strip()


def test_a_prompt_too_long_fails_only_its_request(backend):
    huge = [{"role": "system", "content": "x"}, {"role": "user", "content": "word " * 5000}]
    out = backend.generate_batch([BatchRequest(huge, [params(1)]), BatchRequest(messages(0), [params(1)])])
    assert isinstance(out[0], Exception) and "context window" in str(out[0])
    assert isinstance(out[1], list) and out[1][0].text


def test_more_candidates_than_the_decoder_holds_fail_only_their_request_and_say_so(backend):
    from ai_content_pipeline.backends.llamacpp_batch import MAX_SEQUENCES

    many = BatchRequest(messages(0), [params(i, max_tokens=2) for i in range(MAX_SEQUENCES + 1)])
    out = backend.generate_batch([many, BatchRequest(messages(1), [params(1, max_tokens=4)])])
    assert isinstance(out[0], Exception) and f"{MAX_SEQUENCES + 1} candidates" in str(out[0])
    assert "context window" not in str(out[0])
    assert isinstance(out[1], list) and out[1][0].text


def test_best_of_and_batch_in_the_stage_are_ordered_checked_and_identical_on_rerun(backend):
    def once():
        opts = ScriptOptions(seed=4, best_of=3, batch=2, max_tokens=60)
        stage = ScriptStage(backend, opts, RecordingEmitter())
        out = list(stage.run(lines_of(*SONGS[:3]), total=3))
        backend.load()  # the stage unloads at the end; keep the module's model
        return out

    a, b = once(), once()
    assert [r["id"] for r in a] == [s["id"] for s in SONGS[:3]]
    for r in a:
        checks = r["script"]["checks"]
        assert len(checks["candidates"]) == 3 and 0 <= checks["chosen"] < 3
        assert checks["passed"] == (checks["candidates"][checks["chosen"]]["failed"] == [])
    drop = ("seconds",)
    same = sum({k: v for k, v in x["script"].items() if k not in drop} ==
               {k: v for k, v in y["script"].items() if k not in drop} for x, y in zip(a, b, strict=True))
    assert same == 3


def test_cli_best_of_one_batch_one_is_todays_output():
    song = orjson.dumps(SONGS[0]) + b"\n"
    args = ["--backend", "llamacpp", "--seed", "5", "--max-tokens", "40"]
    plain = run_bin("aicp-script", *args, input=song)
    explicit = run_bin("aicp-script", *args, "--best-of", "1", "--batch", "1", input=song)
    one, two = orjson.loads(plain.stdout)["script"], orjson.loads(explicit.stdout)["script"]
    assert one["text"] == two["text"] and one["key"] == two["key"] and "candidates" not in one["checks"]
    # ... and the text create_chat_completion writes for that seed (trimmed back when cut)
    from llama_cpp import Llama

    from ai_content_pipeline.backends.llamacpp import bundled_model_path

    llm = Llama(model_path=str(bundled_model_path()), n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
    d = load_template("song-intro").params
    reply = llm.create_chat_completion(messages=messages(0), temperature=d.temperature, top_p=d.top_p,
                                       max_tokens=40, seed=5, repeat_penalty=d.repeat_penalty)
    raw = reply["choices"][0]["message"]["content"].strip()
    # the take is the model's words, then the template's closing line said from the record
    template = load_template("song-intro")
    close = template.closing(template.request(SONGS[0], load_persona("julie"))[1])
    assert close and one["text"].endswith(" " + close)
    said = one["text"][: -len(close)].rstrip()
    assert said == raw or (one.get("truncated") and raw.startswith(said.rstrip('"')))


def _in_threads(backend, requests, parallel, stagger=0.0):
    """Each request from its own thread (as the stage's workers call), started ``stagger`` s apart."""
    import threading
    import time

    out: list = [None] * len(requests)
    order: list[int] = []

    def one(i):
        out[i] = backend.generate_batch([requests[i]], parallel=parallel)[0]
        order.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
        time.sleep(stagger)
    for t in threads:
        t.join(120)
    return out, order


def test_calls_from_several_threads_decode_together_with_the_same_texts(backend):
    requests = [BatchRequest(messages(i), [params(7, max_tokens=30)]) for i in range(4)]
    together = backend.generate_batch(requests)
    decoder = backend._decoder
    decoder.peak = 0
    threaded, _ = _in_threads(backend, requests, parallel=4)
    assert decoder.peak >= 2  # they shared decode steps
    same = sum(a[0].text == b[0].text for a, b in zip(threaded, together, strict=True))
    assert same == 4


def test_a_request_joins_a_batch_already_decoding(backend):
    """Continuous batching: a request that arrives while others decode starts at once,
    it does not wait for them to end."""
    long = BatchRequest(messages(3), [params(3, temperature=0, max_tokens=60)])
    short = BatchRequest(messages(4), [params(3, temperature=0, max_tokens=4)])
    backend.generate_batch([short])  # the decoder exists, warm
    backend._decoder.peak = 0
    out, order = _in_threads(backend, [long, short], parallel=2, stagger=0.3)
    assert backend._decoder.peak == 2 and order == [1, 0]  # decoded beside the long one, done first
    assert out[1][0].completion_tokens <= 4 < out[0][0].completion_tokens


def test_the_persona_prefix_is_evaluated_once_and_changes_no_text(backend):
    requests = [BatchRequest(messages(i), [params(9, max_tokens=12)]) for i in (5, 6)]
    backend.unload()
    backend.load()
    first = backend.generate_batch(requests[:1])[0]
    decoder = backend._decoder
    shared_before = decoder.shared
    both = backend.generate_batch(requests)
    assert decoder.shared > shared_before  # the system prompt came from another stream
    assert [c.text for c in both[0]] == [c.text for c in first]


def test_unloading_while_requests_decode_fails_them_quickly(backend):
    import threading
    import time

    result: list = []
    backend.generate_batch([BatchRequest(messages(0), [params(1, max_tokens=2)])])
    backend._decoder.peak = 0
    t = threading.Thread(target=lambda: result.append(
        backend.generate_batch([BatchRequest(messages(0), [params(1, max_tokens=400)])])[0]))
    t.start()
    deadline = time.monotonic() + 60
    while (backend._decoder is None or backend._decoder.peak == 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    backend.unload()
    t.join(30)
    assert not t.is_alive() and time.monotonic() - t0 < 5
    assert isinstance(result[0], Exception) and "closed" in str(result[0])
    backend.load()


def test_cli_batched_texts_do_not_depend_on_the_batch_size():
    """Sequences end at different times, streams are refilled and moved down to stay
    consecutive: none of it changes a text (same seed, same text, any --batch)."""
    songs = b"".join(orjson.dumps(s) + b"\n" for s in SONGS[:6])
    args = ["--backend", "llamacpp", "--seed", "3", "--max-tokens", "40", "-q"]
    two = run_bin("aicp-script", *args, "--batch", "2", input=songs)
    five = run_bin("aicp-script", *args, "--batch", "5", input=songs)
    a = [orjson.loads(line)["script"]["text"] for line in two.stdout.splitlines()]
    b = [orjson.loads(line)["script"]["text"] for line in five.stdout.splitlines()]
    assert len(a) == len(b) == 6
    assert a == b
