"""README and --help name files and commands that exist ."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs import ROOT, aicp_subcommands, commands, example_paths, help_examples, readme_blocks

#: Paths examples may name that a reader supplies on their own machine (a GPU host's files).
PLACEHOLDERS = {"refs/julie.wav", "refs/host.wav", "/models/chatterbox",
                "./rosa.yaml"}  # the persona file a reader writes (aicp personas show julie > rosa.yaml)
#: Programs examples may run besides aicp's own.
TOOLS = {"make", "mkdir", "jq", "curl", "pip", "export", "eval", ".", "head", "ls", "cat", "sed", "parallel",
         "sqlite-utils"}
#: Options whose value is a file or folder the command writes.
OUTPUT_OPTIONS = {"--checkpoint", "--out-dir", "-o", "--work-dir", "--data-dir", "--checkpoint-dir"}
FILE_LIKE = re.compile(r"\.(jsonl|json|yaml|yml|wav|onnx|gguf|ledger)$")


def _sources() -> list[tuple[str, str]]:
    blocks = [(f"README.md:{b.line}", b.text) for b in readme_blocks()]
    return blocks + [(f"{path} --help", text) for path, text in help_examples().items()]


SOURCES = _sources()


def test_there_are_examples_to_check() -> None:
    assert len(SOURCES) > 15 and any("run-chain" in name for name, _ in SOURCES)
    assert sum(b.runnable for b in readme_blocks()) >= 2


@pytest.mark.parametrize("where,text", SOURCES, ids=[w for w, _ in SOURCES])
def test_examples_name_files_that_exist(where: str, text: str) -> None:
    written: set[str] = set()
    families: list[re.Pattern[str]] = []  # `> scripts.$K.jsonl`, `> scripts.{}.jsonl`: one file per K
    for tokens in commands(text):
        ours = Path(tokens[0]).name.startswith("aicp")
        for i, tok in enumerate(tokens):
            prev = tokens[i - 1] if i else ""
            if prev in (">", "2>") or (ours and prev in OUTPUT_OPTIONS):
                written.add(tok)
                if "{}" in tok or "$" in tok:
                    families.append(re.compile(re.sub(r"\\\{\\\}|\\\$\w+", r"[^/]+", re.escape(tok)) + "$"))
                continue
            if " " in tok:
                continue  # a command line given to another program (parallel '...')
            value = tok.lstrip("@")
            if prev == "<" or (ours and prev in ("--config", "-c")):
                pass  # a file whatever its name
            elif not FILE_LIKE.search(value) or tok.startswith("-") or (prev.startswith("-") and not ours):
                continue
            if any(f.match(value) for f in families) or any(c in value for c in "*?["):
                continue  # one of a family of outputs, or a glob over them
            if value in written or value in PLACEHOLDERS or value == "-" or value.startswith(("http", "$", "localhost:")):
                continue
            assert (ROOT / value).exists(), f"{where}: {' '.join(tokens)}: {value} does not exist"


@pytest.mark.parametrize("where,text", SOURCES, ids=[w for w, _ in SOURCES])
def test_examples_run_commands_that_exist(where: str, text: str) -> None:
    subs = aicp_subcommands()
    make_targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for tokens in commands(text):
        words = [t for t in tokens if "=" not in t.split("/")[0] or t.startswith("-")]
        if not words or words[0] in ("<", ">", "2>"):
            continue
        program = Path(words[0]).name if words[0].startswith(".venv/bin/") else words[0]
        assert program in TOOLS | {"aicp", "aicp-script", "aicp-voice"}, f"{where}: unknown program {program}"
        if program == "aicp":
            assert words[1] in subs, f"{where}: no aicp subcommand {words[1]}"
        if program == "make" and len(words) > 1 and "=" not in words[1]:
            assert words[1] in make_targets, f"{where}: no make target {words[1]}"


def test_every_examples_path_named_anywhere_exists() -> None:
    texts = {"README.md": (ROOT / "README.md").read_text(), "examples/Makefile": (ROOT / "examples/Makefile").read_text()}
    texts.update({f"man/{p.name}": p.read_text() for p in (ROOT / "man" / "man1").glob("*.1")})
    texts.update({f"{path} --help": text for path, text in help_examples().items()})
    texts.update({str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "examples").glob("*.yaml")})
    named = {(where, p.replace("\\-", "-")) for where, text in texts.items()
             for p in example_paths(text.replace("\\-", "-"))}
    assert len(named) > 10
    missing = sorted((w, p) for w, p in named if not (ROOT / p).exists() and not p.endswith("/"))
    assert not missing, missing


def test_the_old_placeholder_names_are_gone() -> None:
    for where, text in SOURCES:
        assert "pipeline.yaml" not in text, where


@pytest.mark.parametrize("first_line", ["aicp personas new rosa", "aicp-script --log takes.db"])
def test_the_own_templates_and_take_log_blocks_run_as_written_for_a_new_user(tmp_path: Path,
                                                                            first_line: str) -> None:
    """README's "Your own templates and personas" and "Take log" blocks, in a fresh HOME (no
    ~/.config/aicp yet), with test doubles as the models: the first redirects into a folder
    nothing has made yet, the second reads a log it has just pointed AICP_LOG_DB at."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("jq") is None:
        pytest.skip("needs jq")
    [block] = [b for b in readme_blocks() if b.text.startswith(first_line)]
    run = f'"{sys.executable}" -m tests.chain_doubles'
    script = (f"aicp() {{ {run} \"$@\"; }}\naicp-script() {{ {run} script \"$@\"; }}\n"
              f"aicp-voice() {{ {run} voice \"$@\"; }}\ncd {tmp_path}\n" + block.text)
    env = {k: v for k, v in os.environ.items() if k not in ("AICP_HOME", "XDG_CONFIG_HOME", "AICP_LOG_DB")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), TERM="dumb",
               PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "home").mkdir()
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    if first_line.startswith("aicp-script"):
        assert "takes" in proc.stdout.decode() and (tmp_path / "takes.db").is_file()
        return
    folder = tmp_path / "home" / ".config" / "aicp"
    assert (folder / "personas" / "rosa.yaml").is_file()
    assert (folder / "templates" / "my-intro.yaml").read_text().startswith("name: my-intro\n")
    assert len(os.listdir(tmp_path / "out")) == 4 and "rosa\tuser" in proc.stdout.decode()
