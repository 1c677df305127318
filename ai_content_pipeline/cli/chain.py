"""``aicp run-chain``: run a chain file's steps (script → voice) in one process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..events import event_json
from ..jsonl import RecordWriter
from ..report import step_summary_text
from .errors import STAGE_OPTIONS, note_flag
from .options import (
    EPILOG_STATUS,
    AicpCommand,
    PathValue,
    log_option,
    make_emitter,
    version_option,
)

EPILOG = f"""\b
Examples:
  aicp run-chain --config examples/radio-intros.yaml
  aicp run-chain --config examples/radio-intros.yaml --dry-run
  aicp run-chain --config examples/radio-intros.yaml --set steps.0.persona=max --set steps.1.enabled=false
  aicp run-chain --config examples/radio-intros.yaml --resume
  aicp run-chain --config examples/radio-intros.yaml --shard auto --resume   # one task of a Slurm array
  aicp run-chain --config examples/radio-intros.yaml --host gpu1:11434 --host gpu2:11434
  aicp run-chain --config examples/radio-intros.yaml --stream 2>/dev/null | jq '.outputs'
  aicp run-chain --config examples/radio-intros.yaml --stream 2>progress.jsonl | jq -r '.outputs.final.path'
  aicp run-chain --config examples/radio-intros.yaml --stream 2>&1 >/dev/null | jq -r 'select(.event == "step_complete") | "Step \\(.step): $\\(.cost)"'

\b
Files (under output_dir):
  NN-TYPE.jsonl          records after step NN (complete file, renamed at step end)
  NN-TYPE.ledger.jsonl   checkpoint ledger of step NN (--resume)
  audio/                 audio files of the voice step

{EPILOG_STATUS}
"""


def stage_options() -> set[str]:
    """The options of aicp-script and aicp-voice: the words library errors use for settings,
    which run-chain's hints turn into chain keys (:func:`~ai_content_pipeline.cli.errors.fit_hint`)."""
    from .script import script_command
    from .voice import voice_command

    return {opt for command in (script_command, voice_command) for param in command.params
            for opt in (*param.opts, *param.secondary_opts)}


def _print_json(obj: dict[str, Any], encode: Callable[[dict[str, Any]], bytes] | None = None) -> None:
    """The command's output: one JSON line on stdout (the plan, or the result as a
    ``pipeline_complete`` event). A closed stdout: OutputClosed (141); a full one: an error (1)."""
    RecordWriter(encode=encode).write(obj)


@click.command("run-chain", cls=AicpCommand, epilog=EPILOG)
@version_option
@click.option("-c", "--config", required=True, metavar="PATH|-",
              type=PathValue(readable=False),  # checks nothing (the chain loader does); completes a file
              help="Chain file (YAML: name, input, output_dir, steps); `-` reads it from stdin.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a chain key before validation, e.g. steps.0.persona=max "
                   "(VALUE is a YAML scalar; repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Validate and print the plan (steps, record count, backends `auto` picks) "
                   "as JSON; load no model.")
@click.option("--resume", is_flag=True,
              help="Reuse the steps' ledgers in output_dir: finish a killed run without redoing work.")
@click.option("--overwrite", is_flag=True,
              help="Replace the files an earlier run wrote in output_dir (step records, audio, long-form "
                   "work files) [default: such a file stops the chain, exit 2, unless --resume].")
@click.option("--shard", metavar="K/N|auto",
              help="Run the chain on the input lines whose 0-based position is K mod N (overrides the "
                   "chain's `shard` key); files go to output_dir/shard-K-of-N/ for `aicp merge`.")
@click.option("--shard-count", type=click.IntRange(1), metavar="N",
              help="Shard count for --shard auto on a Kubernetes Indexed Job [default: $AICP_SHARD_COUNT].")
@click.option("--host", metavar="URL", multiple=True,
              help="Ollama server URL for every script step (overrides the steps' `host` keys); "
                   "repeatable or a comma list: requests spread over the hosts, `jobs` per host, "
                   "failing over when one goes down [default: the step's host, $OLLAMA_HOSTS, $OLLAMA_HOST].")
@click.option("--stream", is_flag=True, callback=note_flag,
              help="Events as JSON Lines on stderr (schema_version 1); pipeline_complete on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but warnings and errors.")
@click.option("--traceback", is_flag=True, callback=note_flag, help="Show the Python traceback of an error.")
@log_option
def run_chain_command(config: str, overrides: tuple[str, ...], dry_run: bool, resume: bool, overwrite: bool,
                      shard: str | None, shard_count: int | None, host: tuple[str, ...],
                      stream: bool, quiet: bool, traceback: bool, log: str | None) -> int:
    """Run the steps of a chain file one after the other, one model resident at a time.

    Each step runs over all records, saves them as output_dir/NN-TYPE.jsonl and
    unloads its model before the next step's model loads. Stdout carries one
    JSON object, the pipeline_complete result (success, steps_completed,
    total_steps, total_cost, total_time, outputs, error, records, tokens,
    audio_seconds); outputs.final.path names the chain's final records file.
    With --stream, stderr carries the events (pipeline_start, step_start,
    step_complete, step_error and the stages' record and model events).
    """
    # not needed for --help: imported here
    from ..chain.runner import ChainRunner, check_stdin_once, plan_chain, plan_status
    from ..chain.spec import load_chain, with_hosts
    from ..shards import shard_chain

    spec = shard_chain(with_hosts(load_chain(config, overrides), list(host)), shard, shard_count)
    check_stdin_once(config, spec)
    if dry_run:
        plan = plan_chain(spec)
        _print_json(plan)
        return int(plan_status(plan))
    emitter = make_emitter(stream, quiet, "aicp run-chain")

    def print_result(result: dict[str, Any]) -> None:  # with --stream the emitter printed it
        if not stream:
            _print_json(emitter.envelope("pipeline_complete", emitter.result_fields(result)), event_json)

    runner = ChainRunner(spec, emitter=emitter, resume=resume, log=log, overwrite=overwrite)
    try:
        outcome = runner.run()
    except Exception:
        if runner.completed is not None:  # the result still reaches stdout
            print_result(runner.completed)
        raise
    finally:
        emitter.close()
    if not stream:
        for step in outcome.result["outputs"]["steps"]:
            emitter.message(step_summary_text(step))
    print_result(outcome.result)
    if outcome.error is not None:
        raise outcome.error  # reported by the one error handler, with the chain's exit status
    return int(outcome.exit_status)


#: run-chain's hints name chain keys for the stage options it lacks (cli.errors.fit_hint)
setattr(run_chain_command, STAGE_OPTIONS, stage_options)
