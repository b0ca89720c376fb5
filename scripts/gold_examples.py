"""A reference dataset made of a benchmark split's gold solutions, for an upper-bound ICL row.

    python scripts/gold_examples.py --env shell --split dev --out outputs/reference/shell-dev-golds

Each task of the split that has a gold command runs it once in the environment; the task's own
instruction, the observation before, the gold action and the observation after make one example
(the layout of ``lbi synth``'s datasets, so ``lbi eval`` retrieves from it as from synthesized
data: ``retrieval: {dataset: <out>}`` on a row). Only golds that solve their task are kept.

Retrieving from the dev split's golds while evaluating on the test split asks what examples
written by a human, in the benchmark's own style, would do for the student: if they do not help
it, synthesized data of any quality will not either, at that model size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import track

from lbi.envs import make_env, splits
from lbi.synth.backward import original_example
from lbi.synth.export import build_dataset, example_row, save_dataset, trajectory_row
from lbi.types import Step, Task, Trajectory


def gold_trajectory(env, task: Task) -> Trajectory:
    """The task solved by its gold action in one step."""
    observation = env.reset(task)
    final, _ = env.step(task.gold)
    return Trajectory(id=f"gold-{task.id}", task=task,
                      steps=[Step(observation=observation, action=task.gold)],
                      final_observation=final, termination="stop", reward=env.evaluate(),
                      action_space=env.action_space,
                      provenance={"source": f"the gold solution of benchmark task {task.id}"})


def card(env: str, split: str, kept: int, failed: int) -> str:
    return f"""# Gold-solution examples: {env}, {split} split

Made by `python scripts/gold_examples.py --env {env} --split {split}` from the benchmark's own
gold solutions (not synthesized): {kept} examples, one per task of the split whose gold solves
it when run once ({failed} did not and were left out). Each example is the task's instruction,
the first observation, the gold action and what it printed. For an upper-bound ICL row on the
other split; never for reported LbI-ICL numbers.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="an environment with gold actions: shell, sql")
    parser.add_argument("--split", default="dev", choices=["dev", "test", "all"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-tasks", type=int, help="only the split's first N tasks")
    args = parser.parse_args()

    env = make_env(args.env)
    tasks = [t for t in splits.select(env.benchmark_tasks(), args.split) if t.gold]
    tasks = tasks[:args.max_tasks]
    trajectories = []
    try:
        for task in track(tasks, description=f"running {len(tasks)} golds"):
            trajectories.append(gold_trajectory(env, task))
    finally:
        env.close()
    solved = [t for t in trajectories if t.reward is not None and t.reward >= 1]
    dataset = build_dataset([trajectory_row(t) for t in solved],
                            [example_row(original_example(t)) for t in solved], [], [])
    save_dataset(dataset, card(args.env, args.split, len(solved), len(tasks) - len(solved)),
                 args.out)
    print(f"{len(solved)} examples ({len(tasks) - len(solved)} golds did not solve their task) "
          f"in {args.out}")


if __name__ == "__main__":
    main()
