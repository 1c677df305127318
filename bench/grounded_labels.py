"""Precision and recall of the `grounded` check on hand-labelled takes.

`bench/grounded-labels.jsonl` holds takes written by the embedded SmolLM2-135M
(`aicp-script`, built-in templates, several seeds, personas and song lists), one per
line: the record, template (a built-in name, or the YAML file of the version it was written
with, such as bench/templates/song-intro-v3.yaml), persona and take index it was written for, its `text`, and
a hand label read against the record: `invented` (does the take state a fact it was not
given?) with the invented `spans`, each of kind `name` (a person, band, title, place,
award...), `number` (a year, date, count, decade) or `other` (a claim without a name or
number: "their debut album", "a jazz saxophonist"). `split` is `tune` (the takes the
rules were written against) or `holdout` (labelled before the check was run on them).

The check is re-run on each take (prompt rendered again from the template, persona and
record) and scored as a detector of "this take has an invented fact":
precision = flagged takes that have one / flagged takes; recall = takes with one that
are flagged / takes with one. A second pair scores only invented names and numbers, what
the check looks for.

Usage: .venv/bin/python bench/grounded_labels.py [--show]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ai_content_pipeline.checks import check_grounded  # noqa: E402
from ai_content_pipeline.templates import load_persona, load_template  # noqa: E402

LABELS = os.path.join(ROOT, "bench", "grounded-labels.jsonl")


def flagged(label: dict) -> list[str]:
    """The check's unsupported claims for a labelled take."""
    name = label["template"]  # a built-in name, or a file under bench/ (the version the take was made with)
    template = load_template(os.path.join(ROOT, name) if name.endswith(".yaml") else name)
    messages, ctx = template.request(label["record"], load_persona(label["persona"]), take=label["take"])
    return check_grounded(label["text"], "\n".join(m["content"] for m in messages), ctx)


def counts(rows: list[tuple[bool, bool]]) -> dict[str, float | int]:
    """Precision and recall of ``(truth, flagged)`` pairs: ``{"precision", "recall"}`` (0-1,
    NaN when undefined) and the counts ``tp``, ``fp``, ``fn``, ``good`` (takes without truth)."""
    tp = sum(1 for truth, flag in rows if truth and flag)
    fp = sum(1 for truth, flag in rows if flag and not truth)
    fn = sum(1 for truth, flag in rows if truth and not flag)
    return {"precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "tp": tp, "fp": fp, "fn": fn, "good": sum(1 for truth, _ in rows if not truth)}


def score(rows: list[tuple[bool, bool]]) -> str:
    c = counts(rows)
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    return (f"precision {100 * c['precision']:5.1f}% ({tp}/{tp + fp}), recall {100 * c['recall']:5.1f}% "
            f"({tp}/{tp + fn}), good takes failed {fp}/{c['good']}")


def load(path: str = LABELS) -> list[dict]:
    """The hand-labelled takes of ``path`` (JSON Lines)."""
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def measure(labels: list[dict] | None = None) -> list[tuple[dict, list[str], bool, bool]]:
    """``(label, flagged claims, has an invented fact, has an invented name or number)`` for
    each labelled take (default: every take of :data:`LABELS`)."""
    out = []
    for lab in load() if labels is None else labels:
        named = any(s["kind"] in ("name", "number") for s in lab["spans"])
        out.append((lab, flagged(lab), bool(lab["invented"]), named))
    return out


def summary() -> str:
    """One line: the check's precision and recall on invented names and numbers, all labels."""
    results = measure()
    return (f"grounded check on {len(results)} hand-labelled takes, invented name/number: "
            f"{score([(r[3], bool(r[1])) for r in results])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--show", action="store_true", help="print each take the check gets wrong")
    args = ap.parse_args()
    labels = load()
    results = measure(labels)
    for lab, claims, _, _ in results:
        if args.show and bool(claims) != bool(lab["invented"]):
            kind = "FAILED A GOOD TAKE" if claims else "MISSED"
            print(f"{kind} [{lab['split']}] {lab['record'].get('id')}: flagged {claims}, "
                  f"label {[s['text'] for s in lab['spans']]}\n    {lab['text']!r}")
    print(f"grounded check on {len(labels)} hand-labelled takes "
          f"({sum(r[2] for r in results)} with an invented fact)")
    for split in ("tune", "holdout", "all"):
        part = [r for r in results if split == "all" or r[0]["split"] == split]
        print(f"{split:8s} {len(part):3d} takes  any invented fact:   {score([(r[2], bool(r[1])) for r in part])}")
        print(f"{'':8s} {'':9s}  invented name/number: {score([(r[3], bool(r[1])) for r in part])}")


if __name__ == "__main__":
    main()
