"""The shell environment's file systems and benchmark tasks, from InterCode-ALFA (``icalfa``
wheel, MIT licence, read as data): five setup scripts (``setup_nl2b_fs_{1..5}.sh``) build five
file systems (``/testbed``, ``/system``, ``/workspace``, …), and ``nl2bash_fs_{1..5}.json`` hold
300 natural-language tasks with two gold commands each and a difficulty (0, 1, 2).

Gold commands were written for an Ubuntu or Alpine container with more tools and a network; some
fail here, read the host rather than the file system, or do nothing (so any answer would pass).
``validate_gold`` runs each gold twice in fresh sandboxes: a gold is kept when it runs (a
non-zero exit with a real answer, like ``diff``'s, counts; a missing file or tool does not),
deterministically and visibly (output or file changes) and every file it creates is named in the
task, and a task when at least one of its golds is kept. Golds that read host state (kernel,
processes, users, network, clock) are dropped without running. ``lbi tasks --env shell`` lists
what is kept; ``dropped_tasks`` says what was dropped and why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rich.progress import track

from lbi.assets import lbi_home, package_archive, read_member
from lbi.envs.sandbox import (
    SYSTEM_ENTRIES,
    Sandbox,
    SandboxLimits,
    copy_tree,
    episode_dir,
    snapshot,
)
from lbi.errors import EnvError
from lbi.io import atomic_write_text
from lbi.types import Task, content_id

ALFA_PACKAGE = ("icalfa", "0.3.6")
FILE_SYSTEMS = (1, 2, 3, 4, 5)
SETUP_SCRIPT = "icalfa/assets/docker/setup_nl2b_fs_{fs}.sh"
TASKS_FILE = "icalfa/assets/datasets/nl2bash_fs_{fs}.json"
HOST_STATE = re.compile(
    r"(?:^|[|;&(`]|\$\(|xargs)\s*(uname|hostname|whoami|who|w|id|users|groups|last|env|"
    r"printenv|ps|pstree|top|pgrep|pkill|kill|killall|uptime|date|cal|time|times|free|df|mount|"
    r"lsblk|ifconfig|ip|netstat|ss|ping|dig|nslookup|host|curl|wget|ssh|crontab|service|systemctl|"
    r"sudo|su|which|whereis|history|dmesg|lscpu|nproc|apt|dpkg|lsof|fuser|vmstat|iostat|jobs|"
    r"ulimit|umask|tty|stty|locale)\b(?![.-])"
    r"|/proc/|/etc/|/sys/|\$(USER|HOME|HOSTNAME|PATH|SHELL|RANDOM)\b")
"""Golds that answer from the host (kernel, users, processes, network, clock, installed
programs) rather than from the task's file system. ``time`` prints durations: two idle runs may
both print 0.000 s and pass the determinism check, then differ on a busy machine."""
VALIDATION_RULES = 10
"""Bumped when ``validate_gold`` changes, so that cached validations are redone."""


def data_dir() -> Path:
    return lbi_home() / "data" / "shell"


def template_dir(fs: int) -> Path:
    """File system ``fs`` (the episode's ``/``), built once by running its upstream setup
    script in a sandbox."""
    if fs not in FILE_SYSTEMS:
        raise EnvError(f"unknown file system {fs!r}; the shell environment has {FILE_SYSTEMS}")
    root = data_dir() / f"alfa-fs{fs}"
    marker = data_dir() / f"alfa-fs{fs}.complete"
    if marker.exists():
        return root
    script = read_member(package_archive(*ALFA_PACKAGE), SETUP_SCRIPT.format(fs=fs)).decode()
    data_dir().mkdir(parents=True, exist_ok=True)
    # Built where the sandbox user can reach it (a root caller's home is closed to it).
    staging = episode_dir("lbi-testbed-")
    try:
        # Upstream's image keeps the script at / (some tasks read it): so does this one.
        (staging / f"setup_nl2b_fs_{fs}.sh").write_text(script)
        with Sandbox(staging) as box:
            # Written for bash or busybox sh, whose echo understands -e; bash's does too.
            result = box.run(script, timeout_s=60)
        if result.exit_code != 0:
            raise EnvError(f"building shell file system {fs} failed: {result.output[-500:]}")
        shutil.rmtree(root, ignore_errors=True)
        shutil.move(staging, root)
        marker.touch()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def top_level(fs: int) -> list[str]:
    """The folders file system ``fs`` adds at ``/`` (where its tasks' files are)."""
    root = template_dir(fs)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in SYSTEM_ENTRIES)


def new_episode_dir(fs: int, parent: Path | None = None) -> Path:
    """A fresh copy of file system ``fs`` (files made now), private to one episode."""
    root = episode_dir("lbi-shell-", parent)
    copy_tree(template_dir(fs), root)
    return root


def copy_episode_dir(source: Path) -> Path:
    """An exact copy of the episode directory ``source`` (same modification times)."""
    root = episode_dir("lbi-shell-", source.parent)
    shutil.copytree(source, root, symlinks=True, dirs_exist_ok=True)
    return root


@dataclass(frozen=True)
class GoldResult:
    output: str
    state: dict[str, str]
    exit_code: int | None


def run_gold(command: str, limits: SandboxLimits, source: Path,
             after: str | None = None) -> GoldResult:
    """Run a gold command on an exact copy of the episode directory ``source`` (in the same
    shell as the command ``after``, if given); returns its output and the resulting state."""
    root = copy_episode_dir(source)
    try:
        with Sandbox(root, limits) as box:
            if after:
                box.run(after)
            result = box.run(command)
        return GoldResult(result.output, snapshot(root), result.exit_code)
    finally:
        shutil.rmtree(root, ignore_errors=True)


_WORD = re.compile(r"[a-z]+|[0-9]+")
_DERIVED = {"gz", "bz2", "xz", "zip", "tar", "tgz", "bak", "orig", "copy", "backup"}
"""Name parts tools add by themselves (``gzip``, ``cp --backup``)."""


_ASYNC = re.compile(r">\(|(?<![&>|])&(?![&>])")
"""Output process substitution and background jobs: what they print, and when, is a race."""
_BROKEN = re.compile(r"No such file or directory|command not found|Permission denied|"
                     r"Read-only file system|Operation not permitted|[Uu]sage:|--help")
"""Output of a command that could not do its job (a non-zero exit with other output is a
result, e.g. ``diff`` finding differences)."""


def unnamed_new_paths(before: dict[str, str], after: dict[str, str], instruction: str) -> list[str]:
    """Paths a command created (the topmost of each new tree) whose name is neither in the
    instruction nor made of existing names: a task that does not say where its result goes can
    only be solved by guessing the gold's choice (``textfile1_reverse_sorted.txt``)."""
    known = set(_WORD.findall(instruction.lower())) | _DERIVED
    known |= {w for path in before for w in _WORD.findall(Path(path).name.lower())}
    new = [path for path in after if path not in before]
    top = [path for path in new if str(Path(path).parent) not in new]
    return [path for path in top if not set(_WORD.findall(Path(path).name.lower())) <= known]


def validate_gold(command: str, limits: SandboxLimits, fs: int, instruction: str) -> str | None:
    """Why a gold command is unusable for ``instruction`` on file system ``fs``, or None if it
    is fine."""
    if match := HOST_STATE.search(command):
        return f"reads host state ({match.group(0).strip()})"
    if _ASYNC.search(command):
        return "runs part of itself asynchronously (its output is a race)"
    base = new_episode_dir(fs)
    # The second run is made like an episode's (after another command, in a shell that has
    # run before), and while it goes a third copy holds the inode numbers the first run freed
    # and 64 more processes run on the host: an answer that shows processes, inodes or the
    # host's process count (`find /`, `stat`, `ls -l /`, where /proc's link count is that
    # count) then differs between the runs, as it would between an episode and its gold. (One
    # more process was not enough: on a busy host another may end between the two runs.)
    hold, extra = None, []
    try:
        first = run_gold(command, limits, base)
        hold = copy_episode_dir(base)
        extra = [subprocess.Popen(["sleep", "600"]) for _ in range(64)]
        second = run_gold(command, limits, base, after="ls / > /dev/null")
        start = snapshot(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if hold:
            shutil.rmtree(hold, ignore_errors=True)
        for process in extra:
            process.kill()
            process.wait()
    if first.exit_code != 0 and (not first.output.strip() or _BROKEN.search(first.output)):
        tail = first.output.strip().splitlines()[-1:] or ["no output"]
        return f"fails (exit {first.exit_code}: {tail[0][:120]})"
    if (first.output, first.state) != (second.output, second.state):
        return "not deterministic (two runs differ)"
    if first.state == start and not first.output.strip():
        return "no output and no file change (any answer would pass)"
    if unnamed := unnamed_new_paths(start, first.state, instruction):
        return f"the task does not name the file the gold writes (/{unnamed[0]})"
    return None


def raw_tasks() -> list[dict]:
    """The upstream tasks: id ``alfa-<fs>-<NNN>`` (file order from 1), file system, query, both
    golds, difficulty."""
    archive = package_archive(*ALFA_PACKAGE)
    tasks = []
    for fs in FILE_SYSTEMS:
        items = json.loads(read_member(archive, TASKS_FILE.format(fs=fs)))
        tasks += [{"id": f"alfa-{fs}-{k + 1:03d}", "fs": fs, "query": d["query"].strip(),
                   "golds": [d["gold"], d["gold2"]], "difficulty": str(d["difficulty"])}
                  for k, d in enumerate(items)]
    return tasks


def benchmark_tasks() -> list[Task]:
    """The validated InterCode-ALFA tasks."""
    return _validated()[0]


def dropped_tasks() -> dict[str, str]:
    """Upstream tasks left out of the benchmark: id → reasons (one per gold)."""
    return _validated()[1]


@cache
def _validated() -> tuple[list[Task], dict[str, str]]:
    # Validated once per machine with the default limits, whatever an environment's own are.
    limits = SandboxLimits()
    key = content_id(VALIDATION_RULES, HOST_STATE.pattern, repr(limits), ALFA_PACKAGE)
    cache_file = data_dir() / f"validated-{key}.json"
    if cache_file.exists():
        cached = json.loads(cache_file.read_text())
        return [Task(**t) for t in cached["kept"]], cached["dropped"]
    kept, dropped = [], {}
    items = raw_tasks()
    for item in track(items, description=f"validating {len(items)} InterCode-ALFA tasks' golds "
                                         "(once per machine)", transient=True):
        golds, reasons = [], []
        for gold in dict.fromkeys(item["golds"]):  # the two golds may be the same command
            reason = validate_gold(gold, limits, item["fs"], item["query"])
            if reason:
                reasons.append(reason)
            else:
                golds.append(gold)
        if not golds:
            dropped[item["id"]] = "; ".join(reasons)
            continue
        kept.append(Task(id=item["id"], env="shell", origin="benchmark", gold=golds[0],
                         alternative_golds=golds[1:], instruction=item["query"],
                         env_args={"fs": item["fs"]}, difficulty=item["difficulty"]))
    atomic_write_text(cache_file, json.dumps(
        {"kept": [t.model_dump() for t in kept], "dropped": dropped}, indent=1))
    return kept, dropped
