"""A managed llama.cpp server (``llama-server``) for the embedded models.

Every ``local/…`` model is served by llama.cpp's own C++ server on 127.0.0.1: continuous
batching over ``slots`` parallel sequences, a prompt cache per slot, GBNF grammars and JSON
schemas. litellm reaches it as an OpenAI-compatible endpoint, so the embedded path and a
user's own llama-server or vLLM are the same code.

One server per (model file, slots, context) on a machine. The first process that needs it
starts a small supervisor (``python -m lbi.agent.server supervise``) in its own session: it
runs llama-server, restarts it with one log line if it dies, and stops it once no client
process has been alive for ``idle_s`` seconds (``lbi serve`` keeps it until ``--stop``).
Later processes find it through a state file and reuse it; a killed client does not take it
down. The log is kept beside the state: ``~/.cache/lbi/servers/<key>/server.log``.

The binary is built from the llama.cpp sources that llama-cpp-python vendors
(``build_server``), with runtime CPU dispatch: each x86 kernel variant is a module and the
server loads the best one this CPU has (``CPU_VARIANTS``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lbi.assets import lbi_home, pip_download
from lbi.errors import ModelError
from lbi.io import pid_alive

log = logging.getLogger(__name__)

LLAMA_CPP_SOURCE = ("llama-cpp-python", "0.3.36")
"""The sdist whose vendored llama.cpp the server is built from (only its sources are used)."""
CPU_VARIANTS = ("x64", "haswell", "skylakex", "icelake", "cooperlake", "zen4", "alderlake")
"""The x86 kernel variants built (7 of llama.cpp's 14, halving the compile): a portable
fallback, AVX2, AVX-512, AVX-512 VNNI, + BF16 (Intel), Zen 4, AVX-VNNI. Left out: pre-AVX2
CPUs (they get x64), cannonlake/cascadelake (they get skylakex), and sapphirerapids (AMX),
whose Q4_K repack crashed on AMX Xeons (llama.cpp issue #20824): those get icelake/cooperlake."""
IDLE_S = 120.0
"""A supervisor with no live client for this long stops its server."""
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServerSpec:
    """What identifies one running server."""

    model: str
    """Path of the GGUF file."""
    slots: int
    ctx_per_slot: int
    threads: int | None = None
    """llama.cpp threads; None: the cores free when the server starts (not part of the key:
    a running server is reused whatever its thread count)."""

    @property
    def key(self) -> str:
        stat = Path(self.model).stat()
        name = Path(self.model).stem
        return f"{name}-{stat.st_size}-s{self.slots}-c{self.ctx_per_slot}"


# ---- the binary -------------------------------------------------------------------------------
def install_dir() -> Path:
    return lbi_home() / "llama-server" / LLAMA_CPP_SOURCE[1]


def server_binary() -> Path:
    """The llama-server executable (``LBI_LLAMA_SERVER`` overrides the built one)."""
    override = os.environ.get("LBI_LLAMA_SERVER")
    path = Path(override) if override else install_dir() / "llama-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ModelError(f"llama-server is not built yet ({path}).\nFix: lbi serve --build "
                         "(compiles llama.cpp once, about 15 minutes on 2 cores; "
                         "scripts/install.sh does it)")
    return path


def build_server(jobs: int | None = None) -> Path:
    """Compile llama-server from the vendored llama.cpp sources, with all CPU variants as
    runtime-loaded modules; returns the executable."""
    if shutil.which("cmake") is None:
        raise ModelError("building llama-server needs cmake and a C++ compiler.\n"
                         "Fix: sudo apt-get install cmake g++")
    target = install_dir()
    with tempfile.TemporaryDirectory(prefix="lbi-llama-build-") as tmp:
        [sdist] = pip_download([LLAMA_CPP_SOURCE], Path(tmp), sdist=True)
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        source = next(Path(tmp).glob("*/vendor/llama.cpp"))
        _keep_variants(source / "ggml" / "src" / "CMakeLists.txt", CPU_VARIANTS)
        build = Path(tmp) / "build"
        flags = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON",
                 "-DGGML_CPU_ALL_VARIANTS=ON", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_CURL=OFF",
                 "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 "-DLLAMA_BUILD_SERVER=ON", "-DCMAKE_BUILD_RPATH=$ORIGIN",
                 "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN"]
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), *generator, *flags],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j",
                        str(jobs or os.cpu_count() or 1)], check=True)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        bin_dir = build / "bin"
        for item in bin_dir.iterdir():
            if item.name == "llama-server" or ".so" in item.name:
                shutil.copy2(item, staging / item.name, follow_symlinks=True)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target / "llama-server"


def _keep_variants(cmake_file: Path, keep: tuple[str, ...]) -> None:
    """Drop the x86 CPU variants not in ``keep`` from ggml's variant list."""
    lines = cmake_file.read_text().splitlines(keepends=True)
    pattern = re.compile(r"^\s*ggml_add_cpu_backend_variant\((\w+)")
    kept = [line for line in lines
            if not ((m := pattern.match(line)) and m.group(1) not in keep
                    and not m.group(1).startswith(("armv", "power", "rv", "s390", "loong")))]
    if len(kept) == len(lines):
        raise ModelError(f"no CPU variant list found in {cmake_file}")
    cmake_file.write_text("".join(kept))


# ---- threads ------------------------------------------------------------------------------------
def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def free_cores(window_s: float = 0.5) -> int:
    """Cores this process may use that are not busy now (at least 1), measured over
    ``window_s``, so that llama.cpp never spins on cores another job runs on. (The load
    average lags: a job that ended a minute ago still counts in it.)"""
    cores = len(os.sched_getaffinity(0))
    busy0, total0 = _cpu_times()
    time.sleep(window_s)
    busy1, total1 = _cpu_times()
    online = os.cpu_count() or cores
    busy_cores = (busy1 - busy0) / max(1, total1 - total0) * online
    return max(1, min(cores, cores - round(busy_cores)))


def default_threads() -> int:
    """``LBI_LLAMA_THREADS`` if set, else the free cores (measured now)."""
    return int(os.environ.get("LBI_LLAMA_THREADS", "0")) or free_cores()


# ---- state --------------------------------------------------------------------------------------
def state_dir(spec: ServerSpec) -> Path:
    return lbi_home() / "servers" / spec.key


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return None


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the server at ``url`` (``http://host:port``) answers /health with 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _register_client(folder: Path, pid: int) -> None:
    clients = folder / "clients"
    clients.mkdir(exist_ok=True)
    (clients / str(pid)).touch()


def ensure_server(spec: ServerSpec, client_pid: int | None = None, pinned: bool = False) -> str:
    """The base URL (``http://127.0.0.1:PORT``) of the server for ``spec``: the running one, or
    one started now (blocks until it is healthy). ``client_pid`` (default: this process) keeps
    it alive while that process runs."""
    folder = state_dir(spec)
    with _locked(folder):
        _register_client(folder, client_pid or os.getpid())
        state = _read_state(folder)
        if state and pid_alive(state["supervisor_pid"]):
            if pinned:
                (folder / "pinned").touch()
            return _wait_healthy(folder, state["url"], state["supervisor_pid"])
        server_binary()  # fail here, with the fix, rather than in the supervisor's log
        if spec.threads is None:
            spec = replace(spec, threads=default_threads())
        if pinned:
            (folder / "pinned").touch()
        else:
            (folder / "pinned").unlink(missing_ok=True)
        (folder / "state.json").unlink(missing_ok=True)
        with open(folder / "supervisor.log", "ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", "lbi.agent.server", "supervise",
                 json.dumps(asdict(spec)), str(folder)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)  # a client's Ctrl-C or kill does not reach it
        deadline = time.monotonic() + START_TIMEOUT_S
        while (state := _read_state(folder)) is None:
            if time.monotonic() > deadline:
                raise ModelError(f"llama-server did not start; see {folder / 'server.log'}")
            time.sleep(0.1)
        return _wait_healthy(folder, state["url"], state["supervisor_pid"])


def _wait_healthy(folder: Path, url: str, supervisor: int) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(url):
        if not pid_alive(supervisor) or time.monotonic() > deadline:
            raise ModelError(f"llama-server at {url} is not healthy; see {folder / 'server.log'}")
        time.sleep(0.2)
    return url


def stop_server(spec: ServerSpec) -> bool:
    """Stop the server for ``spec`` (its supervisor stops llama-server); whether one ran."""
    folder = state_dir(spec)
    state = _read_state(folder)
    if not state or not pid_alive(state["supervisor_pid"]):
        return False
    os.kill(state["supervisor_pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while pid_alive(state["supervisor_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def running_state(spec: ServerSpec) -> dict | None:
    """The state of the server for ``spec`` if its supervisor runs."""
    state = _read_state(state_dir(spec))
    return state if state and pid_alive(state["supervisor_pid"]) else None


def running_servers() -> list[dict]:
    """The state of every server with a live supervisor."""
    found = []
    for path in sorted((lbi_home() / "servers").glob("*/state.json")):
        state = _read_state(path.parent)
        if state and pid_alive(state["supervisor_pid"]):
            found.append(state)
    return found


# ---- the supervisor ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(spec: ServerSpec, port: int) -> list[str]:
    return [str(server_binary()), "--model", spec.model, "--host", "127.0.0.1",
            "--port", str(port), "--parallel", str(spec.slots),
            "--ctx-size", str(spec.ctx_per_slot * spec.slots), "--threads", str(spec.threads),
            "--threads-batch", str(spec.threads), "--cont-batching", "--no-webui",
            "--metrics", "--slots", "--seed", "0"]


def _live_clients(folder: Path) -> int:
    live = 0
    for entry in (folder / "clients").glob("*"):
        if entry.name.isdigit() and pid_alive(int(entry.name)):
            live += 1
        else:
            entry.unlink(missing_ok=True)
    return live


def supervise(spec: ServerSpec, folder: Path) -> None:
    """Run llama-server for ``spec`` until no client is left (or SIGTERM), restarting it when
    it dies; its state, clients and log are in ``folder``."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # OpenMP threads that spin at barriers collapse decoding on a busy machine (measured:
    # 20 → 2–3 tok/s); passive waiting keeps it.
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = 0
    with open(folder / "server.log", "ab") as out:
        proc = subprocess.Popen(server_command(spec, port), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        (folder / "state.json").write_text(json.dumps({
            "supervisor_pid": os.getpid(), "server_pid": proc.pid, "url": url,
            "spec": asdict(spec), "started": time.time()}))
        idle_since: float | None = None
        while not stopping:
            time.sleep(0.5)
            if proc.poll() is not None:
                restarts += 1
                log.warning("llama-server (pid %d) exited with code %s; restarting (%d)",
                            proc.pid, proc.returncode, restarts)
                out.write(f"\n[lbi] llama-server exited with code {proc.returncode}; "
                          f"restart {restarts}\n".encode())
                out.flush()
                proc = subprocess.Popen(server_command(spec, port), stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env)
                state = json.loads((folder / "state.json").read_text())
                state["server_pid"] = proc.pid
                (folder / "state.json").write_text(json.dumps(state))
            if (folder / "pinned").exists():
                continue
            if _live_clients(folder):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > float(os.environ.get("LBI_SERVER_IDLE_S",
                                                                      IDLE_S)):
                break
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            (folder / "state.json").unlink()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "supervise":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        supervise(ServerSpec(**json.loads(sys.argv[2])), Path(sys.argv[3]))
