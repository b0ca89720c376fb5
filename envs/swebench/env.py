"""SWE-bench through the official ``swebench`` harness: the agent works in the task's Docker
image, and the harness scores the resulting patch in a fresh container.

Observation: the command's output (cut to a limit, the cut counted) and its exit code. Actions
(CodeAct-style, as the paper ran SWE-bench): a bash command in ``/testbed``, an ``edit`` block,
or ``submit``. Reward: the harness's ``resolved`` (FAIL_TO_PASS now pass, PASS_TO_PASS still
pass) for ``git diff`` of the container against the task's base commit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lbi.envs import infra
from lbi.envs.base import FINISH_ACTIONS, TaskContext, truncate
from lbi.envs.swebench import actions, package_problem
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

GUIDE = "README.md, section 'SWE-bench' (Docker; `swebench images build lite` pulls the images)"
WORKDIR = "/testbed"
ACTION_SPACE = (
    "You work in a checkout of a Python repository at /testbed, in a Linux container. An ACTION "
    "is one of three kinds.\n"
    "1. A bash command, written as it is typed; you see its output and exit code (the working "
    "directory carries over; each command is killed after {timeout:g} seconds). Use commands to "
    "find and read code, reproduce the issue with a small script, and run tests.\n"
    "2. An edit of one file: the word edit and the path, then lines copied exactly from the "
    "file and their replacement:\n"
    "edit path/to/file.py\n<<<<<<< SEARCH\n<exact lines>\n=======\n<new lines>\n"
    ">>>>>>> REPLACE\n"
    "3. submit: finish; the repository's diff is your patch.\n"
    "Fix the issue in the source code; do not change the tests."
)


@dataclass
class SWEBenchConfig:
    """Which SWE-bench tasks, and the limits of an episode."""

    dataset: str = "SWE-bench/SWE-bench_Lite"
    """A Hugging Face dataset, an alias of swebench's (``lite``, ``verified``) or a local
    .json/.jsonl/.parquet file, in the format of the installed ``swebench``."""
    split: str = "test"
    instance_ids: list[str] | None = None
    command_timeout_s: float = 120
    max_output_chars: int = 6000
    eval_timeout_s: int = 1800
    run_id: str = "lbi"
    docs_dir: str | None = None
    """The repositories' Python files (docs/method.md): a folder of checkouts."""
    doc_urls: list[str] | None = None


class SWEBenchEnv:
    """SWE-bench tasks in their Docker images, scored by the swebench harness."""

    name = "swebench"

    def __init__(self, config: SWEBenchConfig | None = None) -> None:
        self.config = config or SWEBenchConfig()
        self.action_space = ACTION_SPACE.format(timeout=self.config.command_timeout_s)
        self.task: Task | None = None
        self.container: Any = None
        self.cwd = WORKDIR
        self.patch: str | None = None

    @cached_property
    def instances(self) -> dict[str, dict]:
        """The dataset's instances by id (loaded by swebench, from the Hub or a local file)."""
        from swebench.harness.utils import load_swebench_dataset

        try:
            rows = load_swebench_dataset(self.config.dataset, self.config.split,
                                         self.config.instance_ids)
        except Exception as exc:  # datasets raises many types for "cannot reach the Hub"
            raise EnvError(f"could not load SWE-bench dataset {self.config.dataset!r} "
                           f"(split {self.config.split!r}): {type(exc).__name__}: {exc}\n"
                           "Fix: check the name, or download it on a machine with Hub access "
                           "and point env_args.dataset at the .parquet/.jsonl file.") from None
        return {row["instance_id"]: dict(row) for row in rows}

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.close()
        self.check_infrastructure()
        from swebench.harness.run_evaluation import create_container

        spec = self.test_spec(task)
        self.task, self.cwd, self.patch = task, WORKDIR, None
        try:
            self.container = create_container(
                spec, self._client, f"{self.config.run_id}-agent-{secrets.token_hex(4)}",
                logging.getLogger("lbi.swebench"))
            self.container.start()
        except Exception as exc:  # swebench's EvaluationError, docker's APIError, ...
            raise EnvError(f"could not start the container of {task.env_args['instance_id']} "
                           f"(image {spec.image}): {exc}\nFix: `swebench images build` the "
                           "dataset's images, or check Docker.") from None
        listing, _ = self._run("ls")
        return (f"The repository {task.env_args['repo']} is checked out at {WORKDIR} "
                f"(commit {task.env_args['base_commit'][:12]}). Files:\n{listing}")

    def step(self, action: str) -> tuple[str, bool]:
        if self.container is None:
            raise EnvError("step() before reset()")
        if action.strip().lower() in FINISH_ACTIONS:
            self.patch = self._diff()
            return f"Submitted a patch of {self.patch.count(chr(10))} lines.", True
        output, code = self._run(action)
        return output if code == 0 else f"{output}\n[exit code {code}]", False

    def evaluate(self) -> float | None:
        """The harness's verdict on the episode's patch (1.0 = resolved)."""
        if self.task is None or self.task.origin != "benchmark":
            return None
        from swebench.harness.run_evaluation import run_instance

        patch = self.patch if self.patch is not None else self._diff()
        instance_id = self.task.env_args["instance_id"]
        prediction = {"instance_id": instance_id, "model_name_or_path": "lbi",
                      "model_patch": patch}
        self._remove_container()
        # the harness caches reports by run id: every evaluation gets its own
        run_id = f"{self.config.run_id}-{secrets.token_hex(4)}"
        result = run_instance(self.test_spec(self.task), prediction, self._client, run_id,
                              timeout=self.config.eval_timeout_s)
        if result is None:
            raise EnvError(f"the SWE-bench harness could not evaluate {instance_id}; its log is "
                           f"under logs/run_evaluation/{run_id}/lbi/{instance_id}/")
        return 1.0 if result[1].get(instance_id, {}).get("resolved") else 0.0

    def close(self) -> None:
        self._remove_container()

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        from lbi.envs.docs import configured_corpus

        return configured_corpus("SWE-bench", self.config.docs_dir, self.config.doc_urls,
                                 patterns=["**/*.py", "**/*.rst", "**/*.md"])

    def benchmark_tasks(self) -> list[Task]:
        return [to_task(row) for row in self.instances.values()]

    def task_contexts(self) -> list[TaskContext]:
        """One context per repository; its tasks run in the image of one of its instances."""
        contexts: dict[str, TaskContext] = {}
        docs = Path(self.config.docs_dir or ".").expanduser()
        for row in self.instances.values():
            if row["repo"] not in contexts:
                task = to_task(row)
                checkout = docs / row["repo"].split("/")[1]
                contexts[row["repo"]] = TaskContext(
                    task.env_args, f"A checkout of {row['repo']} at {WORKDIR}.",
                    doc_sources=(str(checkout),))
        return list(contexts.values())

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        return not (final_observation.startswith("Error") or "[exit code" in final_observation)

    def check_infrastructure(self) -> None:
        infra.require("SWE-bench", [package_problem(), infra.docker_problem()], GUIDE)

    def test_spec(self, task: Task) -> Any:
        """swebench's TestSpec (image, evaluation script, tests) of the task's instance."""
        from swebench.harness.utils import make_test_spec

        instance_id = task.env_args.get("instance_id")
        if instance_id not in self.instances:
            raise EnvError(f"SWE-bench instance {instance_id!r} is not in "
                           f"{self.config.dataset} ({self.config.split})")
        try:
            return make_test_spec(self.instances[instance_id])
        except KeyError as exc:
            raise EnvError(f"{self.config.dataset} lacks the field {exc} that swebench "
                           "needs; use a dataset in the installed swebench's format") from None

    # ---- helpers ------------------------------------------------------------------------------
    @cached_property
    def _client(self) -> Any:
        import docker

        return docker.from_env(timeout=600)

    def _exec(self, script: str) -> tuple[str, bool]:
        """(raw output, timed out) of ``script`` run by bash in the container."""
        from swebench.harness.docker_utils import exec_run_with_timeout

        output, timed_out, _ = exec_run_with_timeout(
            self.container, ["bash", "-c", script], timeout=int(self.config.command_timeout_s))
        return output, timed_out

    def _run(self, action: str) -> tuple[str, int]:
        """The observation text and exit code of a command or edit action."""
        command = actions.to_command(action, self.cwd)
        assert command is not None
        raw, timed_out = self._exec(command.script)
        output, code, self.cwd = actions.split_output(raw, command.marker, self.cwd)
        output = truncate(output, self.config.max_output_chars)
        if timed_out:
            return f"{output}\n[killed after {self.config.command_timeout_s:g} s]", 124
        return output, 1 if code is None else code

    def _diff(self) -> str:
        """The patch: every change in /testbed against the base commit (new files included)."""
        assert self.task is not None
        raw, _ = self._exec(f"cd {WORKDIR} && git -c core.fileMode=false add -A && "
                            "git -c core.fileMode=false diff --cached --no-color "
                            f"{self.task.env_args['base_commit']}")
        return raw

    def _remove_container(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            finally:
                self.container = None


def to_task(row: dict) -> Task:
    """A SWE-bench instance as a Task (the problem statement is the instruction)."""
    return Task(id=row["instance_id"], env="swebench", origin="benchmark",
                instruction=row["problem_statement"],
                env_args={"instance_id": row["instance_id"], "repo": row["repo"],
                          "base_commit": row["base_commit"],
                          "version": str(row.get("version", ""))})
