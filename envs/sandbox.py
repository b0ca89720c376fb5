"""A persistent bash shell inside bubblewrap, for the shell and code environments.

The episode directory on the host is the sandbox's whole writable world: it is bound as ``/``,
with ``/usr`` and ``/etc`` (and any extra paths, e.g. a Python installation) bound read-only on
top, a private ``/tmp``, and no network, IPC, PID or UTS namespace shared with the host.
Everything an action writes lands in the episode directory, so the environment can inspect it
(the shell task's reward compares file-system states) and delete it afterwards.

One bash process lives for the whole episode, so the working directory and variables carry over
between actions. Each command has a time limit; a command that runs past it is killed with the
whole sandbox and a fresh shell is started (files stay, the shell state is reset, and the
observation says so). Processes are capped (fork bombs hit the cap, not the host): by
``RLIMIT_NPROC`` for ordinary users and, since that limit does not bind root, by a ``pids``
cgroup when the host user is root. File size and address space are capped by rlimits.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lbi.errors import EnvError

# Mount points the sandbox needs inside the episode directory; they are not part of its state.
_SYSTEM_ENTRIES = {"usr", "etc", "proc", "dev", "tmp", "bin", "lib", "lib64", "sbin"}
_SYMLINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
_PIDS_CGROUP_ROOTS = [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def missing_sandbox() -> list[str]:
    """What the sandbox lacks on this machine, each with its fix."""
    if bwrap_path() is None:
        return ["bubblewrap (apt-get install bubblewrap)"]
    return []


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of every command run in a sandbox."""

    command_timeout_s: float = 10.0
    """A command still running after this long is killed (and the shell restarted)."""
    max_output_chars: int = 4000
    """Output beyond this is cut (the cut is stated)."""
    max_processes: int = 256
    max_file_mb: int = 64
    """Largest file a command may write."""
    max_memory_mb: int = 4096
    """Address space of each process."""


_TIMED_OUT = "[the command did not finish within {timeout:g}s and was killed; the shell was " \
    "restarted: working directory and variables are reset]"
_RESTARTED = "[the shell exited; a new shell was started in /]"
_FAILED = "[exit code {code}]"


def command_failed(observation: str) -> bool:
    """Whether an observation (as ``CommandResult.observation`` writes it) reports a failed,
    killed or crashed command."""
    last = observation.rstrip().rsplit("\n", 1)[-1]
    return last.startswith(("[exit code ", "[the command did not finish", "[the shell exited"))


@dataclass
class CommandResult:
    output: str
    exit_code: int | None
    """None when the command was killed or the shell died."""
    timed_out: bool = False
    shell_restarted: bool = False

    def observation(self, timeout_s: float) -> str:
        """The command's output as the agent sees it, with its exit status when it failed."""
        text = self.output.rstrip("\n")
        if self.timed_out:
            text += "\n" + _TIMED_OUT.format(timeout=timeout_s)
        elif self.shell_restarted:
            text += "\n" + _RESTARTED
        elif self.exit_code:
            text += "\n" + _FAILED.format(code=self.exit_code)
        return text.strip("\n") or "(no output)"


@dataclass
class Sandbox:
    """A bash shell in bubblewrap whose writable root is ``root`` (a host directory)."""

    root: Path
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    ro_binds: list[str] = field(default_factory=list)
    """Extra host paths bound read-only at the same place (e.g. a Python prefix)."""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._cgroup: Path | None = None
        self._token = secrets.token_hex(8)

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        bwrap = bwrap_path()
        if bwrap is None:
            raise EnvError("bubblewrap is not installed; the sandbox needs it.\n"
                           "Fix: sudo apt-get install bubblewrap")
        self._prepare_root()
        self._cgroup = _make_pids_cgroup(self.limits.max_processes) if os.geteuid() == 0 else None
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "TERM": "dumb",
               "LANG": "C.UTF-8", "PAGER": "cat", "GIT_PAGER": "cat", "PYTHONDONTWRITEBYTECODE":
               "1", "PYTHONNOUSERSITE": "1", **self.env}
        args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                "--hostname", "sandbox", "--clearenv",
                "--bind", str(self.root), "/", "--ro-bind", "/usr", "/usr",
                "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
                "--tmpfs", "/tmp"]
        for path in self.ro_binds:
            args += ["--ro-bind", path, path]
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--chdir", self.workdir, "bash", "--noprofile", "--norc"]
        limits = self.limits
        # The limits are set by a small wrapper shell, which then enters the cgroup and execs
        # bwrap; every process in the sandbox inherits both.
        prelude = (f"ulimit -u {limits.max_processes} && ulimit -f {limits.max_file_mb * 1024} "
                   f"&& ulimit -v {limits.max_memory_mb * 1024} || exit 97; ")
        if self._cgroup is not None:
            prelude += f'echo $$ > "{self._cgroup / "cgroup.procs"}"; '
        self._proc = subprocess.Popen(
            ["/bin/bash", "-c", prelude + 'exec "$@"', "sandbox", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    stream.close()
        if self._cgroup is not None:
            _remove_cgroup(self._cgroup)
            self._cgroup = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- commands -----------------------------------------------------------------------------
    def run(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Run ``command`` in the persistent shell (stdin is /dev/null, stderr goes with stdout)."""
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self.start()
        assert self._proc is not None and self._proc.stdin is not None
        timeout = timeout_s or self.limits.command_timeout_s
        encoded = base64.b64encode(command.encode()).decode()
        script = (f"eval \"$(printf %s '{encoded}' | base64 -d)\" < /dev/null\n"
                  # background processes do not outlive their command (kill -1 spares the
                  # shell and the namespace's init; it is a builtin, so it works at the cap)
                  f"__lbi_rc=$?; kill -9 -1 2>/dev/null; kill -9 -1 2>/dev/null; wait 2>/dev/null\n"
                  f"printf '\\n{self._token} %d\\n' $__lbi_rc\n")
        try:
            self._proc.stdin.write(script.encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return CommandResult("", None, shell_restarted=True)
        return self._read_until_done(time.monotonic() + timeout)

    def _read_until_done(self, deadline: float) -> CommandResult:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        marker = f"\n{self._token} ".encode()
        kept = bytearray()
        dropped = 0
        tail = b""  # unparsed end of the stream: where the marker may be
        limit = self.limits.max_output_chars
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                return CommandResult(_cut(kept, dropped), None, timed_out=True)
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # the shell exited (e.g. the agent ran `exit`)
                self.close()
                kept += tail[: max(0, limit - len(kept))]
                return CommandResult(_cut(kept, dropped), None, shell_restarted=True)
            tail += chunk
            at = tail.find(marker)
            if at >= 0 and tail.find(b"\n", at + len(marker)) >= 0:
                end = tail.find(b"\n", at + len(marker))
                code = int(tail[at + len(marker):end] or b"0")
                body = tail[:at]
                room = max(0, limit - len(kept))
                kept += body[:room]
                dropped += max(0, len(body) - room)
                return CommandResult(_cut(kept, dropped), code)
            # Keep enough of the end to find a marker split across reads.
            keep_back = len(marker) + 16
            if len(tail) > keep_back:
                body, tail = tail[:-keep_back], tail[-keep_back:]
                room = max(0, limit - len(kept))
                kept += body[:room]
                dropped += max(0, len(body) - room)

    # ---- state --------------------------------------------------------------------------------
    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name, target in _SYMLINKS.items():
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(target)


def discard(sandbox: Sandbox | None, root: Path | None) -> None:
    """End an episode: stop its sandbox and delete its directory (either may be None)."""
    if sandbox is not None:
        sandbox.close()
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def snapshot(root: Path) -> dict[str, str]:
    """The state of an episode directory: relative path → content digest (files), ``dir`` or
    ``-> target`` (symlinks). Mount points of the sandbox are left out."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in _SYSTEM_ENTRIES]
            filenames = [f for f in filenames if f not in _SYSTEM_ENTRIES]
        for name in sorted(dirnames):
            path = Path(dirpath) / name
            key = str(rel_dir / name)
            state[key] = f"-> {os.readlink(path)}" if path.is_symlink() else "dir"
        for name in sorted(filenames):
            path = Path(dirpath) / name
            key = str(rel_dir / name)
            if path.is_symlink():
                state[key] = f"-> {os.readlink(path)}"
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                state[key] = digest + ("+x" if os.access(path, os.X_OK) else "")
    return state


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a template into an episode directory: modes kept, times fresh (tasks about
    modification times see files made now)."""
    shutil.copytree(source, dest, symlinks=True, copy_function=shutil.copy, dirs_exist_ok=True)


def _cut(kept: bytearray, dropped: int) -> str:
    text = kept.decode(errors="replace")
    if dropped:
        text += f"\n... [output cut: {dropped} more bytes]"
    return text


def _make_pids_cgroup(max_pids: int) -> Path | None:
    """A fresh pids cgroup capped at ``max_pids`` (cgroup v1 or v2), or None where the host
    does not allow one (then only the rlimit applies)."""
    for base in _PIDS_CGROUP_ROOTS:
        if not (base / "cgroup.procs").exists():
            continue
        if base == Path("/sys/fs/cgroup") and "pids" not in _read(base / "cgroup.controllers"):
            continue
        group = base / f"lbi-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(str(max_pids))
            return group
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
    return None


def _remove_cgroup(group: Path) -> None:
    for _ in range(50):  # the processes take a moment to leave after SIGKILL
        try:
            group.rmdir()
            return
        except OSError:
            for pid in _read(group / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
