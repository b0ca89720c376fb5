"""Fixed dev/test splits of an environment's benchmark tasks.

Each task's split depends only on its id, its difficulty label and the seed: within every
difficulty stratum the tasks are ranked by a hash of (seed, id) and the first half goes to
``test``. Splits are therefore disjoint, stratified, and stable across runs and machines; the
``dev`` split is for tuning prompts and configs, ``test`` for reported numbers. Tasks come back
in hash order, so any prefix of a split is a random sample of it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Literal, get_args

from lbi.errors import ConfigError
from lbi.types import Task

Split = Literal["dev", "test", "all"]
SPLITS: tuple[str, ...] = get_args(Split)
SEED = 0
TEST_FRACTION = 0.5


def _rank(task: Task, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{task.id}".encode()).hexdigest()


def assign_splits(tasks: list[Task], seed: int = SEED,
                  test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """{task id: "dev" | "test"}, stratified by ``Task.difficulty``."""
    strata: dict[str | None, list[Task]] = defaultdict(list)
    for task in tasks:
        strata[task.difficulty].append(task)
    split: dict[str, str] = {}
    for members in strata.values():
        members.sort(key=lambda t: _rank(t, seed))
        n_test = round(test_fraction * len(members))
        for k, task in enumerate(members):
            split[task.id] = "test" if k < n_test else "dev"
    return split


def select(tasks: list[Task], split: str, seed: int = SEED) -> list[Task]:
    """The tasks of ``split`` ("all": every task), in the seeded hash order."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; one of: {', '.join(SPLITS)}")
    of = assign_splits(tasks, seed)
    chosen = [t for t in tasks if split == "all" or of[t.id] == split]
    return sorted(chosen, key=lambda t: _rank(t, seed))
