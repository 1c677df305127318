"""A shard killed with SIGKILL mid-run: merge names it (exit 3); --resume finishes it and the
merge equals a single run. Real processes, the local Ollama test server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.ollama_server import OllamaServer, Reply

BIN = os.path.dirname(sys.executable)


def _aicp(*args: str, out: Path | None = None, wait: bool = True) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOB_COMPLETION", "OLLAMA_HOST"))}
    handle = open(out, "wb") if out is not None else subprocess.PIPE  # noqa: SIM115 - closed below
    proc = subprocess.Popen([os.path.join(BIN, args[0]), *args[1:]], stdout=handle, stderr=subprocess.PIPE,
                            env=env)
    if out is not None:
        handle.close()  # type: ignore[union-attr]
    if not wait:
        return proc
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr.decode()


def _strip(records: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    return [(r.get("id"), r.get("script", {}).get("text")) for r in records]


def test_a_shard_killed_mid_run_resumes_and_merges_to_a_single_run(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"s{i}", "artist": f"A{i}", "title": f"T{i}"}) + "\n"
                           for i in range(14)) + "oops\n")
    with OllamaServer(reply_for=lambda body: Reply(text="A fine intro for this one.", chunk_delay=0.04)) as srv:
        common = ("--backend", "ollama", "--host", srv.url, "--seed", "1", "--checkpoint", str(tmp_path / "run.ledger"))
        code, single, err = _aicp("aicp-script", "--backend", "ollama", "--host", srv.url, "--seed", "1", str(src))
        assert code == 3, err   # the bad line is an error record
        outs = [tmp_path / f"out.{k}.jsonl" for k in range(2)]
        assert _aicp("aicp-script", *common, "--shard", "0/2", str(src), out=outs[0])[0] == 3
        victim = _aicp("aicp-script", *common, "--shard", "1/2", str(src), out=outs[1], wait=False)
        ledger = tmp_path / "run.shard-1-of-2.ledger"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not ledger.exists() or len(ledger.read_text().splitlines()) < 3):
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        assert victim.returncode == -signal.SIGKILL
        code, _, err = _aicp("aicp", "merge", *map(str, outs))
        assert code == 3 and "shard 1/2" in err and "incomplete" in err
        code, _, err = _aicp("aicp-script", *common, "--shard", "1/2", "--resume", str(src), out=outs[1])
        assert code == 0, err   # shard 1 has no bad line
        done = len(ledger.read_text().splitlines())
        code, merged, err = _aicp("aicp", "merge", *map(str, outs))
        assert code == 0, err
    single_records = [json.loads(x) for x in single.splitlines()]
    merged_records = [json.loads(x) for x in merged.splitlines()]
    assert _strip(merged_records) == _strip(single_records) and len(merged_records) == 15
    assert done == 7   # shard 1's seven records, each once in its ledger
    assert sum(bool(r.get("script", {}).get("skipped")) for r in merged_records) >= 3   # served from the ledger
