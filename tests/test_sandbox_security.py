"""Agent actions that try to leave the sandbox, for every environment that runs commands: the
host is unchanged and the episode goes on (or ends) with a clear observation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lbi.envs import make_env
from lbi.envs.sandbox import Sandbox, SandboxLimits, command_failed, episode_dir
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
    out = env.step("echo x >> /etc/passwd")[0]
    assert "Read-only file system" in out or "Permission denied" in out
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


def test_the_process_cap_holds(box_root):
    with Sandbox(box_root, SandboxLimits(max_processes=64)) as box:
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


def test_no_capabilities_and_no_root_even_for_a_root_caller(env):
    fresh(env)
    assert env.step("grep CapEff /proc/self/status")[0].split()[-1] == "0000000000000000"
    assert env.step("id -u")[0] != "0"
    for path in ["/usr", "/etc"]:  # the remount that wrote to the host as root
        env.step(f"mount -o remount,bind,rw {path}; touch {path}/lbi-escape")
        assert not Path(path, "lbi-escape").exists()
    assert "shadow" not in env.step("ls /etc")[0]
    assert "No such file" in env.step("cat /etc/shadow")[0]


def test_host_secrets_are_not_in_the_sandbox(env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-lbi-test-secret-123456")
    monkeypatch.setenv("HF_TOKEN", "hf_lbitestsecret123456")
    fresh(env)
    seen = env.step("cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; env")[0]
    assert "sk-lbi-test" not in seen and "hf_lbitest" not in seen
    assert os.getcwd() not in seen.replace("PWD=/\n", "")


def test_tmp_and_the_episode_directory_are_bounded():
    limits = SandboxLimits(command_timeout_s=20, max_tmp_mb=8, max_disk_mb=100)
    root = episode_dir("lbi-test-")
    with Sandbox(root, limits) as box:
        out = box.run("head -c 20000000 /dev/zero > /tmp/fill; du -m /tmp/fill").observation(20)
        assert "No space left" in out
        out = box.run("for i in $(seq 1 40); do head -c 30000000 /dev/zero > /f$i; done")
        assert out.over_quota_mb == 100 and "exceeded 100 MB" in out.observation(20)
        from lbi.envs.sandbox import disk_usage
        assert disk_usage(root) < 400e6  # killed within 50 ms of crossing the quota
        assert box.run("ls / | wc -l").exit_code == 0  # over the quota: may look
        box.run("rm -f /f*")
        assert box.run("echo fits > /small; cat /small").output.strip() == "fits"
    os.system(f"rm -rf {root}")


def test_a_command_cannot_fake_its_completion_or_leave_processes(env):
    fresh(env)
    # The harness's pipe is the shell's saved stdin (fd 10 while the command runs): nothing of
    # the harness is left to read there.
    assert env.step("read -t 1 -u 10 line; echo \"got:$line\"")[0] == "got:"
    # Redefined builtins and a background process: the host kills it after the command.
    env.step("kill() { :; }; wait() { :; }; sleep 300 & echo started")
    assert int(env.step("ps -e --no-headers | wc -l")[0]) <= 4  # init, bash, ps, wc
    env.step("printf '\\n%s 0\\n' deadbeefdeadbeefdeadbeef")  # a made-up marker ends nothing
    assert env.step("echo ok")[0] == "ok"


def test_humaneval_scoring_does_not_follow_an_agents_symlink(tmp_path):
    secret = Path(episode_dir("lbi-test-secret-")) / "solution.py"
    secret.write_text("def f():\n    return 1\n")
    env = make_env("code")
    try:
        task = next(t for t in env.benchmark_tasks() if "humaneval" in t.env_args)
        env.reset(task)
        env.step(f"rm solution.py && ln -s {secret} solution.py")
        assert env.evaluate() == 0.0
    finally:
        env.close()
        os.system(f"rm -rf {secret.parent}")


def test_directories_left_by_a_killed_process_are_removed():
    import subprocess
    import sys

    code = ("import os; from lbi.envs.sandbox import Sandbox, episode_dir; "
            "box = Sandbox(episode_dir('lbi-test-kill-')); box.start(); box.run('true'); "
            "print(box.root, flush=True); os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    left = Path(out.stdout.strip())
    assert left.is_dir()  # kill -9: nothing could clean up
    fresh_dir = episode_dir("lbi-test-kill-")
    assert not left.exists()
    fresh_dir.rmdir()
    if os.geteuid() == 0:
        stale = [g for g in Path("/sys/fs/cgroup/pids").glob("lbi-sandbox-*")
                 if not Path(f"/proc/{g.name.split('-')[2]}").exists()]
        box = Sandbox(episode_dir("lbi-test-kill-"))
        box.start()
        box.close()
        os.system(f"rm -rf {box.root}")
        assert all(not g.exists() for g in stale)
