"""Desktop benchmarks (OSWorld, Spider2-V) through their ``desktop_env`` harness: a VM per
episode, the accessibility tree as observation, pyautogui code as actions, the benchmark's own
evaluator as reward.

Tasks are the benchmark's JSON task configs (``<tasks_dir>/examples/<domain>/<id>.json``,
listed by ``<tasks_dir>/<test_set>``), from a checkout of the benchmark's repository.
Actions: Python code using ``pyautogui`` (run in the VM), or ``WAIT``, ``DONE``, ``FAIL``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbi.envs import infra
from lbi.envs.base import TaskContext
from lbi.envs.desktop.a11y import linearize
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

ACTION_SPACE = (
    "You control a Ubuntu desktop (screen {width}x{height}) through Python code that uses "
    "pyautogui; the observation is the accessibility tree as a table with each element's "
    "position and size. Each ACTION is one of:\n"
    "- Python code, e.g. pyautogui.click(812, 340) or pyautogui.typewrite('hello'); "
    "pyautogui.press('enter'), or pyautogui.hotkey('ctrl', 's'); compute coordinates from the "
    "table (the centre of an element is its position plus half its size);\n"
    "- WAIT: let the screen settle; DONE: the task is complete; FAIL: the task cannot be done."
)
SPECIAL = {"WAIT", "DONE", "FAIL"}
PROVIDER_TOOLS = {"vmware": "vmrun", "virtualbox": "VBoxManage"}
CLOUD_VARIABLES = {"aws": ["AWS_REGION", "AWS_SUBNET_ID", "AWS_SECURITY_GROUP_ID"],
                   "azure": ["AZURE_SUBSCRIPTION_ID"], "gcp": ["GCP_PROJECT_ID"],
                   "aliyun": ["ALIYUN_REGION"]}


@dataclass(frozen=True)
class Benchmark:
    """What differs between the desktop benchmarks."""

    name: str
    title: str
    tasks_hint: str
    harness_hint: str


OSWORLD = Benchmark("osworld", "OSWorld", "a checkout of xlang-ai/OSWorld: evaluation_examples",
                    "pip install desktop-env, in a virtualenv of its own with this toolkit: it "
                    "pins torch 2.5 and transformers 4.35")
SPIDER2V = Benchmark("spider2v", "Spider2-V", "a checkout of xlang-ai/Spider2-V: "
                     "evaluation_examples", "set env_args.harness_path to a checkout of "
                     "xlang-ai/Spider2-V (its desktop_env)")


@dataclass
class DesktopConfig:
    """The VM provider, the benchmark checkout, and the limits of an episode."""

    provider_name: str = "docker"
    """desktop_env's provider: docker, vmware, virtualbox, aws, azure, gcp, aliyun."""
    path_to_vm: str | None = None
    region: str | None = None
    snapshot_name: str = "init_state"
    headless: bool = True
    screen_width: int = 1920
    screen_height: int = 1080
    tasks_dir: str | None = None
    """The benchmark's ``evaluation_examples`` folder."""
    test_set: str = "test_all.json"
    domains: list[str] | None = None
    harness_path: str | None = None
    """A checkout whose ``desktop_env`` package should be used (Spider2-V ships its own)."""
    sleep_after_action_s: float = 2.0
    max_tree_chars: int = 12000
    docs_dir: str | None = None
    doc_urls: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments for ``DesktopEnv``."""


class DesktopEnv:
    """An OSWorld-style desktop benchmark behind the environment protocol."""

    def __init__(self, benchmark: Benchmark, config: DesktopConfig | None = None) -> None:
        self.benchmark = benchmark
        self.name = benchmark.name
        self.config = config or DesktopConfig()
        self.action_space = ACTION_SPACE.format(width=self.config.screen_width,
                                                height=self.config.screen_height)
        self.task: Task | None = None
        self.harness: Any = None

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.check_infrastructure()
        self.task = task
        if self.harness is None:
            self.harness = self._start_harness()
        observation = self.harness.reset(task_config=self.task_config(task))
        return self._render(observation)

    def step(self, action: str) -> tuple[str, bool]:
        if self.harness is None:
            raise EnvError("step() before reset()")
        try:
            command = translate(action)
        except ValueError as exc:
            return str(exc), False
        observation, _, done, _ = self.harness.step(command, self.config.sleep_after_action_s)
        return self._render(observation), bool(done)

    def evaluate(self) -> float | None:
        if self.task is None or self.task.origin != "benchmark" or self.harness is None:
            return None
        return float(self.harness.evaluate())

    def close(self) -> None:
        if self.harness is not None:
            self.harness.close()
            self.harness = None

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        from lbi.envs.docs import configured_corpus

        return configured_corpus(self.benchmark.title, self.config.docs_dir,
                                 self.config.doc_urls)

    def benchmark_tasks(self) -> list[Task]:
        root = self._tasks_root()
        listing_path = root / self.config.test_set
        if not listing_path.is_file():
            raise EnvError(f"{self.benchmark.title}: {listing_path} not found; tasks_dir must "
                           f"be {self.benchmark.tasks_hint}")
        listing: dict[str, list[str]] = json.loads(listing_path.read_text())
        tasks = []
        for domain, ids in listing.items():
            if self.config.domains and domain not in self.config.domains:
                continue
            for task_id in ids:
                path = root / "examples" / domain / f"{task_id}.json"
                tasks.append(config_to_task(self.name, domain, json.loads(path.read_text())))
        return tasks

    def task_contexts(self) -> list[TaskContext]:
        """One context per application domain; a generated task opens that domain's first
        benchmark set-up (the same VM snapshot, with that task's files in place). Documents
        under ``<docs_dir>/<domain>/`` are about that domain."""
        contexts: dict[str, TaskContext] = {}
        docs = Path(self.config.docs_dir or ".").expanduser()
        for task in self.benchmark_tasks():
            domain = task.env_args["domain"]
            contexts.setdefault(domain, TaskContext(
                task.env_args,
                f"The {domain} application on an Ubuntu desktop ({self.benchmark.title}).",
                doc_sources=(str(docs / domain),)))
        return list(contexts.values())

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        return not final_observation.startswith("Error")

    def task_config(self, task: Task) -> dict:
        """The harness's task config: the benchmark's JSON, with a generated task's instruction."""
        path = self._tasks_root() / "examples" / task.env_args["domain"] / \
            f"{task.env_args['task_id']}.json"
        config = json.loads(path.read_text())
        if task.origin != "benchmark":  # a generated task: same set-up, its own instruction
            config = {**config, "instruction": task.instruction}
        return config

    def check_infrastructure(self) -> None:
        """Fail fast: the harness, the task files and the VM provider's tools or credentials."""
        problems: list[str | None] = [self._harness_problem()]
        problems.append(infra.path_problem(f"{self.benchmark.title} tasks_dir",
                                           self.config.tasks_dir, self.benchmark.tasks_hint))
        provider = self.config.provider_name
        if provider == "docker":
            problems.append(infra.docker_problem())
            problems.append(None if os.path.exists("/dev/kvm") else
                            "KVM (/dev/kvm) for the docker provider's VM")
        elif provider in PROVIDER_TOOLS:
            tool = PROVIDER_TOOLS[provider]
            problems.append(None if shutil.which(tool) else f"{tool} on PATH ({provider})")
            if self.config.path_to_vm:
                problems.append(infra.path_problem("the VM", self.config.path_to_vm,
                                                   "set env_args.path_to_vm"))
        elif provider in CLOUD_VARIABLES:
            problems += [None if os.environ.get(v) else f"the {v} variable ({provider})"
                         for v in CLOUD_VARIABLES[provider]]
        else:
            problems.append(f"a known provider (got {provider!r}; docker, vmware, virtualbox, "
                            f"{', '.join(CLOUD_VARIABLES)})")
        infra.require(self.benchmark.title, problems,
                      f"README.md, section '{self.benchmark.title}'")

    # ---- helpers ------------------------------------------------------------------------------
    def _tasks_root(self) -> Path:
        if not self.config.tasks_dir:
            raise EnvError(f"{self.benchmark.title}: set env_args.tasks_dir to "
                           f"{self.benchmark.tasks_hint}")
        return Path(self.config.tasks_dir).expanduser()

    def _harness_problem(self) -> str | None:
        if self.config.harness_path:
            return infra.path_problem(f"{self.benchmark.title} harness",
                                      str(Path(self.config.harness_path) / "desktop_env"),
                                      self.benchmark.harness_hint)
        return infra.module_problem("desktop_env", self.benchmark.harness_hint)

    def _harness_module(self) -> Any:
        if self.config.harness_path and self.config.harness_path not in sys.path:
            sys.path.insert(0, self.config.harness_path)
        return importlib.import_module("desktop_env.desktop_env")

    def _start_harness(self) -> Any:
        """desktop_env's DesktopEnv with the settings its version accepts (Spider2-V's fork
        predates the provider arguments of OSWorld's)."""
        harness_class = self._harness_module().DesktopEnv
        c = self.config
        settings = {"provider_name": c.provider_name, "path_to_vm": c.path_to_vm,
                    "region": c.region, "snapshot_name": c.snapshot_name,
                    "action_space": "pyautogui", "headless": c.headless,
                    "screen_size": (c.screen_width, c.screen_height), "require_a11y_tree": True}
        accepted = inspect.signature(harness_class).parameters
        unknown = sorted(set(c.extra) - set(accepted))
        if unknown:
            raise EnvError(f"this desktop_env does not take {unknown}; remove them from "
                           "env_args.extra")
        return harness_class(**{k: v for k, v in {**settings, **c.extra}.items()
                                if k in accepted})

    def _render(self, observation: dict[str, Any]) -> str:
        tree = observation.get("accessibility_tree")
        text = linearize(tree, self.config.max_tree_chars) if tree else "(no accessibility tree)"
        return f"Accessibility tree:\n{text}"


def translate(action: str) -> str:
    """The harness action for the agent's text: WAIT/DONE/FAIL, or Python code (fences removed)
    that must parse; ValueError (the observation) otherwise."""
    text = action.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("python").strip()
    if text.upper() in SPECIAL:
        return text.upper()
    try:
        ast.parse(text)
    except SyntaxError as exc:
        raise ValueError(f"Error: the action is not valid Python ({exc.msg}, line "
                         f"{exc.lineno}); nothing was run.") from None
    return text


def config_to_task(env_name: str, domain: str, config: dict) -> Task:
    """A benchmark task config (OSWorld/Spider2-V JSON) as a Task."""
    return Task(id=f"{domain}/{config['id']}", env=env_name, origin="benchmark",
                instruction=config["instruction"],
                env_args={"domain": domain, "task_id": config["id"]})
