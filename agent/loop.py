"""The agent step loop: observe, ask the LLM for ``REASON/ACTION``, act, until stop or step limit.

The trajectory is written to disk after every step (in a ``finally``), so a crash or a kill
never loses the steps already taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lbi.agent.llm import LLMCallFailed, RequestRejected
from lbi.agent.prompts import (
    RESPONSE_GRAMMAR,
    STOP_SEQUENCES,
    FormatError,
    HistoryPolicy,
    build_messages,
    parse_response,
)
from lbi.errors import BudgetExceeded, EnvError, ModelError
from lbi.io import atomic_write_text
from lbi.protocols import ChatModel, Environment, Reference
from lbi.redact import redact_text
from lbi.types import LLMCall, Step, Task, Trajectory, content_id, utc_now

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    """Limits of one episode."""

    step_limit: int = 10
    """The episode ends after this many actions (termination ``step_limit``)."""
    episode_timeout_s: float | None = None
    """No new step starts after this many seconds (termination ``time_limit``)."""
    max_format_retries: int = 2
    """Re-asks, with a correction, when the answer has no parsable action."""
    history: HistoryPolicy = field(default_factory=HistoryPolicy)


class Agent:
    """Runs episodes of one model in one environment."""

    def __init__(self, model: ChatModel, env: Environment, config: AgentConfig | None = None,
                 reference: Reference | None = None) -> None:
        self.model = model
        self.env = env
        self.config = config or AgentConfig()
        self.reference = reference

    @staticmethod
    def trajectory_id(task: Task, model_name: str, env_name: str) -> str:
        """The id an episode of ``task`` gets: the same on every rerun (the resume key)."""
        return content_id(task.model_dump(), model_name, env_name)

    def run(self, task: Task, save_to: Path | None = None,
            on_step: Callable[[Step, str], None] | None = None) -> Trajectory:
        """One episode of ``task``; writes the trajectory JSON to ``save_to`` after every step."""
        traj = Trajectory(
            id=self.trajectory_id(task, self.model.name, self.env.name),
            task=task, action_space=self.env.action_space,
            provenance={"model": self.model.name, "env": self.env.name, "started": utc_now(),
                        "step_limit": self.config.step_limit},
        )
        deadline = (time.monotonic() + self.config.episode_timeout_s
                    if self.config.episode_timeout_s else None)
        try:
            # Observations are scanned for credentials before the model or any file sees them.
            observation = redact_text(self.env.reset(task))[0]
            for _ in range(self.config.step_limit):
                if deadline is not None and time.monotonic() > deadline:
                    traj.termination = "time_limit"
                    break
                step = self._next_step(task, traj.steps, observation)
                traj.steps.append(step)
                observation, done = self.env.step(step.action)
                observation = redact_text(observation)[0]
                if on_step:
                    on_step(step, observation)
                _save(traj, save_to)
                if done:
                    traj.termination = "stop"
                    break
            traj.termination = traj.termination or "step_limit"
            traj.final_observation = observation
            traj.reward = self.env.evaluate()
        except BudgetExceeded as exc:
            traj.termination, traj.error = "budget", str(exc)
            raise
        except ModelError as exc:  # bad key, unknown model: every episode would fail the same way
            traj.termination, traj.error = "error", str(exc)
            raise
        except LLMCallFailed as exc:  # the endpoint failed, not the agent: an unfinished
            traj.error = f"LLMCallFailed: {exc}"  # episode (termination None), rerun later
            raise
        except (FormatError, RequestRejected) as exc:  # this episode's failure, not the run's
            traj.termination, traj.error = "error", f"{type(exc).__name__}: {exc}"
        except EnvError as exc:  # e.g. an unknown database for this task: its message says all
            traj.termination, traj.error = "error", f"EnvError: {exc}"
        except Exception as exc:  # an environment failure ends this episode, not the run
            log.exception("episode %s failed", task.id)
            traj.termination, traj.error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            traj.provenance["finished"] = utc_now()
            _save(traj, save_to)
        return traj

    def _next_step(self, task: Task, steps: list[Step], observation: str) -> Step:
        retrieval = self.reference(task, steps, observation) if self.reference else None
        messages = build_messages(
            env_name=self.env.name, action_space=self.env.action_space,
            instruction=task.instruction, steps=steps, observation=observation,
            policy=self.config.history, reference=retrieval.text if retrieval else "",
        )
        calls: list[LLMCall] = []
        # Re-asks after an answer without a parsable action: first the same prompt under the
        # GBNF grammar (llama.cpp only; it costs ~40% of decode speed, so not on the first try),
        # then with a correction turn. Small models answer the correction itself ("Sorry, …")
        # rather than the task, so it comes last; providers ignore the grammar and are cached,
        # so for them the first re-ask is free and the correction does the work.
        prompt = messages
        for attempt in range(self.config.max_format_retries + 1):
            constraint = {"grammar": RESPONSE_GRAMMAR} if attempt else {}
            completion = self.model.complete(prompt, stop=STOP_SEQUENCES, **constraint)
            calls.append(completion.call)
            try:
                reasoning, action = parse_response(completion.text, completion.truncated)
            except FormatError as exc:
                if attempt == self.config.max_format_retries:
                    raise FormatError(f"no parsable action after {attempt + 1} answers; "
                                      f"last answer: {completion.text[:300]!r}") from exc
                if attempt >= 1:
                    prompt = [*messages, {"role": "assistant", "content": completion.text},
                              {"role": "user", "content": str(exc)}]
                continue
            describe = getattr(self.env, "describe_action", None)
            return Step(observation=observation, action=action, reasoning=reasoning,
                        target=describe(observation, action) if describe else None,
                        llm=_merge(calls), retrieval=retrieval)
        raise AssertionError("unreachable")


def _merge(calls: list[LLMCall]) -> LLMCall:
    """One record for a step, summing the calls a format retry needed."""
    if len(calls) == 1:
        return calls[0]
    return LLMCall(
        model=calls[-1].model,
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cost=None if any(c.cost is None for c in calls) else sum(c.cost or 0 for c in calls),
        latency_s=sum(c.latency_s for c in calls),
        cache_hit=all(c.cache_hit for c in calls),
        retries=sum(c.retries for c in calls) + len(calls) - 1,
    )


def _save(traj: Trajectory, path: Path | None) -> None:
    if path is not None:
        atomic_write_text(path, traj.model_dump_json(indent=2))
