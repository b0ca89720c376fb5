"""Shell environment (bash in bubblewrap over the InterCode-ALFA file systems)."""

from __future__ import annotations

from typing import Any

from lbi.envs.sandbox import SandboxLimits, missing_sandbox
from lbi.envs.shell.docs import missing_man
from lbi.envs.shell.env import ShellConfig, ShellEnv


def make_env(limits: dict[str, Any] | None = None, **kwargs: Any) -> ShellEnv:
    return ShellEnv(ShellConfig(limits=SandboxLimits(**(limits or {})), **kwargs))


def missing_dependencies() -> list[str]:
    return missing_sandbox() + missing_man()


__all__ = ["ShellConfig", "ShellEnv", "make_env", "missing_dependencies"]
