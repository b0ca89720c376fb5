"""Where a retrieval row's gain goes: a retrieval row against its reference, task by task.

    python scripts/icl_diagnostics.py results/sql released/sql --row LbI-ICL
    python scripts/icl_diagnostics.py results/sql-query-v1 released/sql \
        --reference-results results/sql

Reads the committed episodes of both rows (``<results>/episodes/<row>/<task>.json``) and the
dataset the row retrieved from, and prints, on the tasks both rows ran:
- how often a retrieved example comes from the task's own environment instance (its
  ``env_args`` without the seed: the same database, file system or page), at the first step
  and over all steps;
- success of both rows by that (any same-instance example at the first step or none), by how
  many examples of the task's instance the dataset holds, by difficulty, and by how each
  episode ended;
- for shell tasks, by whether the dataset's actions use every command of one of the task's
  golds, and whether the examples the episode retrieved do;
- how many steps of each row the environment answered with an error, and how many of the
  retrieval row's actions repeat a retrieved example's action.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from datasets import load_dataset

from lbi.agent.runner import finished_episode
from lbi.eval import stats
from lbi.eval.config import slug
from lbi.types import Trajectory


def instance(env_args: dict | str) -> str:
    """The environment instance of a task or example: its env_args without the seed."""
    args = json.loads(env_args) if isinstance(env_args, str) else dict(env_args)
    args.pop("seed", None)
    return json.dumps(args, sort_keys=True)


_SEGMENT = re.compile(r"\|\||&&|[|;`]|\$\(|-exec\s|xargs(?:\s+-\S+)*\s")
_COMMAND = re.compile(r"[a-z][a-z0-9_.+-]*")


def commands(line: str) -> set[str]:
    """The commands of a shell line: the first word of each part of a pipeline or list (and
    what ``xargs`` and ``find -exec`` run)."""
    words = (part.split()[:1] for part in _SEGMENT.split(line))
    return {w[0] for w in words if w and _COMMAND.fullmatch(w[0])}


def episodes(results: Path, row: str) -> dict[str, Trajectory]:
    """The finished episodes of a row, by task id (as ``lbi eval`` reads them back)."""
    folder = results / "episodes" / slug(row)
    found = {path.stem: finished_episode(path) for path in sorted(folder.glob("*.json"))
             if path.stem not in {"agent", "row"}}
    return {task_id: episode for task_id, episode in found.items() if episode}


_ERROR = re.compile(r"^\s*Error\b|\[exit code [1-9]\d*\]\s*$")
"""An observation reporting an error: the environments' "Error: …" (an action refused, a query
that failed) and the shell's non-zero exit status."""


def error_steps(episodes: list[Trajectory]) -> tuple[int, int]:
    """(steps whose next observation is an error, steps) over ``episodes``."""
    errors = total = 0
    for episode in episodes:
        after = episode.observations[1:]
        total += len(after)
        errors += sum(bool(_ERROR.search(o)) for o in after)
    return errors, total


def table(title: str, groups: dict[str, list[tuple[bool, bool]]], row: str, reference: str) -> None:
    print(f"\n{title}\n| group | tasks | {row} | {reference} | only {row} | only {reference} |")
    print("|---|---|---|---|---|---|")
    for name, pairs in sorted(groups.items()):
        a, b = [int(x) for x, _ in pairs], [int(y) for _, y in pairs]
        outcomes = Counter(zip(a, b, strict=True))
        print(f"| {name} | {len(pairs)} | {sum(a)} | {sum(b)} | {outcomes[1, 0]} | "
              f"{outcomes[0, 1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an evaluation's output_dir")
    parser.add_argument("--reference-results", type=Path,
                        help="the output_dir of the reference row (default: the same)")
    parser.add_argument("dataset", type=Path, help="the released dataset the row retrieved from")
    parser.add_argument("--row", default="LbI-ICL")
    parser.add_argument("--reference", default="zero-shot")
    args = parser.parse_args()

    examples = load_dataset("parquet", data_files=str(args.dataset / "examples" / "*.parquet"),
                            split="train")
    instance_of = {e["id"]: instance(e["env_args"]) for e in examples}
    held = Counter(instance_of.values())
    commands_of = {e["id"]: {c for step in e["steps"] for c in commands(step["action"])}
                   for e in examples}
    used = set().union(*commands_of.values())
    row = episodes(args.results, args.row)
    ref = episodes(args.reference_results or args.results, args.reference)
    tasks = sorted(set(row) & set(ref))
    a = [int(row[t].solved) for t in tasks]
    b = [int(ref[t].solved) for t in tasks]
    compared = stats.compare(a, b)
    print(f"{len(tasks)} tasks both rows ran: {args.row} {sum(a)}, {args.reference} {sum(b)}; "
          f"difference {100 * compared['difference']:+.1f} pts "
          f"[{100 * compared['low']:+.1f}, {100 * compared['high']:+.1f}], "
          f"McNemar p = {compared['p_value']:.3f}")

    same_first = same_all = n_first = n_all = 0
    groups: dict[str, dict[str, list[tuple[bool, bool]]]] = defaultdict(lambda: defaultdict(list))
    for task_id in tasks:
        episode, own = row[task_id], instance(row[task_id].task.env_args)
        retrieved = [[instance_of.get(i) == own for i in (s.retrieval.ids if s.retrieval else [])]
                     for s in episode.steps]
        first = retrieved[0] if retrieved else []
        same_first, n_first = same_first + sum(first), n_first + len(first)
        same_all += sum(sum(r) for r in retrieved)
        n_all += sum(len(r) for r in retrieved)
        pair, other = (episode.solved, ref[task_id].solved), ref[task_id]
        groups["same-instance example at the first step"][str(any(first))].append(pair)
        count = held[own]
        bucket = "0" if not count else "1-4" if count < 5 else "5-9" if count < 10 else "10+"
        groups["examples of the task's instance in the dataset"][bucket].append(pair)
        groups["difficulty"][episode.task.difficulty or "unlabelled"].append(pair)
        groups[f"how the {args.row} episode ended"][str(episode.termination)].append(pair)
        groups[f"how the {args.reference} episode ended"][str(other.termination)].append(pair)
        task = episode.task
        if task.env == "shell" and task.gold:
            # a task is covered when one of its golds uses only commands the examples use
            golds = [task.gold, *task.alternative_golds]
            covered = any(commands(g) <= used for g in golds)
            groups["a gold's commands all used in the dataset"][str(covered)].append(pair)
            seen = set().union(*(commands_of.get(i, set()) for s in episode.steps
                                 if s.retrieval for i in s.retrieval.ids))
            groups["a gold's commands all in the examples the episode retrieved"][
                str(any(commands(g) <= seen for g in golds))].append(pair)
    print(f"retrieved examples from the task's own instance: first step {same_first}/{n_first} "
          f"({100 * same_first / max(n_first, 1):.0f}%), all steps {same_all}/{n_all} "
          f"({100 * same_all / max(n_all, 1):.0f}%)")
    steps_a = sum(len(row[t].steps) for t in tasks) / len(tasks)
    steps_b = sum(len(ref[t].steps) for t in tasks) / len(tasks)
    print(f"mean steps: {args.row} {steps_a:.2f}, {args.reference} {steps_b:.2f}")
    for name, rows in ((args.row, row), (args.reference, ref)):
        errors, total = error_steps([rows[t] for t in tasks])
        print(f"steps answered with an error (the action refused or failed): {name} "
              f"{errors}/{total} ({100 * errors / max(total, 1):.0f}%)")
    actions = {e["id"]: {" ".join(s["action"].split()) for s in e["steps"]} for e in examples}
    copied = [(t, k) for t in tasks for k, s in enumerate(row[t].steps) if s.retrieval and
              " ".join(s.action.split()) in set().union(*(actions.get(i, set())
                                                           for i in s.retrieval.ids))]
    print(f"steps of {args.row} that repeat a retrieved example's action: {len(copied)} of "
          f"{sum(len(row[t].steps) for t in tasks)}, in {len({t for t, _ in copied})} episodes "
          f"({sum(row[t].solved for t in {t for t, _ in copied})} solved)")
    for title, grouped in groups.items():
        table(title, grouped, args.row, args.reference)


if __name__ == "__main__":
    main()
