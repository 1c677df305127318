"""A long-form episode on the real embedded model (SmolLM2-135M on llama.cpp) with no instruction
text and no cut sentence in it: every section plan line and instruction phrase is looked for."""

import re
from pathlib import Path

import orjson
import pytest

from ai_content_pipeline.checks import (
    check_instructions,
    cut_joins,
    echo_phrases,
    ends_on_sentence,
    fold,
    starts_on_sentence,
)
from ai_content_pipeline.stages.longform import plan_for
from ai_content_pipeline.templates import load_template
from tests.cli_helpers import run_bin

pytestmark = pytest.mark.e2e
TOPIC = {"id": "vinyl", "topic": "How vinyl records made a comeback",
         "notes": "sales grew for fifteen years in a row; pressing plants reopened"}
#: Instruction words a section request may carry: none may be read out.
INSTRUCTION_PHRASES = ["podcast episode:", "facts:", "names:", "numbers:", "audience:", "already said",
                       "do not repeat", "now write part", "do not greet", "do not end the show",
                       "go on with the", "more words", "carry on from what you just said",
                       "the show goes on after this", "say something new", "say only the words you speak",
                       "no headings", "no lists", "no stage directions"]


def assert_clean(text: str, words: int) -> None:
    """No section plan line (name, five words of a brief), no five words of the template's
    prompts, no instruction phrase, numbering, label, heading or markdown in ``text``."""
    template = load_template("podcast-longform")
    plan = plan_for(template, words=words)
    folded = f" {fold(text)} "
    lines = {fold(line) for line in text.splitlines()}
    for section in plan:
        assert section.name not in text and fold(section.name) not in lines, section.name
        for gram in echo_phrases(section.brief, {}):
            assert f" {gram} " not in folded, (section.name, gram)
    for gram in echo_phrases(" ".join([template.prompts["continue"], *INSTRUCTION_PHRASES]), {}):
        assert f" {gram} " not in folded, gram
    lowered = text.lower()
    for phrase in INSTRUCTION_PHRASES:
        assert phrase not in lowered, phrase
    assert check_instructions(text, [s.name for s in plan]) == []
    assert not re.search(r"\b(?:part|section)\s+\w+\s+of\s+\w+\b|[:;]\s*[;.]|\bwrite about \d", text, re.I)


def assert_whole_sentences(pieces: list[str]) -> None:
    """Every section and every paragraph opens and closes on a whole sentence."""
    assert cut_joins(pieces) == []
    for piece in pieces:
        paragraphs = piece.split("\n\n")
        assert cut_joins(paragraphs) == []
        assert starts_on_sentence(paragraphs[0]) and ends_on_sentence(paragraphs[-1])


def write_episode(tmp_path: Path, words: int, *extra: str) -> tuple[dict, list[str]]:
    work = tmp_path / "work"
    proc = run_bin("aicp-script", "--backend", "llamacpp", "--template", "podcast-longform", "--persona", "sam",
                   "--seed", "11", "--words", str(words), "--work-dir", str(work), *extra,
                   input=orjson.dumps(TOPIC) + b"\n")
    assert proc.returncode == 0, proc.stderr
    [record] = [orjson.loads(x) for x in proc.stdout.splitlines()]
    script = record["script"]
    pieces = [(work / "vinyl" / "chunks" / f"{c['index']:02d}.txt").read_text(encoding="utf-8")
              for c in script["chunks"]]
    assert script["text"] == "\n\n".join(pieces)
    return script, pieces


@pytest.mark.long  # about 6 minutes on 2 cores: make test-long
def test_a_2000_word_episode_reads_no_instruction_and_cuts_no_sentence(tmp_path):
    script, pieces = write_episode(tmp_path, 2000)
    assert script["words"] >= 1000  # the 135M model falls short of some targets; most of the episode is there
    assert_clean(script["text"], 2000)
    assert_whole_sentences(pieces)
    checks = script["checks"]
    assert checks["cut_joins"] == [] and "complete" not in checks["failed"]
    assert "no_echo" not in checks["failed"], checks.get("details")
    assert [s["section"] for s in checks["sections"]] == [s.name for s in load_template("podcast-longform").sections]


def test_best_of_two_per_section_on_the_real_model(tmp_path):
    script, pieces = write_episode(tmp_path, 300, "--best-of", "2")
    assert_clean(script["text"], 300)
    assert_whole_sentences(pieces)
    for chunk in script["chunks"]:
        checks = chunk["checks"]
        assert len(checks["candidates"]) >= 2 and checks["chosen"] in range(len(checks["candidates"]))
        chosen = checks["candidates"][checks["chosen"]]
        # the kept candidate passes whenever one does
        assert chosen["passed"] or not any(c["passed"] for c in checks["candidates"])
