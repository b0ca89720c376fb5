"""Model endpoint faults through the real litellm path, against a stand-in OpenAI-compatible
server on 127.0.0.1: retries are one layer, capped and counted; a call has a deadline; a failed
call is never stored as a result, and an outage followed by recovery gives the clean dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from standin import StandIn, role

from lbi.agent.llm import LLM, Budget, LLMCallFailed, LLMConfig
from lbi.eval.config import EvalConfig
from lbi.eval.harness import Evaluation
from lbi.synth.config import SynthConfig
from lbi.synth.export import load_dataset_dir
from lbi.synth.pipeline import Synthesis

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server():
    with StandIn(hang_s=5) as stand_in:
        yield stand_in


@pytest.mark.parametrize("mode", ["429", "500", "malformed"])
def test_retries_are_capped_at_the_configured_requests_and_counted(server, mode):
    budget = Budget()
    llm = LLM(LLMConfig(**role("agent", server.url, max_retries=2)), budget)
    server.fail(mode)
    with pytest.raises(LLMCallFailed, match="after 3 request"):
        llm.complete(MESSAGES)
    assert server.requests == 3  # not 3 x the SDK's own retries
    assert budget.retries == 2 and budget.failures == 1 and budget.calls == 0

    server.requests = 0
    no_retry = LLM(LLMConfig(**role("agent", server.url, max_retries=0)), Budget())
    with pytest.raises(LLMCallFailed):
        no_retry.complete(MESSAGES)
    assert server.requests == 1


def test_a_call_that_recovers_records_its_retries(server):
    budget = Budget()
    llm = LLM(LLMConfig(**role("agent", server.url, max_retries=3)), budget)
    server.fail("500", 2)
    out = llm.complete(MESSAGES)
    assert out.text.startswith("REASON") and out.call.retries == 2
    assert server.requests == 3 and budget.retries == 2 and budget.failures == 0


def test_an_answer_cut_at_max_tokens_is_asked_again_never_run(server):
    from lbi.agent.loop import Agent
    from lbi.envs import make_env
    from lbi.types import Task

    llm = LLM(LLMConfig(**role("agent", server.url)), Budget())
    server.fail("truncated", 1)
    assert llm.complete(MESSAGES).truncated and not llm.complete(MESSAGES).truncated
    env = make_env("sql")
    server.fail("truncated", 1)
    traj = Agent(llm, env).run(Task(id="t", env="sql", instruction="List the tables",
                                    origin="user", env_args={"db": "pets_1"}))
    env.close()
    assert traj.steps[0].action == "SELECT name FROM sqlite_master"  # the whole one, re-asked
    assert traj.steps[0].llm.retries == 1


def test_a_hung_endpoint_is_cut_off_by_the_call_deadline(server):
    llm = LLM(LLMConfig(**role("agent", server.url, max_retries=50, timeout_s=1.0,
                               deadline_s=2.5)), Budget())
    server.fail("hang")
    started = time.monotonic()
    with pytest.raises(LLMCallFailed):
        llm.complete(MESSAGES)
    assert time.monotonic() - started < 4.5
    assert server.requests <= 4


def test_negative_retries_and_zero_concurrency_are_config_errors():
    with pytest.raises(ValueError, match="max_retries"):
        LLMConfig(max_retries=-1)
    with pytest.raises(ValueError, match="max_concurrency"):
        LLMConfig(max_concurrency=0)


def _synth_config(tmp_path: Path, url: str) -> dict:
    return {
        "env": "sql", "output_dir": str(tmp_path / "out"),
        "models": {"generator": role("generator", url, max_retries=1),
                   "agent": role("agent", url, max_retries=1),
                   "committee": [role("judge", url, max_retries=1)]},
        "docs": {"max_docs": 3}, "taskgen": {"tasks_per_doc": 2},
        "rollout": {"step_limit": 2, "max_tasks": 4},
        "backward": {"max_spans_per_trajectory": 2},
        "filter": {"choices": 0},  # the stand-in judge answers the four criteria
    }


def _dataset_ids(path: Path) -> dict[str, list[str]]:
    data = load_dataset_dir(path)
    return {name: sorted(data[name]["train"]["id"]) for name in ("trajectories", "examples",
                                                                  "sft")}


def test_an_outage_then_recovery_gives_the_same_dataset_as_a_clean_run(server, tmp_path):
    clean = Synthesis(SynthConfig.model_validate(_synth_config(tmp_path / "clean", server.url)))
    clean_ids = _dataset_ids(clean.run())
    clean_requests = server.requests
    assert clean_ids["examples"]

    config = _synth_config(tmp_path / "outage", server.url)
    config_path = tmp_path / "outage.yaml"
    config_path.write_text(yaml.safe_dump(config))
    server.requests = 0
    server.fail("500")  # the endpoint is down for the whole first run
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    first = subprocess.run(["lbi", "synth", "--config", str(config_path)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stdout[-2000:]
    assert "model endpoint failed" in first.stdout and "no dataset was written" in first.stdout
    out = tmp_path / "outage" / "out"
    assert not (out / "dataset").exists()
    assert not (out / "taskgen.jsonl").exists() or not (out / "taskgen.jsonl").read_text()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["lost_to_endpoint_failures"]

    server.recover()
    server.requests = 0
    second = subprocess.run(["lbi", "synth", "--config", str(config_path)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:]
    assert _dataset_ids(out / "dataset") == clean_ids
    assert server.requests == clean_requests  # every item was asked again, nothing twice


def test_a_stopped_synthesis_records_what_it_spent(server, tmp_path):
    """SIGTERM (kill, a scheduler) unwinds the run: its spend reaches runs.jsonl, which the
    dataset card's totals and yield per hour are summed from; and the process ends then, not
    when the calls its worker threads are waiting on return."""
    config_path = tmp_path / "synth.yaml"
    config_path.write_text(yaml.safe_dump(_synth_config(tmp_path, server.url)))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    server.hang_s = 90
    server.fail("hang", model="agent")  # tasks are generated, then every rollout waits
    run = subprocess.Popen(["lbi", "synth", "--config", str(config_path)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    taskgen = tmp_path / "out" / "taskgen.jsonl"
    deadline = time.monotonic() + 120
    while not (taskgen.exists() and taskgen.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the run is now mid-way, waiting on the endpoint
    run.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert run.wait(timeout=80) == 128 + signal.SIGTERM
    assert time.monotonic() - stopped < 20
    records = [json.loads(line) for line in
               (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["wall_s"] > 0
    assert sum(stage["calls"] for stage in records[0]["stages"].values()) >= 1


def test_a_failed_rollout_is_no_trajectory_and_a_failed_committee_call_no_vote(server,
                                                                               tmp_path):
    config = SynthConfig.model_validate(_synth_config(tmp_path, server.url))
    out = config.output_dir
    assert Synthesis(config).run(until="taskgen") is None
    server.fail("500")
    rolled = Synthesis(config)
    assert rolled.run(until="rollouts") is None and rolled.lost["rollouts"] >= 1
    assert not (out / "trajectories.jsonl").exists() or not (out / "trajectories.jsonl").read_text()
    server.recover()
    assert Synthesis(config).run(until="backward") is None
    server.fail("429")
    judged = Synthesis(config)
    assert judged.run() is None and judged.lost["committee filter"] >= 1
    assert "call failed" not in (out / "judgements.jsonl").read_text() if (
        out / "judgements.jsonl").exists() else True
    server.recover()
    finished = Synthesis(config)
    assert finished.run() is not None and not finished.lost


def test_an_evaluation_episode_lost_to_the_endpoint_is_rerun(server, tmp_path):
    config = EvalConfig.model_validate({
        "env": "sql", "output_dir": str(tmp_path / "eval"), "split": "all",
        "tasks": ["spider-1017", "spider-0396"],
        "step_limit": 2, "model": role("agent", server.url, max_retries=0),
        "agents": [{"name": "zero-shot"}]})
    server.fail("500", 1)  # the first request of the first episode fails
    with pytest.raises(Exception, match="model endpoint failed"):
        Evaluation(config).run()
    assert not (tmp_path / "eval" / "episodes" / "zero-shot" / "row.json").exists()
    results = Evaluation(config).run()
    assert [row["name"] for row in results["agents"]] == ["zero-shot"]
    assert results["agents"][0]["episodes"] == 2


def test_an_episode_whose_request_is_refused_is_an_error_and_the_evaluation_goes_on(tmp_path):
    overflowing = "Find the major and age of students who do not have a cat pet"  # spider-0396
    with StandIn(too_long_if=overflowing) as server:
        config = EvalConfig.model_validate({
            "env": "sql", "output_dir": str(tmp_path / "eval"), "split": "all",
            "tasks": ["spider-1017", "spider-0396"], "step_limit": 2,
            "model": role("agent", server.url), "agents": [{"name": "zero-shot"}]})
        results = Evaluation(config).run()
    row = results["agents"][0]
    assert row["episodes"] == 2 and row["errors"] == 1 and row["error_tasks"] == ["spider-0396"]
    refused = json.loads((tmp_path / "eval/episodes/zero-shot/spider-0396.json").read_text())
    assert refused["termination"] == "error"
    assert refused["error"].startswith("RequestRejected:") and "context size" in refused["error"]
    fine = json.loads((tmp_path / "eval/episodes/zero-shot/spider-1017.json").read_text())
    assert fine["termination"] == "step_limit" and fine["error"] is None


def test_a_refused_synthesis_request_skips_its_item_and_the_run_goes_on(tmp_path):
    config = SynthConfig.model_validate(_synth_config(tmp_path, "http://127.0.0.1:9"))
    Synthesis(config).run(until="docs")
    lines = (config.output_dir / "docs.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    too_long = docs[0]["text"][:200]  # the task-generation request for this document overflows
    with StandIn(too_long_if=too_long) as server:
        config = SynthConfig.model_validate(_synth_config(tmp_path, server.url))
        synthesis = Synthesis(config)
        dataset = synthesis.run()
    assert dataset is not None and synthesis.rejected == {"tasks from docs": 1}
    stats = json.loads((config.output_dir / "stats.json").read_text())
    assert stats["requests_rejected"] == {"tasks from docs": 1}
    assert not stats["lost_to_endpoint_failures"]
