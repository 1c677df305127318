"""``aicp-script`` / ``aicp script``: JSON Lines records in, records with a generated ``script`` out."""

from __future__ import annotations

import click

from ..backends.registry import LLM_CHOICES, create_llm
from ..jsonl import RecordWriter, check_sources
from ..limits import (
    BATCH,
    BEST_OF,
    JOBS,
    MAX_TOKENS,
    SEED,
    TEMPERATURE,
    THREADS,
    TIMEOUT,
    TOP_P,
    VARIANTS,
    WORDS,
)
from .errors import entry
from .options import (
    EPILOG_STATUS,
    AicpCommand,
    click_range,
    complete_name,
    finish,
    input_files,
    log_option,
    make_emitter,
    resolve_shard,
    run_options,
    shard_options,
    version_option,
)

EPILOG = f"""\b
Examples:
  aicp-script --template song-intro --persona julie < examples/songs.jsonl
  aicp-script --template podcast-segment examples/topics.jsonl --stream 2>progress.jsonl
  aicp-script --backend ollama --model llama3.2 --jobs 4 examples/songs.jsonl > scripts.jsonl
  aicp-script --checkpoint run.ledger --resume examples/songs.jsonl > scripts.jsonl
  aicp-script --best-of 4 --batch 8 --require-checks < examples/songs.jsonl
  aicp-script -t podcast-longform --words 2000 --checkpoint pod.ledger --resume examples/topics.jsonl
  aicp-script -p ./rosa.yaml --log takes.db < examples/songs.jsonl | aicp-voice --log takes.db
  aicp logs --log takes.db -n 3
  aicp-script --shard 1/4 --checkpoint run.ledger --resume examples/songs.jsonl > scripts.1.jsonl
  aicp-script --backend ollama --host http://gpu1:11434,http://gpu2:11434 --jobs 4 examples/songs.jsonl

{EPILOG_STATUS}
"""


@click.command("script", cls=AicpCommand, epilog=EPILOG)
@version_option
@input_files
@click.option("-t", "--template", default="song-intro", show_default=True, metavar="NAME|PATH",
              shell_complete=complete_name("template"),
              help="Prompt template: a name (`aicp templates list`: yours, then built-in) or a YAML file.")
@click.option("-p", "--persona", metavar="NAME|PATH", shell_complete=complete_name("persona"),
              help="Persona for records without a `persona`/`dj` field (default: julie): a name "
                   "(`aicp personas list`) or a YAML file.")
@click.option("--variants", type=click_range(VARIANTS), default=1, show_default=True,
              help="Takes per record; each take is its own output record (script.take).")
@click.option("--backend", type=click.Choice(LLM_CHOICES), default="auto", show_default=True,
              help="auto: a .gguf --model → llamacpp; Ollama if it answers; else embedded llama.cpp.")
@click.option("-m", "--model", metavar="NAME|PATH.gguf",
              help="Ollama model name, or a GGUF file for llamacpp (default: bundled SmolLM2-135M).")
@click.option("--host", metavar="URL", multiple=True,
              help="Ollama server URL; repeat it (or give a comma list) to spread requests over several "
                   "hosts, --jobs per host, failing over when one goes down "
                   "[default: $OLLAMA_HOSTS, else $OLLAMA_HOST, else http://127.0.0.1:11434].")
@click.option("--temperature", type=click_range(TEMPERATURE), help="Sampling temperature (template default).")
@click.option("--top-p", type=click_range(TOP_P), help="Nucleus sampling (template default).")
@click.option("--seed", type=click_range(SEED), help="Base seed (0 to 2**32-1); take N uses SEED+N (default: engine's choice).")
@click.option("--max-tokens", type=click_range(MAX_TOKENS), help="Completion token limit (template default).")
@click.option("-j", "--jobs", type=click_range(JOBS), default=1, show_default=True,
              help="Concurrent requests for backends that serve them (Ollama); output order unchanged.")
@click.option("--keep-alive", metavar="DURATION",
              help="Ollama keeps the model loaded this long after the run (e.g. 10m) "
                   "[default: unload at the end and wait until /api/ps drops it].")
@click.option("--timeout", type=click_range(TIMEOUT), default=300.0, show_default=True, metavar="SECONDS",
              help="Ollama: seconds to wait for the connection and for each read of a reply; a request "
                   "silent for longer fails its record (a transient error: --retries applies).")
@click.option("--threads", type=click_range(THREADS), metavar="N",
              help="llamacpp: CPU threads [default: every CPU this process may run on]; give each "
                   "of several runs on one machine its share of the cores.")
@click.option("--best-of", type=click_range(BEST_OF), default=1, show_default=True, metavar="N",
              help="Write N candidates per take (seeds derived from the take's seed) and keep the one "
                   "that passes the template's checks closest to its target length.")
@click.option("--batch", type=click_range(BATCH), default=1, show_default=True, metavar="B",
              help="llamacpp: keep the takes of B records decoding together in one batch, "
                   "refilled as each ends (output order unchanged); other backends use --jobs.")
@click.option("--require-checks", is_flag=True,
              help="A take that fails its checks (script.checks) becomes a record error (exit 3) "
                   "instead of being written with passed: false.")
@click.option("--words", type=click_range(WORDS), metavar="N",
              help="Long-form templates: scale the section word targets to N words in all.")
@click.option("--work-dir", default="aicp-out/longform", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False),
              help="Long-form templates: chunk files and checkpoints go to DIR/{id}/ (--resume continues there).")
@log_option
@shard_options
@run_options
def script_command(files: tuple[str, ...], template: str, persona: str | None, variants: int,
                   backend: str, model: str | None, host: tuple[str, ...], temperature: float | None,
                   top_p: float | None, seed: int | None, max_tokens: int | None, jobs: int,
                   keep_alive: str | None, timeout: float, threads: int | None, best_of: int, batch: int, require_checks: bool,
                   words: int | None, work_dir: str, log: str | None, shard: str | None, shard_count: int | None,
                   resume: bool,
                   checkpoint: str | None, retries: int,
                   strict: bool, stream: bool, quiet: bool, traceback: bool) -> int:
    """Generate a script for each JSON Lines record with a local LLM.

    Reads records from FILES (or stdin, `-`) and writes each record to stdout,
    every field kept, plus a `script` object (text, words, template, persona,
    take, backend, model, tokens, seconds, key, checks): one compact JSON line
    per record, flushed, in input order. A record that fails gets an `error`
    object instead and the batch goes on.

    Every take is checked without a model call against its template's checks
    (`aicp templates show NAME`): mentions, no_echo, grounded, length,
    complete. A take cut by --max-tokens is trimmed back to its last whole
    sentence first.
    """
    from ..stages.script import ScriptOptions, run_script  # heavy-ish: not needed for --help

    emitter = make_emitter(stream, quiet, "aicp-script")
    options = ScriptOptions(template=template, persona=persona, variants=variants,
                            temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                            jobs=jobs, retries=retries, resume=resume, strict=strict,
                            words=words, work_dir=work_dir, timeout=timeout, threads=threads, best_of=best_of, batch=batch,
                            require_checks=require_checks)
    options.validate()  # usage errors (exit 2) before any backend is contacted
    from ..shards import fanout_takes, shard_run

    check_sources(files)  # a missing input is said before the backend notice
    shard_spec, checkpoint = resolve_shard(shard, shard_count, checkpoint)
    extra = {"n_threads": threads} if threads else {}
    if threads:
        from ..backends.llamacpp import default_threads

        available = default_threads()
        if threads > available:
            emitter.message(f"--threads {threads} is more than the {available} CPUs this process may "
                            "run on: llama.cpp's threads will wait on each other (llamacpp only)", "warning")
    llm = create_llm(backend, model=model, host=list(host) or None, keep_alive=keep_alive, timeout=timeout,
                     notice=emitter.message, **extra)
    writer = RecordWriter()
    try:
        stats = run_script(files, options, backend=llm, emitter=emitter,
                           write=writer.write, checkpoint=checkpoint, stdout=writer.stream, log=log,
                           shard=shard_run(shard_spec, fanout_takes(variants)))
    finally:
        emitter.close()
    return finish(emitter, stats)


def main() -> None:
    """Console script ``aicp-script``."""
    entry(script_command, "aicp-script")
