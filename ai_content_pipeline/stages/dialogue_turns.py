"""Dialogues written turn by turn: one model call per host's line.

A dialogue template with ``turns: N`` (:class:`~ai_content_pipeline.templates.Template`) is not
asked for a whole labelled conversation (a small model cannot keep one: it drops labels,
narrates, lets one host speak twice). Each turn is one request instead:

- the hosts speak in order (the opener first, then each host in turn), so labels,
  alternation and every host's share of turns hold by construction;
- a turn's request is the template's ``system`` prompt rendered for that turn (``speaker``,
  ``listener``, ``turn``, ``turns``, ``previous``: the last :data:`HISTORY_TURNS` turns), the
  earlier of those turns as chat history (the speaker's own lines as the assistant's, the
  others' as the user's) and the ``user`` prompt (typically the line just said to the
  speaker); the reply is that speaker's line only;
- the reply is cleaned (:func:`~ai_content_pipeline.dialogue.clean_turn`: a leading label or
  "Sam says:", what follows another speaker's label, stage directions, a sentence cut by the
  token budget go) and checked on its own (:meth:`TurnWriter.turn_failures`: not empty, whole
  sentences, words within the turn's share and ``turn_words``, no label or direction left,
  ``no_echo`` against its own request (so it does not repeat the line it answers),
  ``grounded``; the first turn names the topic, the last leaves no ``mentions`` or ``topic``
  word unsaid); a turn that fails is asked again with a derived seed, up to
  :data:`TURN_TRIES` requests (:data:`LAST_TURN_TRIES` for the last turn), and the best of them is kept
  (:func:`~ai_content_pipeline.checks.choose`).

The assembled turns become the take's reply (``Label: text`` lines), which the script stage
parses and checks like any dialogue: the checks run on the whole script, not on the turns'
own verdicts. ``best_of`` candidates are whole dialogues, written side by side: turn ``k``
of every candidate is asked in one :meth:`~ai_content_pipeline.backends.base.LLMBackend.generate_batch`
call (one batch on llama.cpp).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from ..backends.base import BatchRequest, Completion, GenerationParams
from ..checks import check_mentions, check_topic, choose, echo_phrases, evaluate
from ..dialogue import assemble, clean_turn, hosts_of, turn_problems
from ..errors import RecordError
from ..records import content_hash
from ..templates import Persona, Template
from .plan import plan_for

#: Requests a turn may take: the first and up to three asked again after failing its checks.
TURN_TRIES = 4
#: Requests the last turn may take: it must leave no ``mentions`` or ``topic`` word unsaid (the
#: song and the artist a banter ends on), which SmolLM2-135M does in about one reply of six.
LAST_TURN_TRIES = 12
#: Earlier turns a turn's request shows (the context's ``previous``).
HISTORY_TURNS = 2
#: Fewest words a turn has, whatever its share of the length window.
MIN_TURN_WORDS = 3
#: A long-form dialogue's section of ``words`` words has ``round(words / WORDS_PER_TURN)`` turns
#: (at least 2: each host speaks in every section).
WORDS_PER_TURN = 20


def turn_plan(template: Template, sections: list[dict[str, Any]] | None = None,
              words: int | None = None) -> list[tuple[dict[str, Any] | None, int]] | None:
    """How a dialogue template is written turn by turn: ``[(section, turns)]`` in order, one
    entry of ``(None, template.turns)`` for a dialogue of ``turns``; for one with ``sections``
    (the template's, or ``sections`` replacing them, scaled to ``words`` when given:
    :func:`~ai_content_pipeline.stages.longform.plan_for`) each section (``{name, brief,
    words}``) with ``max(2, round(words / WORDS_PER_TURN))`` turns. ``None``: not written turn by
    turn (a one-voice template, a one-call dialogue).

    :raises ConfigError: a bad section plan.
    """
    if not template.dialogue:
        return None
    if sections or template.sections:
        return [(s.model_dump(), max(2, round(s.words / WORDS_PER_TURN))) for s in plan_for(template, sections, words)]
    return [(None, template.turns)] if template.turns is not None else None


def turn_seed(seed: int | None, turn: int, attempt: int) -> int | None:
    """Seed of request ``attempt`` (0, 1...) of turn ``turn`` (1-based) of a candidate whose
    seed is ``seed``: derived by a hash (turn 1's first request keeps ``seed``), so reruns are
    identical and no two requests of a take share one. ``None`` (engine's choice) stays ``None``."""
    if seed is None or (turn == 1 and attempt == 0):
        return seed
    return int(content_hash(["turn", seed, turn, attempt], 8), 16) % 2**31


class TurnWriter:
    """Writes the candidates of one dialogue take turn by turn (see the module docstring).

    :param template: the dialogue template (``turns`` set).
    :param hosts: the take's hosts, first the opener.
    :param context: the take's prompt context (:meth:`~ai_content_pipeline.templates.Template.request`'s).
    :param generate: ``generate(requests) -> [[Completion] | Exception]``, as
        :meth:`~ai_content_pipeline.backends.base.LLMBackend.generate_batch` (the stage's, with
        its retries).
    :param plan: :func:`turn_plan` (default: the template's own).
    """

    def __init__(self, template: Template, hosts: list[Persona], context: dict[str, Any], generate: Any,
                 plan: list[tuple[dict[str, Any] | None, int]] | None = None) -> None:
        plan = plan or turn_plan(template)
        assert plan
        self.template = template
        self.hosts = hosts
        self.parse_hosts = hosts_of(hosts)
        self.context = context
        self.generate = generate
        #: per turn (0-based): ``(section, section number, turn in the section, the section's turns)``
        self.sections = [(section, i, k, n) for i, (section, n) in enumerate(plan, start=1) for k in range(1, n + 1)]
        self.count = len(self.sections)
        self._instructions: str | None = None
        checks = template.checks
        target = int(context.get("target_words") or template.target_words)
        low = round(checks.length.min * target) if checks.length is not None else 0
        self.min_words = max(MIN_TURN_WORDS, math.ceil(low / self.count))
        share = round(checks.length.max * target / self.count) if checks.length is not None else None
        limits = [n for n in (checks.turn_words, share) if n]
        self.max_words = min(limits) if limits else None
        #: what one turn is checked for on its own (the whole script's windows left to the take)
        self.turn_checks = checks.model_copy(update={"length": None, "mentions": [], "topic": []})

    # -- requests ------------------------------------------------------------------
    def turn_context(self, turn: int, done: list[tuple[str, str]]) -> dict[str, Any]:
        """The prompt context of turn ``turn`` (1-based) after the turns ``done``
        (``[(persona name, text)]``)."""
        speaker = self.hosts[(turn - 1) % len(self.hosts)]
        spoken_to = done[-1][0] if done else self.hosts[1 % len(self.hosts)].name
        listener = next(h for h in self.hosts if h.name == spoken_to)
        by_name = {h.name: h for h in self.hosts}
        previous = [{"speaker": who, "name": by_name[who].display_name or who, "text": text}
                    for who, text in done[-HISTORY_TURNS:]]
        ctx = {**self.context, "speaker": speaker.model_dump(), "listener": listener.model_dump(),
               "turn": turn, "turns": self.count, "previous": previous}
        section, chunk, at, count = self.sections[turn - 1]
        if section is not None:
            ctx.update(section=section, chunk=chunk, section_turn=at, section_turns=count)
        return ctx

    def messages(self, turn: int, done: list[tuple[str, str]]) -> list[dict[str, str]]:
        """The chat of turn ``turn``: the rendered ``system``, the earlier turns of ``previous``
        but the last as chat history, the rendered ``user``."""
        ctx = self.turn_context(turn, done)
        speaker = ctx["speaker"]["name"]
        out = [{"role": "system", "content": self.template.render("system", ctx)}]
        for item in ctx["previous"][:-1]:
            out.append({"role": "assistant" if item["speaker"] == speaker else "user", "content": item["text"]})
        out.append({"role": "user", "content": self.template.render("user", ctx)})
        return out

    def instructions(self) -> str:
        """What the take was asked, less the hosts' own lines: every turn's ``system`` prompt
        and the first turn's ``user`` prompt (the prompt the whole script's ``no_echo`` and
        ``grounded`` read); rendered once."""
        if self._instructions is not None:
            return self._instructions
        parts: list[str] = []
        done: list[tuple[str, str]] = []
        for turn in range(1, self.count + 1):
            ctx = self.turn_context(turn, done)
            for part in ("system", "user") if turn == 1 else ("system",):
                text = self.template.render(part, ctx)
                if text not in parts:
                    parts.append(text)
            done.append((ctx["speaker"]["name"], ""))
        self._instructions = "\n".join(parts)
        return self._instructions

    # -- one turn's checks ---------------------------------------------------------------
    def turn_failures(self, text: str, turn: int, done: list[tuple[str, str]],
                      messages: list[dict[str, str]]) -> list[str]:
        """The checks one turn's cleaned ``text`` fails, by name (``[]``: keep it)."""
        if not text:
            return ["empty"]
        prompt = "\n".join(m["content"] for m in messages)
        # the take's context, not the turn's: a turn's number or its lines before support no claim
        verdict = evaluate(text, self.turn_checks, context=self.context, prompt=prompt, target_words=self.min_words,
                           phrases=echo_phrases(prompt, self.context))
        failed = list(verdict["failed"])
        words = len(text.split())
        if words < self.min_words or (self.max_words is not None and words > self.max_words):
            failed.append("length")
        if turn_problems(text, self.parse_hosts) is not None:
            failed.append("clean_turns")
        checks = self.template.checks
        if turn == 1 and checks.topic and check_topic(text, checks.topic, self.context):
            failed.append("topic")
        if turn == self.count:  # the last chance to say what the whole script must
            spoken = "\n".join([*(t for _, t in done), text])
            if checks.mentions and check_mentions(spoken, checks.mentions, self.context):
                failed.append("mentions")
            if checks.topic and check_topic(spoken, checks.topic, self.context):
                failed.append("topic")
        return failed

    # -- the candidates --------------------------------------------------------------------
    def write(self, candidates: list[GenerationParams]) -> list[Completion]:
        """One reply per candidate (``candidates``: their parameters, seeds included): the
        assembled ``Label: text`` lines, its tokens summed over every request made for it.

        :raises RecordError: a request failed (after the backend's retries).
        """
        t0 = time.perf_counter()
        done: list[list[tuple[str, str]]] = [[] for _ in candidates]
        tokens = [[0, 0] for _ in candidates]
        for turn in range(1, self.count + 1):
            tries: list[list[tuple[str, list[str]]]] = [[] for _ in candidates]
            pending = list(range(len(candidates)))
            for attempt in range(LAST_TURN_TRIES if turn == self.count else TURN_TRIES):
                asked = [(c, self.messages(turn, done[c])) for c in pending]
                requests = [BatchRequest(msgs, [dataclasses.replace(
                    candidates[c], seed=turn_seed(candidates[c].seed, turn, attempt))]) for c, msgs in asked]
                results = self.generate(requests)
                for (c, msgs), result in zip(asked, results, strict=True):
                    if isinstance(result, Exception):
                        raise result if isinstance(result, RecordError) else RecordError(str(result), stage="script")
                    reply = result[0]
                    tokens[c][0] += reply.prompt_tokens
                    tokens[c][1] += reply.completion_tokens
                    text, _ = clean_turn(reply.text, self.parse_hosts, self.max_words)
                    tries[c].append((text, self.turn_failures(text, turn, done[c], msgs)))
                pending = [c for c in pending if tries[c][-1][1]]
                if not pending:
                    break
            speaker = self.hosts[(turn - 1) % len(self.hosts)].name
            target = (self.min_words + (self.max_words or self.min_words * 3)) // 2
            for c in range(len(candidates)):
                usable = [t for t in tries[c] if t[0]]
                if not usable:
                    continue  # nothing said: the turn is left out (the script's checks see it)
                best = usable[choose([{"words": len(t.split()), "failed": f} for t, f in usable], target)]
                done[c].append((speaker, best[0]))
        seconds = time.perf_counter() - t0
        return [Completion(text=assemble(turns, self.parse_hosts).text, prompt_tokens=tokens[c][0],
                           completion_tokens=tokens[c][1], done_reason="stop", seconds=seconds)
                for c, turns in enumerate(done)]


__all__ = ["HISTORY_TURNS", "LAST_TURN_TRIES", "MIN_TURN_WORDS", "TURN_TRIES", "WORDS_PER_TURN", "TurnWriter", "turn_plan", "turn_seed"]
