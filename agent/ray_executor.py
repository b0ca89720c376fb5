"""The Ray executor: the same item work (``synth/work.py``, ``eval/work.py``) on a Ray cluster.

Each environment lives in a Ray actor (``EnvWorker``): built once, reused item after item, and
restarted by Ray if its process dies, with the interrupted call retried there
(``max_restarts``, ``max_task_retries``). An actor asks Ray for ``cpus_per_env`` CPUs, so Ray
places as many as the cluster holds. The driver keeps one thread per actor waiting on its calls
(``run_pool``): the failure policy, the progress bar, the stores, budgets and resume are the
local executor's. LLM usage is counted in the actor and added to the stage budget by the
driver, so a call budget is checked before each item (not each call) and may be passed by at
most the items in flight.

Optional: ``pip install "learn-by-interact[ray]"``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rich.console import Console

from lbi.agent.llm import LLM, Budget, LLMConfig
from lbi.agent.runner import ModelSource, PoolOutcome, StageModels, Work, run_pool
from lbi.errors import ConfigError
from lbi.protocols import ChatModel, Environment

T = TypeVar("T")
log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor kind ray needs Ray: pip install 'learn-by-interact[ray]'"
                          ) from None
    return ray


class EnvWorker:
    """A Ray actor's state: one environment and the models it has been asked for."""

    def __init__(self, env: str, env_args: dict[str, Any],
                 make_model: Callable[[LLMConfig, Budget], ChatModel]) -> None:
        from lbi.envs import make_env

        self.env: Environment = make_env(env, **env_args)
        self.make_model = make_model
        self.models: dict[str, ChatModel] = {}
        self.budget = Budget()

    def model(self, config: LLMConfig) -> ChatModel:
        key = config.model_dump_json()
        if key not in self.models:
            self.models[key] = self.make_model(config, self.budget)
        return self.models[key]

    def run(self, work: Work, item: Any) -> tuple[Any, dict[str, Any]]:
        """The work's result and the LLM usage it cost."""
        start = self.budget.summary()
        result = work(self.env, self.model, item)
        end = self.budget.summary()
        return result, {k: end[k] - start[k] for k in end}

    def close(self) -> None:
        self.env.close()


class RayExecutor:
    """Items as calls to ``env_workers`` environment actors on a Ray cluster."""

    def __init__(self, env: str, env_args: dict[str, Any], env_workers: int,
                 address: str | None = None, cpus_per_env: float = 1.0,
                 make_model: Callable[[LLMConfig, Budget], ChatModel] = LLM) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False)
        # No more actors than the cluster can place: a driver thread bound to an actor that
        # never starts would wait forever.
        fits = int(ray.cluster_resources().get("CPU", 1) // cpus_per_env)
        if env_workers > fits:
            log.warning("%d environment actors asked, %d fit the cluster (%g CPUs each)",
                        env_workers, fits, cpus_per_env)
            env_workers = max(1, fits)
        actor = ray.remote(max_restarts=-1, max_task_retries=2)(EnvWorker)
        self.actors = [actor.options(num_cpus=cpus_per_env).remote(env, env_args, make_model)
                       for _ in range(env_workers)]
        self._local = threading.local()
        self._next = 0
        self._lock = threading.Lock()
        self._inspector: Environment | None = None
        self._env_name, self._env_args = env, env_args

    def _actor(self) -> Any:
        """This driver thread's actor (one thread per actor: its calls run one at a time)."""
        if not hasattr(self._local, "actor"):
            with self._lock:
                self._local.actor = self.actors[self._next % len(self.actors)]
                self._next += 1
        return self._local.actor

    def map(self, items: Iterable[T], work: Work, on_result: Callable[[T, Any], object], *,
            models: ModelSource, description: str, console: Console,
            before: Callable[[], None] | None = None) -> PoolOutcome:
        """As ``LocalExecutor.map``; ``work`` is shipped to the actors (it must pickle)."""
        ray = _ray()
        budget = models.budget if isinstance(models, StageModels) else None

        def job(item: T) -> None:
            if before is not None:
                before()
            if budget is not None:
                budget.check()
            result, usage = ray.get(self._actor().run.remote(work, item))
            if budget is not None:
                budget.add_usage(usage)
            on_result(item, result)

        return run_pool(items, job, workers=len(self.actors), description=description,
                        console=console)

    def env(self) -> Environment:
        """An environment on the driver, for what the driver itself asks of one (the docs,
        the benchmark tasks, span checks)."""
        if self._inspector is None:
            from lbi.envs import make_env

            self._inspector = make_env(self._env_name, **self._env_args)
        return self._inspector

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            with contextlib.suppress(Exception):  # a dead actor has nothing left to close
                ray.get(actor.close.remote(), timeout=60)
            ray.kill(actor)
        if self._inspector is not None:
            self._inspector.close()
