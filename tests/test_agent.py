"""The agent loop and prompt format, driven by a scripted model on the real SQL environment."""

from __future__ import annotations

import json

import pytest

from lbi.agent.llm import Budget
from lbi.agent.loop import Agent, AgentConfig
from lbi.agent.prompts import FormatError, HistoryPolicy, parse_response, render_history
from lbi.agent.scripted import ScriptedLLM
from lbi.envs import make_env
from lbi.errors import BudgetExceeded
from lbi.types import Retrieval, Step, Trajectory


@pytest.fixture(scope="module")
def env():
    e = make_env("sql")
    yield e
    e.close()


@pytest.fixture(scope="module")
def task(env):
    return next(t for t in env.benchmark_tasks() if t.id == "spider-1017")  # dogs of girls


@pytest.mark.parametrize("text, expected", [
    ("REASON: look\nACTION: SELECT 1", ("look", "SELECT 1")),
    ("**REASON:** look\n**ACTION:** `SELECT 1`", ("look", "SELECT 1")),
    ("REASON: look\nACTION:\n```sql\nSELECT a\nFROM t\n```", ("look", "SELECT a\nFROM t")),
    ("ACTION: stop", ("", "stop")),
    ("reason: x\naction: submit SELECT 2\nOBSERVATION: 2\nREASON: done", ("x", "submit SELECT 2")),
    ("I will run:\n```sql\nSELECT 3\n```", ("I will run:", "SELECT 3")),
    # the layout of the history and of retrieved examples, continued by the model
    ("REASON: r\nACTION: click('14')   # on [14] button 'Go'\nStep 2 OBSERVATION: page",
     ("r", "click('14')   # on [14] button 'Go'")),
    ("REASON: r\nACTION: click('16')\nStep 2: fill('16', '18')", ("r", "click('16')")),
    ('ACTION: def f():\n    """Step 1: add."""\n    return 1',
     ("", 'def f():\n    """Step 1: add."""\n    return 1')),
])
def test_parse_response_is_lenient(text, expected):
    assert parse_response(text) == expected


def test_an_answer_cut_at_the_length_limit_gives_only_an_action_that_had_ended():
    ended = "REASON: r\nACTION: mkdir a\nACTION: cd a\nACTION: for f in $(ls); do\n  ln -s"
    assert parse_response(ended, truncated=True) == ("r", "mkdir a")
    for cut in ("REASON: r\nACTION: SELECT a FROM t WHERE b = 'Afr", "REASON: a plan with no "
                "action yet", "I will run:\n```sql\nSELECT 3\n```"):
        with pytest.raises(FormatError, match="cut off"):
            parse_response(cut, truncated=True)


@pytest.mark.parametrize("text", ["", "REASON: thinking only", "ACTION:", "```a```\n```b```"])
def test_parse_response_rejects_answers_without_an_action(text):
    with pytest.raises(FormatError):
        parse_response(text)


def test_prompt_layout_follows_the_paper(env, task):
    model = ScriptedLLM(["REASON: r\nACTION: stop"])
    Agent(model, env, reference=lambda *_: Retrieval(text="EXAMPLE 1 ...")).run(task)
    system, user = model.seen[0]
    assert system["role"] == "system" and "REASON:" in system["content"]
    assert "submit SELECT ..." in system["content"]  # the env's action space
    headers = ["## Additional information for reference", "## Objective",
               "## Interaction history", "## Current observation"]
    positions = [user["content"].index(h) for h in headers]
    assert positions == sorted(positions)
    assert task.instruction in user["content"] and task.gold not in user["content"]


def test_gold_actions_reach_reward_1_and_the_trajectory_is_saved_every_step(env, task, tmp_path):
    path = tmp_path / "traj.json"
    saved_steps = []

    def check_saved(step, observation):
        saved_steps.append(len(Trajectory.model_validate_json(path.read_text()).steps)
                           if path.exists() else 0)

    model = ScriptedLLM([
        "REASON: look at pets\nACTION: SELECT PetType, count(*) FROM pets GROUP BY PetType",
        f"REASON: join\nACTION: submit {task.gold}",
    ])
    traj = Agent(model, env).run(task, save_to=path, on_step=check_saved)
    assert traj.termination == "stop" and traj.reward == 1.0
    assert [s.action for s in traj.steps][0].startswith("SELECT PetType")
    assert traj.steps[0].observation.startswith("Database: pets_1")  # o0
    assert "dog | 2" in traj.steps[1].observation  # o1 is the first action's result
    assert "Answer submitted" in traj.final_observation
    assert saved_steps == [0, 1]  # written after step 1, before step 2 ran
    on_disk = Trajectory.model_validate_json(path.read_text())
    assert on_disk == traj and on_disk.provenance["model"] == "scripted"


def test_step_limit(env, task):
    model = ScriptedLLM(["REASON: r\nACTION: SELECT 1"] * 3)
    traj = Agent(model, env, AgentConfig(step_limit=3)).run(task)
    assert traj.termination == "step_limit" and len(traj.steps) == 3 and traj.reward == 0.0


def test_format_errors_are_re_asked_then_end_the_episode(env, task):
    model = ScriptedLLM(["no idea", "REASON: ok\nACTION: stop"])
    traj = Agent(model, env).run(task)
    assert traj.termination == "stop" and traj.steps[0].action == "stop"
    assert model.seen[1] == model.seen[0]  # first re-ask: the same prompt (under the grammar)
    assert traj.steps[0].llm.retries == 1

    model = ScriptedLLM(["no idea", "still none", "REASON: ok\nACTION: stop"])
    traj = Agent(model, env).run(task)
    assert traj.steps[0].action == "stop" and traj.steps[0].llm.retries == 2
    assert model.seen[2][-2]["content"] == "still none"
    assert "no action" in model.seen[2][-1]["content"]  # then the correction

    model = ScriptedLLM(["hmm"] * 3)
    traj = Agent(model, env, AgentConfig(max_format_retries=2)).run(task)
    assert traj.termination == "error" and "no parsable action" in traj.error


def test_budget_stops_the_run_and_keeps_the_steps(env, task, tmp_path):
    path = tmp_path / "t.json"
    model = ScriptedLLM(["REASON: r\nACTION: SELECT 1"] * 5, budget=Budget(max_calls=2))
    with pytest.raises(BudgetExceeded):
        Agent(model, env).run(task, save_to=path)
    saved = json.loads(path.read_text())
    assert saved["termination"] == "budget" and len(saved["steps"]) == 2


def test_history_is_cut_visibly():
    steps = [Step(observation="x" * 50, action=f"A{k}") for k in range(10)]
    text = render_history(steps, HistoryPolicy(observation_chars=10, max_chars=120))
    assert text.startswith("[") and "earlier steps omitted" in text
    assert "A9" in text and "A0" not in text and "…[cut]" in text
