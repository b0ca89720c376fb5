"""The shell environment on the real InterCode-ALFA file systems in a real bubblewrap sandbox."""

from __future__ import annotations

import subprocess

import pytest

from lbi.envs import make_env, splits
from lbi.envs.sandbox import command_failed
from lbi.envs.shell import testbed
from lbi.types import Step, Task


@pytest.fixture(scope="module")
def env():
    environment = make_env("shell", limits={"command_timeout_s": 3, "max_output_chars": 500})
    yield environment
    environment.close()


KEPT = 206  # of 300 here. A racy gold can pass two validation runs by chance on another
TOLERANCE = 3  # machine, so the count is checked within a few tasks.


def user_task(text: str = "look around") -> Task:
    return Task(id="u", env="shell", instruction=text, origin="user")


def test_every_test_split_gold_scores_1_and_doing_nothing_scores_0(env):
    # the test split's golds, which every reported number rests on (validation ran every kept
    # gold already, and scripts/gold_examples.py keeps only dev golds that score 1)
    kept = env.benchmark_tasks()
    assert not splits.not_kept("shell", kept, "test")  # every listed test task runs here
    tasks = splits.select(kept, "test")
    for k, task in enumerate(tasks):
        for gold in [task.gold, *task.alternative_golds]:
            env.reset(task)
            env.step(gold)
            assert env.step("submit") == ("Answer submitted. Episode finished.", True)
            assert env.evaluate() == 1.0, (task.id, gold)
        if k % 5 == 0:  # a sample: an answer with no output and no change is wrong
            env.reset(task)
            env.step("true")
            assert env.evaluate() == 0.0, task.id


def test_the_alfa_tasks_kept_and_dropped(env):
    tasks = env.benchmark_tasks()
    dropped = testbed.dropped_tasks()
    assert len(tasks) + len(dropped) == 300
    assert abs(len(tasks) - KEPT) <= TOLERANCE and {t.difficulty for t in tasks} == {"0", "1", "2"}
    assert all(t.env_args["fs"] in testbed.FILE_SYSTEMS for t in tasks)
    assert "reads host state (uname)" in dropped["alfa-4-001"]
    assert "reads host state (time)" in dropped["alfa-1-050"]  # `time echo 'hello'`: a duration
    # its other gold, `ls -l`, shows /proc's link count: the number of processes on the host
    assert next(t for t in tasks if t.id == "alfa-1-001").alternative_golds == []
    assert "does not name the file" in dropped["alfa-5-003"]  # textfile1_reverse_sorted.txt
    assert "alfa-1-017" not in dropped  # reads /setup_nl2b_fs_1.sh, as upstream's image has it


def test_wrong_answers_score_0_and_either_gold_counts(env):
    tasks = {t.id: t for t in env.benchmark_tasks()}
    task = tasks["alfa-5-001"]  # count the files and folders under /testbed
    env.reset(task)
    env.step("find /testbed -type f | wc -l")
    assert env.evaluate() == 0.0
    task = tasks["alfa-5-006"]  # a file task: the total size of testbed/ in total_size.txt
    env.reset(task)
    env.step("du -sh testbed/ | awk '{print $1}' > other.txt")  # the right content elsewhere
    assert env.evaluate() == 0.0
    env.reset(task)
    env.step("du -s testbed/ | cut -f1 > total_size.txt")  # the second gold's answer
    assert env.evaluate() == 1.0
    env.reset(user_task())
    assert env.evaluate() is None


def test_shell_state_persists_and_output_is_cut(env):
    observation = env.reset(user_task())
    assert "$ ls /testbed\n" in observation and "dir1" in observation
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
    assert env.step("ls -d /testbed/dir1; ls /new.txt")[0] == (
        "/testbed/dir1\nls: cannot access '/new.txt': No such file or directory\n[exit code 2]")


def test_each_file_system_is_its_own_episode(env):
    system = Task(id="s", env="shell", instruction="?", origin="user", env_args={"fs": 2})
    assert "$ ls /system" in env.reset(system)
    assert env.step("ls -d /testbed")[0].endswith("[exit code 2]")


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
    contexts = {c.env_args["fs"]: c for c in env.task_contexts()}
    assert set(contexts) == {1, 2, 3, 5}  # file system 4 has no files of its own
    assert "/system/folder1/text2.txt" in contexts[2].description


def test_check_span_uses_the_last_command_status(env):
    assert env.check_span([], "dir1\ndir2") is True
    assert env.check_span([], "cat: x: No such file or directory\n[exit code 1]") is False
    ls, submit = Step(observation="$", action="ls"), Step(observation="dir1", action="submit")
    assert env.check_span([ls], "dir1") is True
    # a span ending in submit ends on no command (and a lone submit shows nothing)
    assert env.check_span([ls, submit], "Answer submitted. Episode finished.") is False
    assert env.check_span([submit], "Answer submitted. Episode finished.") is False
    # a lone cd shows nothing; cd with a command that prints does
    assert env.check_span([Step(observation="$", action="cd /testbed")], "(no output)") is False
    assert env.check_span([Step(observation="$", action="cd /testbed && ls")], "dir1") is True
    # a pipeline hides a failing command's exit code, not its message
    piped = Step(observation="$", action="ls /workspace | grep a")
    assert env.check_span([piped], "ls: cannot access '/workspace': No such file or "
                                   "directory") is False


def test_lbi_envs_lists_the_shell_as_ready():
    out = subprocess.run(["lbi", "envs"], capture_output=True, text=True, check=True).stdout
    assert "shell" in out and "ready" in out.split("shell", 1)[1].splitlines()[0] + out
