"""The Ray executor on a local Ray instance: the same dataset as the local executor, and an
environment actor that dies mid-item is restarted and the item done again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from standin import StandIn, role

from lbi.agent.llm import LLM, Budget
from lbi.agent.runner import ExecutorConfig, StageModels
from lbi.synth.config import SynthConfig
from lbi.synth.export import load_dataset_dir
from lbi.synth.pipeline import Synthesis

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(out: Path, url: str, executor: dict) -> SynthConfig:
    return SynthConfig.model_validate({
        "env": "sql", "output_dir": str(out),
        "models": {"generator": role("generator", url), "agent": role("agent", url),
                   "committee": [role("judge", url)]},
        "docs": {"max_docs": 3}, "taskgen": {"tasks_per_doc": 2},
        "rollout": {"step_limit": 2, "max_tasks": 4},
        "backward": {"max_spans_per_trajectory": 2}, "filter": {"choices": 0},
        "executor": executor})


def _rows(path: Path) -> dict[str, list]:
    data = load_dataset_dir(path)
    return {name: sorted(zip(data[name]["train"]["id"], data[name]["train"]["instruction"],
                             strict=True))
            for name in ("trajectories", "examples", "distill")}


def test_synthesis_on_ray_gives_the_local_dataset(local_ray, tmp_path):
    with StandIn() as server:
        local = Synthesis(_config(tmp_path / "local", server.url, {})).run()
        on_ray = Synthesis(_config(tmp_path / "ray", server.url,
                                   {"kind": "ray", "env_workers": 2})).run()
    assert _rows(local) == _rows(on_ray) and _rows(on_ray)["examples"]
    stats = (tmp_path / "ray" / "stats.json").read_text()
    assert '"calls": 0' not in stats.split('"rollouts"')[1][:400]  # usage came back from actors


def test_an_evaluation_on_ray_gives_the_local_results(local_ray, tmp_path):
    from lbi.eval.config import EvalConfig
    from lbi.eval.harness import Evaluation

    answers = {"agent": "REASON: count\nACTION: submit SELECT count(*) FROM Dogs"}
    results = {}
    with StandIn(answers=answers) as server:
        for kind in ("local", "ray"):
            config = EvalConfig.model_validate({
                "env": "sql", "output_dir": str(tmp_path / kind), "split": "dev",
                "max_tasks": 6, "step_limit": 2, "model": role("agent", server.url),
                "agents": [{"name": "zero-shot"}], "executor": {"kind": kind}})
            results[kind] = Evaluation(config).run()
    local, on_ray = (results[k]["agents"][0] for k in ("local", "ray"))
    assert local["solved_tasks"] == on_ray["solved_tasks"] and on_ray["episodes"] == 6
    assert on_ray["calls"] == local["calls"] > 0  # usage recorded in the actors
    assert len(list((tmp_path / "ray" / "episodes" / "zero-shot").glob("spider-*.json"))) == 6


def _die_once(env, models, item):
    """Kills its actor's process the first time (a marker file remembers), then works."""
    marker = Path(item)
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return env.name


def test_an_environment_actor_that_dies_is_restarted_and_the_item_redone(local_ray, tmp_path):
    import sys

    from rich.console import Console

    from lbi.agent.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
    executor = RayExecutor("sql", {}, env_workers=1, cpus_per_env=0.5)
    results = {}
    try:
        outcome = executor.map([str(tmp_path / "a"), str(tmp_path / "b")], _die_once,
                               results.__setitem__, models=StageModels(LLM, Budget()),
                               description="dying", console=Console(quiet=True))
    finally:
        executor.close()
    assert outcome.finished == 2 and set(results.values()) == {"sql"}


def test_without_ray_the_executor_setting_fails_with_one_clear_message(monkeypatch, tmp_path):
    import sys

    from lbi.errors import ConfigError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'learn-by-interact\[ray\]'"):
        Synthesis(_config(tmp_path, "http://127.0.0.1:9/v1", {"kind": "ray"}))
    assert ExecutorConfig().kind == "local"
