"""A deterministic model that replays scripted answers: for tests and dry runs of control flow.

It never claims a capability: it answers what it is told to, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lbi.agent.llm import Budget, Completion
from lbi.types import LLMCall

Answer = str | Callable[[list[dict[str, Any]]], str]


class ScriptedLLM:
    """Returns the scripted answers in order (a callable answer sees the messages)."""

    def __init__(self, answers: Iterable[Answer], name: str = "scripted",
                 budget: Budget | None = None) -> None:
        self.answers = list(answers)
        self._name = name
        self.budget = budget or Budget()
        self.seen: list[list[dict[str, Any]]] = []

    @property
    def name(self) -> str:
        return self._name

    def complete(self, messages: list[dict[str, Any]], **_: Any) -> Completion:
        self.budget.check()
        if len(self.seen) >= len(self.answers):
            raise IndexError(f"{self._name}: script exhausted after {len(self.answers)} answers")
        answer = self.answers[len(self.seen)]
        self.seen.append(messages)
        text = answer(messages) if callable(answer) else answer
        call = LLMCall(model=self._name, input_tokens=sum(len(m["content"]) for m in messages) // 4,
                       output_tokens=len(text) // 4)
        self.budget.add(call)
        return Completion(text=text, call=call)
