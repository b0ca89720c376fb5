"""Documents and goals for the web environment.

MiniWoB++ has no documentation: each task is a small page that states its goal. The corpus for
task generation is therefore the task pages themselves: for every synthesis task, the page's
title and static text (from its HTML) and one rendered instance (goal + accessibility tree, at
a synthesis seed). The task generator then proposes other things a user could do on such a
page. Rendering needs the browser, so the corpus and the benchmark goals are cached in
``LBI_HOME/data/web``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def goals(instances: list[tuple[str, int]]) -> list[str]:
    """The goal MiniWoB states for each (task, seed): rendered in one browser the first time
    (≈ 1 s per instance), then read from the cache."""
    cached = _cache()
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
