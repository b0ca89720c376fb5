"""The work of one evaluation episode, as a plain function of (environment, models, task): the
same function runs on this machine's threads or on a cluster's workers; the driver stores it."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from lbi.agent.llm import Budget, LLMConfig
from lbi.agent.loop import Agent, AgentConfig
from lbi.agent.retrieval import AgenticRetriever, Embedder, RetrievalIndex
from lbi.agent.runner import ModelSource, run_episode
from lbi.eval.config import RetrievalConfig
from lbi.protocols import ChatModel, Environment, Reference
from lbi.types import Task, Trajectory


@lru_cache(maxsize=8)
def _index(folder: str, embedder_name: str) -> RetrievalIndex:
    """A saved retrieval index, loaded once per process."""
    return RetrievalIndex.load(Path(folder), embedder(embedder_name))


@lru_cache(maxsize=4)
def embedder(name: str) -> Embedder:
    """An embedding model, loaded once per process (the driver's indexing and the episodes
    share it)."""
    return Embedder(name)


def episode(env: Environment, models: ModelSource, task: Task, *, name: str,
            model: LLMConfig, make_model: Callable[[LLMConfig, Budget], ChatModel],
            retrieval: RetrievalConfig | None, index_folder: str | None, step_limit: int,
            episode_timeout_s: float, save_steps_to: str | None = None) -> Trajectory:
    """One episode of the agent ``name``, with its own budget so that its LLM usage is recorded
    with it. ``save_steps_to``: a folder the episode is written to after every step (when the
    worker shares the driver's disk)."""
    budget = Budget()
    llm = make_model(model, budget)
    reference: Reference | None = None
    if retrieval is not None and index_folder is not None:
        reference = AgenticRetriever(
            _index(index_folder, retrieval.embedder), env=env.name, sources=retrieval.sources,
            m1=retrieval.m1, m2=retrieval.m2, max_tokens=retrieval.max_tokens, query_model=llm)
    agent = Agent(llm, env, AgentConfig(step_limit=step_limit,
                                        episode_timeout_s=episode_timeout_s),
                  reference=reference)
    path = Path(save_steps_to) / f"{task.id}.json" if save_steps_to else None
    traj = run_episode(agent, task, path, budget)
    traj.provenance["agent_config"] = name
    return traj
