"""Freeze an environment's dev/test split: write ``envs/split_lists/<env>.json``.

    python scripts/pin_splits.py --env sql

The lists hold the split of every benchmark task this machine keeps. Tasks already listed keep
their split (``lbi.envs.splits.assign_splits`` reads the list first), so rerunning it adds the
tasks no list names and never moves one; a listed task this machine does not keep stays listed.
"""

from __future__ import annotations

import argparse
import json

from lbi.envs import make_env, splits
from lbi.io import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    args = parser.parse_args()
    env = make_env(args.env)
    try:
        tasks = env.benchmark_tasks()
    finally:
        env.close()
    lists = {name: [t.id for t in splits.select(tasks, name)] for name in ("dev", "test")}
    for task_id, name in splits.pinned_splits(args.env).items():
        if task_id not in lists[name]:
            lists[name].append(task_id)
    path = splits.LISTS / f"{args.env}.json"
    atomic_write_text(path, json.dumps(lists, indent=0) + "\n")
    print(f"{path}: dev {len(lists['dev'])}, test {len(lists['test'])}")


if __name__ == "__main__":
    main()
