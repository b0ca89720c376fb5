"""The `lbi` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
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


def test_tasks_lists_a_split_of_the_spider_questions():
    out = lbi("tasks", "--env", "sql", "--split", "test")
    assert out.returncode == 0 and "447 tasks (test)" in out.stdout
    assert out.stdout.count("│ test ") == 447 and "│ dev " not in out.stdout
    bad = lbi("tasks", "--env", "sql", "--split", "train")
    assert bad.returncode == 1 and "unknown split 'train'" in bad.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "spider-1017", "--model", "local/gpt-17"], "unknown local model"),
    (["run", "--task", "spider-1017", "--model", "no-such-model-xyz"], "unknown model"),
    (["run", "--task", "spider-1017", "--env", "nowhere"], "unknown environment"),
    (["run", "--task", "spider-1017", "--model", "anthropic/claude-3-5-sonnet-20241022"],
     "ANTHROPIC_API_KEY"),
    (["models", "pull", "gpt-17"], "unknown embedded model"),
    (["eval", "--config", "no/such/eval.yaml"], "config file not found"),
    (["eval", "--config", "configs/eval/sql.yaml", "--set", "step_limit=0"], "step_limit"),
    (["synth", "--config", "configs/sql.yaml", "--set", "novalue"], "expected key=value"),
    (["synth", "--config", "configs"], "is a folder"),
    (["synth", "--config", "/usr/bin/bash"], "not a text file"),
    (["synth", "--config", "configs/sql.yaml", "--set", "x=["], "not valid YAML"),
    (["synth", "--config", "configs/sql.yaml", "--set", "env.x=1"], "not a section"),
    (["synth", "--config", "configs/sql.yaml", "--set", "env_args.nope=1"], "env_args for the sql"),
    (["synth", "--config", "configs/sql.yaml", "--set", "docs.max_docs=-1"], "max_docs"),
    (["synth", "--config", "configs/sql.yaml", "--set", "rollout.max_tasks=-2"], "max_tasks"),
    (["synth", "--config", "configs/sql.yaml", "--set", "models.agent.max_retries=-1"],
     "max_retries"),
    (["synth", "--config", "configs/sql.yaml", "--set", "output_dir=/etc/hostname"],
     "is a file"),
    (["eval", "--config", "configs/eval/sql.yaml", "--set", "model.max_concurrency=0"],
     "max_concurrency"),
    (["run", "--task", "x", "--db", "no_such_db", "--model", "openai/m", "--api-base",
      "http://127.0.0.1:9/v1", "--max-retries", "0"], "episode(s) failed"),
    (["run", "--task", "spider-1017", "--max-retries", "-1"], "max_retries"),
])
def test_user_errors_are_one_clear_line_not_a_traceback(args, message):
    out = lbi(*args, env={"ANTHROPIC_API_KEY": None})
    assert out.returncode == 1
    assert message in out.stdout and "Traceback" not in out.stdout + out.stderr


def test_a_list_config_and_a_read_only_output_folder_are_one_line(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- env: sql\n")
    out = lbi("synth", "--config", str(listed))
    assert out.returncode == 1 and "mapping" in out.stdout and "Traceback" not in out.stderr
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    config = tmp_path / "c.yaml"
    config.write_text(f"env: sql\noutput_dir: {locked}/sub\n")
    out = lbi("synth", "--config", str(config), "--until", "docs",
              env={"LBI_SANDBOX_UID": None})
    if os.geteuid() != 0:  # root writes anyway; the message is checked for other users
        assert out.returncode == 1 and "cannot write" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_a_second_run_on_the_same_output_folder_is_refused(tmp_path):
    from lbi.io import lock_dir

    holder = lock_dir(tmp_path / "out", "lbi synth")
    config = tmp_path / "c.yaml"
    config.write_text(f"env: sql\noutput_dir: {tmp_path / 'out'}\n")
    out = lbi("synth", "--config", str(config), "--until", "docs")
    holder.close()
    assert out.returncode == 1 and "is in use by lbi synth (pid" in out.stdout


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


def test_a_full_disk_is_one_line(monkeypatch, capsys):
    import errno

    from lbi import cli

    def full(*_, **__):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/examples.jsonl")

    monkeypatch.setattr(cli, "app", full)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    assert "No space left on device (/data/out/examples.jsonl)" in capsys.readouterr().out
