"""Fixed dev/test splits of an environment's benchmark tasks.

A task's split is frozen once and committed: ``split_lists/<env>.json`` lists the ids of each
split. Validation of some benchmarks depends on the machine (a shell gold that needs a tool the
host lacks is dropped there), and a split computed from the tasks a machine kept would move
tasks between splits when one more is dropped; with the lists, a task missing on one machine is
only missing there. Tasks no list names (an environment without one, or a task that validates
only on some machines) are assigned by the rule the lists were made with: within every
difficulty stratum the tasks are ranked by a hash of (seed, id) and the first half goes to
``test``. Splits are disjoint and stratified; the ``dev`` split is for tuning prompts and
configs, ``test`` for reported numbers. Tasks come back in hash order, so any prefix of a split
is a random sample of it. ``python scripts/pin_splits.py --env X`` writes an environment's list.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Literal, get_args

from lbi.errors import ConfigError
from lbi.types import Task

Split = Literal["dev", "test", "all"]
SPLITS: tuple[str, ...] = get_args(Split)
SEED = 0
TEST_FRACTION = 0.5
LISTS = Path(__file__).parent / "split_lists"


def _rank(task: Task, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{task.id}".encode()).hexdigest()


@cache
def pinned_splits(env: str) -> dict[str, str]:
    """{task id: split} from ``split_lists/<env>.json`` ({} when the environment has none)."""
    path = LISTS / f"{env}.json"
    if not path.exists():
        return {}
    lists = json.loads(path.read_text())
    return {task_id: name for name in ("dev", "test") for task_id in lists[name]}


def assign_splits(tasks: list[Task], seed: int = SEED,
                  test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """{task id: "dev" | "test"}: the committed list's split for the tasks it names (at the
    default seed and fraction), the others stratified by ``Task.difficulty``."""
    pinned = {} if (seed, test_fraction) != (SEED, TEST_FRACTION) else {
        task.id: of for task in tasks if (of := pinned_splits(task.env).get(task.id))}
    strata: dict[str | None, list[Task]] = defaultdict(list)
    for task in tasks:
        if task.id not in pinned:
            strata[task.difficulty].append(task)
    split: dict[str, str] = dict(pinned)
    for members in strata.values():
        members.sort(key=lambda t: _rank(t, seed))
        n_test = round(test_fraction * len(members))
        for k, task in enumerate(members):
            split[task.id] = "test" if k < n_test else "dev"
    return split


def not_kept(env: str, tasks: list[Task], split: str) -> list[str]:
    """Ids the committed lists put in ``split`` ("all": either) that ``tasks`` (what this
    machine kept) lack: rows run here are not comparable with rows run on all of them."""
    kept = {t.id for t in tasks}
    return sorted(task_id for task_id, of in pinned_splits(env).items()
                  if split in (of, "all") and task_id not in kept)


def select(tasks: list[Task], split: str, seed: int = SEED) -> list[Task]:
    """The tasks of ``split`` ("all": every task), in the seeded hash order."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; one of: {', '.join(SPLITS)}")
    of = assign_splits(tasks, seed)
    chosen = [t for t in tasks if split == "all" or of[t.id] == split]
    return sorted(chosen, key=lambda t: _rank(t, seed))
