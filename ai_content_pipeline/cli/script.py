"""``aicp-script`` / ``aicp script``: JSON Lines records in, records with a generated ``script`` out."""

from __future__ import annotations

import click

from ..airtime import DEFAULT_WORDS_PER_SECOND, PIPER_WORDS_PER_SECOND
from ..backends.registry import create_llm
from ..jsonl import RecordWriter, check_sources
from ..limits import (
    AIR_SECONDS,
    BATCH,
    BEST_OF,
    JOBS,
    MAX_TOKENS,
    SEED,
    TEMPERATURE,
    TOP_P,
    VARIANTS,
    WORDS,
)
from .backend_choice import BackendChoice
from .errors import entry
from .options import (
    EPILOG_STATUS,
    BackendCommand,
    NameOrPath,
    PathValue,
    backend_settings,
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
  aicp-script -t podcast-dialogue -p sam -p julie --best-of 4 examples/topics.jsonl
  aicp-script --backend ollama --model llama3.2 --jobs 4 examples/songs.jsonl > scripts.jsonl
  aicp-script --checkpoint run.ledger --resume examples/songs.jsonl > scripts.jsonl
  aicp-script --checkpoint run.ledger --resume --redo-failed examples/songs.jsonl > scripts.jsonl
  aicp-script --recheck --checkpoint run.ledger scripts.jsonl > checked.jsonl  # after editing script.text
  aicp-script --best-of 4 --batch 8 --require-checks < examples/songs.jsonl
  aicp-script --max-seconds 15 < examples/songs.jsonl | aicp-voice --require-checks
  aicp-script -t podcast-longform --words 2000 --checkpoint pod.ledger --resume examples/topics.jsonl
  aicp-script -p ./rosa.yaml --log takes.db < examples/songs.jsonl | aicp-voice --log takes.db
  aicp logs --log takes.db -n 3
  aicp-script --shard 1/4 --checkpoint run.ledger --resume examples/songs.jsonl > scripts.1.jsonl
  aicp-script --backend ollama --host http://gpu1:11434,http://gpu2:11434 --jobs 4 examples/songs.jsonl

{EPILOG_STATUS}
"""


@click.command("script", cls=BackendCommand, backend_kind="llm", epilog=EPILOG)
@version_option
@input_files
@click.option("-t", "--template", default="song-intro", show_default=True, metavar="NAME|PATH", type=NameOrPath(),
              shell_complete=complete_name("template"),
              help="Prompt template: a name (`aicp templates list`: yours, then built-in) or a YAML file.")
@click.option("-p", "--persona", "personas", metavar="NAME|PATH", type=NameOrPath(), multiple=True,
              shell_complete=complete_name("persona"),
              help="Persona for records without a `persona`/`dj` field (default: julie): a name "
                   "(`aicp personas list`) or a YAML file. Dialogue templates (podcast-dialogue, "
                   "radio-banter): repeat it for the hosts, the first opens (-p sam -p julie); records "
                   "without a `hosts` field get them.")
@click.option("--variants", type=click_range(VARIANTS), default=1, show_default=True,
              help="Takes per record; each take is its own output record (script.take).")
@click.option("--backend", type=BackendChoice("llm"), default="auto", show_default=True,
              help="auto: a .gguf --model → llamacpp; Ollama if it answers; else embedded llama.cpp. "
                   "The backends' own settings follow.")
@click.option("-m", "--model", metavar="NAME|PATH.gguf", type=NameOrPath(),
              help="Ollama model name, or a GGUF file for llamacpp (default: bundled SmolLM2-135M).")
@click.option("--temperature", type=click_range(TEMPERATURE), help="Sampling temperature (template default).")
@click.option("--top-p", type=click_range(TOP_P), help="Nucleus sampling (template default).")
@click.option("--seed", type=click_range(SEED), help="Base seed (0 to 2**32-1); take N uses SEED+N (default: engine's choice).")
@click.option("--max-tokens", type=click_range(MAX_TOKENS), help="Completion token limit (template default).")
@click.option("-j", "--jobs", type=click_range(JOBS), default=1, show_default=True,
              help="Concurrent requests for backends that serve them (Ollama); output order unchanged.")
@click.option("--best-of", type=click_range(BEST_OF), default=1, show_default=True, metavar="N",
              help="Write N candidates per take (long-form: per section; seeds derived from the take's "
                   "seed) and keep the one that passes the template's checks closest to its target length.")
@click.option("--batch", type=click_range(BATCH), default=1, show_default=True, metavar="B",
              help="llamacpp: keep the takes of B records decoding together in one batch, "
                   "refilled as each ends (output order unchanged); other backends use --jobs.")
@click.option("--require-checks", is_flag=True,
              help="A take that fails its checks (script.checks) becomes a record error (exit 3) "
                   "instead of being written with passed: false.")
@click.option("--redo-failed", is_flag=True,
              help="With --resume: make again the takes of the ledger whose checks failed, with new "
                   "seeds derived from the take's seed and attempt (reruns are identical); serve the "
                   "others. A take that fails again can be redone again (script.attempt 2, 3...).")
@click.option("--recheck", is_flag=True,
              help="Make no take and call no model: run the template's checks again on each record's "
                   "script.text (edited by hand), update words and checks, set script.edited and a new "
                   "script.key, so `aicp-voice --resume` voices the new text. Give it the --template the "
                   "takes were made with; with their --checkpoint, takes whose text is unchanged pass through.")
@click.option("--max-seconds", type=click_range(AIR_SECONDS), metavar="S",
              help="A take must fit S seconds when voiced (a record's intro_seconds too: the smaller "
                   "counts): the word target is capped at the words the persona's voice says in S "
                   "seconds, a longer take fails `length`, and aicp-voice checks the file (`fits`).")
@click.option("--voice-backend", default="piper", show_default=True, metavar="NAME",
              help=f"The TTS backend whose pace turns seconds into words: piper ({PIPER_WORDS_PER_SECOND} "
                   "words/s at length_scale 1.0, divided by the persona's length_scale); any other "
                   f"{DEFAULT_WORDS_PER_SECOND} words/s.")
@click.option("--song-field", default="file", show_default=True, metavar="FIELD",
              help="Record field naming the song's audio file: its tags (mutagen) fill the missing "
                   "artist, title, album, year and genre. '' reads no tags.")
@click.option("--words", type=click_range(WORDS), metavar="N",
              help="Long-form templates: scale the section word targets to N words in all.")
@click.option("--work-dir", default="aicp-out/longform", show_default=True, metavar="DIR",
              type=PathValue(file_okay=False),
              help="Long-form templates: chunk files and checkpoints go to DIR/{id}/ (--resume continues there).")
@click.option("--overwrite", is_flag=True,
              help="Long-form templates: replace the work files an earlier run left in DIR/{id}/ "
                   "[default: such a file stops the run, exit 2, unless --resume].")
@log_option
@shard_options
@run_options
def script_command(files: tuple[str, ...], template: str, personas: tuple[str, ...], variants: int,
                   backend: str, model: str | None, temperature: float | None,
                   top_p: float | None, seed: int | None, max_tokens: int | None, jobs: int,
                   best_of: int, batch: int, require_checks: bool, redo_failed: bool, recheck: bool,
                   max_seconds: float | None, voice_backend: str, song_field: str,
                   words: int | None, work_dir: str, overwrite: bool, log: str | None, shard: str | None, shard_count: int | None,
                   resume: bool,
                   checkpoint: str | None, retries: int,
                   strict: bool, stream: bool, quiet: bool, traceback: bool, **settings: object) -> int:
    """Generate a script for each JSON Lines record with a local LLM.

    Reads records from FILES (or stdin, `-`) and writes each record to stdout,
    every field kept, plus a `script` object (text, words, template, persona,
    take, backend, model, tokens, seconds, key, checks): one compact JSON line
    per record, flushed, in input order. A record that fails gets an `error`
    object instead and the batch goes on.

    Every take is checked without a model call against its template's checks
    (`aicp templates show NAME`): mentions, no_echo, grounded, length,
    complete; a dialogue template's takes also get script.turns (speaker,
    text) and the dialogue checks (speakers, turn_words, clean_turns,
    alternate, stray). A take cut by --max-tokens is trimmed back to its last whole
    sentence first. A record naming its song's audio file (`file`) gets the
    artist, title, album, year and genre it lacks from the file's tags.
    --resume --redo-failed makes the failed takes again; --recheck checks
    takes whose script.text a person edited.
    """
    from ..stages.commands import run_script  # heavy-ish: not needed for --help
    from ..stages.script import NoModel, ScriptOptions

    emitter = make_emitter(stream, quiet, "aicp-script")
    options = ScriptOptions(template=template, persona=personas[0] if personas else None,
                            personas=list(personas) if len(personas) > 1 else None, variants=variants,
                            temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                            jobs=jobs, retries=retries, resume=resume, strict=strict,
                            words=words, work_dir=work_dir, best_of=best_of, batch=batch,
                            require_checks=require_checks, overwrite=overwrite,
                            redo_failed=redo_failed, recheck=recheck, max_seconds=max_seconds,
                            voice_backend=voice_backend, song_field=song_field or None)
    options.validate()  # usage errors (exit 2) before any backend is contacted
    from ..shards import fanout_takes, shard_run

    check_sources(files)  # a missing input is said before the backend notice
    shard_spec, checkpoint = resolve_shard(shard, shard_count, checkpoint)
    llm = NoModel() if recheck else create_llm(backend, model=model, notice=emitter.message,
                                               **backend_settings("llm", settings))
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
