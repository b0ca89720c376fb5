"""Environments, by name. ``lbi envs`` shows them with the state of their dependencies."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from lbi.envs.base import Environment
from lbi.errors import ConfigError, EnvError


@dataclass(frozen=True)
class EnvInfo:
    name: str
    description: str
    factory: str
    """``module:callable`` that builds the environment (imported only when needed)."""
    check: str
    """``module:callable`` returning a list of missing dependencies, each with its fix."""

    def _load(self, ref: str) -> Callable:
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)

    def missing(self) -> list[str]:
        return self._load(self.check)()

    def create(self, **kwargs: object) -> Environment:
        """The environment, built with ``env_args`` as keyword arguments."""
        factory = self._load(self.factory)
        accepted = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        unknown = [k for k in kwargs if k not in accepted] if not takes_any else []
        if unknown:
            raise ConfigError(f"unknown env_args {unknown} for the {self.name} environment; it "
                              f"takes: {', '.join(accepted) or 'none'}")
        try:
            return factory(**kwargs)
        except TypeError as exc:  # a nested config class rejected a field
            raise ConfigError(f"invalid env_args for the {self.name} environment: {exc}") from None


ENVIRONMENTS: dict[str, EnvInfo] = {
    e.name: e
    for e in [
        EnvInfo("sql", "SQLite: 20 Spider-dev databases + Chinook; 895 Spider dev questions",
                "lbi.envs.sql:make_env", "lbi.envs.sql:missing_dependencies"),
        EnvInfo("shell", "bash in a bubblewrap sandbox; 5 InterCode-ALFA file systems, 206 tasks",
                "lbi.envs.shell:make_env", "lbi.envs.shell:missing_dependencies"),
        EnvInfo("code", "Python checkouts in bubblewrap: 12 injected bugs in toolz/boltons/"
                "tabulate + 164 HumanEval problems", "lbi.envs.code:make_env",
                "lbi.envs.code:missing_dependencies"),
        EnvInfo("web", "MiniWoB++ in Chromium via BrowserGym; 89 tasks x 3 held-out seeds",
                "lbi.envs.web:make_env", "lbi.envs.web:missing_dependencies"),
        # the paper's benchmarks: adapters over their official harnesses (infrastructure needed)
        EnvInfo("swebench", "SWE-bench in its Docker images (swebench harness); needs Docker",
                "lbi.envs.swebench:make_env", "lbi.envs.swebench:missing_dependencies"),
        EnvInfo("webarena", "WebArena via BrowserGym, 812 webarena-verified tasks; needs the "
                "sites", "lbi.envs.webarena:make_env", "lbi.envs.webarena:missing_dependencies"),
        EnvInfo("osworld", "OSWorld desktop tasks via desktop_env; needs a VM provider",
                "lbi.envs.desktop:make_osworld", "lbi.envs.desktop:missing_osworld"),
        EnvInfo("spider2v", "Spider2-V data-engineering desktop tasks; needs its VM",
                "lbi.envs.desktop:make_spider2v", "lbi.envs.desktop:missing_spider2v"),
    ]
}


def get_env_info(name: str) -> EnvInfo:
    if name not in ENVIRONMENTS:
        raise EnvError(f"unknown environment {name!r}; available: {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[name]


def make_env(name: str, **kwargs: object) -> Environment:
    """Build an environment by name; fails with the fix when a dependency is missing."""
    info = get_env_info(name)
    return info.create(**kwargs)
