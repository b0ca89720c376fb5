"""A persistent bash shell inside bubblewrap, for the shell and code environments.

The episode directory on the host is the sandbox's whole writable world: it is bound as ``/``,
with ``/usr`` and ``/etc`` (and any extra paths, e.g. a Python installation) bound read-only on
top, a private ``/tmp``, and no network, IPC, PID or UTS namespace shared with the host.
Everything an action writes lands in the episode directory, so the environment can inspect it
(the shell task's reward compares file-system states) and delete it afterwards.

The sandbox holds against a root caller: bubblewrap itself is started as an unprivileged user
(``SANDBOX_UID``, "nobody") that owns the episode directory, so the shell has no capabilities
in any namespace, cannot remount the read-only binds, and reads only world-readable host files;
only the ``/etc`` entries that programs need are bound; bubblewrap (pid 1 inside) starts with a
minimal environment, so no host variable (API keys) can be read from ``/proc``.

One bash process lives for the whole episode, so the working directory and variables carry over
between actions. Each command has a time limit; a command that runs past it is killed with the
whole sandbox and a fresh shell is started (files stay, the shell state is reset, and the
observation says so). Processes are capped (fork bombs hit the cap, not the host): by
``RLIMIT_NPROC`` for ordinary users and, since that limit does not bind root, by a ``pids``
cgroup when the host user is root. File size and address space are capped by rlimits, the
private ``/tmp`` is a sized tmpfs, and the episode directory has a disk quota, checked while a
command runs (a command that writes past it is killed). Completion of a command is read from a
per-command token; whatever the command does to the shell (fake tokens, redefined builtins,
background processes), the host kills every process but the shell when the command ends.
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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lbi.errors import EnvError
from lbi.io import pid_alive

# Mount points the sandbox needs inside the episode directory; they are not part of its state.
# The sandbox's own mount points and links at / (not part of an episode's files).
SYSTEM_ENTRIES = {"usr", "etc", "proc", "dev", "tmp", "bin", "lib", "lib64", "sbin", ".lbi-bin"}
_LINKS_DIR = "/.lbi-bin"
_SYMLINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
_PIDS_CGROUP_ROOTS = [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")]
_CGROUP_PREFIX = "lbi-sandbox-"
SANDBOX_UID = int(os.environ.get("LBI_SANDBOX_UID", "65534"))
"""The host user a root caller runs the sandbox as ("nobody"; must not be 0)."""
# /etc entries that shells, coreutils and Python read; nothing else of /etc is visible inside.
_ETC_ENTRIES = ("alternatives", "passwd", "group", "nsswitch.conf", "localtime", "timezone",
                "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "hosts", "mime.types", "magic",
                "magic.mime", "manpath.config", "inputrc", "bash.bashrc", "profile", "protocols",
                "services", "ssl", "mailcap", "debian_version", "os-release", "terminfo",
                "python3", "python3.11", "gai.conf", "host.conf")
# The variables bubblewrap itself starts with (it is pid 1 inside, so its environment is
# readable from /proc/1/environ): never the caller's.
_BWRAP_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


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
    max_tmp_mb: int = 64
    """Size of the private ``/tmp`` (a tmpfs, in memory)."""
    max_disk_mb: int = 512
    """Total size of the episode directory: a command that makes it grow past this is killed
    (checked every 50 ms while it runs)."""


_TIMED_OUT = "[the command did not finish within {timeout:g}s and was killed; the shell was " \
    "restarted: working directory and variables are reset]"
_RESTARTED = "[the shell exited; a new shell was started in /]"
_OVER_QUOTA = "[the command was killed: the files of this episode exceeded {mb} MB; the shell " \
    "was restarted]"
_FAILED = "[exit code {code}]"


def command_failed(observation: str) -> bool:
    """Whether an observation (as ``CommandResult.observation`` writes it) reports a failed,
    killed or crashed command."""
    last = observation.rstrip().rsplit("\n", 1)[-1]
    return last.startswith(("[exit code ", "[the command did not finish", "[the shell exited",
                            "[the command was killed"))


@dataclass
class CommandResult:
    output: str
    exit_code: int | None
    """None when the command was killed or the shell died."""
    timed_out: bool = False
    shell_restarted: bool = False
    over_quota_mb: int | None = None
    """Set when the command was killed for exceeding the disk quota (of this many MB)."""

    def observation(self, timeout_s: float) -> str:
        """The command's output as the agent sees it, with its exit status when it failed."""
        text = self.output.rstrip("\n")
        if self.over_quota_mb is not None:
            text += "\n" + _OVER_QUOTA.format(mb=self.over_quota_mb)
        elif self.timed_out:
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
    commands: dict[str, str] = field(default_factory=dict)
    """Extra command names → the programs they run (e.g. ``python`` → ``/usr/bin/python3``),
    first on the PATH."""

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._cgroup: Path | None = None

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        bwrap = bwrap_path()
        if bwrap is None:
            raise EnvError("bubblewrap is not installed; the sandbox needs it.\n"
                           "Fix: sudo apt-get install bubblewrap")
        as_root = os.geteuid() == 0
        if as_root:
            _check_reachable([str(self.root), *self.ro_binds])
        self._prepare_root(as_root)
        if as_root:
            _remove_stale_cgroups()
        self._cgroup = _make_pids_cgroup(self.limits.max_processes) if as_root else None
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "TERM": "dumb",
               "LANG": "C.UTF-8", "PAGER": "cat", "GIT_PAGER": "cat", "PYTHONDONTWRITEBYTECODE":
               "1", "PYTHONNOUSERSITE": "1", **self.env}
        args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--hostname", "sandbox", "--clearenv",
                "--bind", str(self.root), "/", "--ro-bind", "/usr", "/usr",
                "--proc", "/proc", "--dev", "/dev",
                "--size", str(self.limits.max_tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        for entry in _ETC_ENTRIES:
            if os.path.lexists(f"/etc/{entry}"):
                args += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
        for path in self.ro_binds:
            args += ["--ro-bind", path, path]
        if self.commands:
            args += ["--tmpfs", _LINKS_DIR]
            for name, target in self.commands.items():
                args += ["--symlink", target, f"{_LINKS_DIR}/{name}"]
            env["PATH"] = f"{_LINKS_DIR}:{env['PATH']}"
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--chdir", self.workdir, "bash", "--noprofile", "--norc"]
        limits = self.limits
        # A small wrapper shell sets the limits, enters the cgroup and, for a root caller, drops
        # to the sandbox user with no capabilities; then it execs bwrap. Every process in the
        # sandbox inherits all of it. RLIMIT_NPROC counts per host user, so it is the cap only
        # where no cgroup is.
        prelude = (f"ulimit -f {limits.max_file_mb * 1024} && ulimit -v "
                   f"{limits.max_memory_mb * 1024} || exit 97; ")
        if self._cgroup is not None:
            prelude += f'echo $$ > "{self._cgroup / "cgroup.procs"}" || exit 97; '
        else:
            prelude += f"ulimit -u {limits.max_processes} || exit 97; "
        drop = ([shutil.which("setpriv") or "setpriv", f"--reuid={SANDBOX_UID}",
                 f"--regid={SANDBOX_UID}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all"] if as_root else [])
        self._proc = subprocess.Popen(
            ["/bin/bash", "-c", prelude + 'exec "$@"', "sandbox", *drop, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, env=_BWRAP_ENV, cwd="/")

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
        token = secrets.token_hex(12)  # new for every command: an old one ends nothing
        encoded = base64.b64encode(command.encode()).decode()
        # One line: bash reads it whole before running it, so nothing of it is left in the pipe
        # for the command to read. Background processes do not outlive their command (kill -1
        # spares the shell and the namespace's init; a builtin, so it works at the cap); the
        # host checks that too, since the command may redefine anything in its shell.
        script = (f"eval \"$(printf %s '{encoded}' | base64 -d)\" < /dev/null; __lbi_rc=$?; "
                  "\\builtin trap - DEBUG RETURN ERR 2>/dev/null; "
                  "\\builtin kill -9 -1 2>/dev/null; \\builtin kill -9 -1 2>/dev/null; "
                  f"\\builtin wait 2>/dev/null; \\builtin printf '\\n{token} %d\\n' $__lbi_rc\n")
        try:
            self._proc.stdin.write(script.encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return CommandResult("", None, shell_restarted=True)
        result = self._read_until_done(token, time.monotonic() + timeout)
        if self._proc is not None:
            _kill_all_but_shell(self._proc.pid)
        return result

    def _read_until_done(self, token: str, deadline: float) -> CommandResult:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        marker = f"\n{token} ".encode()
        kept = bytearray()
        dropped = 0
        tail = b""  # unparsed end of the stream: where the marker may be
        limit = self.limits.max_output_chars
        # Over the quota, a command may still look and delete, but not add.
        quota = max(self.limits.max_disk_mb * 1024 * 1024, disk_usage(self.root))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                return CommandResult(_cut(kept, dropped), None, timed_out=True)
            if disk_usage(self.root) > quota:
                self.close()
                return CommandResult(_cut(kept, dropped), None,
                                     over_quota_mb=self.limits.max_disk_mb)
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.05))
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
    def _prepare_root(self, as_root: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name, target in _SYMLINKS.items():
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(target)
        if as_root:  # the sandbox user owns the episode's files, and nothing else
            for dirpath, dirnames, filenames in os.walk(self.root):
                os.lchown(dirpath, SANDBOX_UID, SANDBOX_UID)
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_UID)


def episode_dir(prefix: str, parent: Path | None = None) -> Path:
    """A new private directory ``<prefix><pid>-<random>`` for one episode. Directories left by
    processes that no longer run (killed before they could clean up) are removed first."""
    base = Path(parent or tempfile.gettempdir())
    for stale in base.glob(f"{prefix}*-*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))


def read_episode_file(root: Path, relative: str) -> str | None:
    """The text of a regular file inside an episode directory, or None when it is missing or is
    (or lies behind) a symlink: an agent's link must never make the host read its own files."""
    path = root / relative
    current = root
    for part in Path(relative).parts:
        current = current / part
        if current.is_symlink():
            return None
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def disk_usage(root: Path) -> int:
    """Bytes allocated to the files under ``root`` (mount points of the sandbox are empty on
    the host)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


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
            dirnames[:] = [d for d in dirnames if d not in SYSTEM_ENTRIES]
            filenames = [f for f in filenames if f not in SYSTEM_ENTRIES]
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


def _check_reachable(paths: list[str]) -> None:
    """The sandbox user must be able to reach every path bubblewrap binds."""
    for path in paths:
        for parent in [Path(path), *Path(path).parents]:
            if parent.is_dir() and parent != Path(path) and not parent.stat().st_mode & 0o001:
                raise EnvError(
                    f"the sandbox user (uid {SANDBOX_UID}) cannot reach {path}: {parent} is "
                    "closed to other users. Put episode directories under the system's "
                    "temporary directory (the default), or open that folder with chmod o+x.")


def _kill_all_but_shell(bwrap_pid: int) -> None:
    """Kill every process of a sandbox except its init (pid 1 inside) and its shell (pid 2).

    The shell's own clean-up after a command can be undone by the command (it runs in that
    shell); this one runs on the host."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(Path("/proc", entry, "stat"))
        if stat:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    stack = list(children.get(bwrap_pid, []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        status = _read(Path("/proc", str(pid), "status"))
        nspid = next((line.split()[-1] for line in status.splitlines()
                      if line.startswith("NSpid:")), None)
        if nspid not in (None, "1", "2"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _remove_stale_cgroups() -> None:
    """Remove the cgroups of sandboxes whose lbi process was killed before it could."""
    for base in _PIDS_CGROUP_ROOTS:
        for group in base.glob(f"{_CGROUP_PREFIX}*-*"):
            pid = group.name[len(_CGROUP_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                _remove_cgroup(group)


def _make_pids_cgroup(max_pids: int) -> Path | None:
    """A fresh pids cgroup capped at ``max_pids`` (cgroup v1 or v2), or None where the host
    does not allow one (then only the rlimit applies)."""
    for base in _PIDS_CGROUP_ROOTS:
        if not (base / "cgroup.procs").exists():
            continue
        if base == Path("/sys/fs/cgroup") and "pids" not in _read(base / "cgroup.controllers"):
            continue
        group = base / f"{_CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
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
