"""Code environment: a sandboxed checkout of a real package (or a HumanEval stub) with shell and
file-edit actions.

Task kinds (``task.env_args``):
- ``{"bug": "<id>"}``: a SWE-smith-style bug-fix task (``bug_tasks.json``): /repo is the package
  with one injected bug; the objective is the issue text. Reward 1 when the package's whole
  test suite passes on the agent's code (the tests are restored from the pristine package
  first, so editing them does not help).
- ``{"humaneval": "HumanEval/<n>"}``: /repo/solution.py holds the problem's signature and
  docstring; reward 1 when HumanEval's check passes.
- ``{"package": "<name>"}``: a clean checkout for synthesized tasks (no reward).

Actions (one per step):
- ``<bash command>``: run in the episode's persistent shell in /repo (Python and pytest are
  available read-only; no network);
- ``edit <path>`` followed by SEARCH/REPLACE blocks (see ``edits.py``);
- ``submit``: finish (the reward is computed on the files as they are).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lbi.envs.base import FINISH_ACTIONS, TaskContext
from lbi.envs.code import bugs, sources
from lbi.envs.code.docs import package_docs
from lbi.envs.code.edits import EditError, apply_edit, is_edit
from lbi.envs.code.runner import code_sandbox, run_humaneval, run_tests
from lbi.envs.sandbox import (
    Sandbox,
    SandboxLimits,
    command_failed,
    discard,
    episode_dir,
    read_episode_file,
)
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

ACTION_SPACE = (
    "You work in a checkout of a Python project at /repo, in a bash shell without network "
    "access (python and pytest are installed). An ACTION is one of three kinds.\n"
    "1. A shell command, written as it is typed; you see its output. Use commands to read "
    "code, try the library and run tests. For example:\n"
    "grep -n 'def take' toolz/itertoolz.py\n"
    "python -c \"from toolz import take; print(list(take(2, [5, 6, 7])))\"\n"
    "python -m pytest -q -x toolz/tests/test_itertoolz.py\n"
    "The shell persists between actions; a command is killed after {timeout:g} seconds.\n"
    "2. An edit of one file you have read: the word edit and the path, then lines copied "
    "exactly from the file and their replacement. For example:\n"
    "edit toolz/itertoolz.py\n"
    "<<<<<<< SEARCH\n"
    "    return n + 1\n"
    "=======\n"
    "    return n + 2\n"
    ">>>>>>> REPLACE\n"
    "A new file can be written with a command (cat > file.py <<'EOF' … EOF).\n"
    "3. submit: finish; your changes are checked as they are.\n"
    "Read the code before editing it and check your result before you submit."
)
HUMANEVAL_STUB = "    raise NotImplementedError\n"
HUMANEVAL_BENCHMARK = [f"HumanEval/{n}" for n in range(164)]
"""All of HumanEval."""


@dataclass
class CodeConfig:
    """Limits of the code environment."""

    limits: SandboxLimits = field(default_factory=lambda: SandboxLimits(command_timeout_s=60))
    humaneval: list[str] = field(default_factory=lambda: list(HUMANEVAL_BENCHMARK))
    """HumanEval problems among the benchmark tasks."""


class CodeEnv:
    """Bug fixing and function writing in a sandboxed Python checkout."""

    name = "code"

    def __init__(self, config: CodeConfig | None = None) -> None:
        self.config = config or CodeConfig()
        self.action_space = ACTION_SPACE.format(timeout=self.config.limits.command_timeout_s)
        self.task: Task | None = None
        self.root: Path | None = None
        self.sandbox: Sandbox | None = None

    @cached_property
    def bug_tasks(self) -> dict[str, bugs.BugTask]:
        return {b.id: b for b in bugs.load_bug_tasks()}

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.close()
        self.task = task
        self.root = episode_dir("lbi-code-")
        repo = self.root / "repo"
        args = task.env_args
        if "bug" in args:
            bug = self._bug(args["bug"])
            package = sources.PACKAGES[bug.package]
            shutil.copytree(sources.checkout(package), repo, symlinks=True)
            (repo / bug.file).write_text(bug.buggy_source((repo / bug.file).read_text()))
            intro = f"/repo is a checkout of {package.name} {package.version}."
        elif "humaneval" in args:
            problem = self._problem(args["humaneval"])
            repo.mkdir()
            (repo / "solution.py").write_text(problem["prompt"] + HUMANEVAL_STUB)
            # The file is shown, as HumanEval shows its prompt: the task is to write the
            # function, not to find it.
            intro = ("/repo/solution.py holds the function to write; it reads:\n"
                     f"{problem['prompt']}{HUMANEVAL_STUB}")
        else:
            name = args.get("package", "toolz")
            if name not in sources.PACKAGES:
                raise EnvError(f"unknown package {name!r}; available: "
                               f"{', '.join(sources.PACKAGES)}")
            package = sources.PACKAGES[name]
            shutil.copytree(sources.checkout(package), repo, symlinks=True)
            intro = f"/repo is a checkout of {package.name} {package.version}."
        self.sandbox = code_sandbox(self.root, self.config.limits)
        self.sandbox.start()
        listing = self.sandbox.run("ls").output.split()
        sources_listed = self.sandbox.run(
            "find . -name '*.py' -not -path '*test*' | sed 's|^./||' | sort | head -60").output
        return (f"{intro} The shell is in /repo, which contains: {' '.join(listing)}\n"
                f"Python source files: {' '.join(sources_listed.split())}")

    def step(self, action: str) -> tuple[str, bool]:
        if self.sandbox is None or self.root is None:
            raise EnvError("step() before reset()")
        command = action.strip()
        if command.lower() in FINISH_ACTIONS:
            return "Submitted. Episode finished.", True
        if not command:
            return "Error: empty action.", False
        if command.startswith("<<<<<<< SEARCH"):
            return "Error: an edit starts with a line `edit <path>`, then the blocks.", False
        if is_edit(command):
            try:
                return apply_edit(command, self.root), False
            except EditError as exc:
                return str(exc), False
        result = self.sandbox.run(command)
        return result.observation(self.config.limits.command_timeout_s), False

    def evaluate(self) -> float | None:
        if self.task is None or self.root is None:
            return None
        args = self.task.env_args
        repo = self.root / "repo"
        if "bug" in args:
            package = sources.PACKAGES[self._bug(args["bug"]).package]
            return float(run_tests(package, repo=repo).passed)
        if "humaneval" in args:
            solution = read_episode_file(repo, "solution.py") or ""
            return float(run_humaneval(self._problem(args["humaneval"]), solution).passed)
        return None

    def close(self) -> None:
        discard(self.sandbox, self.root)
        self.sandbox, self.root = None, None

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        return package_docs()

    def benchmark_tasks(self) -> list[Task]:
        # The task family is the stratum of the dev/test split and of the results breakdown.
        tasks = [Task(id=b.id, env="code", instruction=b.issue, origin="benchmark",
                      env_args={"bug": b.id}, gold=b.fix, difficulty="bug-fix")
                 for b in self.bug_tasks.values()]
        for task_id in self.config.humaneval:
            problem = self._problem(task_id)
            tasks.append(Task(
                id=task_id.replace("/", "-").lower(), env="code", origin="benchmark",
                instruction=(f"Implement `{problem['entry_point']}` in /repo/solution.py as its "
                             "docstring describes."),
                env_args={"humaneval": task_id}, gold=_humaneval_fix(problem),
                difficulty="humaneval"))
        return tasks

    def task_contexts(self) -> list[TaskContext]:
        contexts = []
        for package in sources.PACKAGES.values():
            root = sources.checkout(package)
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                           if package.tests not in str(p.relative_to(root)))
            contexts.append(TaskContext(
                {"package": package.name},
                f"/repo is a checkout of {package.name} {package.version} (tests: "
                f"`{package.test_command}`). A developer here tries the library on concrete "
                "values, finds where and how something is implemented, runs some of the tests, "
                "or writes a small script or test that uses the library. Source files:\n"
                + "\n".join(files),
                doc_sources=(str(root),)))
        return contexts

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        """A span passes when its last action succeeded (a command without error, or an edit
        that applied)."""
        return not (command_failed(final_observation) or final_observation.startswith("Error"))

    # ---- helpers ------------------------------------------------------------------------------
    def _bug(self, bug_id: str) -> bugs.BugTask:
        if bug_id not in self.bug_tasks:
            raise EnvError(f"unknown bug task {bug_id!r}; see `lbi tasks --env code`")
        return self.bug_tasks[bug_id]

    @staticmethod
    def _problem(task_id: str) -> dict:
        problems = sources.humaneval_problems()
        if task_id not in problems:
            raise EnvError(f"unknown HumanEval problem {task_id!r} (HumanEval/0 … /163)")
        return problems[task_id]


def _humaneval_fix(problem: dict) -> str:
    """The reference solution as an ``edit`` action on the stub."""
    from lbi.envs.code.edits import format_edit

    return format_edit("solution.py", HUMANEVAL_STUB, problem["canonical_solution"])
