"""Stage 4: the committee filter (PAPER.md §4), plus the environment's own check.

Each committee member judges an example on four criteria (aligned, coherent, natural,
reasonable); a member votes yes only if all four hold. The reducer is unanimous (the paper's
rule) or majority. Every vote and reason is kept on the example.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from lbi.agent.loop import ChatModel
from lbi.envs.base import Environment
from lbi.synth.prompts import JUDGE, JUDGE_SCHEMA, json_format, parse_judgement, render_trajectory
from lbi.types import Example, Vote


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


def judge(llm: ChatModel, example: Example) -> Vote:
    """One member's vote; an unusable answer counts as a 'no' with the reason recorded (a
    failed call is raised: it is no vote)."""
    prompt = JUDGE.format(env=example.env, instruction=example.instruction,
                          trajectory=render_trajectory(example.steps, example.final_observation))
    out = llm.complete([{"role": "user", "content": prompt}],
                       response_format=json_format(JUDGE_SCHEMA))
    try:
        criteria, reason = parse_judgement(out.text)
    except ValueError as exc:
        return Vote(model=llm.name, accept=False, reason=f"unparsable judgement: {exc}")
    return Vote(model=llm.name, accept=all(criteria.values()), criteria=criteria, reason=reason)


def reduce_votes(votes: list[Vote], rule: Literal["unanimous", "majority"]) -> bool:
    yes = sum(v.accept for v in votes)
    return yes == len(votes) if rule == "unanimous" else yes * 2 > len(votes)


def filter_example(committee: list[ChatModel], env: Environment, example: Example,
                   rule: Literal["unanimous", "majority"], use_env_check: bool) -> Judgement:
    """Environment check first (free), then the committee."""
    check = env.check_span(example.steps, example.final_observation) if use_env_check else None
    if check is False:
        return Judgement(id=example.id, accepted=False, votes=[], env_check=False,
                         rejected_by="env_check")
    votes = [judge(member, example) for member in committee]
    accepted = reduce_votes(votes, rule)
    return Judgement(id=example.id, accepted=accepted, votes=votes, env_check=check,
                     rejected_by=None if accepted else "committee")
