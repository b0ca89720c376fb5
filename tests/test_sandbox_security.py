"""Agent actions that try to leave the sandbox, for every environment that runs commands: the
host is unchanged and the episode goes on (or ends) with a clear observation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lbi.envs import make_env
from lbi.envs.sandbox import Sandbox, SandboxLimits, command_failed
from lbi.types import Task

ENV_ARGS = {"shell": {}, "code": {"package": "toolz"}}


@pytest.fixture(scope="module", params=["shell", "code"])
def env(request):
    environment = make_env(request.param, limits={"command_timeout_s": 3,
                                                  "max_output_chars": 500})
    yield environment
    environment.close()


def fresh(env) -> None:
    env.reset(Task(id="u", env=env.name, instruction="x", origin="user",
                   env_args=ENV_ARGS[env.name]))


def test_host_files_are_out_of_reach(env, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    fresh(env)
    assert "No such file" in env.step(f"cat {secret}")[0]
    assert "Read-only file system" in env.step("echo x > /usr/evil.txt")[0]
    assert "Read-only file system" in env.step("echo x >> /etc/passwd")[0]
    env.step(f"mkdir -p {tmp_path} && echo pwned > {tmp_path}/escape.txt")
    assert not (tmp_path / "escape.txt").exists()  # written inside the sandbox, not the host
    assert secret.read_text() == "host secret"
    assert not Path("/usr/evil.txt").exists()
    assert "No such file" in env.step("ls /home/*/.ssh ~root/.cache 2>&1 | head -1")[0]


def test_network_is_unreachable(env):
    fresh(env)
    out = env.step("python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 80), 3)'"
                   " 2>&1 | tail -1")[0]
    assert "Network is unreachable" in out
    assert "[exit code" in env.step("exec 3<>/dev/tcp/1.1.1.1/80")[0]


def test_commands_that_run_forever_are_killed_and_the_episode_goes_on(env):
    fresh(env)
    env.step("cd / && X=1")
    out = env.step("while true; do :; done")[0]
    assert "did not finish within 3s and was killed" in out and command_failed(out)
    assert env.step("echo ${X:-unset}")[0] == "unset"  # a fresh shell
    assert env.step("ls -d /tmp")[0] == "/tmp"


def test_fork_bombs_are_contained(env):
    before = _host_process_count()
    fresh(env)
    env.step(":(){ :|:& };:")  # backgrounded: killed when the command ends
    assert env.step("echo alive")[0].endswith("alive")
    out = env.step(":(){ :|:; };:")[0]  # in the foreground: hits the process cap, then the timeout
    assert "was killed" in out
    assert env.step("echo still alive")[0] == "still alive"
    assert _host_process_count() < before + 20


def test_the_process_cap_holds(tmp_path):
    with Sandbox(tmp_path, SandboxLimits(max_processes=64)) as box:
        spawned = box.run(
            "python3 -c 'import os, time\nn = 0\nfor _ in range(200):\n    try:\n"
            "        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n"
            "        time.sleep(3)\n        os._exit(0)\n    n += 1\nprint(n)'")
    assert 10 < int(spawned.output.split()[-1]) <= 64


def test_large_files_are_refused(env):
    fresh(env)
    out = env.step("head -c 100000000 /dev/zero > /big.bin; ls -s --block-size=M /big.bin")[0]
    assert "File size limit exceeded" in out or "[exit code" in out
    assert "100M" not in out


def _host_process_count() -> int:
    return len([p for p in os.listdir("/proc") if p.isdigit()])
