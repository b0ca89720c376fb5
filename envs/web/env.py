"""Web environment: MiniWoB++ tasks in Chromium through BrowserGym.

Observation: the task's goal, the page's accessibility tree as text (elements carry BrowserGym
ids in brackets), and the error of the last action if it failed; optionally a screenshot per
step, saved as a PNG file. Actions: BrowserGym's action language, one element action per step
(``click('12')``, ``fill('15', 'text')``, ``select_option('7', 'Red')``, ``press('15',
'Enter')``, …), or ``stop``. Reward: MiniWoB's own check of the page (1 on success); only
benchmark tasks are scored, since a synthesized instruction is not the page's goal.

Task set-up (``task.env_args``): ``{"task": "<miniwob task>", "seed": <int>}``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbi.envs.base import FINISH_ACTIONS, TaskContext
from lbi.envs.web import miniwob
from lbi.envs.web.browser import (
    ALLOWED_ACTIONS,
    ActionRejected,
    check_action,
    chromium_path,
    rejected,
    use_system_chromium,
)
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

ACTION_SPACE = (
    "You operate a web page in a browser. The observation is the page's accessibility tree: "
    "each element you can act on has an id in brackets, e.g. [12] button 'Submit'. Each ACTION "
    "is exactly one call:\n"
    "- click('12'): click element 12;\n"
    "- fill('15', 'some text'): type text into input 15 (replacing its content);\n"
    "- select_option('7', 'Red'): choose an option of a <select>;\n"
    "- press('15', 'Enter'): press a key (or a combination like 'Control+a') in element 15;\n"
    "- hover('12'), focus('12'), clear('15'), dblclick('12'), scroll(0, 200), noop(500);\n"
    "- stop: end the episode.\n"
    "Use the ids shown in the current observation."
)

# Playwright's sync API (and BrowserGym's one global Playwright instance) belongs to the thread
# that started it, while synthesis and evaluation run episodes on worker threads. Every browser
# call therefore goes through this one thread: web episodes may run concurrently (their LLM
# calls overlap), their browser actions take turns.
_BROWSER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lbi-browser")


def in_browser_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on the thread that owns the browser and return its result."""
    return _BROWSER_THREAD.submit(fn, *args, **kwargs).result()


ENDED = "The task ended (reward {reward:g})."
"""The line an episode's last observation ends with: the page's own score of its goal."""


@dataclass
class WebConfig:
    """Settings of the web environment."""

    screenshot_dir: str | None = None
    """Save a PNG per observation here (its path is given in the observation)."""
    max_chars: int = 6000
    """The accessibility tree is cut at this many characters."""
    headless: bool = True


class WebEnv:
    """MiniWoB++ through BrowserGym behind the environment protocol."""

    name = "web"
    action_space = ACTION_SPACE

    def __init__(self, config: WebConfig | None = None) -> None:
        self.config = config or WebConfig()
        self.task: Task | None = None
        self.gym: Any = None
        self._gym_task: str | None = None
        self.reward: float = 0.0
        self.steps = 0
        self.page = ""
        """The page as last shown to the agent."""

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        name = task.env_args.get("task")
        if name is None:
            raise EnvError("a web task needs env_args {'task': <miniwob task>, 'seed': <int>}")
        seed = int(task.env_args.get("seed", 0))
        self.task = task
        if self.gym is None or self._gym_task != name:
            self._close_gym()
            self.gym = in_browser_thread(_make_gym, name, self.config)
            self._gym_task = name
        observation, _ = in_browser_thread(self.gym.reset, seed=seed)
        self.reward, self.steps = 0.0, 0
        self.page = self._render(observation)
        return self.page

    def step(self, action: str) -> tuple[str, bool]:
        if self.gym is None:
            raise EnvError("step() before reset()")
        if action.strip().lower() in FINISH_ACTIONS:
            return "Episode finished.", True
        try:
            checked = check_action(action)
        except ActionRejected as exc:
            return rejected(exc, self.page), False
        observation, reward, terminated, truncated, _ = in_browser_thread(self.gym.step, checked)
        self.steps += 1
        self.reward = max(self.reward, float(reward))
        done = bool(terminated or truncated)
        self.page = self._render(observation)
        return (f"{self.page}\n\n{ENDED.format(reward=reward)}" if done else self.page), done

    def evaluate(self) -> float | None:
        if self.task is None or self.task.origin != "benchmark":
            return None
        return self.reward

    def close(self) -> None:
        self._close_gym()

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        from lbi.envs.web.docs import page_docs

        return page_docs(self)

    def benchmark_tasks(self) -> list[Task]:
        from lbi.envs.web.docs import goals

        instances = [(name, seed) for name in miniwob.BENCHMARK_TASKS
                     for seed in miniwob.BENCHMARK_SEEDS]
        return [Task(id=f"{name}-{seed}", env="web", origin="benchmark", instruction=goal,
                     env_args={"task": name, "seed": seed})
                for (name, seed), goal in zip(instances, goals(instances), strict=True)]

    def task_contexts(self) -> list[TaskContext]:
        from lbi.envs.web.docs import page_snapshot

        return [TaskContext({"task": name, "seed": seed},
                            f"The MiniWoB page {name!r} (one random instance):\n"
                            + page_snapshot(self, name, seed), doc_sources=(f"miniwob:{name}",))
                for seed, name in enumerate(miniwob.SYNTH_TASKS)]

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        """A span passes when its last action ran without an error and did something: not a
        ``noop`` (a wait shows nothing the agent did; backward construction checks each step
        this way, so no span holds one)."""
        if steps and steps[-1].action.strip().startswith("noop"):
            return False
        return not (final_observation.startswith("Error") or
                    "\nLast action failed:" in final_observation)

    def describe_action(self, observation: str, action: str) -> str | None:
        return element_of(observation, action)

    @staticmethod
    def goal_reached(final_observation: str) -> bool:
        return final_observation.rstrip().endswith(ENDED.format(reward=1))

    # ---- helpers ------------------------------------------------------------------------------
    def _render(self, observation: dict[str, Any]) -> str:
        tree = render_axtree(observation, self.config.max_chars)
        parts = [f"Page goal: {observation['goal']}", tree]
        if observation.get("last_action_error"):
            parts.append(f"Last action failed: {observation['last_action_error'][:500]}")
        if self.config.screenshot_dir:
            parts.append(f"(screenshot: {self._save_screenshot(observation['screenshot'])})")
        return "\n".join(parts)

    def _save_screenshot(self, pixels: Any) -> str:
        from PIL import Image

        folder = Path(self.config.screenshot_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        assert self.task is not None
        path = folder / f"{self.task.id}-{self.steps:03d}-{time.time_ns()}.png"
        Image.fromarray(pixels).save(path)
        return str(path)

    def _close_gym(self) -> None:
        if self.gym is not None:
            in_browser_thread(self.gym.close)
            self.gym = None
            self._gym_task = None


_BID = re.compile(r"""^\s*\w+\(\s*['"]([^'"]+)['"]""")


def element_of(observation: str, action: str) -> str | None:
    """The accessibility-tree line of the element an action names (``click('12')`` →
    ``[12] button 'Submit'``), or None when the action names none or the page lacks it."""
    match = _BID.match(action)
    if not match:
        return None
    marker = f"[{match.group(1)}] "
    for line in observation.splitlines():
        if line.strip().startswith(marker):
            return line.strip()[:200]
    return None


def render_axtree(observation: dict[str, Any], max_chars: int) -> str:
    """A BrowserGym observation's accessibility tree as text (visible elements), cut to
    ``max_chars`` with the cut counted."""
    from browsergym.utils.obs import flatten_axtree_to_str

    tree = flatten_axtree_to_str(observation["axtree_object"], filter_visible_only=True,
                                 extra_properties=observation["extra_element_properties"],
                                 ignored_roles=["LineBreak", "InlineTextBox"])
    cut = len(tree) - max_chars
    return tree[:max_chars] + f"\n... [{cut} more characters]" if cut > 0 else tree


def _make_gym(task_name: str, config: WebConfig) -> Any:
    executable = chromium_path()
    if executable is None:
        raise EnvError("Chromium is not installed.\nFix: sudo apt-get install chromium "
                       "(Debian/Ubuntu); the toolkit never downloads a browser.")
    try:
        import gymnasium as gym
        from browsergym.core.action.highlevel import HighLevelActionSet
        from browsergym.miniwob import ALL_MINIWOB_TASKS
    except ImportError as exc:
        raise EnvError(f"the web environment needs BrowserGym ({exc.name} is missing).\n"
                       "Fix: pip install 'learn-by-interact[web]'") from None
    known = {t.get_task_id().removeprefix("miniwob."): t for t in ALL_MINIWOB_TASKS}
    if task_name not in known:
        raise EnvError(f"unknown MiniWoB task {task_name!r}")
    os.environ["MINIWOB_URL"] = miniwob.base_url()
    use_system_chromium(executable)
    actions = HighLevelActionSet(subsets=["bid"], strict=True, multiaction=False)
    return gym.make(f"browsergym/miniwob.{task_name}", headless=config.headless,
                    action_mapping=actions.to_python_code,
                    wait_for_user_message=False)


__all__ = ["ALLOWED_ACTIONS", "WebConfig", "WebEnv", "in_browser_thread", "render_axtree"]
