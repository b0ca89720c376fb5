"""SQL environment: SQLite databases (Spider-dev, Chinook), one private in-memory copy per episode.

Actions (one per step):
- ``<SQL statement>``: run it; the observation is the result table (truncated) or the error.
- ``submit <SQL>``: run it as the final answer and end the episode (a failing query ends
  nothing: the error is the observation).
- ``stop``: end the episode; the answer is the result of the last query that ran without error.

Reward: execution match of the answer's rows against the gold query's rows (order-insensitive
unless the gold query has ORDER BY).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lbi.envs.base import FINISH_ACTIONS, TaskContext, truncate
from lbi.envs.sql import benchmark, databases
from lbi.envs.sql.docs import sqlite_docs
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

ACTION_SPACE = (
    "You interact with a SQLite database. Each ACTION is exactly one of:\n"
    "- a single SQL statement, e.g. `SELECT name FROM sqlite_master WHERE type = 'table'`; "
    "you see its result rows or the error;\n"
    "- `submit SELECT ...`: run that query as your final answer and finish (if it fails, you "
    "see the error and can try again);\n"
    "- `stop`: finish; the result of your last successful query is your answer.\n"
    "Use only the tables and columns of the schema. Explore the data first when unsure, then "
    "submit the query that answers the objective."
)

_DENIED = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}
# load_extension runs host code; fts3_tokenizer sets a C function pointer from SQL (a known
# code-execution route: a bad pointer crashed the host process).
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer"}
_MAX_VALUE_BYTES = 10_000_000
"""Largest string or blob a statement may make (``zeroblob(200000000)`` is an error)."""


def _authorizer(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    # ATTACH (and VACUUM INTO, which attaches its target) could read or write host files.
    if action in _DENIED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and arg2 and arg2.lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@dataclass
class SQLConfig:
    """Limits of the SQL environment."""

    step_timeout_s: float = 5.0
    """A statement running longer is interrupted; the episode goes on."""
    max_rows: int = 30
    """Rows shown in an observation (the count of the rest is stated)."""
    max_chars: int = 3000
    """Characters shown in an observation."""
    default_db: str = "chinook"
    """Database for tasks that name none (e.g. free-text tasks)."""
    max_growth_mb: int = 64
    """How much an episode's database (and its temporary tables) may grow; past it a
    statement fails with an error observation."""
    max_result_rows: int = 100_000
    """A query returning more rows than this is an error (its rows are not kept)."""


class SQLEnv:
    """SQLite behind the environment protocol."""

    name = "sql"
    action_space = ACTION_SPACE

    def __init__(self, config: SQLConfig | None = None) -> None:
        self.config = config or SQLConfig()
        self.conn: sqlite3.Connection | None = None
        self.task: Task | None = None
        self.answer_rows: list[tuple] | None = None
        self.db = ""
        self._deadline = 0.0

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.close()
        self.task = task
        self.db = task.env_args.get("db", self.config.default_db)
        source = databases.open_readonly(databases.database_path(self.db))
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        source.backup(self.conn)  # private copy: the source file is never written
        source.close()
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
        self._cap_size()
        self.conn.set_authorizer(_authorizer)
        self.conn.set_progress_handler(self._over_time, 10_000)
        self.answer_rows = None
        return f"Database: {self.db}\n{schema_text(self.conn)}"

    def step(self, action: str) -> tuple[str, bool]:
        if self.conn is None:
            raise EnvError("step() before reset()")
        action = action.strip().rstrip(";").strip()
        lowered = action.lower()
        if lowered in FINISH_ACTIONS:
            return "Episode finished.", True
        if lowered.startswith("submit"):
            observation, ok = self._execute(action[len("submit"):].strip())
            if not ok:
                return f"{observation}\nThe query failed, so nothing was submitted.", False
            return f"{observation}\nAnswer submitted. Episode finished.", True
        return self._execute(action)[0], False

    def evaluate(self) -> float | None:
        if self.task is None or not self.task.gold:
            return None
        if self.answer_rows is None:
            return 0.0
        gold = self._gold_rows(self.task)
        ordered = re.search(r"\border\s+by\b", self.task.gold, re.I) is not None
        return float(results_match(self.answer_rows, gold, ordered))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        return sqlite_docs()

    def benchmark_tasks(self) -> list[Task]:
        return list(benchmark.spider_dev()[0])

    def task_contexts(self) -> list[TaskContext]:
        contexts = []
        for db, path in databases.build_databases().items():
            conn = databases.open_readonly(path)
            try:
                if _has_rows(conn):  # nothing to ask about an empty database (wta_1)
                    contexts.append(TaskContext({"db": db},
                                                f"Database: {db}\n{schema_text(conn)}"))
            finally:
                conn.close()
        return contexts

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        """A span is a demonstration when it ends on a query result with a row that is not all
        NULL: something a question can be asked about. An error, a change of schema or data
        ("OK (n rows affected)") or an empty result is not."""
        lines = final_observation.splitlines()
        if len(lines) < 2 or lines[0].startswith(("Error", "OK (", "Episode finished")):
            return False
        rows = [line for line in lines[1:] if line and not line.startswith(
            ("Answer submitted", "... (", "The query failed", "(no rows)"))]
        return any(value.strip() != "NULL" for row in rows for value in row.split(" | "))

    # ---- helpers ------------------------------------------------------------------------------
    def schema(self) -> str:
        assert self.conn is not None
        return schema_text(self.conn)

    def _cap_size(self) -> None:
        """Memory per episode: the in-memory database, its temporary tables and its page cache
        are bounded, so a runaway statement is an error observation, not a host out of memory."""
        assert self.conn is not None
        page = self.conn.execute("PRAGMA page_size").fetchone()[0]
        used = self.conn.execute("PRAGMA page_count").fetchone()[0]
        growth = self.config.max_growth_mb * 1024 * 1024 // page
        self.conn.execute(f"PRAGMA max_page_count = {used + growth}")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        self.conn.execute(f"PRAGMA temp.max_page_count = {growth}")
        self.conn.execute(f"PRAGMA cache_size = -{self.config.max_growth_mb * 1024}")

    def _over_time(self) -> int:
        return int(time.monotonic() > self._deadline)

    def _execute(self, sql: str) -> tuple[str, bool]:
        """Run one statement; returns (observation, ok)."""
        assert self.conn is not None
        if not sql:
            return "Error: empty SQL statement.", False
        self._deadline = time.monotonic() + self.config.step_timeout_s
        limit = self.config.max_result_rows
        try:
            cursor = self.conn.execute(sql)
            rows = cursor.fetchmany(limit + 1)
            if len(rows) > limit:
                return f"Error: the query returns more than {limit:,} rows.", False
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                return (f"Error: the statement ran longer than {self.config.step_timeout_s:g}s "
                        "and was interrupted."), False
            return f"Error: {exc}", False
        except (sqlite3.Error, sqlite3.Warning, ValueError) as exc:
            return f"Error: {exc}", False
        if cursor.description is None:
            return f"OK ({max(cursor.rowcount, 0)} rows affected)", True
        self.answer_rows = rows
        return self._render(cursor.description, rows), True

    def _render(self, description: tuple, rows: list[tuple]) -> str:
        header = " | ".join(d[0] for d in description)
        shown = rows[: self.config.max_rows]
        body = "\n".join(" | ".join("NULL" if v is None else str(v) for v in r) for r in shown)
        more = len(rows) - len(shown)
        text = f"{header}\n{body}" if shown else f"{header}\n(no rows)"
        if more:
            text += f"\n... ({more} more rows, {len(rows)} in total)"
        return truncate(text, self.config.max_chars)

    def _gold_rows(self, task: Task) -> list[tuple]:
        conn = databases.open_readonly(databases.database_path(self.db))
        try:
            return conn.execute(task.gold or "").fetchall()
        finally:
            conn.close()


def _has_rows(conn: sqlite3.Connection) -> bool:
    tables = conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                          "AND name NOT LIKE 'sqlite_%'").fetchall()
    return any(conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() for (table,) in tables)


def schema_text(conn: sqlite3.Connection) -> str:
    """One line per table: name(column type, ...) [n rows], then the foreign keys."""
    lines: list[str] = []
    keys: list[str] = []
    tables = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name").fetchall()
    for (table,) in tables:
        cols = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        count = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        spec = ", ".join(f"{c[1]} {c[2]}".strip() for c in cols)
        lines.append(f"{table}({spec}) [{count} rows]")
        keys += [f"{table}.{fk[3]} -> {fk[2]}.{fk[4]}"
                 for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")').fetchall()]
    text = "Tables:\n" + "\n".join(lines)
    return text + ("\nForeign keys:\n" + "\n".join(keys) if keys else "")


def _normalize(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def results_match(predicted: list[tuple], gold: list[tuple], ordered: bool) -> bool:
    """Execution match: same rows (as multisets, or as sequences when order matters)."""
    pred = [tuple(_normalize(v) for v in r) for r in predicted]
    ref = [tuple(_normalize(v) for v in r) for r in gold]
    return pred == ref if ordered else Counter(pred) == Counter(ref)
