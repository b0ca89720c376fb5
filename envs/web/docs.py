"""Documents and goals for the web environment.

MiniWoB++ has no documentation: each task is a small page that states its goal. The corpus for
task generation is therefore the task pages themselves: for every synthesis task, the page's
title and static text (from its HTML) and one rendered instance (goal + accessibility tree, at
a synthesis seed). The task generator then proposes other things a user could do on such a
page. Rendering needs the browser, so the corpus and the benchmark goals are cached in
``LBI_HOME/data/web``; the 267 benchmark goals (≈ 3 s each to render, 13 minutes on 2 cores)
also ship with the package, ``benchmark_goals.json``, for the pinned MiniWoB++ wheel (a page's
goal is a function of the page and the seed: renders on two machines gave the same 134 test
goals), so ``lbi run`` or ``lbi eval`` on a fresh machine renders none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import track

from lbi.assets import lbi_home
from lbi.envs.docs import html_to_text
from lbi.envs.web import miniwob
from lbi.io import atomic_write_text
from lbi.types import Document, Task, content_id

if TYPE_CHECKING:
    from lbi.envs.web.env import WebEnv


def _cache() -> dict[str, str]:
    path = lbi_home() / "data" / "web" / "pages.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _store(key: str, value: str) -> str:
    path = lbi_home() / "data" / "web" / "pages.json"
    data = _cache()
    data[key] = value
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return value


def page_snapshot(env: WebEnv, name: str, seed: int) -> str:
    """The first observation of task ``name`` at ``seed`` (cached)."""
    key = f"{name}@{seed}"
    cached = _cache().get(key)
    if cached is not None:
        return cached
    observation = env.reset(Task(id=key, env="web", instruction="", origin="user",
                                 env_args={"task": name, "seed": seed}))
    return _store(key, observation)


SHIPPED_GOALS = Path(__file__).with_name("benchmark_goals.json")


def shipped_goals() -> dict[str, str]:
    """{"goal:<task>@<seed>": goal} shipped for the pinned MiniWoB++ wheel ({} for another)."""
    shipped = json.loads(SHIPPED_GOALS.read_text()) if SHIPPED_GOALS.exists() else {}
    if shipped.get("miniwob") != list(miniwob.MINIWOB_PACKAGE):
        return {}
    return shipped["goals"]


def ship_goals() -> None:
    """Write ``benchmark_goals.json``: every benchmark instance's goal (rendering the ones
    neither shipped nor cached)."""
    instances = [(name, seed) for name in miniwob.BENCHMARK_TASKS
                 for seed in miniwob.BENCHMARK_SEEDS]
    rendered = {f"goal:{name}@{seed}": goal
                for (name, seed), goal in zip(instances, goals(instances), strict=True)}
    atomic_write_text(SHIPPED_GOALS, json.dumps(
        {"miniwob": list(miniwob.MINIWOB_PACKAGE), "goals": rendered},
        indent=0, sort_keys=True) + "\n")


def goals(instances: list[tuple[str, int]]) -> list[str]:
    """The goal MiniWoB states for each (task, seed): shipped, else rendered in one browser
    the first time (≈ 3 s per instance) and read from the cache after."""
    cached = shipped_goals() | _cache()
    missing = [(name, seed) for name, seed in instances if f"goal:{name}@{seed}" not in cached]
    if missing:
        from lbi.envs.web.env import WebEnv

        env = WebEnv()
        try:
            for name, seed in track(sorted(missing),  # by task: one page load per task
                                    description=f"rendering {len(missing)} MiniWoB goals (once "
                                                "per machine)", transient=True):
                first = env.reset(Task(id=f"{name}@{seed}", env="web", instruction="",
                                       origin="user", env_args={"task": name, "seed": seed}))
                cached[f"goal:{name}@{seed}"] = first.split("\n", 1)[0].removeprefix(
                    "Page goal: ")
        finally:
            env.close()
            path = lbi_home() / "data" / "web" / "pages.json"
            atomic_write_text(path, json.dumps(_cache() | cached, indent=1, sort_keys=True))
    return [cached[f"goal:{name}@{seed}"] for name, seed in instances]


def page_docs(env: WebEnv) -> Iterator[Document]:
    """One document per synthesis task: the page's static text and one rendered instance."""
    root = miniwob.html_dir() / "miniwob"
    for seed, name in enumerate(miniwob.SYNTH_TASKS):
        title, static = html_to_text((root / f"{name}.html").read_text(errors="replace"))
        rendered = page_snapshot(env, name, seed)
        text = (f"MiniWoB++ task page {name!r} ({title}).\nStatic text of the page:\n"
                f"{static[:1500]}\n\nOne instance of the page, as the agent sees it:\n{rendered}")
        yield Document(id=content_id("miniwob", name), source=f"miniwob:{name}",
                       title=f"MiniWoB++ {name}", text=text)
