"""A deterministic model that replays scripted answers: for tests and dry runs of control flow.

It never claims a capability: it answers what it is told to, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lbi.agent.llm import Budget
from lbi.protocols import Completion
from lbi.types import LLMCall

Answer = str | Callable[[list[dict[str, Any]]], str]


class ScriptedLLM:
    """Returns the scripted answers in order (a callable answer sees the messages).

    ``answers`` may also be one callable, which then answers every call.
    """

    def __init__(self, answers: Iterable[Answer] | Callable[[list[dict[str, Any]]], str],
                 name: str = "scripted", budget: Budget | None = None) -> None:
        self.respond = answers if callable(answers) else None
        self.answers = [] if callable(answers) else list(answers)
        self._name = name
        self.budget = budget or Budget()
        self.seen: list[list[dict[str, Any]]] = []

    @property
    def name(self) -> str:
        return self._name

    def complete(self, messages: list[dict[str, Any]], **_: Any) -> Completion:
        self.budget.check()
        if self.respond is None and len(self.seen) >= len(self.answers):
            raise IndexError(f"{self._name}: script exhausted after {len(self.answers)} answers")
        answer = self.respond or self.answers[len(self.seen)]
        self.seen.append(messages)
        text = answer(messages) if callable(answer) else answer
        call = LLMCall(model=self._name, input_tokens=sum(len(m["content"]) for m in messages) // 4,
                       output_tokens=len(text) // 4)
        self.budget.add(call)
        return Completion(text=text, call=call)
