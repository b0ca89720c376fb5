"""The shell environment's testbed and benchmark tasks, from InterCode-Bash (``intercode-bench``
wheel, MIT licence): ``setup_fs.sh`` builds ``/testbed``, ``bash_queries.json`` holds 24 tasks
with gold commands.

Some gold commands are wrong as shipped, need tools a minimal system lacks, or do nothing on
this testbed (so any answer would pass). ``validate_gold`` runs every gold command twice in
fresh sandboxes; the benchmark keeps the tasks whose gold runs cleanly, deterministically and
visibly (output or file changes). ``FIXES`` repairs typos and names the files a task
writes where the upstream wording leaves them open; ``DROPS`` removes a task whose gold only
works by accident;
``lbi tasks --env shell`` lists what is kept and the README says what was dropped and why.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lbi.assets import lbi_home, package_archive, read_member
from lbi.envs.sandbox import Sandbox, SandboxLimits, copy_tree, episode_dir, snapshot
from lbi.errors import EnvError
from lbi.io import atomic_write_text
from lbi.types import Task, content_id

INTERCODE_PACKAGE = ("intercode-bench", "0.1.22")
SETUP_SCRIPT = "intercode/assets/docker/setup_fs.sh"
QUERIES = "intercode/assets/datasets/bash_queries.json"

@dataclass(frozen=True)
class Fix:
    why: str
    gold: str | None = None
    instruction: str | None = None


FIXES: dict[int, Fix] = {
    2: Fix("`-exec cat {} ;` lets the shell eat the `;` (find: missing argument); the output "
           "file, inside the searched tree, would be read by cat itself; no file name given",
           gold="find /testbed -type f -name '*.txt' -exec cat {} \\; > /concatenated.txt",
           instruction="Find all text files in the testbed directory and subdirectories and "
                       "concatenate them into a single file /concatenated.txt"),
    4: Fix("the task does not name the new file the gold writes",
           instruction="Sort the lines of /testbed/dir1/textfile1.txt in reverse alphabetical "
                       "order and save the result to /testbed/dir1/textfile1_reverse_sorted.txt"),
    7: Fix("the task does not name the file the gold writes",
           instruction="Get the total size in bytes of all files in /testbed and save it to "
                       "/total_size.txt"),
    13: Fix("`rename` (Perl) is not a standard tool; the same renaming with mv",
            gold="find /testbed -type f -name '*.txt' -exec sh -c 'mv \"$1\" "
                 "\"${1%.txt}.md\"' _ {} \\;"),
}
DROPS: dict[int, str] = {
    5: "no file contains 'error', so `xargs du -b` measures the whole root file system",
    24: "the gold does not do what the task asks: the second `<` replaces the first, so it "
        "prints textfile4 alone, without line numbers",
}


def data_dir() -> Path:
    return lbi_home() / "data" / "shell"


def template_dir() -> Path:
    """A built testbed (``<dir>/testbed``), made once by running the upstream setup script in
    a sandbox."""
    root = data_dir() / "template"
    if (root / "testbed").is_dir():
        return root
    script = read_member(package_archive(*INTERCODE_PACKAGE), SETUP_SCRIPT).decode()
    data_dir().mkdir(parents=True, exist_ok=True)
    # Built where the sandbox user can reach it (a root caller's home is closed to it).
    staging = episode_dir("lbi-testbed-")
    try:
        with Sandbox(staging) as box:
            # The script is written for busybox sh, whose echo understands -e; bash's does too.
            result = box.run(script, timeout_s=60)
        if result.exit_code != 0:
            raise EnvError(f"building the shell testbed failed: {result.output[-500:]}")
        shutil.rmtree(root, ignore_errors=True)
        shutil.move(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def new_episode_dir(parent: Path | None = None, source: Path | None = None) -> Path:
    """A fresh copy of the testbed (files made now), or an exact copy of ``source`` (same
    modification times), private to one episode."""
    root = episode_dir("lbi-shell-", parent)
    if source is None:
        copy_tree(template_dir(), root)
    else:
        shutil.copytree(source, root, symlinks=True, dirs_exist_ok=True)
    return root


@dataclass(frozen=True)
class GoldResult:
    output: str
    state: dict[str, str]
    exit_code: int | None


def run_gold(command: str, limits: SandboxLimits, source: Path) -> GoldResult:
    """Run a gold command on an exact copy of the episode directory ``source``; returns its
    output and the resulting state."""
    root = new_episode_dir(source.parent, source)
    try:
        with Sandbox(root, limits) as box:
            result = box.run(command)
        return GoldResult(result.output, snapshot(root), result.exit_code)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def raw_tasks() -> list[dict]:
    """The upstream tasks, numbered from 1 in file order."""
    data = json.loads(read_member(package_archive(*INTERCODE_PACKAGE), QUERIES))
    return [{"number": k + 1, "query": d["query"], "gold": d["gold"]} for k, d in enumerate(data)]


def validate_gold(command: str, limits: SandboxLimits) -> str | None:
    """Why a gold command is unusable, or None if it is fine."""
    base = new_episode_dir()
    try:
        first, second = run_gold(command, limits, base), run_gold(command, limits, base)
        unchanged = first.state == snapshot(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if first.exit_code != 0:
        tail = first.output.strip().splitlines()[-1:] or ["no output"]
        return f"fails (exit {first.exit_code}: {tail[0][:120]})"
    if (first.output, first.state) != (second.output, second.state):
        return "not deterministic (two runs differ)"
    if unchanged and not first.output.strip():
        return "no output and no file change on this testbed (any answer would pass)"
    return None


def benchmark_tasks(limits: SandboxLimits | None = None) -> list[Task]:
    """The validated InterCode-Bash tasks (ids ``bash-NN``, upstream numbering)."""
    kept, _ = _validated(limits or SandboxLimits())
    return kept


def dropped_tasks(limits: SandboxLimits | None = None) -> dict[str, str]:
    """Upstream tasks left out of the benchmark: id → reason."""
    return _validated(limits or SandboxLimits())[1]


@cache
def _validated(limits: SandboxLimits) -> tuple[list[Task], dict[str, str]]:
    # Keyed by everything that decides the outcome: a changed fix list revalidates.
    key = content_id(repr(FIXES), DROPS, repr(limits), INTERCODE_PACKAGE)
    cache_file = data_dir() / f"validated-{key}.json"
    if cache_file.exists():
        cached = json.loads(cache_file.read_text())
        return [Task(**t) for t in cached["kept"]], cached["dropped"]
    kept, dropped = [], {}
    for item in raw_tasks():
        number, task_id = item["number"], f"bash-{item['number']:02d}"
        fix = FIXES.get(number, Fix(""))
        gold = fix.gold or item["gold"]
        reason = DROPS.get(number) or validate_gold(gold, limits)
        if reason:
            dropped[task_id] = reason
            continue
        kept.append(Task(id=task_id, env="shell", origin="benchmark", gold=gold,
                         instruction=fix.instruction or item["query"]))
    atomic_write_text(cache_file, json.dumps(
        {"kept": [t.model_dump() for t in kept], "dropped": dropped}, indent=1))
    return kept, dropped
