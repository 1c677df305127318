"""What a client sees of a job names nothing on the server's disk.

Job records, results, errors and events are written by the chain runner for the operator:
they carry absolute paths (the job's folder under the data folder, the worker's folder,
model and voice files, persona voice files, the Python environment) and the worker's
host and pid. :class:`Redactor` rewrites them for the API:

- a path inside the job's folder becomes relative to it (``out/audio/s1_julie_0.wav``,
  ``out/01-script.jsonl``, ``input.jsonl``), whichever host's data folder it was on;
- a model or voice file of the operator's list becomes its name in that list;
- any other absolute path becomes its last component (``/srv/voices/rosa.onnx`` →
  ``rosa.onnx``);
- a worker id (``host:pid:random``) becomes an opaque ``w-`` digest.

A record's own fields (those it was submitted with) are the client's and are left as
they are; only the fields stages add (:func:`~ai_content_pipeline.records.stage_fields`)
are rewritten, and of those not the spoken text (``script.text``, section texts).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from ..records import stage_fields

#: an absolute path (or ``~/...``) where it starts a word: after the start, a space, a quote,
#: a bracket, ``=`` or ``,``; it runs to the next space, quote, bracket or ``:``/``,``/``;``
_ABSOLUTE = re.compile(r"(?:(?<=^)|(?<=[\s'\"`(\[{=,]))~?/[^\s'\"`:,;()\[\]{}<>]+")
#: keys of a stage's record object whose strings are spoken or written text, never paths
_TEXT_KEYS = frozenset({"text"})


def worker_label(worker_id: str | None) -> str | None:
    """An opaque, stable label for a worker id (no host, no pid): ``w-`` and 12 hex digits."""
    if not worker_id:
        return None
    return "w-" + hashlib.sha256(worker_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class Redactor:
    """Rewrites server paths in what one job shows a client.

    :param job_id: the job (its folder is ``.../jobs/JOB_ID/`` on whichever host).
    :param names: ``{operator's file path or value: the name clients use}`` (models, voices).
    """

    def __init__(self, job_id: str | None, names: Mapping[str, str] | None = None) -> None:
        self.names = sorted(((k, v) for k, v in (names or {}).items() if k and "/" in k),
                            key=lambda kv: len(kv[0]), reverse=True)
        self.job = (re.compile(r"(?:(?<=^)|(?<=[\s'\"`(\[{=,]))(?:~?/[^\s'\"`:,;()\[\]{}<>]*?/)?jobs/"
                               + re.escape(job_id) + r"(?:/|(?=[\s'\"`:,;()\[\]{}<>]|$))")
                    if job_id else None)

    def text(self, value: str) -> str:
        """One string with every server path rewritten (see the module docstring)."""
        if "/" not in value:
            return value
        if self.job is not None:
            value = self.job.sub("", value)
        for path, name in self.names:
            if path in value:
                value = value.replace(path, name)
        return _ABSOLUTE.sub(_last_part, value)

    def value(self, value: Any) -> Any:
        """A JSON value (events, results, errors) with every string rewritten."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def record(self, record: Any) -> Any:
        """An output record: the fields stages add rewritten, the record's own fields as sent."""
        if not isinstance(record, dict):
            return record
        added = stage_fields()  # read now: a stage kind registered after start-up counts too
        return {k: (self._stage(v) if k in added else v) for k, v in record.items()}

    def _stage(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (v if k in _TEXT_KEYS else self._stage(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._stage(v) for v in value]
        return self.text(value) if isinstance(value, str) else value


def _last_part(match: re.Match[str]) -> str:
    path = match.group(0).rstrip("/")
    return path.rsplit("/", 1)[-1] or path


__all__ = ["Redactor", "worker_label"]
