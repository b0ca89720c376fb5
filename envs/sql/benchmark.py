"""The SQL benchmark: the full Spider dev set (InterCode's copy), validated against the databases.

The file ships in no package, so it is read by path from ``LBI_DATA_DIR`` and pinned by sha256.
A question is kept only when its gold query can tell a right answer from a wrong one: golds that
fail, return no rows, or return only 0/NULL are dropped (an empty or zero answer would match
them), and so is every question on ``wta_1``, whose tables are empty in the dump.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache

from lbi.assets import external_file
from lbi.envs.sql import databases
from lbi.types import Task

SPIDER_DEV_FILE = "intercode/ic_spider_dev.json"
SPIDER_DEV_SHA256 = "68c9ecb0692c80770f46c724cc073ea76be4f301a294caa532c050546948128e"
SPIDER_DEV_SOURCE = ("the InterCode repository (github.com/princeton-nlp/intercode, commit "
                     "c3e46d8, data/sql/spider/ic_spider_dev.json; InterCode: MIT, Spider: "
                     "CC BY-SA 4.0)")
EMPTY_DATABASES = {"wta_1"}


def _why_unusable(db: str, gold: str) -> str | None:
    if db in EMPTY_DATABASES:
        return "database tables are empty"
    conn = databases.open_readonly(databases.database_path(db))
    try:
        rows = conn.execute(gold).fetchall()
    except Exception as exc:  # noqa: BLE001 - any failure makes the gold unusable
        return f"gold fails ({type(exc).__name__})"
    finally:
        conn.close()
    if not rows:
        return "gold returns no rows"
    if all(v in (None, 0) for row in rows for v in row):
        return "gold returns only 0/NULL"
    return None


@lru_cache(maxsize=1)
def spider_dev() -> tuple[tuple[Task, ...], dict[str, int]]:
    """(usable tasks, dropped count by reason). Task ids are ``spider-NNNN``, the question's
    index in the file; ``difficulty`` is Spider's hardness (easy, medium, hard, extra)."""
    path = external_file(SPIDER_DEV_FILE, SPIDER_DEV_SHA256, SPIDER_DEV_SOURCE)
    tasks: list[Task] = []
    dropped: Counter[str] = Counter()
    for k, item in enumerate(json.loads(path.read_text())):
        reason = _why_unusable(item["db"], item["gold"])
        if reason:
            dropped[reason] += 1
            continue
        tasks.append(Task(id=f"spider-{k:04d}", env="sql", instruction=item["query"].strip(),
                          origin="benchmark", env_args={"db": item["db"]},
                          gold=item["gold"].strip(), difficulty=item["hardness"]))
    return tuple(tasks), dict(dropped)
