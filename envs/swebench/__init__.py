"""SWE-bench adapter over the official ``swebench`` harness (Docker)."""

from __future__ import annotations

from typing import Any

from lbi.envs import infra


def make_env(**kwargs: Any) -> Any:
    infra.require("SWE-bench", [package_problem()], "pip install 'learn-by-interact[benchmarks]'")
    from lbi.envs.swebench.env import SWEBenchConfig, SWEBenchEnv

    return SWEBenchEnv(SWEBenchConfig(**kwargs))


def package_problem() -> str | None:
    """The swebench harness, when it is not installed."""
    return infra.module_problem("swebench", "pip install 'learn-by-interact[benchmarks]'")


def missing_dependencies() -> list[str]:
    return [p for p in (package_problem(), infra.docker_problem(timeout_s=2)) if p]
