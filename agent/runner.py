"""Running work on a bounded pool: the episodes of ``lbi run``, ``lbi eval`` and ``lbi synth``,
and synthesis's other model-bound items (task generation, backward construction, votes).

One failure policy for all of them:
- an item whose model call failed after its retries (``LLMCallFailed``: the endpoint, not the
  item) stores nothing and is counted as *lost*, to be redone by the next run;
- an item whose request was refused (``RequestRejected``, e.g. longer than the context) is
  counted as *rejected* and skipped (an episode records it as its own error instead);
- after ``FAILURE_STREAK`` such failures in a row the cause is taken to be the run's (the
  endpoint is down), and no new item starts; a budget that runs out stops new items too;
- any other exception (a bad key, an unknown model, a bug) cancels the queue and is raised;
  Ctrl-C cancels the queue at once; items in flight finish and are kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lbi.agent.llm import Budget, LLMCallFailed, LLMConfig, RequestRejected
from lbi.agent.loop import Agent
from lbi.config import Strict
from lbi.envs.base import EnvPerThread
from lbi.errors import BudgetExceeded
from lbi.io import atomic_write_text
from lbi.protocols import ChatModel, Environment
from lbi.types import Step, Task, Trajectory

T = TypeVar("T")
R = TypeVar("R")

FAILURE_STREAK = 5
"""Failed model calls in a row (each after its retries) after which a run stops."""


@dataclass
class PoolOutcome:
    """What happened to the items of one ``run_pool``."""

    finished: int = 0
    lost: int = 0
    """Items whose model call failed (the endpoint): nothing stored, redone on the next run."""
    rejected: int = 0
    """Items whose request the endpoint refused (e.g. too long): skipped."""
    stopped_by: str | None = None
    """Why no new item was started (a budget, a failing endpoint), if that happened."""


def run_pool(items: Iterable[T], fn: Callable[[T], object], *, workers: int, description: str,
             console: Console, completed: int = 0, total: int | None = None) -> PoolOutcome:
    """Run ``fn`` over ``items`` on ``workers`` threads with one progress bar (``completed`` of
    ``total`` already done), under the failure policy of this module."""
    items = list(items)
    outcome = PoolOutcome()
    if not items:
        return outcome
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    streak = 0
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task(description, total=total or completed + len(items),
                                    completed=completed)
            pending = {pool.submit(fn, item) for item in items}
            while pending and not outcome.stopped_by:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if isinstance(error, LLMCallFailed | RequestRejected):
                        if isinstance(error, LLMCallFailed):
                            outcome.lost += 1
                        else:
                            outcome.rejected += 1
                        streak += 1
                        if streak >= FAILURE_STREAK:
                            outcome.stopped_by = (f"the model endpoint failed {streak} calls "
                                                  f"in a row (last: {error})")
                        continue
                    if isinstance(error, BudgetExceeded):
                        outcome.stopped_by = str(error)
                        continue
                    if error is not None:
                        raise error
                    streak = 0
                    outcome.finished += 1
                    progress.advance(bar)
            for other in pending:
                other.cancel()
            wait(pending)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return outcome


ModelSource = Callable[[LLMConfig], ChatModel]
"""The model of a role config, as a worker gets it."""
Work = Callable[[Environment, ModelSource, T], R]
"""What one item needs done, given the worker's environment and models: a module-level
function (or a ``functools.partial`` of one), so that a distributed executor can ship it."""


class StageModels:
    """One model per config for a stage, all counting into the stage's budget (``LLM`` is
    thread-safe: the workers share them)."""

    def __init__(self, make_model: Callable[[LLMConfig, Budget], ChatModel],
                 budget: Budget) -> None:
        self.make_model, self.budget = make_model, budget
        self._models: dict[str, ChatModel] = {}
        self._lock = threading.Lock()

    def __call__(self, config: LLMConfig) -> ChatModel:
        key = config.model_dump_json()
        with self._lock:
            if key not in self._models:
                self._models[key] = self.make_model(config, self.budget)
            return self._models[key]


class Executor(Protocol):
    """Runs item work with environments and models; ``LocalExecutor`` or ``RayExecutor``."""

    def map(self, items: Iterable[T], work: Work, on_result: Callable[[T, Any], object], *,
            models: ModelSource, description: str, console: Console,
            before: Callable[[], None] | None = None) -> PoolOutcome: ...

    def env(self) -> Environment: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Items on this machine's threads, each thread with its own environment instance (kept
    across stages) and the stage's shared models."""

    def __init__(self, make_env: Callable[[], Environment], workers: int) -> None:
        self.envs = EnvPerThread(make_env)
        self.workers = workers

    def map(self, items: Iterable[T], work: Work, on_result: Callable[[T, R], object], *,
            models: ModelSource, description: str, console: Console,
            before: Callable[[], None] | None = None) -> PoolOutcome:
        """``on_result(item, work(env, models, item))`` for every item, under the failure
        policy of ``run_pool``; ``before`` runs before each item (e.g. a time-budget check)."""
        def job(item: T) -> None:
            if before is not None:
                before()
            on_result(item, work(self.envs.get(), models, item))

        return run_pool(items, job, workers=self.workers, description=description,
                        console=console)

    def env(self) -> Environment:
        """The calling thread's environment instance."""
        return self.envs.get()

    def close(self) -> None:
        self.envs.close()


class ExecutorConfig(Strict):
    """Where items run: ``local`` (this machine's threads) or ``ray`` (environment actors on a
    Ray cluster, docs/scaling.md)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    """Ray: ``auto`` (the cluster this machine belongs to), ``ray://host:10001``, or None for
    a Ray instance started here."""
    env_workers: int | None = Field(None, ge=1)
    """Environments (and items) at once; default: the run's concurrency."""
    cpus_per_env: float = Field(1.0, gt=0)
    """Ray: CPUs each environment actor asks for (a browser or a sandbox needs about one)."""


def make_executor(config: ExecutorConfig, env: str, env_args: dict[str, Any], workers: int,
                  make_model: Callable[[LLMConfig, Budget], ChatModel]) -> Executor:
    """The executor a config asks for."""
    if config.kind == "ray":
        from lbi.agent.ray_executor import RayExecutor

        return RayExecutor(env, env_args, config.env_workers or workers, config.address,
                           config.cpus_per_env, make_model)
    from lbi.envs import make_env

    return LocalExecutor(lambda: make_env(env, **env_args), config.env_workers or workers)


def run_episode(agent: Agent, task: Task, path: Path | None = None,
                budget: Budget | None = None,
                on_step: Callable[[Step, str], None] | None = None) -> Trajectory:
    """One episode, saved to ``path`` after every step; its wall time (and, given the budget
    its model was made with, its LLM usage) goes into its provenance, which marks it finished."""
    started = time.perf_counter()
    traj = agent.run(task, save_to=path, on_step=on_step)
    traj.provenance["wall_s"] = round(time.perf_counter() - started, 2)
    if budget is not None:
        traj.provenance["llm"] = budget.summary()
    if path is not None:
        atomic_write_text(path, traj.model_dump_json(indent=2))
    return traj


def finished_episode(path: Path) -> Trajectory | None:
    """The episode saved at ``path`` if it ended (one stopped by a budget or cut off mid-run is
    redone)."""
    if not path.exists():
        return None
    try:
        traj = Trajectory.model_validate_json(path.read_text())
    except ValueError:
        return None
    if traj.termination in (None, "budget") or "wall_s" not in traj.provenance:
        return None
    return traj
