"""The agent's prompt (docs/method.md; the paper's Tables 32-33) and its answer parser.

Layout of one step's prompt: system message; additional information for reference (optional:
retrieved examples or docs); objective; interaction history; current observation. The model
answers ``REASON: … ACTION: …``. The same layout is used at inference and for training rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lbi.types import Step

SYSTEM_TEMPLATE = (
    "You are an agent that completes tasks in the {env} environment by taking one action at a "
    "time."
    """

{action_space}

Answer in exactly this format:
REASON: <one or two sentences on what to do next and why>
ACTION: <the action>"""
)


@dataclass
class HistoryPolicy:
    """How much of the interaction history goes into each prompt."""

    observation_chars: int = 1500
    """Each past observation is cut to this many characters (the cut is marked)."""
    max_chars: int = 12000
    """If the rendered history is longer, the oldest steps are dropped (and the drop is marked)."""


def system_message(env_name: str, action_space: str) -> str:
    return SYSTEM_TEMPLATE.format(env=env_name, action_space=action_space)


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked."""
    return text if len(text) <= limit else text[:limit] + " …[cut]"


def render_history(steps: list[Step], policy: HistoryPolicy) -> str:
    """Past steps (the observation seen, the action taken), oldest first, fitted to the budget."""
    blocks = [
        f"Step {k + 1}\nOBSERVATION: {cut_text(s.observation, policy.observation_chars)}\n"
        f"ACTION: {s.action}"
        for k, s in enumerate(steps)
    ]
    kept: list[str] = []
    total = 0
    for block in reversed(blocks):
        if total + len(block) > policy.max_chars and kept:
            break
        kept.append(block)
        total += len(block) + 2
    dropped = len(blocks) - len(kept)
    lines = [f"[{dropped} earlier steps omitted]"] if dropped else []
    return "\n\n".join(lines + list(reversed(kept))) or "(none yet)"


def user_message(instruction: str, history: str, observation: str, reference: str = "") -> str:
    parts = []
    if reference:
        parts.append(f"## Additional information for reference\n{reference}")
    parts += [f"## Objective\n{instruction}", f"## Interaction history\n{history}",
              f"## Current observation\n{observation}"]
    return "\n\n".join(parts)


def build_messages(*, env_name: str, action_space: str, instruction: str, steps: list[Step],
                   observation: str, policy: HistoryPolicy,
                   reference: str = "") -> list[dict[str, str]]:
    """The chat messages for the next action."""
    return [
        {"role": "system", "content": system_message(env_name, action_space)},
        {"role": "user", "content": user_message(instruction, render_history(steps, policy),
                                                 observation, reference)},
    ]


def format_response(reasoning: str, action: str) -> str:
    """The assistant turn, as the model is asked to write it (used for training targets)."""
    return f"REASON: {reasoning}\nACTION: {action}"


# GBNF for llama.cpp: forces the REASON/ACTION layout. The reason is one capped line (small
# models otherwise ramble until max_tokens and never act); the action is free text up to the end
# of the turn (a stricter action rule made llama.cpp end turns mid-token, e.g. `'dog` for `'dog'`).
RESPONSE_GRAMMAR = r"""root ::= "REASON: " [^\n]{1,300} "\nACTION: " [^\n] ([^\n] | "\n")*"""

# Where a model that keeps going starts to invent the environment's side of the dialogue.
STOP_SEQUENCES = ["\nOBSERVATION", "\nREASON:", "\n## "]


class FormatError(ValueError):
    """The model's answer has no recognisable action."""


_ACTION = re.compile(r"^\s*\**\s*ACTION\s*\**\s*:\s*\**\s*", re.I | re.M)
_REASON = re.compile(r"^\s*\**\s*REASON(ING)?\s*\**\s*:\s*\**\s*", re.I | re.M)
# What starts the next turn after an action: a label, or a step number at the start of a line
# ("Step 2 OBSERVATION: …", "Step 2: fill(…)": the layout of the history and of retrieved
# examples, which models go on with; an indented "Step 2" may be a line of code)
_TRAILER = re.compile(r"^(\s*\**\s*(REASON|OBSERVATION|ACTION)\s*\**\s*:|Step\s+\d+\b)",
                      re.I | re.M)
CUT_OFF = ("Your answer was cut off at the length limit before the action ended. Answer again "
           "with a one-sentence REASON and the whole ACTION.")
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n?(.*?)```", re.S)


def _unfence(text: str) -> str:
    match = _FENCE.search(text)
    if match:
        return match.group(1).strip()
    return text.strip().strip("`").strip()


def parse_response(text: str, truncated: bool = False) -> tuple[str, str]:
    """(reasoning, action) from a ``REASON: … ACTION: …`` answer, leniently.

    Accepts markdown emphasis around the labels, code fences around the action and a missing
    REASON. Text after the action that starts another label or step (a hallucinated
    OBSERVATION, a second step) is dropped. Without an ACTION label, a single fenced code block
    is taken as the action. An answer ``truncated`` at the length limit gives an action only
    where such a trailer shows that the action had ended before the cut (a cut-off action must
    never run). Anything else raises FormatError.
    """
    match = _ACTION.search(text)
    if match:
        head, action = text[: match.start()], text[match.end():]
        trailer = _TRAILER.search(action)
        if trailer:
            action = action[: trailer.start()]
        elif truncated:
            raise FormatError(CUT_OFF)
        action = _unfence(action)
        reason_match = _REASON.search(head)
        reasoning = head[reason_match.end():] if reason_match else head
        if action:
            return reasoning.strip(), action
    if truncated:
        raise FormatError(CUT_OFF)
    fences = _FENCE.findall(text)
    if len(fences) == 1 and fences[0].strip():
        return _FENCE.sub("", text).strip(), fences[0].strip()
    raise FormatError(
        "Your answer had no action. Answer in exactly this format:\n"
        "REASON: <why>\nACTION: <the action>"
    )
