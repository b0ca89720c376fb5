"""Stage 4: the committee filter (docs/method.md), plus the environment's own check.

Each committee member judges an example on four criteria (aligned, coherent, natural,
reasonable) and, in the choice check, picks the example's instruction out of several written for
other trajectories (a small judge says yes to almost everything; it cannot pick right by
agreeing). A member votes yes only if every criterion holds. The reducer is unanimous (the paper's
rule) or majority. Every vote and reason is kept on the example.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from lbi.protocols import ChatModel, Environment
from lbi.synth.prompts import (
    CHOICE_CRITERIA,
    CRITERIA,
    IDENTIFIED,
    JUDGE,
    JUDGE_CHOICE,
    JUDGE_SCHEMA,
    json_format,
    judge_choice_schema,
    parse_judgement,
    render_trajectory,
)
from lbi.types import Example, Vote, content_id


class Judgement(BaseModel):
    """The filter's decision on one example (the resume unit of this stage)."""

    id: str
    """The example id."""
    accepted: bool
    votes: list[Vote]
    env_check: bool | None = None
    rejected_by: Literal["decontamination", "env_check", "committee"] | None = None
    reason: str = ""
    """Why it was rejected before the committee (decontamination)."""


def judge(llm: ChatModel, example: Example, distractors: Sequence[str] = ()) -> Vote:
    """One member's vote in one call: the four criteria or, given distractors, the choice check
    and three criteria. An unusable answer counts as a 'no' with the reason recorded (a failed
    call is raised: it is no vote)."""
    trajectory = render_trajectory(example.steps, example.final_observation)
    if distractors:
        options = [example.instruction, *distractors]
        random.Random(example.id).shuffle(options)
        letters = "ABCDEFGHIJ"[:len(options)]
        truth = letters[options.index(example.instruction)]
        prompt = JUDGE_CHOICE.format(env=example.env, trajectory=trajectory, options="\n".join(
            f"{letter}. {option}" for letter, option in zip(letters, options, strict=True)))
        schema, names = judge_choice_schema(letters), CHOICE_CRITERIA
    else:
        prompt = JUDGE.format(env=example.env, instruction=example.instruction,
                              trajectory=trajectory)
        schema, names, letters, truth = JUDGE_SCHEMA, CRITERIA, "", ""
    out = llm.complete([{"role": "user", "content": prompt}], response_format=json_format(schema))
    try:
        criteria, reason, picked = parse_judgement(out.text, names, letters)
    except ValueError as exc:
        return Vote(model=llm.name, accept=False, reason=f"unparsable judgement: {exc}")
    if letters:
        criteria = {IDENTIFIED: picked == truth, **criteria}
        reason = f"{reason} [picked {picked} of {letters}; its own is {truth}]"
    return Vote(model=llm.name, accept=all(criteria.values()), criteria=criteria, reason=reason)


def distractors_for(example: Example, pool: Sequence[Example], k: int) -> list[str]:
    """Up to ``k`` instructions of the same kind written for other trajectories, those of the
    same set-up (database, file system, page) first: the hard negatives of the choice check.
    Deterministic for a given pool."""
    candidates = sorted(
        (e for e in pool if e.trajectory_id != example.trajectory_id and e.kind == example.kind
         and e.instruction != example.instruction),
        key=lambda e: (e.env_args != example.env_args, content_id(example.id, e.id)))
    chosen: list[str] = []
    for candidate in candidates:
        if candidate.instruction not in chosen:
            chosen.append(candidate.instruction)
            if len(chosen) == k:
                break
    return chosen


def reduce_votes(votes: list[Vote], rule: Literal["unanimous", "majority"]) -> bool:
    yes = sum(v.accept for v in votes)
    return yes == len(votes) if rule == "unanimous" else yes * 2 > len(votes)


def filter_example(committee: list[ChatModel], env: Environment, example: Example,
                   rule: Literal["unanimous", "majority"], use_env_check: bool,
                   distractors: Sequence[str] = ()) -> Judgement:
    """Environment check first (free), then the committee (with the choice check when
    ``distractors`` are given)."""
    check = env.check_span(example.steps, example.final_observation) if use_env_check else None
    if check is False:
        return Judgement(id=example.id, accepted=False, votes=[], env_check=False,
                         rejected_by="env_check")
    votes = [judge(member, example, distractors) for member in committee]
    accepted = reduce_votes(votes, rule)
    return Judgement(id=example.id, accepted=accepted, votes=votes, env_check=check,
                     rejected_by=None if accepted else "committee")
