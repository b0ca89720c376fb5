"""The web environment: real MiniWoB++ pages in Debian's Chromium through BrowserGym."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lbi.envs import make_env
from lbi.envs.web import miniwob
from lbi.envs.web.docs import shipped_goals
from lbi.envs.web.env import in_browser_thread
from lbi.types import Step, Task


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    environment = make_env("web", screenshot_dir=str(tmp_path_factory.mktemp("shots")))
    yield environment
    environment.close()


def element(observation: str, role: str, name: str) -> str:
    """The BrowserGym id of the element with this role and accessible name."""
    match = re.search(rf"\[(\w+)\] {role} '{re.escape(name)}'", observation)
    assert match, f"no {role} {name!r} in:\n{observation}"
    return match.group(1)


def reference_actions(task: str, goal: str, observation: str) -> list[str]:
    """What a correct agent does on four MiniWoB tasks, read off the goal and the page."""
    if task == "click-button":
        label = re.search(r'"(.+)"', goal).group(1)
        return [f"click('{element(observation, 'button', label)}')"]
    if task == "click-checkboxes":
        names = re.match(r"Select (.*?) and click Submit", goal).group(1)
        picks = [] if names == "nothing" else names.split(", ")
        return ([f"click('{element(observation, 'checkbox', n)}')" for n in picks]
                + [f"click('{element(observation, 'button', 'Submit')}')"])
    if task == "enter-text":
        text = re.search(r'"(.+)"', goal).group(1)
        box = re.search(r"\[(\w+)\] textbox", observation).group(1)
        return [f"fill('{box}', '{text}')",
                f"click('{element(observation, 'button', 'Submit')}')"]
    if task == "login-user":
        user, password = re.search(r'username "(.+)" and the password "(.+)"', goal).groups()
        boxes = re.findall(r"\[(\w+)\] textbox", observation)
        return [f"fill('{boxes[0]}', '{user}')", f"fill('{boxes[1]}', '{password}')",
                f"click('{element(observation, 'button', 'Login')}')"]
    raise ValueError(task)


@pytest.mark.parametrize("name", ["click-button", "click-checkboxes", "enter-text",
                                  "login-user"])
def test_reference_actions_reach_reward_1(env, name):
    for task in [t for t in env.benchmark_tasks() if t.env_args["task"] == name]:
        observation = env.reset(task)
        assert observation.startswith(f"Page goal: {task.instruction}")
        done = False
        for action in reference_actions(name, task.instruction, observation):
            observation, done = env.step(action)
        assert done and "The task ended (reward 1)" in observation
        assert env.evaluate() == 1.0, task.id


def test_a_wrong_click_scores_0(env):
    task = next(t for t in env.benchmark_tasks() if t.env_args["task"] == "click-button")
    observation = env.reset(task)
    label = re.search(r'"(.+)"', task.instruction).group(1)
    wrong = next(b for b, n in re.findall(r"\[(\w+)\] button '(.+?)'", observation) if n != label)
    env.step(f"click('{wrong}')")
    assert env.evaluate() == 0.0


def test_an_action_is_described_by_its_element_on_the_page(env):
    task = next(t for t in env.benchmark_tasks() if t.env_args["task"] == "click-button")
    observation = env.reset(task)
    bid, name = re.findall(r"\[(\w+)\] button '(.+?)'", observation)[0]
    assert env.describe_action(observation, f"click('{bid}')") == f"[{bid}] button '{name}'"
    assert env.describe_action(observation, "click('no-such-id')") is None
    assert env.describe_action(observation, "scroll(0, 200)") is None


def test_benchmark_seeds_are_held_out_from_synthesis(env):
    tasks = env.benchmark_tasks()
    assert len(tasks) == len(miniwob.BENCHMARK_TASKS) * len(miniwob.BENCHMARK_SEEDS)
    assert all(t.env_args["seed"] >= miniwob.SYNTH_SEED_LIMIT for t in tasks)
    contexts = env.task_contexts()
    assert all(c.env_args["seed"] < miniwob.SYNTH_SEED_LIMIT for c in contexts)
    assert "Page goal:" in contexts[0].description


@pytest.mark.parametrize(("name", "seed"), [("click-button", 1000), ("enter-text", 1001),
                                          ("book-flight-nodelay", 1002)])
def test_a_shipped_goal_is_the_rendered_one(env, name, seed):
    """The benchmark goals ship with the package (a fresh machine renders none); each must be
    what the page states when it is rendered."""
    rendered = env.reset(Task(id="t", env="web", instruction="", origin="user",
                              env_args={"task": name, "seed": seed}))
    shipped = shipped_goals()
    assert len(shipped) == len(miniwob.BENCHMARK_TASKS) * len(miniwob.BENCHMARK_SEEDS)
    assert rendered.splitlines()[0] == f"Page goal: {shipped[f'goal:{name}@{seed}']}"


def test_docs_are_the_task_pages(env):
    docs = {d.title: d for d in env.docs()}
    assert len(docs) == len(miniwob.SYNTH_TASKS)
    assert "button" in docs["MiniWoB++ click-button"].text


def test_observations_carry_screenshots_and_errors(env):
    env.reset(Task(id="s", env="web", instruction="x", origin="user",
                   env_args={"task": "click-button", "seed": 3}))
    observation, done = env.step("click('9999')")
    assert not done and "Last action failed:" in observation
    shot = re.search(r"\(screenshot: (.+\.png)\)", observation).group(1)
    assert Path(shot).read_bytes()[:4] == b"\x89PNG"
    assert env.check_span([], observation) is False
    page = observation.split("\nLast action failed:")[0]
    assert env.check_span([Step(observation=page, action="click('9')")], page) is True
    assert env.check_span([Step(observation=page, action="noop(500)")], page) is False
    assert env.evaluate() is None  # a user task is not the page's goal: not scored


# ---- security --------------------------------------------------------------------------------

@pytest.mark.parametrize("action", [
    "goto('file:///etc/passwd')",                    # leave the task page / read host files
    "upload_file('12', '/etc/passwd')",              # hand a host file to the page
    "new_tab()",
    "click('12'); import os; os.system('touch /tmp/pwned')",  # code injection
    "__import__('os').system('touch /tmp/pwned')",
    "click('12') click('13')",                       # more than one action
])
def test_actions_outside_the_action_set_are_refused(env, action):
    env.reset(Task(id="s", env="web", instruction="x", origin="user",
                   env_args={"task": "click-button", "seed": 4}))
    observation, done = env.step(action)
    assert observation.startswith("Error") and not done
    assert "The page has not changed:\nPage goal:" in observation  # it can act on it at once
    assert env.step("noop(0)")[1] is False  # the episode goes on


def test_the_browser_is_offline_and_waits_are_capped(env):
    import time

    env.reset(Task(id="s", env="web", instruction="x", origin="user",
                   env_args={"task": "click-button", "seed": 5}))
    page = env.gym.unwrapped.page
    with pytest.raises(Exception, match="ERR_PROXY_CONNECTION_FAILED|ERR_"):
        in_browser_thread(page.goto, "http://example.com", timeout=10_000)
    env.reset(Task(id="s", env="web", instruction="x", origin="user",
                   env_args={"task": "click-button", "seed": 5}))
    started = time.monotonic()
    env.step("noop(600000)")  # ten minutes asked for
    assert time.monotonic() - started < 15


def test_episodes_can_run_on_worker_threads(env):
    """Synthesis and evaluation run episodes on pool threads (the browser stays on its own)."""
    from concurrent.futures import ThreadPoolExecutor

    def episode(seed: int) -> float | None:
        worker_env = make_env("web")
        try:
            task = Task(id="t", env="web", instruction="x", origin="benchmark",
                        env_args={"task": "click-button", "seed": seed})
            worker_env.reset(task)
            worker_env.step("noop(0)")
            return worker_env.evaluate()
        finally:
            worker_env.close()

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(episode, [7, 8])) == [0.0, 0.0]


def test_lbi_envs_shows_the_offline_environments_ready():
    out = subprocess.run(["lbi", "envs"], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "200"}).stdout
    for name in ["sql", "shell", "code", "web"]:
        row = re.search(rf"│ {name}\s+│.*", out)
        assert row and "ready" in row.group(0) and "missing" not in row.group(0), out
    for name in ["swebench", "webarena", "osworld", "spider2v"]:  # no infrastructure here
        assert re.search(rf"│ {name}\s+│.*missing", out), out


def test_missing_chromium_or_bubblewrap_is_explained(monkeypatch):
    from lbi.envs import get_env_info
    from lbi.envs.web import browser
    from lbi.errors import EnvError

    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", ["/nonexistent/chromium"])
    assert any("apt-get install chromium" in m for m in get_env_info("web").missing())
    with pytest.raises(EnvError, match="apt-get install chromium"):
        make_env("web").reset(Task(id="s", env="web", instruction="x", origin="user",
                                   env_args={"task": "click-button", "seed": 1}))
    monkeypatch.setenv("PATH", "/nonexistent")
    for name in ["shell", "code"]:
        assert any("apt-get install bubblewrap" in m for m in get_env_info(name).missing())


def test_generated_tasks_target_the_page_their_document_shows(env):
    from lbi.synth.taskgen import context_for

    contexts = env.task_contexts()
    for doc in env.docs():
        assert context_for(doc, contexts).env_args["task"] == doc.source.removeprefix("miniwob:")
