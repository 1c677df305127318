"""``aicp feed``: episode records into a podcast RSS feed (the library: ai_content_pipeline/feed.py)."""

from __future__ import annotations

import click

from .errors import message_prefix, note_flag
from .options import AicpCommand, PathValue, version_option

EPILOG = """\b
Examples:
  aicp-script -t podcast-segment < examples/topics.jsonl | aicp-voice -f mp3 -o site > episodes.jsonl
  aicp feed --title 'Night Notes' --link https://example.com/night-notes \\
      --base-url https://example.com/night-notes --out site/feed.xml episodes.jsonl
  aicp-script -t podcast-longform < examples/topics-longform.jsonl | aicp-voice -f mp3 -o site \\
      | aicp feed --out site/feed.xml   # adds these episodes to the feed

\b
Episode fields (first found wins):
  audio file   mix.file, else audio.path (must exist: its size is the enclosure length)
  MIME type    mix.type, else by extension (.mp3 audio/mpeg, .m4a audio/mp4, ...)
  duration     mix.seconds, audio.seconds, else read from the file
  title        title, topic, else the record's id
  description  description, summary, script.text, else the title
  date         date, published (ISO 8601 or RFC 2822), else the file's time
  chapters     mix.chapters -> AUDIO-STEM.chapters.json beside the feed
  captions     captions, mix.captions, audio.captions (.vtt or .srt)
  GUID         guid, else a UUID v5 of LINK#ID (ID: the record's id);
               an item of the feed with the same enclosure URL keeps its own
  a show       the records of one `aicp mix --show FILE` (one mix.file, each
               with mix.start) are ONE episode: FILE, its chapters, title
               mix.title (else the file's tag), ID show:FILE-NAME

\b
URLs:
  every file is served flat under --base-url by its file name:
  BASE/AUDIO-NAME, BASE/CAPTIONS-NAME, BASE/AUDIO-STEM.chapters.json,
  BASE/FEED-NAME (the feed's self link and podcast:guid)

\b
Exit status:
  0 the feed was written with every record
  1 aborted by an error (a full disk...)
  2 usage error, or a record that cannot be published: nothing written
  3 the feed was written; records that failed upstream or are not JSON left out
  130 interrupted
  143 terminated (SIGTERM)
"""


@click.command("feed", cls=AicpCommand, epilog=EPILOG)
@version_option
@click.argument("files", nargs=-1, metavar="[EPISODES.jsonl]...", type=PathValue(dir_okay=False, allow_dash=True))
@click.option("-o", "--out", required=True, type=PathValue(dir_okay=False), metavar="FEED.xml",
              help="The feed file. When it exists, its episodes (and their GUIDs) are kept, new ones "
                   "added; written through a temporary file renamed when complete.")
@click.option("--title", metavar="TEXT", help="The podcast's title [default: the existing feed's; required "
                                              "for a new feed].")
@click.option("--link", metavar="URL", help="The podcast's web page [default: the existing feed's; required "
                                            "for a new feed].")
@click.option("--base-url", metavar="URL",
              help="The http(s) URL the episode files and the feed are served under: an enclosure's URL "
                   "is the base URL, a slash and the file's name [default: the existing feed's; required for a new feed].")
@click.option("--description", metavar="TEXT", help="The podcast's description [default: the title].")
@click.option("--author", metavar="NAME", help="itunes:author of the podcast.")
@click.option("--image", metavar="URL|NAME", help="Cover art: a .jpg/.png URL, or a file name under --base-url.")
@click.option("--language", metavar="CODE", help="The podcast's language (en, en-us, de...).")
@click.option("--category", metavar="CATEGORY[/SUB]", help="Apple Podcasts category (Technology, "
                                                            "'Arts/Books').")
@click.option("--explicit/--clean", default=None, help="itunes:explicit yes or no [default: no, or the "
                                                        "existing feed's].")
@click.option("--title-field", metavar="FIELD", help="Record field (dotted) of an episode's title "
                                                     "[default: title, then topic].")
@click.option("--description-field", metavar="FIELD", help="Record field of an episode's description "
                                                           "[default: description, summary, script.text].")
@click.option("--date-field", metavar="FIELD", help="Record field of an episode's date [default: date, "
                                                    "then published].")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
@click.option("--traceback", is_flag=True, callback=note_flag, help="Show the Python traceback of an error.")
def feed_command(files: tuple[str, ...], out: str, title: str | None, link: str | None, base_url: str | None,
                 description: str | None, author: str | None, image: str | None, language: str | None,
                 category: str | None, explicit: bool | None, title_field: str | None,
                 description_field: str | None, date_field: str | None, quiet: bool, traceback: bool) -> int:
    """Write a podcast feed (RSS 2.0 with the iTunes and Podcasting 2.0 tags)
    from episode records: the JSON Lines `aicp mix` writes, or voiced records.

    EPISODES.jsonl... are read in turn (none, or -, reads standard input). Each
    record becomes an item: enclosure (URL, length in bytes, MIME type),
    itunes:duration, podcast:chapters (a JSON chapters file, version 1.2.0,
    written beside the feed) when the record has chapters, podcast:transcript
    when it has captions. An episode whose GUID or enclosure URL is already
    in the feed replaces that item and keeps its GUID; the other items are
    kept as they were. A record that cannot be published (no audio file, a
    bad date) stops the command before anything is written (exit 2); records
    that failed upstream (an `error` field) or lines that are not JSON
    objects are left out, named on stderr, and the feed is written with the
    rest (exit 3).
    """
    import sys

    from ..feed import Channel, Fields, read_lines, write_feed
    from ..files import check_output_file, refuse_overlap
    from ..report import message_lines, one_line
    from ..status import ExitStatus

    check_output_file(out, "--out")
    sources = list(files) or ["-"]
    refuse_overlap({f"input {s}": s for s in sources}, {f"--out {out}": out})
    fields = Fields()
    if title_field:
        fields.title = (title_field,)
    if description_field:
        fields.description = (description_field,)
    if date_field:
        fields.date = (date_field,)
    channel = Channel(title=title, link=link, base_url=base_url, description=description, author=author,
                      image=image, language=language, category=category, explicit=explicit)
    result = write_feed(read_lines(sources), out, channel, fields)
    prog = message_prefix("aicp feed")
    for where, why in result.skipped:
        sys.stderr.write(message_lines(prog, "warning", f"{where} left out: {why}"))
    if not quiet:
        sys.stderr.write(one_line(prog, f"{len(result.added)} added, {len(result.replaced)} replaced, "
                                        f"{len(result.kept)} kept -> {out}", width=None) + "\n")
    return int(ExitStatus.PARTIAL) if result.skipped else 0
