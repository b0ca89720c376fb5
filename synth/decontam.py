"""Decontamination: synthesized data must not contain the evaluation tasks.

An instruction is contaminated when it equals an evaluation instruction (after normalization)
or shares at least ``max_overlap`` of its word n-grams with one; an example is also
contaminated when one of its actions is an evaluation task's gold action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lbi.types import Example, Task


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[k:k + n]) for k in range(len(words) - n + 1)}


def normalize_action(action: str) -> str:
    """Case, whitespace, a trailing semicolon and a ``submit`` prefix do not matter."""
    action = re.sub(r"^\s*submit\b", "", action.strip(), flags=re.I)
    return " ".join(action.lower().replace(";", " ").split())


@dataclass
class Decontaminator:
    eval_tasks: list[Task]
    ngram: int = 8
    max_overlap: float = 0.5
    _exact: set[str] = field(init=False)
    _grams: set[tuple[str, ...]] = field(init=False)
    _gold: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self._exact = {" ".join(_words(t.instruction)) for t in self.eval_tasks}
        self._grams = set().union(*(_ngrams(_words(t.instruction), self.ngram)
                                    for t in self.eval_tasks)) if self.eval_tasks else set()
        self._gold = {normalize_action(gold) for t in self.eval_tasks
                      for gold in [t.gold, *t.alternative_golds] if gold}

    def instruction_reason(self, instruction: str) -> str | None:
        """Why an instruction is contaminated, or None."""
        words = _words(instruction)
        if " ".join(words) in self._exact:
            return "exact match with an evaluation instruction"
        grams = _ngrams(words, self.ngram)
        if grams:
            share = len(grams & self._grams) / len(grams)
            if share >= self.max_overlap:
                return f"{share:.0%} of its {self.ngram}-grams occur in evaluation instructions"
        return None

    def example_reason(self, example: Example) -> str | None:
        """Why an example is contaminated (instruction, source task or a gold action), or None."""
        for text in (example.instruction, example.provenance.get("source_task", "")):
            if text and (reason := self.instruction_reason(text)):
                return reason
        for step in example.steps:
            if normalize_action(step.action) in self._gold:
                return "an action equals an evaluation task's gold action"
        return None
