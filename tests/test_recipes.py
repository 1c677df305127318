"""The scale-out recipes run as written: examples/slurm/, examples/k8s/, the README's GNU parallel line.

No scheduler runs here, so each test reads the commands from the recipe files and runs them
with the variables the scheduler would set (SLURM_ARRAY_TASK_*, JOB_COMPLETION_INDEX), on a
small input, against the local Ollama test server and the embedded Piper voice.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ollama_server import OllamaServer, Reply

ROOT = Path(__file__).resolve().parents[1]
BIN = os.path.dirname(sys.executable)
SONGS = [{"id": f"s{i}", "artist": f"Artist {i}", "title": f"Song {i}"} for i in range(5)]


def _reply(body: dict[str, Any]) -> Reply:
    user = body["messages"][-1]["content"]
    m = re.search(r"Song \d", user)
    return Reply(text=f"Coming up next, {m.group(0) if m else 'a song'} for you tonight.")


@pytest.fixture
def ollama() -> Any:
    with OllamaServer(reply_for=_reply) as srv:
        yield srv


def _env(srv: OllamaServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "JOB_COMPLETION", "AICP_SHARD", "OLLAMA_HOST"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OLLAMA_HOST=srv.url, **extra)
    return env


def _songs(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in SONGS))


def _check(merged: Path, base: Path) -> None:
    records = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [r["id"] for r in records] == [s["id"] for s in SONGS]
    assert all("_aicp" not in r and "error" not in r for r in records)
    assert all((base / r["audio"]["path"]).is_file() for r in records)


def _run_all(commands: list[tuple[list[str] | str, dict[str, str]]], cwd: Path) -> None:
    def one(item: tuple[list[str] | str, dict[str, str]]) -> subprocess.CompletedProcess[str]:
        cmd, env = item
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                              shell=isinstance(cmd, str))

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        for proc in pool.map(one, commands):
            assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.long  # about 20 s each (Piper voices every shard): make test-long
def test_slurm_array_and_dependent_merge(tmp_path: Path, ollama: OllamaServer) -> None:
    shutil.copytree(ROOT / "examples" / "slurm", tmp_path / "examples" / "slurm")
    _songs(tmp_path / "examples" / "songs.jsonl")
    sbatch = (tmp_path / "examples" / "slurm" / "aicp-array.sbatch").read_text()
    low, high = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", sbatch).groups())  # type: ignore[union-attr]
    count = high - low + 1
    _run_all([(["bash", "examples/slurm/aicp-array.sbatch"],
               _env(ollama, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_COUNT=str(count),
                    SLURM_ARRAY_TASK_MIN=str(low), SLURM_ARRAY_JOB_ID="77", SLURM_JOB_ID=str(78 + task)))
              for task in range(low, high + 1)], tmp_path)
    for k in range(count):
        assert (tmp_path / "aicp-out" / "slurm" / f"shard-{k}-of-{count}" / "02-voice.jsonl").is_file()
        assert (tmp_path / "aicp-out" / "slurm" / f"events-{k}.jsonl").read_text().strip()
    merge = subprocess.run(["bash", "examples/slurm/merge.sbatch"], cwd=tmp_path, env=_env(ollama),
                           capture_output=True, text=True, timeout=120)
    assert merge.returncode == 0, merge.stderr
    _check(tmp_path / "aicp-out" / "slurm" / "voiced.jsonl", tmp_path)

    # submit.sh: the array, then the merge with afterok on the array's job id (a stand-in sbatch)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/bash\necho "$@" >> "$SBATCH_LOG"\necho "4242;cluster"\n')
    (fake / "sbatch").chmod(0o755)
    env = _env(ollama, SBATCH_LOG=str(tmp_path / "sbatch.log"))
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    subprocess.run(["bash", "examples/slurm/submit.sh"], cwd=tmp_path, env=env, check=True, timeout=60)
    calls = (tmp_path / "sbatch.log").read_text().splitlines()
    assert calls == ["--parsable examples/slurm/aicp-array.sbatch",
                     "--dependency=afterok:4242 examples/slurm/merge.sbatch"]


@pytest.mark.long  # about 20 s each (Piper voices every shard): make test-long
def test_slurm_rerun_of_one_killed_shard_completes_the_merge(tmp_path: Path, ollama: OllamaServer) -> None:
    shutil.copytree(ROOT / "examples" / "slurm", tmp_path / "examples" / "slurm")
    _songs(tmp_path / "examples" / "songs.jsonl")
    env = {t: _env(ollama, SLURM_ARRAY_TASK_ID=str(t), SLURM_ARRAY_TASK_COUNT="2", SLURM_ARRAY_TASK_MIN="0")
           for t in range(2)}
    _run_all([(["bash", "examples/slurm/aicp-array.sbatch"], env[0])], tmp_path)
    merge = subprocess.run(["bash", "examples/slurm/merge.sbatch"], cwd=tmp_path, env=_env(ollama),
                           capture_output=True, text=True, timeout=120)
    assert merge.returncode == 3 and "shard 1/2" in merge.stderr
    assert not (tmp_path / "aicp-out" / "slurm" / "voiced.jsonl").exists()
    _run_all([(["bash", "examples/slurm/aicp-array.sbatch"], env[1])], tmp_path)
    merge = subprocess.run(["bash", "examples/slurm/merge.sbatch"], cwd=tmp_path, env=_env(ollama),
                           capture_output=True, text=True, timeout=120)
    assert merge.returncode == 0, merge.stderr
    _check(tmp_path / "aicp-out" / "slurm" / "voiced.jsonl", tmp_path)


@pytest.mark.long  # about 20 s each (Piper voices every shard): make test-long
def test_kubernetes_indexed_job_and_merge(tmp_path: Path, ollama: OllamaServer) -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "k8s" / "aicp-indexed-job.yaml").read_text()))
    by_name = {d["metadata"]["name"]: d for d in docs}
    data, config = tmp_path / "data", tmp_path / "config"

    def here(text: str) -> str:  # the volumes' mount paths → this test's folders
        return text.replace("/data", str(data)).replace("/config", str(config))

    config.mkdir()
    (config / "chain.yaml").write_text(here(by_name["aicp-chain"]["data"]["chain.yaml"]))
    _songs(data / "songs.jsonl")
    job = by_name["aicp-shards"]
    assert job["spec"]["completionMode"] == "Indexed"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    completions = job["spec"]["completions"]
    assert int(env["AICP_SHARD_COUNT"]) == completions
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/data", "/config"}
    env.pop("OLLAMA_HOST")  # the test server stands in for the node's Ollama
    _run_all([([here(a) for a in container["command"]], _env(ollama, JOB_COMPLETION_INDEX=str(i), **env))
              for i in range(completions)], tmp_path)
    merge = by_name["aicp-merge"]["spec"]["template"]["spec"]["containers"][0]
    proc = subprocess.run([here(a) for a in merge["command"]], cwd=tmp_path, env=_env(ollama),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _check(data / "out" / "voiced.jsonl", tmp_path)


def test_readme_gnu_parallel_one_liner(tmp_path: Path, ollama: OllamaServer) -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("parallel "))
    head, _, rest = line.partition(" && ")
    words = shlex.split(head)
    sep = words.index(":::")
    template, args = words[sep - 1], words[sep + 1:]
    _songs(tmp_path / "examples" / "songs.jsonl")
    # GNU parallel runs TEMPLATE once per argument ({} replaced), here without ssh (-S) and at once
    _run_all([(template.replace("{}", arg), _env(ollama)) for arg in args], tmp_path)
    proc = subprocess.run(rest, shell=True, cwd=tmp_path, env=_env(ollama), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (tmp_path / "scripts.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [s["id"] for s in SONGS]
    assert all(r["script"]["host"] == ollama.url for r in records)
    assert len(list(tmp_path.glob("run.shard-*-of-4.ledger"))) == 4
