"""Probes for the infrastructure the paper's benchmarks need (a Docker daemon, the WebArena sites,
a desktop VM), and the one error that names what is missing and how to provide it.

Every probe is bounded by a short timeout, so a missing service is reported in seconds instead
of hanging an evaluation. A probe returns None when the dependency is there, else one line that
says what is missing and the fix.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from lbi.errors import EnvError

PROBE_TIMEOUT_S = 5.0


def module_problem(module: str, install: str) -> str | None:
    """Missing Python package ``module`` → the command that installs it."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    return None if found else f"Python package {module!r} ({install})"


def docker_problem(timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """A reachable Docker daemon (``DOCKER_HOST`` or the default socket)."""
    if problem := module_problem("docker", "pip install docker"):
        return problem
    import docker

    try:
        client = docker.from_env(timeout=max(1, int(timeout_s)))
        client.ping()
        client.close()
    except Exception as exc:  # the SDK raises several types for "no daemon"
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return (f"a Docker daemon at {where} (start Docker, or set DOCKER_HOST; "
                f"{type(exc).__name__})")
    return None


def url_problem(name: str, url: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """An HTTP(S) service answering at ``url`` (any status code counts as up)."""
    if not url:
        return f"the URL of {name} (not configured)"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 (the user's own URL)
            pass
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{name} at {url} (not reachable: {reason})"
    return None


def path_problem(name: str, path: str | None, fix: str) -> str | None:
    """An existing file or folder."""
    if not path:
        return f"{name} (not configured; {fix})"
    if not Path(path).expanduser().exists():
        return f"{name} at {path} (does not exist; {fix})"
    return None


def require(benchmark: str, problems: Iterable[str | None], guide: str) -> None:
    """Raise one EnvError listing every missing piece, with where the set-up is described."""
    missing = [p for p in problems if p]
    if missing:
        raise EnvError(f"{benchmark} needs infrastructure this machine does not have:\n"
                       + "\n".join(f"  - {p}" for p in missing)
                       + f"\nHow to provide it: {guide}")
