"""``aicp-mix`` / ``aicp mix``: voiced records in, segues or one show file out, records with ``mix``."""

from __future__ import annotations

import click

from ..jsonl import RecordWriter, check_sources
from .errors import entry
from .options import (
    EPILOG_STATUS,
    AicpCommand,
    PathValue,
    finish,
    input_files,
    make_emitter,
    version_option,
)

EPILOG = f"""\b
Examples:
  aicp-script < examples/songs.jsonl | aicp-voice | aicp mix --segue talk-up --show show.mp3
  aicp-script < examples/songs.jsonl | aicp-voice > voiced.jsonl
  aicp mix --segue before --show show.m4a --title "Morning show" voiced.jsonl
  aicp mix --out-dir out/segues --format flac voiced.jsonl     # one file per record
  aicp mix --song-field song.path --duck-depth -15 --show show.opus voiced.jsonl
  aicp mix --playlist playout.m3u8 voiced.jsonl       # Liquidsoap/AzuraCast mix live
  aicp-script -t podcast-longform < examples/topics-longform.jsonl \\
      | aicp-voice --captions vtt | aicp mix --bed-in in.flac \\
      --bed-out out.flac --album "Night Notes" -o site   # an episode per record

\b
Records: the voice is audio.path (aicp-voice), the song the --song-field
file (MP3, FLAC, WAV, OGG, M4A...), its instrumental start intro_seconds,
the chapter `artist – title`. A record without a song (a station ID)
plays where it stands; one without a voice plays its song alone.
Talk-up: the music ducks --duck-depth dB, starting --duck-attack s before
the voice and back over --duck-release s after it; with intro_seconds the
voice ends 0.5 s before the vocals (the song starts later if it must),
else the song fades in under the voice's last --crossfade seconds.
Loudness: voice and music each at --loudness before mixing, then each
segue at --loudness integrated (BS.1770-4), so the file is too; true
peak at most --true-peak dBTP (measured 4x oversampled through
libswresample). MP3: 192 kbit/s CBR, LAME quality 7.
Episodes: a record without a song that has sections (script.chunks
of a long-form script) or gets --bed-in/--bed-out is one episode file:
the intro bed 4 s alone, then 6 s under the speech; the outro bed from
6 s before the speech ends to 4 s after it; beds ducked and faded; a
chapter per section; tags; audio.captions carried over (mix.captions).
Playlist: each intro and song an `annotate:` entry with the Liquidsoap
keys liq_cue_in, liq_cue_out, liq_fade_in, liq_fade_out and
liq_cross_duration (the seconds the song plays under the intro), plus
aicp_role, aicp_segue, aicp_duck_db/_attack/_release, aicp_song_lead.

{EPILOG_STATUS}
"""


@click.command("mix", cls=AicpCommand, epilog=EPILOG)
@version_option
@input_files
@click.option("--segue", type=click.Choice(["talk-up", "before"]), default="talk-up", show_default=True,
              help="talk-up: the intro over the song's instrumental start, the music ducked; "
                   "before: the intro, then the song.")
@click.option("--song-field", default="file", show_default=True, metavar="A.B.C",
              help="Dotted path of the song's audio file in a record.")
@click.option("--show", type=PathValue(dir_okay=False), metavar="FILE",
              help="Join every segue, in record order, into FILE (.mp3, .m4a, .opus, .flac, .wav), "
                   "a chapter per song [default: one file per record in --out-dir].")
@click.option("--playlist", type=PathValue(dir_okay=False), metavar="FILE.m3u8",
              help="Write the segues as a playlist for live playout (Liquidsoap, AzuraCast): each intro "
                   "and song an entry with cue and crossfade annotations. Without --show no audio is written.")
@click.option("-o", "--out-dir", default="aicp-out/mix", show_default=True, type=PathValue(file_okay=False),
              help="Folder of the per-record segue files (without --show): {id}.{format}.")
@click.option("-f", "--format", "audio_format", type=click.Choice(["mp3", "m4a", "opus", "flac", "wav"]),
              default="mp3", show_default=True, help="Format of the per-record segue files.")
@click.option("--loudness", type=click.FloatRange(-40, -5), default=-16.0, show_default=True, metavar="LUFS",
              help="Integrated loudness of voice, music and the written file.")
@click.option("--true-peak", type=click.FloatRange(-9, 0), default=-1.0, show_default=True, metavar="DBTP",
              help="True-peak ceiling of the written file.")
@click.option("--duck-depth", type=click.FloatRange(-40, 0), default=-12.0, show_default=True, metavar="DB",
              help="Music level under the voice in a talk-up.")
@click.option("--duck-attack", type=click.FloatRange(0, 5), default=0.3, show_default=True, metavar="S",
              help="Seconds the music takes to duck, before the voice starts.")
@click.option("--duck-release", type=click.FloatRange(0, 10), default=0.8, show_default=True, metavar="S",
              help="Seconds the music takes to come back after the voice.")
@click.option("--crossfade", type=click.FloatRange(0, 10), default=1.5, show_default=True, metavar="S",
              help="Talk-up without intro_seconds: the song fades in under the voice's last S seconds.")
@click.option("--title", help="Title tag of the written file(s).")
@click.option("--artist", help="Artist tag (the station or host) of the written file(s).")
@click.option("--album", metavar="NAME", help="Album tag: the show's or podcast's name.")
@click.option("--date", metavar="DATE", help="Date tag (2026-12-06) [default: an episode's record `date`, else today].")
@click.option("--bed-in", type=PathValue(dir_okay=False, exists=True), metavar="FILE",
              help="Music bed opening each episode, ducked under the speech and faded (not with --show).")
@click.option("--bed-out", type=PathValue(dir_okay=False, exists=True), metavar="FILE",
              help="Music bed closing each episode, ducked under the speech and faded (not with --show).")
@click.option("--cover", type=PathValue(dir_okay=False, exists=True), metavar="IMAGE",
              help="Cover art (JPEG or PNG) embedded in the written file(s).")
@click.option("--overwrite", is_flag=True, help="Replace existing mix files [default: such a file stops the run, exit 2].")
@click.option("--strict", is_flag=True, help="Stop at the first failed record instead of going on.")
@click.option("--stream", is_flag=True, help="Progress as JSON Lines events on stderr (schema_version 1).")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but warnings and errors.")
@click.option("--traceback", is_flag=True, help="Show the Python traceback of an error.")
def mix_command(files: tuple[str, ...], segue: str, song_field: str, show: str | None, playlist: str | None,
                out_dir: str, audio_format: str, loudness: float, true_peak: float, duck_depth: float,
                duck_attack: float, duck_release: float, crossfade: float, title: str | None, artist: str | None,
                album: str | None, date: str | None, bed_in: str | None, bed_out: str | None, cover: str | None,
                overwrite: bool, strict: bool, stream: bool, quiet: bool, traceback: bool) -> int:
    """Mix voiced records into radio segues, shows and podcast episodes.

    Reads records from FILES (or stdin, `-`): each intro (audio.path) over
    or before its song (--song-field), loudness-matched, the music ducked
    under the voice. Writes one file per record, or with --show one file
    joining them all in record order, normalized, with a chapter per song
    and tags; with --playlist a playlist for live playout. A long-form or
    dialogue record becomes a podcast episode, with music beds (--bed-in,
    --bed-out), a chapter per section and its captions. Prints each record
    with a `mix` object added (file, seconds, bytes, type, sample_rate,
    lufs, true_peak_dbtp, chapters, segue; with --show also start and end
    in the show; playlist; captions). A record that fails gets an `error`
    object and the batch goes on.
    """
    from ..stages.commands import run_step
    from ..stages.mix import MixOptions

    emitter = make_emitter(stream, quiet, "aicp-mix")
    check_sources(files)
    options = MixOptions(segue=segue, song_field=song_field, show=show, playlist=playlist, out_dir=out_dir,  # type: ignore[arg-type]
                         format=audio_format, loudness=loudness, true_peak=true_peak, duck_depth=duck_depth,
                         duck_attack=duck_attack, duck_release=duck_release, crossfade=crossfade,
                         title=title, artist=artist, album=album, date=date, bed_in=bed_in, bed_out=bed_out,
                         cover=cover, strict=strict, overwrite=overwrite)
    writer = RecordWriter()
    try:
        stats = run_step("mix", files, options, backend=None, emitter=emitter, write=writer.write,
                         program="aicp-mix", stdout=writer.stream, protect=(*files, writer.stream))
    finally:
        emitter.close()
    return finish(emitter, stats)


def main() -> None:
    """Console script ``aicp-mix``."""
    entry(mix_command, "aicp-mix")
