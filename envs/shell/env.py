"""Shell environment: bash in a bubblewrap sandbox over one of InterCode-ALFA's five file systems.

Actions (one per step):
- ``<bash command>``: run it in the episode's persistent shell (working directory and variables
  carry over); the observation is its output (stdout and stderr), cut at a limit, with the exit
  code when it failed.
- ``submit``: end the episode; the output of the last command is the answer.

Reward (benchmark tasks, which carry one or two gold commands): each gold runs on an exact copy
of the episode's starting file system. Against a gold that changes files, the agent is right
when its final file system equals the gold's (every path, file content and executable bit);
against a gold that changes nothing, when its last output equals the gold's (lines compared
after trimming trailing spaces, order ignored). Matching either gold solves the task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lbi.envs.base import FINISH_ACTIONS, TaskContext
from lbi.envs.sandbox import (
    CommandResult,
    Sandbox,
    SandboxLimits,
    command_failed,
    discard,
    snapshot,
)
from lbi.envs.shell import testbed
from lbi.envs.shell.docs import man_page_docs
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

ACTION_SPACE = (
    "You use a bash shell on a Linux machine without network access; the files to work on are "
    "in the folders named when the episode starts. Each ACTION is exactly one of:\n"
    "- one bash command line (pipes and `&&` are fine), e.g. `find /testbed -name '*.txt'`; you "
    "see its output. The shell persists between actions (cd and variables carry over); a "
    "command is killed after {timeout:g} seconds;\n"
    "- `submit`: finish; the output of your last command is your answer.\n"
    "Do not ask questions: act, check the result, then submit."
)
_ONLY_MOVES = re.compile(r"\s*(cd|pushd|popd)\b[^;&|]*")
"""A command that only changes the shell's directory (no output, no file touched)."""
_ERROR_LINE = re.compile(
    r"^\S+: .*(No such file or directory|cannot (access|stat|move|create|remove|open)|"
    r"command not found|Permission denied|Not a directory|Is a directory|missing operand)", re.M)
"""A tool's error message ("ls: cannot access 'x': No such file or directory"): a command of a
pipeline or a ``find -exec`` can fail while the pipeline's exit code is 0."""


@dataclass
class ShellConfig:
    """Limits of the shell environment."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    default_fs: int = 1
    """The file system of tasks that name none (``env_args: {fs: 1..5}``), e.g. free-text tasks."""
    work_dir: str | None = None
    """Where episode directories are made (default: the system's temporary directory)."""


class ShellEnv:
    """Bash over an InterCode-ALFA file system behind the environment protocol."""

    name = "shell"

    def __init__(self, config: ShellConfig | None = None) -> None:
        self.config = config or ShellConfig()
        self.action_space = ACTION_SPACE.format(timeout=self.config.limits.command_timeout_s)
        self.task: Task | None = None
        self.root: Path | None = None
        self.sandbox: Sandbox | None = None
        self.last: CommandResult | None = None
        self._golds: list[testbed.GoldResult] = []
        self._start_state: dict[str, str] = {}

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.close()
        self.task = task
        parent = Path(self.config.work_dir) if self.config.work_dir else None
        if parent:
            parent.mkdir(parents=True, exist_ok=True)
        fs = task.env_args.get("fs", self.config.default_fs)
        self.root = testbed.new_episode_dir(fs, parent)
        self._start_state = snapshot(self.root)
        # The golds run now, on exact copies (same file times), so that time-dependent commands
        # (`ls -l`, `find -mmin`) see what the agent sees.
        self._golds = [testbed.run_gold(gold, self.config.limits, self.root)
                       for gold in ([task.gold] if task.gold else []) + task.alternative_golds]
        self.sandbox = Sandbox(self.root, self.config.limits)
        self.sandbox.start()
        self.last = None
        intro = "A new bash shell is ready; the working directory is /."
        folders = " ".join(f"/{name}" for name in testbed.top_level(fs))
        if not folders:
            return intro
        return f"{intro}\n$ ls {folders}\n{self.sandbox.run(f'ls {folders}').output.strip()}"

    def step(self, action: str) -> tuple[str, bool]:
        if self.sandbox is None:
            raise EnvError("step() before reset()")
        command = action.strip()
        if command.lower() in FINISH_ACTIONS:
            return "Answer submitted. Episode finished.", True
        if not command:
            return "Error: empty command.", False
        self.last = self.sandbox.run(command)
        return self.last.observation(self.config.limits.command_timeout_s), False

    def evaluate(self) -> float | None:
        if self.task is None or not self._golds or self.root is None:
            return None
        state = snapshot(self.root)
        answer = self.last.output if self.last else ""
        return float(any(state == gold.state if gold.state != self._start_state
                         else outputs_match(answer, gold.output) for gold in self._golds))

    def close(self) -> None:
        discard(self.sandbox, self.root)
        self.sandbox, self.root = None, None

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        return man_page_docs()

    def benchmark_tasks(self) -> list[Task]:
        return testbed.benchmark_tasks()

    def task_contexts(self) -> list[TaskContext]:
        contexts = []
        for fs in testbed.FILE_SYSTEMS:
            root = testbed.template_dir(fs)
            paths = sorted("/" + str(p.relative_to(root)) + ("/" if p.is_dir() else "")
                           for top in testbed.top_level(fs) for p in (root / top).rglob("*"))
            if paths:
                contexts.append(TaskContext({"fs": fs}, "The machine has these files:\n"
                                            + "\n".join(paths)))
        return contexts

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        """A span passes when it ends on a command that succeeded (no exit code, timeout or
        restart, nor a tool's error message: a failing command inside a pipeline leaves the
        exit code 0) and shows something: not a ``submit`` (which runs nothing: an example
        "submit the answer" → ``submit`` teaches nothing) and not a lone ``cd`` (it changes only
        where the shell is, which no observation shows; the teacher spent a fifth of its steps
        on them). Backward construction checks each step this way, so no span holds either."""
        last = steps[-1].action.strip() if steps else ""
        if last.lower() in FINISH_ACTIONS or _ONLY_MOVES.fullmatch(last):
            return False
        return not (command_failed(final_observation) or _ERROR_LINE.search(final_observation))


def outputs_match(answer: str, gold: str) -> bool:
    """Same lines (trailing spaces trimmed, blank lines and order ignored)."""
    def lines(text: str) -> list[str]:
        return sorted(line.rstrip() for line in text.splitlines() if line.strip())
    return lines(answer) == lines(gold)
