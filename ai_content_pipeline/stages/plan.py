"""A long-form plan: the sections of a template (or a run's own), scaled to a word total.

Shared by the long-form stage (:mod:`~ai_content_pipeline.stages.longform`) and long-form
dialogues (:mod:`~ai_content_pipeline.stages.dialogue_turns`).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import ConfigError
from ..templates import Section, Template

#: Smallest word target a section gets when a plan is scaled.
MIN_SECTION_WORDS = 20


def scale_plan(sections: list[Section], words: int) -> list[Section]:
    """Scale section word targets to a ``words`` total (largest remainder, so they sum to it).

    Every section keeps at least ``MIN_SECTION_WORDS`` (so a tiny total may be exceeded).
    """
    total = sum(s.words for s in sections)
    shares = [s.words * words / total for s in sections]
    targets = [math.floor(x) for x in shares]
    order = sorted(range(len(shares)), key=lambda i: targets[i] - shares[i])
    for i in order[: words - sum(targets)]:
        targets[i] += 1
    return [s.model_copy(update={"words": max(MIN_SECTION_WORDS, t)}) for s, t in zip(sections, targets, strict=True)]


def plan_for(template: Template, sections: list[dict[str, Any]] | None = None,
             words: int | None = None) -> list[Section]:
    """The section plan of a run: ``sections`` (a chain or option override) or the template's,
    scaled to ``words`` when given.

    :raises ConfigError: a bad section (names the index and field), or no sections at all.
    """
    plan = template.sections
    if sections:
        try:
            plan = TypeAdapter(list[Section]).validate_python(sections)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"sections: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
    if not plan:
        raise ConfigError(f"template '{template.name}' has no sections for a long-form script")
    if words is not None:
        if words < 1:
            raise ConfigError("words must be a positive number")
        plan = scale_plan(plan, words)
    return plan


__all__ = ["MIN_SECTION_WORDS", "plan_for", "scale_plan"]
