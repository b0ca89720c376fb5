"""Running a package's tests, or a HumanEval check, in a fresh sandbox."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lbi.envs.code import sources
from lbi.envs.sandbox import Sandbox, SandboxLimits, episode_dir

TEST_LIMITS = SandboxLimits(command_timeout_s=120, max_output_chars=200_000)
"""Scoring runs: the slowest pristine suite takes about 8 s; a hang is cut off."""
CHECK_LIMITS = SandboxLimits(command_timeout_s=30)
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


@dataclass
class TestRun:
    passed: bool
    output: str
    timed_out: bool = False
    failing_tests: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)


def code_sandbox(root: Path, limits: SandboxLimits, workdir: str = "/repo") -> Sandbox:
    """A sandbox over ``root`` that can run this machine's Python (read-only) in ``workdir``."""
    python, binds = sources.sandbox_python()
    return Sandbox(root, limits, ro_binds=binds, workdir=workdir, env={"PYTHONPATH": workdir},
                   commands={"python": python, "python3": python})


def run_tests(package: sources.SourcePackage, changed: dict[str, str] | None = None,
              repo: Path | None = None, limits: SandboxLimits = TEST_LIMITS) -> TestRun:
    """The package's test suite on ``repo`` (default: the pristine checkout) with the files in
    ``changed`` replaced; the tests themselves always come from the pristine checkout."""
    pristine = sources.checkout(package)
    root = episode_dir("lbi-tests-")
    try:
        shutil.copytree(repo or pristine, root / "repo", symlinks=True)
        shutil.rmtree(root / "repo" / package.tests, ignore_errors=True)
        shutil.copytree(pristine / package.tests, root / "repo" / package.tests)
        for rel, text in (changed or {}).items():
            (root / "repo" / rel).write_text(text)
        with code_sandbox(root, limits) as box:
            result = box.run(package.test_command + " -rfE --tb=short")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    output = result.output
    return TestRun(passed=result.exit_code == 0, output=output, timed_out=result.timed_out,
                   failing_tests=sorted(set(_FAILED.findall(output))),
                   error_lines=[ln for ln in output.splitlines() if ln.startswith("E ")])


def run_humaneval(problem: dict, solution: str, limits: SandboxLimits = CHECK_LIMITS) -> TestRun:
    """HumanEval's check of ``solution`` (the whole solution.py), run sandboxed."""
    root = episode_dir("lbi-humaneval-")
    try:
        (root / "repo").mkdir()
        program = (f"{solution}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
                   "print('all tests passed')\n")
        (root / "repo" / "check.py").write_text(program)
        with code_sandbox(root, limits) as box:
            result = box.run("python check.py")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return TestRun(passed=result.exit_code == 0 and "all tests passed" in result.output,
                   output=result.output, timed_out=result.timed_out)
