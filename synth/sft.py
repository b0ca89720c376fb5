"""Examples → step-level action-prediction conversations (PAPER.md §5, Training).

Each step of an example becomes one conversation in exactly the prompt the agent sees at
inference (system / objective / history / current observation), answered by
``REASON: … ACTION: …``. The history is the example's own earlier steps.
"""

from __future__ import annotations

from lbi.agent.prompts import HistoryPolicy, build_messages, format_response
from lbi.types import Example


def step_conversations(example: Example, action_space: str,
                       policy: HistoryPolicy | None = None) -> list[list[dict[str, str]]]:
    """One ``messages`` list per step of ``example``, ending with the assistant's action."""
    policy = policy or HistoryPolicy()
    conversations = []
    for k, step in enumerate(example.steps):
        messages = build_messages(env_name=example.env, action_space=action_space,
                                  instruction=example.instruction, steps=example.steps[:k],
                                  observation=step.observation, policy=policy)
        messages.append({"role": "assistant",
                         "content": format_response(step.reasoning, step.action)})
        conversations.append(messages)
    return conversations
