"""``aicp voices``: speak one line to a file (``say``) and list the voices installed (``list``)."""

from __future__ import annotations

import click

from ..jsonl import RecordWriter
from ..limits import SEED
from .backend_choice import BackendChoice
from .options import (
    AicpGroup,
    BackendCommand,
    NameOrPath,
    PathValue,
    backend_settings,
    click_range,
    complete_name,
    make_emitter,
    version_option,
)

# The library (the voice stage, the backends) is imported only when a command runs, so that
# `aicp --help`, which loads this module for the one-line help of `voices`, stays instant.

EPILOG = """\b
Examples:
  aicp voices list | jq -r '[.backend, .name, .voice] | @tsv'
  aicp voices say "Tonight: Você É Linda." -o try.wav
  aicp voices say "Tonight: Você É Linda." -o try.wav --lexicon examples/lexicon.yaml --overwrite
  aicp voices say "Good evening." -o julie.wav --persona julie --backend piper

\b
Lexicon: a YAML file mapping a word or name to a respelling or to phonemes
(IPA as espeak-ng writes it):
  Você É Linda: {say: voh-SAY eh LEEN-dah, phonemes: "vo.ˈse ɛ ˈlĩ.dɐ"}
  Björk: byerk
Entries come from every *.yaml in the user folder's lexicon/ ($AICP_HOME/lexicon,
else $XDG_CONFIG_HOME/aicp/lexicon, else ~/.config/aicp/lexicon), the persona's
lexicon: block, then each --lexicon FILE (later ones win). Piper says an entry's
phonemes; other engines its respelling.

\b
Exit status:
  0 written (say) or listed (list)
  1 the engine failed, or the audio failed its checks (say)
  2 bad arguments: blank text, an output name without .wav/.flac/.ogg/.mp3, an output
    file that exists (without --overwrite), a missing or invalid persona or lexicon file
  4 the voice backend is not installed or cannot load
"""


@click.group("voices", cls=AicpGroup, epilog=EPILOG)
@version_option
def voices_group() -> None:
    """Try and list voices: speak one line to a file (to try a persona or a
    pronunciation lexicon entry), and list the voices every installed TTS
    backend offers."""


@voices_group.command("say", cls=BackendCommand, backend_kind="tts", epilog=EPILOG)
@version_option
@click.argument("text")
@click.option("-o", "--output", required=True, type=PathValue(dir_okay=False), metavar="FILE",
              help="The audio file to write; its suffix names the format (.wav, .flac, .ogg, .mp3).")
@click.option("--backend", "--voice-backend", "backend", type=BackendChoice("tts"), default="auto",
              show_default=True,
              help="As aicp-voice's --backend: auto is chatterbox when installed and a GPU is present, else "
                   "embedded piper, and a persona that names a voice of another installed backend speaks "
                   "with it (voice.kokoro.voice: kokoro). The backends' own settings follow.")
@click.option("-p", "--persona", metavar="NAME|PATH", type=NameOrPath(), shell_complete=complete_name("persona"),
              help="Speak as this persona: its voice settings, seed and lexicon: entries.")
@click.option("--lexicon", "lexicon", multiple=True, type=PathValue(dir_okay=False), metavar="FILE",
              help="A pronunciation lexicon (YAML) over the user folder's and the persona's entries; "
                   "repeatable, later files win.")
@click.option("--seed", type=click_range(SEED), help="Seed [default: the persona's fixed seed].")
@click.option("--overwrite", is_flag=True, help="Replace FILE when it exists [default: exit 2].")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and warnings on stderr.")
def say_command(text: str, output: str, backend: str, persona: str | None, lexicon: tuple[str, ...],
                seed: int | None, overwrite: bool, quiet: bool, **settings: object) -> None:
    """Speak TEXT into FILE as aicp-voice would voice it (persona, lexicon,
    loudness -16 LUFS) and print the file's `audio` object as one JSON line
    (path, seconds, backend, voice..., and `lexicon`: the entries that
    changed what was said)."""
    from ..backends.registry import create_tts
    from ..speak import say_line

    emitter = make_emitter(False, quiet, "aicp voices say")
    try:
        options = backend_settings("tts", settings)
        audio = say_line(text, output, backend=lambda: create_tts(backend, notice=emitter.message, **options),
                         persona=persona, lexicon=lexicon, seed=seed,
                         overwrite=overwrite, emitter=emitter)
    finally:
        emitter.close()
    RecordWriter().write(audio)


@voices_group.command("list", epilog=EPILOG)
@version_option
@click.option("--dir", "folders", multiple=True, type=PathValue(file_okay=False), metavar="DIR",
              help="Also look for voice files (Piper: NAME.onnx with NAME.onnx.json) in DIR; repeatable "
                   "[always: the user folder's voices/].")
def list_command(folders: tuple[str, ...]) -> None:
    """Print one JSON object per voice the installed TTS backends offer
    (backend, name, voice: what --voice takes, source, description; Piper
    adds language and sample_rate). A backend that is not installed lists
    nothing."""
    from ..speak import installed_voices

    writer = RecordWriter()
    for voice in installed_voices(folders):
        writer.write(voice)


__all__ = ["list_command", "say_command", "voices_group"]
