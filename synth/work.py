"""The work of one item of each synthesis stage, as plain functions of (environment, models,
item): the same functions run on this machine's threads or on a cluster's workers (the
executor ships them; the driver keeps the stores)."""

from __future__ import annotations

from typing import Literal

from lbi.agent.llm import LLMConfig
from lbi.agent.loop import Agent, AgentConfig
from lbi.agent.runner import ModelSource, run_episode
from lbi.envs.base import TaskContext
from lbi.protocols import Environment
from lbi.synth import backward, taskgen
from lbi.synth.filter import Judgement, filter_example
from lbi.types import Document, Example, Task, Trajectory

Span = tuple[Trajectory, tuple[int, int], Literal["abstraction", "summary"], str]
"""(trajectory, span, kind, example id)."""


def generate_tasks(env: Environment, models: ModelSource,
                   item: tuple[Document, TaskContext | None], *, generator: LLMConfig, n: int,
                   doc_chars: int) -> taskgen.TaskGenRecord:
    doc, context = item
    return taskgen.generate_for_document(models(generator), env, doc, n, context, doc_chars)


def roll_out(env: Environment, models: ModelSource, task: Task, *, agent: LLMConfig,
             limits: AgentConfig) -> Trajectory:
    return run_episode(Agent(models(agent), env, limits), task)


def construct(env: Environment, models: ModelSource, item: Span, *,
              generator: LLMConfig) -> Example | str:
    traj, span, kind, _ = item
    return backward.construct(models(generator), traj, span, kind,
                              getattr(env, "goal_reached", None))


def judge(env: Environment, models: ModelSource, item: tuple[Example, list[str]], *,
          committee: list[LLMConfig], rule: Literal["unanimous", "majority"],
          use_env_check: bool) -> Judgement:
    example, distractors = item
    return filter_example([models(c) for c in committee], env, example, rule, use_env_check,
                          distractors)
