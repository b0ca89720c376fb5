"""WebArena tasks from the ``webarena-verified`` package (all 812 task records, revised), as
toolkit Tasks, and its evaluator.

A task's instruction is its intent; its set-up (``env_args``) keeps the task id, the sites it
uses and its start URLs with the site placeholders (``__SHOPPING__`` …) that the environment
fills in from its configuration.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from lbi.errors import EnvError
from lbi.types import Task

SITES = ["shopping", "shopping_admin", "reddit", "gitlab", "wikipedia", "map", "homepage"]
"""WebArena's sites; their URLs come from the config or from ``WA_<SITE>`` variables (the
names BrowserGym uses)."""


@cache
def verified() -> Any:
    """The webarena-verified facade (task records + evaluator), loaded once."""
    try:
        from webarena_verified.api import WebArenaVerified
    except ImportError:
        raise EnvError("WebArena needs the webarena-verified package.\n"
                       "Fix: pip install 'learn-by-interact[benchmarks]'") from None
    return WebArenaVerified()


def to_task(record: Any) -> Task:
    """A webarena-verified task record as a Task."""
    return Task(id=f"webarena-{record.task_id}", env="webarena", origin="benchmark",
                instruction=record.intent,
                env_args={"task_id": record.task_id,
                          "sites": [str(s.value if hasattr(s, "value") else s)
                                    for s in record.sites],
                          "start_urls": list(record.start_urls),
                          "task_type": str(record.expected_action)})


def load_tasks(task_ids: list[int] | None = None, sites: list[str] | None = None) -> list[Task]:
    """The benchmark's tasks, optionally only ``task_ids`` or tasks using only ``sites``."""
    records = verified().get_tasks()
    if task_ids is not None:
        by_id = {r.task_id: r for r in records}
        unknown = [i for i in task_ids if i not in by_id]
        if unknown:
            raise EnvError(f"unknown WebArena task ids {unknown} (0 … {len(records) - 1})")
        records = [by_id[i] for i in task_ids]
    tasks = [to_task(r) for r in records]
    if sites is not None:
        tasks = [t for t in tasks if set(t.env_args["sites"]) <= set(sites)]
    return tasks


def fill_urls(url: str, site_urls: dict[str, str]) -> str:
    """``url`` with its ``__SITE__`` placeholders replaced by the configured site URLs."""
    for site in sorted(site_urls, key=len, reverse=True):  # SHOPPING_ADMIN before SHOPPING
        url = url.replace(f"__{site.upper()}__", site_urls[site].rstrip("/"))
    if any(f"__{site.upper()}__" in url for site in SITES):
        raise EnvError(f"no URL configured for a site in {url!r}; set env_args sites "
                       "(or the WA_<SITE> variable)")
    return url


@cache
def _evaluator(sites: tuple[tuple[str, str], ...]) -> Any:
    """webarena-verified configured with the site URLs (it maps trace URLs back to sites);
    one per site configuration, since building it loads all task records."""
    from webarena_verified.api import WebArenaVerified
    from webarena_verified.types.config import WebArenaVerifiedConfig

    return WebArenaVerified(config=WebArenaVerifiedConfig(environments={
        f"__{site.upper()}__": {"urls": [url]} for site, url in sites}))


def evaluate(task_id: int, response: str, har_path: str, site_urls: dict[str, str]) -> float:
    """webarena-verified's score of the agent's final response and network trace (HAR)."""
    from pathlib import Path

    result = _evaluator(tuple(sorted(site_urls.items()))).evaluate_task(
        task_id=task_id, agent_response=response, network_trace=Path(har_path))
    if result.error_msg and str(result.status).lower().endswith("error"):
        raise EnvError(f"webarena-verified could not evaluate task {task_id}: "
                       f"{result.error_msg}")
    return float(result.score)
