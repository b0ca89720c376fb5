"""The three interfaces the toolkit is built on, in one place (like mini-swe-agent's
``Model`` / ``Environment`` / ``Agent``): a chat model, an environment, and the hook that gives
an agent its reference block. ``LLM`` and ``ScriptedLLM`` are chat models; every ``envs/``
package (and any plugin, docs/environments.md) is an environment; ``AgenticRetriever`` is a
reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lbi.types import Document, LLMCall, Retrieval, Step, Task

if TYPE_CHECKING:
    from lbi.envs.base import TaskContext


@dataclass
class Completion:
    """A model's answer and the record of the call."""

    text: str
    call: LLMCall
    truncated: bool = False
    """The answer stopped at ``max_tokens`` (finish reason ``length``): it may end mid-action."""


class ChatModel(Protocol):
    """What the agent loop and the synthesis stages need of a model."""

    @property
    def name(self) -> str: ...

    def complete(self, messages: list[dict[str, str]], **overrides: Any) -> Completion: ...


Reference = Callable[[Task, list[Step], str], Retrieval]
"""Produces the 'additional information' block for a step (retrieved examples, docs); the
record is kept on the step."""


@runtime_checkable
class Environment(Protocol):
    """An environment the agent acts in.

    ``reset`` starts an episode from a clean, deterministic state and returns o0; ``step``
    applies one action and returns (observation, done). Actions run sandboxed: they cannot touch
    the host, and each has a time limit.

    Optional: ``describe_action(observation, action) -> str | None`` names what an action acts
    on in words (web: the element behind an id); the agent loop stores it as ``Step.target``.
    ``goal_reached(final_observation) -> bool`` says whether an observation reports the goal the
    environment itself states (MiniWoB's "Page goal: …") as reached; backward construction
    keeps an instruction that restates that goal only for a span that reached it.
    """

    name: str
    action_space: str
    """How to act, for the system prompt."""

    def reset(self, task: Task) -> str: ...

    def step(self, action: str) -> tuple[str, bool]: ...

    def evaluate(self) -> float | None:
        """The episode's reward when the environment can check it (the task has a gold)."""
        ...

    def docs(self) -> Iterable[Document]:
        """The documentation corpus used to generate tasks."""
        ...

    def benchmark_tasks(self) -> list[Task]:
        """Held-out evaluation tasks with gold answers."""
        ...

    def task_contexts(self) -> list[TaskContext]:
        """The set-ups a generated task can target (e.g. one per database), with a description
        the task generator sees so that its tasks are doable there."""
        ...

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        """The environment's own check of a sub-trajectory (None: it cannot tell)."""
        ...

    def close(self) -> None: ...
