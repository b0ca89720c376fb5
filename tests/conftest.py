"""Test set-up: everything offline, caches in a per-session LBI_HOME shared with the real one."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Data files no package ships (the full Spider dev set): the workspace's shared/data folder,
# beside the repository.
os.environ.setdefault("LBI_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402


@pytest.fixture
def llm_cache(tmp_path, monkeypatch):
    """A private, empty LLM response cache for one test."""
    monkeypatch.setenv("LBI_CACHE_DIR", str(tmp_path / "llm-cache"))
    return tmp_path / "llm-cache"


@pytest.fixture
def box_root():
    """An episode directory a sandbox can use (pytest's tmp_path is closed to the sandbox user
    when the tests run as root)."""
    import shutil

    from lbi.envs.sandbox import episode_dir

    root = episode_dir("lbi-test-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


EXAMPLES = {  # instruction → (database, actions): small, real examples for retrieval tests
    "How many tracks are in the music store?": ("chinook", ["SELECT count(*) FROM track"]),
    "List the names of all media types.": ("chinook", ["SELECT name FROM mediatype"]),
    "Which pets are older than 3 years?": ("pets_1", ["SELECT petid, pettype FROM pets "
                                                      "WHERE pet_age > 3"]),
    "How many students are majoring in 600?": ("pets_1", ["SELECT * FROM student LIMIT 2",
                                                          "SELECT count(*) FROM student "
                                                          "WHERE major = 600"]),
    "Show the singers from France with their ages.": ("concert_singer", [
        "SELECT name, age FROM singer WHERE country = 'France'"]),
}


def executed_example(instruction: str, db: str, actions: list[str], env, kind="abstraction"):
    """An Example whose observations come from running ``actions`` in the real SQL env."""
    from lbi.types import Example, Step, Task, content_id

    observation = env.reset(Task(id="x", env="sql", instruction=instruction, origin="user",
                                 env_args={"db": db}))
    steps = []
    for action in actions:
        steps.append(Step(observation=observation, action=action))
        observation, _ = env.step(action)
    return Example(id=content_id(instruction, db, actions), instruction=instruction, kind=kind,
                   env="sql", trajectory_id="t", span=(0, len(steps)), env_args={"db": db},
                   steps=steps, final_observation=observation, action_space=env.action_space)


@pytest.fixture(scope="session")
def sql_examples():
    """The EXAMPLES, executed in the real SQL environment."""
    from lbi.envs import make_env

    env = make_env("sql")
    try:
        return [executed_example(i, db, acts, env) for i, (db, acts) in EXAMPLES.items()]
    finally:
        env.close()


@pytest.fixture(scope="session")
def embedder():
    """all-MiniLM-L6-v2 from its offline package, loaded once (the static default has its own
    tests in test_retrieval.py)."""
    from lbi.agent.retrieval import MINILM_EMBEDDER, Embedder

    return Embedder(MINILM_EMBEDDER)
