"""Code environment (bug fixing in real packages, HumanEval) in a bubblewrap sandbox."""

from __future__ import annotations

import importlib.util
from typing import Any

from lbi.envs.code.env import CodeConfig, CodeEnv
from lbi.envs.code.sources import system_python_has_pytest
from lbi.envs.sandbox import SandboxLimits, missing_sandbox


def make_env(limits: dict[str, Any] | None = None, **kwargs: Any) -> CodeEnv:
    config = CodeConfig(**kwargs)
    if limits:
        config.limits = SandboxLimits(**limits)
    return CodeEnv(config)


def missing_dependencies() -> list[str]:
    missing = missing_sandbox()
    if importlib.util.find_spec("pytest") is None and not system_python_has_pytest():
        missing.append("pytest, which runs the packages' tests (apt-get install python3-pytest, "
                       "or pip install 'learn-by-interact[code]')")
    return missing


__all__ = ["CodeConfig", "CodeEnv", "make_env", "missing_dependencies"]
