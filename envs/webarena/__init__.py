"""WebArena adapter: BrowserGym in Chromium on user-hosted sites, webarena-verified's tasks and
evaluator."""

from __future__ import annotations

from typing import Any

from lbi.envs import infra
from lbi.envs.web.browser import chromium_path


def make_env(**kwargs: Any) -> Any:
    infra.require("WebArena", package_problems(),
                  "pip install 'learn-by-interact[web,benchmarks]'")
    from lbi.envs.webarena.env import WebArenaConfig, WebArenaEnv

    return WebArenaEnv(WebArenaConfig(**kwargs))


def package_problems() -> list[str | None]:
    """BrowserGym and webarena-verified, when they are not installed."""
    return [infra.module_problem("browsergym.core", "pip install 'learn-by-interact[web]'"),
            infra.module_problem("webarena_verified",
                                 "pip install 'learn-by-interact[benchmarks]'")]


def missing_dependencies() -> list[str]:
    from lbi.envs.webarena.env import site_urls_from_environment

    sites = site_urls_from_environment()
    problems = [*package_problems(),
                None if chromium_path() else "Chromium (apt-get install chromium)",
                None if sites else "the WebArena sites (set WA_SHOPPING, WA_GITLAB, … or "
                                   "env_args.sites; see the README)"]
    problems += [infra.url_problem(f"site {name!r}", url, timeout_s=2)
                 for name, url in sites.items()]
    return [p for p in problems if p]
