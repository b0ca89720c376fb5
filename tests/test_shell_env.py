"""The shell environment on the real InterCode-Bash testbed in a real bubblewrap sandbox."""

from __future__ import annotations

import subprocess

import pytest

from lbi.envs import make_env
from lbi.envs.sandbox import command_failed
from lbi.envs.shell.testbed import FIXES, dropped_tasks
from lbi.types import Task


@pytest.fixture(scope="module")
def env():
    environment = make_env("shell", limits={"command_timeout_s": 3, "max_output_chars": 500})
    yield environment
    environment.close()


def user_task(text: str = "look around") -> Task:
    return Task(id="u", env="shell", instruction=text, origin="user")


def test_every_kept_gold_command_reaches_reward_1(env):
    tasks = env.benchmark_tasks()
    assert len(tasks) == 19
    for task in tasks:
        env.reset(task)
        env.step(task.gold)
        assert env.step("submit") == ("Answer submitted. Episode finished.", True)
        assert env.evaluate() == 1.0, task.id


def test_broken_upstream_golds_are_dropped_or_fixed(env):
    dropped = dropped_tasks(env.config.limits)
    assert set(dropped) == {"bash-05", "bash-06", "bash-08", "bash-19", "bash-24"}
    assert "any answer would pass" in dropped["bash-08"]  # no PNG files on the testbed
    kept = {t.id: t for t in env.benchmark_tasks()}
    assert kept["bash-02"].gold == FIXES[2].gold and "\\;" in kept["bash-02"].gold
    assert "/total_size.txt" in kept["bash-07"].instruction


def test_wrong_answers_score_0(env):
    tasks = {t.id: t for t in env.benchmark_tasks()}
    env.reset(tasks["bash-01"])  # an output task: count the entries of /testbed
    env.step("find /testbed -type f | wc -l")
    assert env.evaluate() == 0.0
    env.reset(tasks["bash-04"])  # a file task: the right content under another name
    env.step("sort -r /testbed/dir1/textfile1.txt > /testbed/dir1/other.txt")
    assert env.evaluate() == 0.0
    env.reset(tasks["bash-04"])  # ... and the right file, checked afterwards with cat
    env.step("sort -r /testbed/dir1/textfile1.txt > /testbed/dir1/textfile1_reverse_sorted.txt")
    env.step("cat /testbed/dir1/textfile1_reverse_sorted.txt")
    assert env.evaluate() == 1.0
    env.reset(user_task())
    assert env.evaluate() is None


def test_shell_state_persists_and_output_is_cut(env):
    observation = env.reset(user_task())
    assert "/testbed contains: dir1 dir2 dir3" in observation
    env.step("cd /testbed/dir1 && GREETING=hello")
    assert env.step("echo $GREETING; pwd")[0] == "hello\n/testbed/dir1"
    long = env.step("seq 1 10000")[0]
    assert long.startswith("1\n2\n") and "[output cut:" in long and len(long) < 600
    failed = env.step("cat missing.txt")[0]
    assert failed.endswith("[exit code 1]") and command_failed(failed)


def test_episodes_are_isolated(env):
    env.reset(user_task())
    env.step("rm -rf /testbed/dir1 && echo x > /new.txt")
    env.reset(user_task())
    assert env.step("ls /testbed; ls /new.txt")[0] == (
        "dir1\ndir2\ndir3\nls: cannot access '/new.txt': No such file or directory\n"
        "[exit code 2]")


def test_an_exit_restarts_the_shell(env):
    env.reset(user_task())
    assert "a new shell was started" in env.step("exit 3")[0]
    assert env.step("echo back")[0] == "back"


def test_docs_are_man_pages_and_contexts_list_the_testbed(env):
    docs = list(env.docs())
    titles = {d.title for d in docs}
    assert {"man find", "man grep", "man xargs"} <= titles
    find = next(d for d in docs if d.title == "man find")
    assert "search for files in a directory hierarchy" in find.text
    (context,) = env.task_contexts()
    assert "/testbed/dir1/subdir1/jsonfile1.json" in context.description


def test_check_span_uses_the_last_command_status(env):
    assert env.check_span([], "dir1\ndir2") is True
    assert env.check_span([], "cat: x: No such file or directory\n[exit code 1]") is False


def test_lbi_envs_lists_the_shell_as_ready():
    out = subprocess.run(["lbi", "envs"], capture_output=True, text=True, check=True).stdout
    assert "shell" in out and "ready" in out.split("shell", 1)[1].splitlines()[0] + out
