"""The one table of ``--stream`` events and their fields, rendered into README.md and the man pages.

The stage kinds' own fields come from the stage registry (each
:class:`~ai_content_pipeline.stages.kind.StageKind`'s ``events``).

README.md holds :func:`markdown_table` between ``<!-- events-table -->`` markers and the
man pages' EVENTS section is made from :data:`EVENTS` (see
:mod:`ai_content_pipeline.cli.manpages`); tests fail when README drifts from the table
or when code emits an event the table does not name.
"""

from __future__ import annotations

import re

from .stages import registry


def _kinds_list() -> str:
    return ", ".join(f"`{name}`" for name in registry.stage_types())


def _kinds_fields() -> str:
    return "; ".join(f"{kind.name}: {kind.events}" for kind in registry.kinds() if kind.events)


#: Every event has these fields (see :mod:`ai_content_pipeline.events`).
COMMON = ("`schema_version` (`\"1\"`), `event`, `timestamp` (Unix seconds) and `elapsed_seconds` "
          "(since start, never decreasing)")

#: ``(event names, fields, when)``: one row per event or family of events.
EVENTS: list[tuple[tuple[str, ...], str, str]] = [
    (("pipeline_start",), "`name`, `total_steps`, `config`", "a chain starts"),
    (("step_start",), f"`step` (1-based), `type` (the step's stage kind: {_kinds_list()}), `model` "
                      "(`null` when the step names none or uses no model)",
     "a chain step starts"),
    (("step_complete",), "`step`, `cost`, `output`, `duration_seconds`, record counts, tokens, `checks` "
                         "(script steps), `audio_checks` (voice steps with `verify`)", "a chain step finished"),
    (("step_error",), "`step`, `type`, `error`", "a chain step failed"),
    (("record_start", "record_complete"), "`index` (0-based), `id`, `stage`, `take`; complete adds the "
                                          f"stage's figures ({_kinds_fields()})",
     "a record (or take) starts / finished"),
    (("record_error",), "`index`, `id` (`null` for an input line that is no record), `stage`, `error` (the "
                        "record's `error` object), `upstream` (`true`: it arrived failed)", "a record failed"),
    (("record_skipped",), "`index`, `id`, `stage`, `key`", "served from the ledger on `--resume`"),
    (("progress",), "`total` (`null` while reading a pipe), `completed`, `failed`, `skipped`, `percent` "
                    "(`null` while the total is unknown), `stage`", "after each record"),
    (("model_load", "model_unload"), "`backend`, `model`, `device`, `seconds`",
     "a backend loaded / released its model (memory free when unload is sent)"),
    (("chunk_start", "chunk_progress", "chunk_complete"),
     "long-form: `id`, `chunk`, `section`, `target_words` / `chars`, `words` / `words`, `tokens`, `seconds`",
     "a long-form section starts / streams (at most one a second) / is checkpointed"),
    (("run_complete",), "`stage`, `records`, `tokens`, `words`, `audio_seconds`, `seconds`; aicp-script adds "
                        "`checks` (`{passed, failed}`), `redone` and `edited` (takes, when any), aicp-voice `audio_checks` (the same, when any file was checked)",
     "the last event of aicp-script and aicp-voice"),
    (("message",), "`level`, `message` (`step` when a chain step sent it)",
     "a notice (e.g. which backend `auto` chose)"),
    (("error",), "`message`, `hint`, `exit_code`",
     "a fatal error, instead of plain text (aicp run-chain: after `pipeline_complete`)"),
    (("pipeline_complete",), "`name`, `success`, `steps_completed`, `total_steps`, `total_cost`, `total_time`, "
                             "`outputs`, `error`, `records`, `tokens`, `audio_seconds`; the radio API adds `songs`",
     "on **stdout**: the chain's result"),
]

#: The fields every event of a chain (``aicp run-chain``, a service job, the radio API) carries,
#: besides :data:`COMMON`: the table's promise, in a form tests compare events against.
CHAIN_FIELDS: dict[str, tuple[str, ...]] = {
    "pipeline_start": ("name", "total_steps", "config"),
    "step_start": ("step", "type", "model"),
    "step_complete": ("step", "type", "cost", "output", "duration_seconds", "records", "tokens", "audio_seconds"),
    "step_error": ("step", "type", "error"),
    "pipeline_complete": ("name", "success", "steps_completed", "total_steps", "total_cost", "total_time",
                          "outputs", "error", "records", "tokens", "audio_seconds"),
}

START = "<!-- events-table: generated from ai_content_pipeline/eventdocs.py; edit it there -->"
END = "<!-- /events-table -->"


def names() -> set[str]:
    """Every event name the table documents."""
    return {name for row in EVENTS for name in row[0]}


def markdown_table() -> str:
    """The README table (``| event | fields | when |``), without the markers."""
    lines = ["| event | fields | when |", "| --- | --- | --- |"]
    for events, fields, when in EVENTS:
        lines.append(f"| {' / '.join(f'`{e}`' for e in events)} | {fields} | {when} |")
    return "\n".join(lines)


def readme_block() -> str:
    """The table between its markers, as README.md holds it."""
    return f"{START}\n{markdown_table()}\n{END}"


def plain(text: str) -> str:
    """Markdown of a row without backquotes and bold (for man pages)."""
    return re.sub(r"\*\*|`", "", text)


def rows_for(wanted: tuple[str, ...]) -> list[tuple[tuple[str, ...], str, str]]:
    """The rows naming any of ``wanted``, in table order, each with only those names."""
    out = []
    for events, fields, when in EVENTS:
        chosen = tuple(e for e in events if e in wanted)
        if chosen:
            out.append((chosen, fields, when))
    return out
