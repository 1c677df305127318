"""``aicp-voice`` / ``aicp voice``: JSON Lines records in, audio files and records with ``audio`` out."""

from __future__ import annotations

from typing import Any, cast

import click

from ..backends.registry import create_tts
from ..errors import UsageError
from ..jsonl import RecordWriter, check_sources
from ..limits import AUDIO_FORMATS, BITRATE, LOUDNESS, SAMPLE_RATE, SEED, AudioFormat
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
  aicp-script < examples/songs-demo.jsonl > scripts.jsonl
  aicp-voice < scripts.jsonl > voiced.jsonl
  aicp-voice --format flac --sample-rate 48000 --out-dir out/audio scripts.jsonl
  aicp-voice --format mp3 --bitrate 128 --sample-rate 44100 scripts.jsonl
  aicp-voice --backend chatterbox --voice refs/host.wav --checkpoint-dir /models/chatterbox scripts.jsonl
  aicp-voice --text-field topic --persona max examples/topics.jsonl
  aicp-voice --lexicon examples/lexicon.yaml scripts.jsonl   # say names right (aicp voices --help)
  aicp-voice --checkpoint voice.ledger --resume scripts.jsonl > voiced.jsonl
  aicp-script -p ./rosa.yaml < examples/songs.jsonl | aicp-voice    # the persona travels in script.persona_voice
  aicp-voice --log takes.db scripts.jsonl                  # adds audio paths to the logged takes
  aicp-voice --verify --require-checks scripts.jsonl       # files that do not say their script fail
  aicp-script -t podcast-dialogue -p sam -p julie examples/topics.jsonl | aicp-voice --captions vtt
  aicp-voice --shard auto --out-dir out/audio scripts.jsonl > voiced.$SLURM_ARRAY_TASK_ID.jsonl

\b
Files: OUT_DIR/{{id}}_{{persona}}_{{take}}.{{ext}}, written under a temporary name
and renamed only after they pass the checks (not empty, not silent, 0.5-5
words per second). A dialogue script (script.turns) is voiced turn by turn,
each host with its persona's voice, 0.25-0.45 s of silence between turns;
audio.turns gives each turn's speaker, start and end in seconds.

{EPILOG_STATUS}
"""


@click.command("voice", cls=BackendCommand, backend_kind="tts", epilog=EPILOG)
@version_option
@input_files
@click.option("--backend", type=BackendChoice("tts"), default="auto", show_default=True,
              help="auto: chatterbox when installed and a GPU is present, else embedded piper; without "
                   "--voice, a persona that names a voice of another installed backend speaks with it "
                   "(voice.kokoro.voice: kokoro). The backends' own settings follow.")
@click.option("-p", "--persona", metavar="NAME|PATH", type=NameOrPath(), shell_complete=complete_name("persona"),
              help="Persona for records that name none (record persona/dj, then script.persona win). "
                   "A persona FILE is also used for records that name it, over the settings their "
                   "script.persona_voice carries (needed when its voice is a file).")
@click.option("--lexicon", multiple=True, type=PathValue(dir_okay=False), metavar="FILE",
              help="A pronunciation lexicon (YAML: word or name → say: respelling and/or phonemes: IPA) "
                   "over the user folder's lexicon/ and the persona's lexicon: entries; repeatable, later "
                   "files win. Try an entry with: aicp voices say TEXT -o try.wav --lexicon FILE.")
@click.option("--text-field", metavar="A.B.C", help="Dotted path of the text [default: script.text, then text].")
@click.option("-o", "--out-dir", default="aicp-out/audio", show_default=True, type=PathValue(file_okay=False),
              help="Folder of the audio files.")
@click.option("-f", "--format", "audio_format", type=click.Choice(list(AUDIO_FORMATS)), default="wav",
              show_default=True, help="Audio file format.")
@click.option("--sample-rate", type=click_range(SAMPLE_RATE), metavar="HZ",
              help="Resample to HZ (soxr) [default: the backend's rate].")
@click.option("--bitrate", type=click_range(BITRATE), metavar="KBPS",
              help="mp3: constant bit rate in kbit/s (32-320 at 32 kHz and up, 8-160 at 16-24 kHz; "
                   "the nearest standard rate) [default: the encoder's variable rate].")
@click.option("--loudness", type=click_range(LOUDNESS), default=-16.0, show_default=True, metavar="LUFS",
              help="Integrated loudness target (ITU-R BS.1770); sample peaks stay below -1 dBFS.")
@click.option("--no-normalize", is_flag=True, help="Keep the backend's raw level (no loudness normalization).")
@click.option("--seed", type=click_range(SEED), help="Seed for every record, 0 to 2**32-1 [default: each persona's fixed seed].")
@click.option("--barrier/--no-barrier", default=True, show_default=True,
              help="Read all input before loading the model (frees the GPU for the LLM upstream); "
                   "--no-barrier loads at once and voices records as they arrive.")
@click.option("--verify", is_flag=True,
              help="Listening check: transcribe each file offline (PocketSphinx) and add audio.checks "
                   "(recall: share of the script's words heard; failed: silent, unintelligible, "
                   "truncated) [default: off; a failed file is kept, with a warning].")
@click.option("--captions", type=click.Choice(["vtt", "srt"]),
              help="Write captions beside each audio file (same name, .vtt or .srt; audio.captions): one cue "
                   "per dialogue turn, WebVTT with <v Name> voice spans, SRT with 'Name: ' [default: none].")
@click.option("--require-checks", is_flag=True,
              help="A script that failed its checks (script.checks.passed: false) is not voiced, and "
                   "a file that failed its audio checks (audio.checks: `fits`, longer than "
                   "script.max_seconds or intro_seconds; --verify) is removed: its record gets an "
                   "error (exit 3) [default: voiced and kept, with a warning].")
@click.option("--overwrite", is_flag=True,
              help="Replace audio files an earlier run wrote in --out-dir [default: such a file stops "
                   "the run, exit 2, before any model loads; --resume keeps what the ledger vouches for].")
@log_option
@shard_options
@run_options
def voice_command(files: tuple[str, ...], backend: str, persona: str | None, lexicon: tuple[str, ...],
                  text_field: str | None, out_dir: str, audio_format: str, sample_rate: int | None,
                  bitrate: int | None, loudness: float, no_normalize: bool, seed: int | None,
                  barrier: bool, verify: bool, captions: str | None, require_checks: bool, overwrite: bool, log: str | None, shard: str | None,
                  shard_count: int | None, resume: bool, checkpoint: str | None,
                  retries: int, strict: bool, stream: bool, quiet: bool, traceback: bool,
                  **settings: object) -> int:
    """Speak the script of each JSON Lines record with a local TTS model.

    Reads records from FILES (or stdin, `-`), writes one audio file per record
    with text (script.text, else text) and prints each record with an `audio`
    object added (path, format, sample_rate, channels, seconds, backend, voice,
    chunks, rtf, loudness_lufs, key; turns and voices for a dialogue; captions with --captions; checks when the take has a time limit,
    `fits`, or with --verify, the listening check), every other field kept: one flushed JSON line per record, in
    input order. A record that fails gets an `error` object instead, no file
    is left for it, and the batch goes on.
    """
    from ..shards import shard_run
    from ..stages.commands import run_voice  # not needed for --help
    from ..stages.voice import VoiceOptions

    if bitrate is not None and audio_format != "mp3":
        raise UsageError(f"--bitrate applies to mp3 files, not {audio_format}", hint="add --format mp3")
    shard_spec, checkpoint = resolve_shard(shard, shard_count, checkpoint)
    emitter = make_emitter(stream, quiet, "aicp-voice")
    check_sources(files)  # a missing input is said before the backend notice
    tts = create_tts(backend, notice=emitter.message, **backend_settings("tts", settings))
    options = VoiceOptions(out_dir=out_dir, format=cast(AudioFormat, audio_format), sample_rate=sample_rate,
                           bitrate=bitrate,
                           loudness=None if no_normalize else loudness, text_field=text_field,
                           persona=persona, seed=seed, retries=retries, resume=resume, strict=strict,
                           require_checks=require_checks, overwrite=overwrite, lexicon=lexicon,
                           verify=verify, captions=cast(Any, captions))
    writer = RecordWriter()
    try:
        stats = run_voice(files, options, backend=tts, emitter=emitter, write=writer.write,
                          checkpoint=checkpoint, barrier=barrier, stdout=writer.stream, log=log,
                          shard=shard_run(shard_spec))
    finally:
        emitter.close()
    return finish(emitter, stats)


def main() -> None:
    """Console script ``aicp-voice``."""
    entry(voice_command, "aicp-voice")
