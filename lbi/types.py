"""The data model shared by every stage: Document, Task, Step, Trajectory, Example.

A trajectory is T = [o0, a1, o1, ..., an, on] (docs/method.md). We store it as steps where
``steps[k]`` holds the observation o_k the agent saw and the action a_{k+1} it took in response,
plus ``final_observation`` = o_n. Everything here round-trips through JSON.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


def content_id(*parts: Any) -> str:
    """A short, stable id derived from the content (used as the resume key in JSONL files)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Document(BaseModel):
    """A chunk of an environment's documentation."""

    id: str
    source: str
    """Path or URL the text came from."""
    title: str
    text: str


class Task(BaseModel):
    """Something to do in an environment."""

    id: str
    env: str
    instruction: str
    origin: Literal["doc", "benchmark", "backward", "user"]
    doc_id: str | None = None
    """The document the task was generated from (origin == "doc")."""
    env_args: dict[str, Any] = Field(default_factory=dict)
    """Environment-specific set-up, e.g. ``{"db": "pets_1"}`` for SQL."""
    gold: str | None = None
    """Reference solution (e.g. a gold SQL query), when known. Never shown to the agent."""
    alternative_golds: list[str] = Field(default_factory=list)
    """Other reference solutions (InterCode-ALFA has two per task): an answer that matches any
    gold is right."""
    difficulty: str | None = None
    """The benchmark's difficulty label (Spider hardness, InterCode-ALFA difficulty), kept for
    stratified splits and per-difficulty results."""


class LLMCall(BaseModel):
    """The record of one LLM call."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    """USD, when the provider's price is known; None for local models and unknown prices."""
    latency_s: float = 0.0
    cache_hit: bool = False
    retries: int = 0


class Retrieval(BaseModel):
    """What was put in a step's reference block (retrieval-augmented agents only)."""

    query: str | None = None
    """The search query the LLM wrote for model-based retrieval, if it was asked to."""
    ids: list[str] = Field(default_factory=list)
    """The retrieved examples (or documents) that made it into the block, in order."""
    tokens: int = 0
    """Size of the reference block."""
    llm: LLMCall | None = None
    """The query-writing call."""
    text: str = Field("", exclude=True)
    """The block itself (not saved with the step: ``ids`` name what it held)."""


class Step(BaseModel):
    """One agent step: the observation seen and the action taken in response."""

    observation: str
    action: str
    reasoning: str = ""
    screenshot: str | None = None
    """Path of a screenshot file that goes with the observation, if any."""
    target: str | None = None
    """What the action acted on, in words, where the environment can tell (web: the element's
    line of the page, e.g. ``[12] button 'Submit'``). Element ids are only valid on the page
    instance they came from; the description carries over to other pages."""
    llm: LLMCall | None = None
    retrieval: Retrieval | None = None

    @property
    def described_action(self) -> str:
        """The action with its target, for readers outside the episode (examples, judges)."""
        return f"{self.action}   # on {self.target}" if self.target else self.action


Termination = Literal["stop", "step_limit", "time_limit", "error", "budget"]


class Trajectory(BaseModel):
    """A whole episode: T = [o0, a1, o1, ..., an, on]."""

    id: str
    task: Task
    steps: list[Step] = Field(default_factory=list)
    final_observation: str = ""
    termination: Termination | None = None
    """None while the episode is still running."""
    error: str | None = None
    reward: float | None = None
    """The environment's own score, where it can check (e.g. execution match)."""
    provenance: dict[str, Any] = Field(default_factory=dict)
    """Models, env, creation time and package version that produced this trajectory."""
    action_space: str = ""
    """The environment's action description the agent was prompted with (training rows are
    built with the same text, whatever the environment's config is later)."""

    @property
    def solved(self) -> bool:
        """Success, the one definition every report uses: the environment scored the episode
        with reward >= 1 (an unscored or failed episode is not solved)."""
        return self.reward is not None and self.reward >= 1.0

    @property
    def observations(self) -> list[str]:
        """o_0 .. o_n."""
        return [s.observation for s in self.steps] + [self.final_observation]

    def span(self, i: int, j: int) -> tuple[list[Step], str]:
        """The sub-trajectory (o_i, a_{i+1}, ..., a_j, o_j) for 0 <= i < j <= n.

        Returns the steps i..j-1 and o_j. (The paper's pseudo-code ``T[i:j]`` drops o_j; the
        text's definition keeps it, and so do we.)
        """
        n = len(self.steps)
        if not 0 <= i < j <= n:
            raise ValueError(f"span ({i}, {j}) is outside 0 <= i < j <= {n}")
        return self.steps[i:j], self.observations[j]


class Vote(BaseModel):
    """One committee member's judgement of an example."""

    model: str
    accept: bool
    criteria: dict[str, bool] = Field(default_factory=dict)
    """aligned / coherent / natural / reasonable."""
    reason: str = ""


class Example(BaseModel):
    """A synthesized instruction paired with the sub-trajectory it describes."""

    id: str
    instruction: str
    kind: Literal["abstraction", "summary", "original"]
    env: str
    trajectory_id: str
    span: tuple[int, int]
    """(i, j): the sub-trajectory o_i, a_{i+1}, ..., a_j, o_j of the source trajectory."""
    env_args: dict[str, Any] = Field(default_factory=dict)
    """The source task's environment set-up (e.g. the database)."""
    steps: list[Step]
    final_observation: str
    votes: list[Vote] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    action_space: str = ""
    """The source trajectory's action description: the prompt of its training rows."""
