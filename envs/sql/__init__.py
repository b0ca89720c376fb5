"""SQL environment (SQLite over Spider-dev and Chinook)."""

from __future__ import annotations

from typing import Any

from lbi.envs.sql.docs import SQLITE_DOC_ROOT
from lbi.envs.sql.env import SQLConfig, SQLEnv


def make_env(**kwargs: Any) -> SQLEnv:
    return SQLEnv(SQLConfig(**kwargs))


def missing_dependencies() -> list[str]:
    missing = []
    if not SQLITE_DOC_ROOT.is_dir():
        missing.append("docs: SQLite HTML docs (apt-get install sqlite3-doc)")
    return missing


__all__ = ["SQLConfig", "SQLEnv", "make_env", "missing_dependencies"]
