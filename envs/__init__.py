"""Environments, by name: the built-in ones, those other packages register, and any
``package.module:factory`` named in a config. ``lbi envs`` shows them with the state of their
dependencies; ``lbi envs check NAME`` checks one against the protocol (``envs/conformance.py``).

An outside package registers an environment with an entry point in the ``lbi.envs`` group whose
value is an ``EnvInfo`` or a factory (docs/environments.md, "Add an environment")::

    [project.entry-points."lbi.envs"]
    tpch = "lbi_tpch:ENV"
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from lbi.errors import ConfigError, EnvError
from lbi.protocols import Environment

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "lbi.envs"


@dataclass(frozen=True)
class EnvInfo:
    """What the toolkit knows about an environment before building one."""

    name: str
    description: str
    factory: str
    """``module:callable`` that builds the environment from ``env_args`` as keyword arguments
    (imported only when needed)."""
    check: str | None = None
    """``module:callable`` returning a list of missing dependencies, each with its fix."""
    licence: str = ""
    """The licences of the sources its data comes from (docs, databases, pages), for the cards
    of the datasets synthesized in it."""

    def _load(self, ref: str) -> Callable:
        module, _, attr = ref.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise EnvError(f"cannot load {ref!r} for the {self.name} environment: "
                           f"{type(exc).__name__}: {exc}") from None

    def missing(self) -> list[str]:
        return self._load(self.check)() if self.check else []

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
                "lbi.envs.sql:make_env", "lbi.envs.sql:missing_dependencies",
                "Spider-dev databases and questions (CC BY-SA 4.0) via InterCode (MIT); Chinook "
                "(MIT); SQLite documentation (public domain)."),
        EnvInfo("shell", "bash in a bubblewrap sandbox; 5 InterCode-ALFA file systems, 206 tasks",
                "lbi.envs.shell:make_env", "lbi.envs.shell:missing_dependencies",
                "InterCode-ALFA file systems and tasks (icalfa, MIT); Debian manual pages (each "
                "page's own free licence, see /usr/share/doc/*/copyright)."),
        EnvInfo("code", "Python checkouts in bubblewrap: 12 injected bugs in toolz/boltons/"
                "tabulate + 164 HumanEval problems", "lbi.envs.code:make_env",
                "lbi.envs.code:missing_dependencies",
                "HumanEval (MIT); toolz, boltons (BSD-3-Clause) and tabulate (MIT) sources and "
                "docs."),
        EnvInfo("web", "MiniWoB++ in Chromium via BrowserGym; 89 tasks x 3 held-out seeds",
                "lbi.envs.web:make_env", "lbi.envs.web:missing_dependencies",
                "MiniWoB++ task pages (MIT) through BrowserGym (Apache-2.0)."),
        # the paper's benchmarks: adapters over their official harnesses (infrastructure needed)
        EnvInfo("swebench", "SWE-bench in its Docker images (swebench harness); needs Docker",
                "lbi.envs.swebench:make_env", "lbi.envs.swebench:missing_dependencies",
                "SWE-bench tasks (MIT); the task repositories under their own licences."),
        EnvInfo("webarena", "WebArena via BrowserGym, 812 webarena-verified tasks; needs the "
                "sites", "lbi.envs.webarena:make_env", "lbi.envs.webarena:missing_dependencies"),
        EnvInfo("osworld", "OSWorld desktop tasks via desktop_env; needs a VM provider",
                "lbi.envs.desktop:make_osworld", "lbi.envs.desktop:missing_osworld"),
        EnvInfo("spider2v", "Spider2-V data-engineering desktop tasks; needs its VM",
                "lbi.envs.desktop:make_spider2v", "lbi.envs.desktop:missing_spider2v"),
    ]
}


@cache
def registered() -> dict[str, EnvInfo]:
    """The built-in environments and those of installed packages (entry points), by name."""
    found = dict(ENVIRONMENTS)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in found:
            log.warning("entry point %s=%s ignored: %r is taken", point.name, point.value,
                        point.name)
            continue
        try:
            found[point.name] = _info_from(point.name, point.value, point.load())
        except Exception as exc:  # a broken plugin must not hide the others
            log.warning("entry point %s=%s could not be loaded: %s", point.name, point.value,
                        exc)
    return found


def _info_from(name: str, ref: str, target: object) -> EnvInfo:
    if isinstance(target, EnvInfo):
        return target
    if callable(target):
        doc = (inspect.getdoc(target) or "").split("\n", 1)[0]
        return EnvInfo(name, doc or f"from {ref}", ref)
    raise EnvError(f"{ref} is neither an EnvInfo nor a factory")


def get_env_info(name: str) -> EnvInfo:
    """A registered environment, or one named by ``package.module:factory`` (an EnvInfo or a
    callable that builds the environment)."""
    environments = registered()
    if name in environments:
        return environments[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise EnvError(f"cannot load the environment {name!r}: {type(exc).__name__}: "
                           f"{exc}") from None
        return _info_from(name, name, target)
    raise EnvError(f"unknown environment {name!r}; available: {', '.join(environments)} (or "
                   "name a factory as package.module:callable)")


def make_env(name: str, **kwargs: object) -> Environment:
    """Build an environment by name; fails with the fix when a dependency is missing."""
    return get_env_info(name).create(**kwargs)
