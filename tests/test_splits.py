"""Dev/test splits: disjoint, stratified by difficulty, independent of list order, and stable
(the SQL split is pinned by a hash of its ids, so a change to the splitting is seen), also when
a machine keeps fewer tasks (the committed lists, envs/split_lists)."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import pytest

from lbi.envs import splits
from lbi.envs.splits import assign_splits, select
from lbi.envs.sql.benchmark import spider_dev
from lbi.types import Task


def _tasks(n: int) -> list[Task]:
    return [Task(id=f"t{k}", env="x", instruction=str(k), origin="benchmark",
                 difficulty=["easy", "hard", None][k % 3]) for k in range(n)]


def test_splits_are_disjoint_complete_stratified_and_order_independent():
    tasks = _tasks(301)
    dev, test = select(tasks, "dev"), select(tasks, "test")
    assert not {t.id for t in dev} & {t.id for t in test}
    assert len(dev) + len(test) == 301 and len(select(tasks, "all")) == 301
    for label in ("easy", "hard", None):
        stratum = [t for t in tasks if t.difficulty == label]
        in_test = sum(t.difficulty == label for t in test)
        assert abs(in_test - len(stratum) / 2) <= 0.5
    shuffled = tasks[:]
    random.Random(1).shuffle(shuffled)
    assert [t.id for t in select(shuffled, "test")] == [t.id for t in test]
    assert assign_splits(tasks, seed=1) != assign_splits(tasks, seed=0)


def test_the_sql_test_split_is_stable():
    tasks = list(spider_dev()[0])
    test = select(tasks, "test")
    assert len(test) == 447 and len(select(tasks, "dev")) == 448
    ids = " ".join(sorted(t.id for t in test))
    assert hashlib.sha256(ids.encode()).hexdigest()[:16] == "98c2c7825df0a57f"
    assert Counter(t.difficulty for t in test) == {"easy": 111, "medium": 188, "hard": 72,
                                                  "extra": 76}


@pytest.mark.parametrize("env", ["sql", "shell", "web", "code"])
def test_every_environment_has_disjoint_committed_lists(env):
    lists = json.loads((splits.LISTS / f"{env}.json").read_text())
    assert lists["test"] and lists["dev"] and not set(lists["test"]) & set(lists["dev"])


def test_a_task_a_machine_does_not_keep_moves_no_other_task():
    """On one machine a shell gold needed a tool the host lacked: the task was dropped, its
    stratum shrank by one, and the split computed from the kept tasks moved a test task to dev.
    The committed lists keep every other task where it was; an unlisted task gets the rule."""
    tasks = list(spider_dev()[0])
    test = [t.id for t in select(tasks, "test")]
    one_dev_per_stratum = {t.difficulty: t.id for t in select(tasks, "dev")}
    fewer = [t for t in tasks if t.id not in one_dev_per_stratum.values()]
    assert [t.id for t in select(fewer, "test")] == test
    new = Task(id="spider-new", env="sql", instruction="?", origin="benchmark", difficulty="easy")
    assert assign_splits([*tasks, new])["spider-new"] == assign_splits([new])["spider-new"]


def test_listed_tasks_a_machine_lacks_are_named_by_split():
    tasks = list(spider_dev()[0])
    gone = select(tasks, "test")[0].id
    fewer = [t for t in tasks if t.id != gone]
    assert splits.not_kept("sql", fewer, "test") == splits.not_kept("sql", fewer, "all") == [gone]
    assert splits.not_kept("sql", fewer, "dev") == [] == splits.not_kept("sql", tasks, "all")
