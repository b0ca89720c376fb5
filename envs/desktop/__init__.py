"""OSWorld and Spider2-V adapters over their ``desktop_env`` harness (a VM per episode)."""

from __future__ import annotations

from typing import Any

from lbi.envs.desktop.env import OSWORLD, SPIDER2V, Benchmark, DesktopConfig, DesktopEnv


def _make(benchmark: Benchmark, kwargs: dict[str, Any]) -> DesktopEnv:
    return DesktopEnv(benchmark, DesktopConfig(**kwargs))


def make_osworld(**kwargs: Any) -> DesktopEnv:
    return _make(OSWORLD, kwargs)


def make_spider2v(**kwargs: Any) -> DesktopEnv:
    return _make(SPIDER2V, kwargs)


def _missing(benchmark: Benchmark) -> list[str]:
    env = DesktopEnv(benchmark)
    problem = env._harness_problem()
    return [problem] if problem else []


def missing_osworld() -> list[str]:
    return _missing(OSWORLD)


def missing_spider2v() -> list[str]:
    return _missing(SPIDER2V)
