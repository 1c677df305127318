from ai_content_pipeline.ledger import Ledger, request_key


def test_request_key_is_stable_and_order_independent():
    a = request_key(messages=[{"role": "user", "content": "x"}], seed=1, model="m")
    b = request_key(model="m", seed=1, messages=[{"role": "user", "content": "x"}])
    assert a == b and len(a) == 32
    assert a != request_key(model="m", seed=2, messages=[{"role": "user", "content": "x"}])


def test_append_and_reload(tmp_path):
    path = tmp_path / "sub" / "ledger.jsonl"
    with Ledger(path) as ledger:
        ledger.append("k1", {"text": "one"})
        ledger.append("k2", {"text": "two"})
    again = Ledger(path)
    assert len(again) == 2 and again.get("k2") == {"text": "two"} and "k1" in again


def test_torn_last_line_is_ignored_and_cut_before_next_append(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as ledger:
        ledger.append("k1", {"text": "one"})
    with open(path, "ab") as fh:
        fh.write(b'{"key": "k2", "value": {"te')  # killed mid-write
    ledger = Ledger(path)
    assert len(ledger) == 1 and ledger.torn_lines == 1
    ledger.append("k3", {"text": "three"})
    ledger.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2  # the torn fragment was cut, not glued to the new line
    reloaded = Ledger(path)
    assert reloaded.torn_lines == 0 and set(reloaded.entries) == {"k1", "k3"}
