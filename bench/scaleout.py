"""Throughput of evaluation episodes against an LLM of fixed latency: local vs Ray executor.

    python bench/scaleout.py [--levels 1 4 16 64] [--latency 2.0] [--steps 3]
        [--episodes-per-slot 2] [--kinds local ray]

A stand-in OpenAI-compatible server on 127.0.0.1 answers every request after --latency seconds
(tests/standin.py; it claims no capability: the agent's action is a fixed query) and the real SQL
environment runs the episodes (Spider databases, --steps actions each). For each level of
concurrency c, c × --episodes-per-slot episodes run through the evaluation's own work function
(eval/work.py) with the local executor (c threads, c environments) and the Ray executor (c
environment actors on a local Ray instance with c logical CPUs). Printed per run: episodes per
minute, the ideal (c episodes per steps × latency), their ratio (scaling efficiency) and the
overhead per episode (mean episode wall time minus its LLM latency). If the ratio stays near 1
as c grows, the pipeline is not the bottleneck: the LLM and the environments are.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from functools import partial
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from standin import StandIn  # noqa: E402

from lbi.agent.llm import LLM, Budget, LLMConfig  # noqa: E402
from lbi.agent.runner import ExecutorConfig, StageModels, make_executor  # noqa: E402
from lbi.envs import make_env, splits  # noqa: E402
from lbi.eval import work  # noqa: E402


def run(kind: str, concurrency: int, episodes: int, args: argparse.Namespace,
        url: str) -> dict[str, float]:
    """One measured run: episodes per minute and the mean episode wall time."""
    inspector = make_env("sql")
    tasks = splits.select(inspector.benchmark_tasks(), "dev")
    inspector.close()
    tasks = (tasks * (episodes // len(tasks) + 1))[:episodes]
    # A model name per run: a process bounds each (model, endpoint) by the first config's
    # max_concurrency, and the stand-in answers any name as the agent.
    model = LLMConfig(model=f"openai/agent-{kind}-{concurrency}", api_base=url, cache=False,
                      max_concurrency=concurrency, timeout_s=60)
    executor = make_executor(ExecutorConfig(kind=kind, cpus_per_env=1.0), "sql", {},
                             concurrency, LLM)
    walls: list[float] = []
    work_fn = partial(work.episode, name="bench", model=model, make_model=LLM, retrieval=None,
                      index_folder=None, step_limit=args.steps, episode_timeout_s=600)
    # Environments start before the clock: a run of hours amortizes their start-up.
    executor.map(tasks[:concurrency], work_fn, lambda t, r: None,
                 models=StageModels(LLM, Budget()), description="warm-up",
                 console=Console(quiet=True))
    start = time.perf_counter()
    outcome = executor.map(tasks, work_fn, lambda t, r: walls.append(r.provenance["wall_s"]),
                           models=StageModels(LLM, Budget()), description=f"{kind} c={concurrency}",
                           console=Console(quiet=True))
    wall = time.perf_counter() - start
    executor.close()
    assert len(walls) == episodes, outcome
    return {"per_min": 60 * episodes / wall, "episode_s": statistics.mean(walls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--episodes-per-slot", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=["local", "ray"])
    args = parser.parse_args()
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    llm_s = args.steps * args.latency
    rows = []
    with StandIn(latency_s=args.latency) as server:
        for kind in args.kinds:
            for c in args.levels:
                if kind == "ray":
                    import ray

                    ray.shutdown()
                    ray.init(num_cpus=c, include_dashboard=False, log_to_driver=False)
                result = run(kind, c, c * args.episodes_per_slot, args, server.url)
                ideal = 60 * c / llm_s
                rows.append((kind, c, result["per_min"], ideal, result["per_min"] / ideal,
                             result["episode_s"] - llm_s))
                print(f"{kind} c={c}: {result['per_min']:.1f} episodes/min", flush=True)
    print(f"\n{args.steps} LLM calls of {args.latency}s per episode (ideal: {llm_s:.0f}s each)\n")
    print("| executor | concurrent episodes | episodes/min | ideal | efficiency | "
          "overhead s/episode |\n|---|---|---|---|---|---|")
    for kind, c, per_min, ideal, efficiency, overhead in rows:
        print(f"| {kind} | {c} | {per_min:.1f} | {ideal:.1f} | {efficiency:.2f} | "
              f"{overhead:.2f} |")


if __name__ == "__main__":
    main()
