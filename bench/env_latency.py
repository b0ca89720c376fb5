"""Reset and step latency of every offline environment, on this machine.

    python bench/env_latency.py [--episodes 5] [--steps 5] [--envs sql shell code web]

Per environment: ``--episodes`` resets on benchmark tasks (cycling through them) and, in each
episode, ``--steps`` cheap actions (a tiny query, ``ls``, ``noop(0)``), then the scoring call
(``evaluate``). Prints median and max in milliseconds. The first reset of an environment
builds its caches (testbed, checkouts, browser start) and is reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lbi.envs import make_env

CHEAP_ACTION = {"sql": "SELECT 1", "shell": "ls /testbed", "code": "ls", "web": "noop(0)"}
ENV_ARGS = {"code": {"limits": {"command_timeout_s": 60}}}


def measure(name: str, episodes: int, steps: int) -> dict[str, float]:
    env = make_env(name, **ENV_ARGS.get(name, {}))
    tasks = env.benchmark_tasks()
    resets, actions, scoring = [], [], []
    started = time.perf_counter()
    env.reset(tasks[0])
    first = time.perf_counter() - started
    try:
        for k in range(episodes):
            task = tasks[(k * 7) % len(tasks)]  # spread over task kinds (code: bugs + HumanEval)
            t0 = time.perf_counter()
            env.reset(task)
            resets.append(time.perf_counter() - t0)
            for _ in range(steps):
                t0 = time.perf_counter()
                env.step(CHEAP_ACTION[name])
                actions.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            env.evaluate()
            scoring.append(time.perf_counter() - t0)
    finally:
        env.close()
    return {"first reset": first * 1000,
            "reset p50": statistics.median(resets) * 1000, "reset max": max(resets) * 1000,
            "step p50": statistics.median(actions) * 1000, "step max": max(actions) * 1000,
            "evaluate p50": statistics.median(scoring) * 1000,
            "evaluate max": max(scoring) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--envs", nargs="+", default=["sql", "shell", "code", "web"])
    args = parser.parse_args()
    columns = ["first reset", "reset p50", "reset max", "step p50", "step max", "evaluate p50",
               "evaluate max"]
    print("| env | " + " | ".join(f"{c} (ms)" for c in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in args.envs:
        row = measure(name, args.episodes, args.steps)
        print(f"| {name} | " + " | ".join(f"{row[c]:,.0f}" for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
