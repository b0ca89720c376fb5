"""Examples → chat conversations for supervised fine-tuning (docs/method.md, fine-tuning).

``step_conversations`` is the paper's format: each step of an example becomes one conversation in
exactly the prompt the agent sees at inference (system / objective / history / current
observation), answered by ``REASON: … ACTION: …``; the history is the example's own earlier
steps. ``trajectory_conversation`` is the alternative: the whole example as one multi-turn chat
(observations as user turns, actions as assistant turns), every action trained.

These are pure functions of an ``Example``; the dataset export publishes the step format as the
``sft`` config, and ``train/sft.py`` uses the same functions for the ``examples``/``distill``
configs, so the training rows are the same however the data reaches the trainer. The prompt's
action description is the one stored with the example (its rollout's), so training builds no
environment.
"""

from __future__ import annotations

from typing import Literal

from lbi.agent.prompts import (
    HistoryPolicy,
    build_messages,
    format_response,
    render_history,
    system_message,
    user_message,
)
from lbi.errors import ConfigError, LbiError
from lbi.types import Example

Messages = list[dict[str, str]]
ConversationFormat = Literal["step", "trajectory"]


def step_conversations(example: Example, policy: HistoryPolicy | None = None) -> list[Messages]:
    """One ``messages`` list per step of ``example``, ending with the assistant's action."""
    policy = policy or HistoryPolicy()
    action_space = _action_space(example)
    conversations = []
    for k, step in enumerate(example.steps):
        messages = build_messages(env_name=example.env, action_space=action_space,
                                  instruction=example.instruction, steps=example.steps[:k],
                                  observation=step.observation, policy=policy)
        messages.append({"role": "assistant",
                         "content": format_response(step.reasoning, step.action)})
        conversations.append(messages)
    return conversations


def trajectory_conversation(example: Example) -> Messages:
    """The whole example as one chat: the first user turn carries the objective and the first
    observation, later user turns the observation each action produced."""
    messages = [{"role": "system",
                 "content": system_message(example.env, _action_space(example))}]
    for k, step in enumerate(example.steps):
        content = (user_message(example.instruction, render_history([], HistoryPolicy()),
                                step.observation) if k == 0
                   else f"## Current observation\n{step.observation}")
        messages += [{"role": "user", "content": content},
                     {"role": "assistant", "content": format_response(step.reasoning, step.action)}]
    return messages


def conversations(example: Example,
                  conversation_format: ConversationFormat = "step") -> list[Messages]:
    """The training conversations of one example in the chosen format."""
    if conversation_format == "step":
        return step_conversations(example)
    if conversation_format == "trajectory":
        return [trajectory_conversation(example)] if example.steps else []
    raise ConfigError(f"unknown conversation format {conversation_format!r} (step or trajectory)")


def _action_space(example: Example) -> str:
    """The action description the example's rollout was prompted with (stored with the data:
    training needs no environment)."""
    if not example.action_space:
        raise LbiError(f"example {example.id} has no action_space (data made before it was "
                       "stored); export it again with lbi synth (finished stages are not redone)")
    return example.action_space
