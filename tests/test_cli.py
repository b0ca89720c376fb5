"""The `lbi` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


def lbi(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    import os

    merged = {**os.environ, "COLUMNS": "200", **(env or {})}
    merged = {k: v for k, v in merged.items() if v is not None}  # None: unset the variable
    return subprocess.run(["lbi", *args], capture_output=True, text=True, timeout=timeout,
                          env=merged, cwd=Path(__file__).resolve().parents[1])


def test_envs_lists_sql_as_ready():
    out = lbi("envs")
    assert out.returncode == 0, out.stderr
    assert "sql" in out.stdout and "ready" in out.stdout


def test_models_lists_the_embedded_models():
    out = lbi("models")
    assert out.returncode == 0, out.stderr
    for name in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"):
        assert f"local/{name}" in out.stdout


def test_tasks_lists_the_23_spider_questions():
    out = lbi("tasks", "--env", "sql")
    assert out.returncode == 0 and out.stdout.count("spider-") == 23


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "spider-01", "--model", "local/gpt-17"], "unknown local model"),
    (["run", "--task", "spider-01", "--model", "no-such-model-xyz"], "unknown model"),
    (["run", "--task", "spider-01", "--env", "nowhere"], "unknown environment"),
    (["run", "--task", "spider-01", "--model", "anthropic/claude-3-5-sonnet-20241022"],
     "ANTHROPIC_API_KEY"),
    (["models", "pull", "gpt-17"], "unknown embedded model"),
    (["eval", "--config", "no/such/eval.yaml"], "config file not found"),
    (["eval", "--config", "configs/eval/sql.yaml", "--set", "step_limit=0"], "step_limit"),
    (["synth", "--config", "configs/sql.yaml", "--set", "novalue"], "expected key=value"),
])
def test_user_errors_are_one_clear_line_not_a_traceback(args, message):
    out = lbi(*args, env={"ANTHROPIC_API_KEY": None})
    assert out.returncode == 1
    assert message in out.stdout and "Traceback" not in out.stdout + out.stderr


def test_run_free_text_task_with_a_local_openai_server_unreachable(tmp_path):
    """An unreachable endpoint: one clear message, exit 1, the episode saved as unfinished (not
    a result); no crash, no hang."""
    out = lbi("run", "--task", "How many tracks are there?", "--db", "chinook", "--model",
              "openai/served-model", "--api-base", "http://127.0.0.1:9/v1", "--out",
              str(tmp_path), "--max-retries", "1", "--timeout", "5",
              env={"OPENAI_API_KEY": None, "LBI_CACHE_DIR": str(tmp_path / "c")})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "model endpoint failed" in out.stdout and "Traceback" not in out.stdout + out.stderr
    [path] = list(tmp_path.glob("sql/*/*.json"))
    traj = json.loads(path.read_text())
    assert traj["termination"] is None and "failed after 2 request" in traj["error"]
    assert traj["task"]["env_args"] == {"db": "chinook"} and traj["task"]["origin"] == "user"
