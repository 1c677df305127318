"""What a person reads on stderr without ``--stream``: notice lines, failed records, the summary.

- Every line starts with the command's prefix (``aicp-script: ``) and fits
  :data:`WIDTH` (100) terminal columns (:func:`columns`: a CJK character takes 2): a
  longer notice is wrapped onto more lines, each with the same prefix (:func:`notice_lines`);
  characters a terminal would act on or not show (a terminal escape in a file name or a
  record, a newline, a tab, a bidi control) print in Python's escape forms, ``\\x1b``,
  ``\\n``, ``\\t``, ``\\u202e`` (:func:`printable`), and nothing else in the text is changed.
- An error or warning and its hint are one whole line each (:func:`message_lines`).
- Each failed record gets one line, ``ID: message`` (:func:`failure_text`), cut to the
  width with ``…`` (:func:`one_line`; the whole error object is on stdout), up to
  :data:`FAILURE_CAP` (10) a run; the rest are counted into one ``… and N more`` line
  (:class:`FailureLines`). Records that arrive failed from an earlier step or command
  were reported there and get no line of their own (they are counted in the summary).
- The summary (:func:`summary_text`) names what needs attention: failed records, takes
  that failed their checks, takes cut by ``--max-tokens`` (truncated).
- :func:`progress_bar_options` chooses the tqdm arguments: no bar while the total is
  unknown, none left behind when it closes, no animation on a ``TERM=dumb`` terminal.

Nothing here imports click; the emitters in :mod:`~ai_content_pipeline.events` call it.
"""

from __future__ import annotations

import re
from typing import Any

#: Columns a notice line may take, prefix included.
WIDTH = 100
#: Failed records listed one per line in a run; more are summed up in one line.
FAILURE_CAP = 10


def printable(text: str) -> str:
    """``text`` as it may be printed on a terminal: unchanged when every character in it is
    printable (:meth:`str.isprintable`), else with each character that is not written in
    Python's escape form (``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``, ``\\U000e0001``) and each
    backslash doubled, so the text reads back exactly, as in a Python string literal.

    Not printable are control characters (Cc), invisible format characters (Cf: the bidi
    controls that make a line read backwards, zero-width ones), line and paragraph separators,
    private-use and unassigned code points, lone surrogates and every space but ``" "``: a file
    name or record field cannot move the cursor, recolour or clear the terminal, reorder or
    hide what is printed, nor start a line of its own.
    """
    return "".join(_pieces(text))


def _pieces(text: str) -> list[str]:
    """:func:`printable`'s text a piece at a time, each as it is printed: an escape, or a
    grapheme cluster (a character with its combining marks and variation selector: ``❤`` +
    U+FE0F, ``e`` + U+0301), so a line is never cut inside either."""
    if text.isprintable():  # nothing to escape: unchanged, backslashes too
        return _graphemes(text)
    pieces: list[str] = []
    for cluster in _graphemes(text):
        if cluster.isprintable() and "\\" not in cluster:
            pieces.append(cluster)
        else:
            pieces += [c if c.isprintable() and c != "\\" else _escape(c) for c in cluster]
    return pieces


def _graphemes(text: str) -> list[str]:
    """``text`` cut into grapheme clusters (Unicode UAX #29, the ``wcwidth`` library)."""
    if text.isascii():
        return list(text)
    import wcwidth  # about 25 ms: only for text that is not ASCII

    return list(wcwidth.iter_graphemes(text))


def _escape(char: str) -> str:
    """One character (not printable, or a backslash) in Python's escape form, as ``repr``
    writes it: ``\\x07``, ``\\n``, ``\\u2028``, ``\\U000e0001``, ``\\\\``."""
    return repr(char)[1:-1]


def columns(text: str) -> int:
    """How many terminal columns printed ``text`` takes, as the ``wcwidth`` library measures
    it: a wide or full-width character (CJK, emoji, an emoji made wide by U+FE0F) takes 2,
    a combining mark 0, any other 1. ``text`` is :func:`printable` already (a control
    character has no width)."""
    if text.isascii():
        return len(text)
    import wcwidth  # about 25 ms: only for text that is not ASCII

    return max(0, int(wcwidth.width(text)))


def _fit(pieces: list[str], room: int) -> int:
    """How many of ``pieces`` fit in ``room`` columns (the marks that follow the last one too)."""
    used = 0
    for count, piece in enumerate(pieces):
        used += columns(piece)
        if used > room:
            return count
    return len(pieces)


#: One escape of :func:`printable` (``\\x1b``, ``\\u202e``, ``\\U000e0001``, ``\\n``, ``\\\\``) or one character.
_ATOM_RUN = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|.)|[^\\]+", re.S)


def _atoms(text: str) -> list[str]:
    """``text`` (:func:`printable` output) cut into pieces no line break may split: an escape
    sequence, else one grapheme cluster."""
    atoms: list[str] = []
    for match in _ATOM_RUN.finditer(text):
        atoms += [match.group(0)] if match.group(0).startswith("\\") else _graphemes(match.group(0))
    return atoms


def _wrap(text: str, room: int) -> list[str]:
    """``text`` (printable) as lines of at most ``room`` columns, broken at spaces (dropped
    there); a word longer than a line (a long path) fills the line it starts on, then goes
    on over more lines, as :func:`textwrap.wrap` does."""
    lines: list[str] = []
    line, used = "", 0
    for token in re.findall(r" +|[^ ]+", text):
        width = columns(token)
        if token.startswith(" ") and line == "" and lines:
            continue  # the spaces of a break
        if used + width <= room:
            line, used = line + token, used + width
            continue
        if token.startswith(" "):
            if line.strip(" "):
                lines.append(line.rstrip(" "))
            line, used = "", 0
            continue
        if width > room:  # split: as much as fits here, whole lines, the rest starts a line
            atoms = _atoms(token)  # never inside an escape
            count = _fit(atoms, room - used)
            line, atoms = line + "".join(atoms[:count]), atoms[count:]
            while columns("".join(atoms)) > room:
                if line.strip(" "):
                    lines.append(line.rstrip(" "))
                count = max(1, _fit(atoms, room))
                line, atoms = "".join(atoms[:count]), atoms[count:]
            token = "".join(atoms)
        if line.strip(" "):
            lines.append(line.rstrip(" "))
        line, used = token, columns(token)
    if line.strip(" ") or not lines:
        lines.append(line.rstrip(" "))
    return lines


def notice_lines(prefix: str, text: str, width: int = WIDTH) -> list[str]:
    """``text`` as lines of at most ``width`` terminal columns (:func:`columns`), each
    starting with ``prefix: ``.

    Words are kept whole where they fit; a word longer than a line (a long path) is split;
    control characters, newlines and tabs among them, print as escapes (:func:`printable`).
    :returns: at least one line (an empty ``text`` gives ``"prefix: "``).
    """
    head = f"{prefix}: "
    room = max(width - columns(head), 20)
    return [head + part for part in _wrap(printable(text), room)]


def one_line(prefix: str, text: str, width: int | None = WIDTH) -> str:
    """``prefix: text`` as exactly one line of at most ``width`` terminal columns
    (:func:`columns`; ``None``: the whole text): control characters (newlines and tabs among
    them) print as escapes (:func:`printable`), spaces stay as they are, and a longer line is
    cut to end in ``…`` (never inside an escape)."""
    pieces = [*f"{prefix}: ", *_pieces(text)]
    if width is None or columns("".join(pieces)) <= width:
        return "".join(pieces)
    return "".join(pieces[:_fit(pieces, width - 1)]) + "…"


def message_lines(prefix: str, label: str, message: str, hint: str | None = None) -> str:
    """``prefix: label: message`` and, with a hint, ``prefix: hint: hint``: one whole line
    each (not cut, so a path in them stays copyable and ``grep error:`` finds it), with
    :func:`printable` escapes, each ending in a newline.

    :param label: ``error`` or ``warning``.
    """
    lines = [one_line(prefix, f"{label}: {message}", width=None)]
    if hint:
        lines.append(one_line(prefix, f"hint: {hint}", width=None))
    return "".join(line + "\n" for line in lines)


def failure_text(record_id: str | None, error: Any, index: int | None = None) -> str:
    """One line for a failed record: ``song-001: no text to voice (script.text and text missing)``.

    :param record_id: the record's ``id`` (``None`` for a line that was no record).
    :param error: the record's ``error`` object (``message``, ``line``, ``take``...) or a string.
    :param index: 0-based input position, used when there is no id.
    """
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("type") or "failed")
        line = error.get("line")
        take = error.get("take")
    else:
        message, line, take = str(error), None, None
    if record_id:
        who = str(record_id)
    elif line is not None:
        who = f"line {line}"
    elif index is not None:
        who = f"record {index + 1}"
    else:
        who = "a record"
    if take not in (None, 0):
        who += f" (take {take})"
    if message.startswith(who):  # "line 4 is not valid JSON"
        return message
    return f"{who}: {message}"


class FailureLines:
    """Decides which failed records get their own line: the first ``cap``, then a count.

    :param cap: lines before the rest are only counted (default :data:`FAILURE_CAP`).
    """

    def __init__(self, cap: int = FAILURE_CAP) -> None:
        self.cap = cap
        self.shown = 0
        self.hidden = 0

    def add(self, record_id: str | None, error: Any, index: int | None = None,
            upstream: bool = False) -> str | None:
        """The line to print for this failure, or ``None`` (over the cap, or failed upstream)."""
        if upstream:
            return None
        if self.shown >= self.cap:
            self.hidden += 1
            return None
        self.shown += 1
        return failure_text(record_id, error, index)

    def rest(self) -> str | None:
        """``… and N more failed records`` once some were left out, else ``None``; resets the count."""
        if not self.hidden:
            return None
        hidden, self.hidden = self.hidden, 0
        return f"… and {hidden} more failed record{'s' if hidden != 1 else ''} (their error objects are on stdout)"


def summary_text(stats: Any) -> str:
    """The one-line summary of a stage run, naming what needs attention.

    ``18 ok, 2 failed, 0 skipped; checks: 15 passed, 3 failed; 5 truncated; 1234 tokens; 12.3 s``:
    checks appear once any take was checked, ``truncated`` when a take was cut by
    ``--max-tokens``, ``redone``/``edited`` when takes were (``--redo-failed``, ``--recheck``); tokens and audio seconds are left out when the line would not fit.

    :param stats: a :class:`~ai_content_pipeline.stages.common.StageStats`.
    """
    must = [f"{stats.completed} ok, {stats.failed} failed, {stats.skipped} skipped"]
    if stats.checks_passed or stats.checks_failed:
        must.append(f"checks: {stats.checks_passed} passed, {stats.checks_failed} failed")
    if getattr(stats, "audio_checks_passed", 0) or getattr(stats, "audio_checks_failed", 0):
        must.append(f"audio checks: {stats.audio_checks_passed} passed, {stats.audio_checks_failed} failed")
    truncated = getattr(stats, "truncated", 0)
    if truncated:
        must.append(f"{truncated} truncated")
    for what in ("redone", "edited"):  # --redo-failed, --recheck
        if getattr(stats, what, 0):
            must.append(f"{getattr(stats, what)} {what}")
    extra = []
    if stats.prompt_tokens or stats.completion_tokens:
        extra.append(f"{stats.prompt_tokens + stats.completion_tokens} tokens")
    if stats.audio_seconds:
        extra.append(f"{stats.audio_seconds:.1f} s of audio")
    tail = f"{stats.seconds:.1f} s"
    budget = WIDTH - len("aicp run-chain: ")
    while extra and len("; ".join([*must, *extra, tail])) > budget:
        extra.pop()
    return "; ".join([*must, *extra, tail])


def step_summary_text(step: dict[str, Any]) -> str:
    """One line for a finished chain step (an ``outputs.steps`` entry of ``pipeline_complete``):
    ``step 1 script: 3 ok, 1 failed, 0 skipped; checks: 2 passed, 1 failed; 4.2 s -> PATH``."""
    counts = step.get("records") or {}
    text = (f"step {step.get('step')} {step.get('type')}: {counts.get('completed', 0)} ok, "
            f"{counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped")
    checks = step.get("checks")
    if isinstance(checks, dict):
        text += f"; checks: {checks.get('passed', 0)} passed, {checks.get('failed', 0)} failed"
    for what in ("redone", "edited"):
        if step.get(what):
            text += f"; {step[what]} {what}"
    checks = step.get("audio_checks")
    if isinstance(checks, dict):
        text += f"; audio checks: {checks.get('passed', 0)} passed, {checks.get('failed', 0)} failed"
    return text + f"; {float(step.get('duration_seconds') or 0):.1f} s -> {step.get('path')}"


def progress_bar_options(total: int | None, term: str | None, isatty: bool) -> dict[str, Any] | None:
    """The tqdm keyword arguments for a progress bar, or ``None`` for no bar now.

    - ``total`` unknown (reading a pipe): no bar yet; tqdm would draw a bare counter
      (``1rec [00:00, 14716rec/s]``) that tells nothing.
    - ``leave=False``: the finished bar is erased, so the summary is the last thing shown.
    - ``TERM=dumb`` (or unset) or not a terminal: no bar (a dumb terminal cannot redraw a line).
    """
    if total is None or not isatty or term in (None, "", "dumb"):
        return None
    return {"total": total, "unit": "rec", "leave": False, "dynamic_ncols": True, "mininterval": 0.2}


def _doctor_detail(check: dict[str, Any]) -> str:
    hosts = check.get("hosts")
    if isinstance(hosts, list) and len(hosts) > 1:  # several Ollama hosts: each one's finding
        return "; ".join(f"{h.get('host')}: " + (", ".join(h.get("models") or []) or "no models" if h.get("ok")
                                                  else "not answering") for h in hosts)
    if not check.get("ok"):
        return str(check.get("hint") or "not available")
    for key in ("models", "devices"):
        if check.get(key):
            return ", ".join(str(x) for x in check[key])
    for key in ("version", "path", "voice", "torch"):
        if check.get(key):
            text = str(check[key])
            if key == "version" and check.get("voice"):
                text += f" (voice {check['voice']})"
            return text
    return ""


def persona_voice_line(persona: str, voices: dict[str, Any]) -> str:
    """One line of what a persona sounds like here: ``julie: auto kokoro jf_gongitsune; piper
    falls back to en_US-joe-medium; chatterbox not installed`` (see
    :func:`~ai_content_pipeline.doctor.voice_report`)."""
    if "problem" in voices:
        return f"{persona}: {voices['problem']}"
    auto = voices.get("auto") or {}
    parts = [f"{persona}: auto {auto.get('backend')} {auto.get('voice') or '?'}"]
    for name, entry in (voices.get("backends") or {}).items():
        if not entry.get("installed"):
            parts.append(f"{name} not installed" + (f" (names {entry['names']})" if entry.get("names") else ""))
        elif entry.get("fallback"):
            missing = f"{entry['names']} missing, " if entry.get("names") else ""
            parts.append(f"{name} {missing}falls back to {entry.get('speaks')}")
        else:
            parts.append(f"{name} {entry.get('speaks')}")
    return "; ".join(parts)


def doctor_table(report: dict[str, Any], width: int = WIDTH) -> str:
    """``aicp doctor``'s report as a table for a terminal: one row per check (name, ok or
    missing, what was found or the fix-it hint), then what ``--backend auto`` picks.

    :param report: :func:`~ai_content_pipeline.doctor.run_doctor`'s object.
    :param width: columns to fit (long details wrap within their column).
    :returns: the text, ending with a newline.
    """
    checks: dict[str, dict[str, Any]] = report.get("checks") or {}
    name_w = max([len("check"), *(len(n) for n in checks)])
    status_w = len("missing")
    detail_w = max(width - name_w - status_w - 4, 20)
    lines = [f"{'check':<{name_w}}  {'status':<{status_w}}  details"]
    for name, check in checks.items():
        status = "ok" if check.get("ok") else "missing"
        parts = _wrap(printable(_doctor_detail(check)), detail_w)  # a host or path from the environment
        lines.append(f"{name:<{name_w}}  {status:<{status_w}}  {parts[0]}".rstrip())
        lines += [" " * (name_w + status_w + 4) + part for part in parts[1:]]
    usable = report.get("usable") or {}
    auto = report.get("auto") or {}
    lines.append("")
    lines.append(printable(f"usable: LLM {', '.join(usable.get('llm') or []) or 'none'}; "
                           f"TTS {', '.join(usable.get('tts') or []) or 'none'}"))
    lines.append(printable(f"--backend auto picks: LLM {auto.get('llm') or 'none'}, TTS {auto.get('tts') or 'none'}"))
    if report.get("voices"):
        lines.append("persona voices (aicp personas show NAME):")
    for persona, voices in (report.get("voices") or {}).items():
        lines += [" " * 2 + part for part in _wrap(printable(persona_voice_line(persona, voices)), width - 2)]
    lines.append("ready: yes" if report.get("ok") else "ready: no (see the hints above)")
    return "\n".join(lines) + "\n"
