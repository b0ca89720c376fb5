"""The SQL environment on the real Spider-dev and Chinook databases (real SQLite)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import Counter

import pytest

from lbi.assets import external_file
from lbi.envs import make_env
from lbi.envs.sql import benchmark, databases
from lbi.envs.sql.databases import mysql_dump_to_sqlite
from lbi.envs.sql.env import SQLConfig, SQLEnv, results_match
from lbi.types import Task


def _task(env, task_id: str) -> Task:
    return next(t for t in env.benchmark_tasks() if t.id == task_id)


@pytest.fixture(scope="module")
def env():
    e = make_env("sql")
    yield e
    e.close()


def test_all_databases_convert():
    dbs = databases.build_databases()
    assert len(dbs) == 21 and "chinook" in dbs and "world_1" in dbs
    chinook = sqlite3.connect(dbs["chinook"])
    assert chinook.execute("SELECT count(*) FROM Track").fetchone() == (3503,)
    assert chinook.execute("SELECT count(*) FROM Invoice").fetchone() == (412,)


def test_synthesis_targets_every_database_with_rows(env):
    targeted = {context.env_args["db"] for context in env.task_contexts()}
    assert targeted == set(databases.build_databases()) - {"wta_1"}  # its tables are empty


def test_the_spider_dev_set_keeps_the_questions_whose_gold_can_tell_answers_apart():
    tasks, dropped = benchmark.spider_dev()
    assert len(tasks) == 895 and sum(dropped.values()) == 1034 - 895
    assert dropped == {"database tables are empty": 62, "gold returns no rows": 47,
                       "gold returns only 0/NULL": 30}
    assert Counter(t.difficulty for t in tasks) == {"easy": 222, "medium": 375, "hard": 145,
                                                   "extra": 153}
    assert all(t.env_args["db"] != "wta_1" for t in tasks)


def test_the_spider_dev_file_is_pinned_by_its_hash(tmp_path, monkeypatch):
    from lbi.errors import AssetError

    monkeypatch.setenv("LBI_DATA_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="princeton-nlp/intercode.*LBI_DATA_DIR"):
        external_file(benchmark.SPIDER_DEV_FILE, benchmark.SPIDER_DEV_SHA256,
                      benchmark.SPIDER_DEV_SOURCE)
    (tmp_path / "intercode").mkdir()
    (tmp_path / benchmark.SPIDER_DEV_FILE).write_text("[]")
    with pytest.raises(AssetError, match="not the pinned file"):
        external_file(benchmark.SPIDER_DEV_FILE, benchmark.SPIDER_DEV_SHA256,
                      benchmark.SPIDER_DEV_SOURCE)


def test_mysql_conversion_handles_escapes_keys_and_engine():
    dump = """USE `d`;
CREATE TABLE `t` (
  `id` int NOT NULL AUTO_INCREMENT,
  `name` varchar(20) COLLATE utf8mb4_general_ci DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `name_idx` (`name`(10))
) ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4;
LOCK TABLES `t` WRITE;
INSERT INTO `t` VALUES (1,'O\\'Brien'),(2,'a\\nb');
UNLOCK TABLES;
"""
    statements = mysql_dump_to_sqlite(dump)["d"]
    conn = sqlite3.connect(":memory:")
    for s in statements:
        conn.execute(s)
    assert conn.execute("SELECT name FROM t ORDER BY id").fetchall() == [("O'Brien",), ("a\nb",)]


def test_gold_query_reaches_reward_1_and_wrong_query_0(env):
    task = _task(env, "spider-1017")  # count of dog pets raised by female students
    obs = env.reset(task)
    assert "Database: pets_1" in obs and "has_pet(StuID INT, PetID INT)" in obs
    obs, done = env.step(f"submit {task.gold}")
    assert done and "2" in obs
    assert env.evaluate() == 1.0
    env.reset(task)
    env.step("SELECT count(*) FROM Pets")
    obs, done = env.step("stop")
    assert done and env.evaluate() == 0.0


def test_every_gold_scores_1_and_a_wrong_answer_0(env):
    for task in env.benchmark_tasks():
        env.reset(task)
        env.step(f"submit {task.gold}")
        assert env.evaluate() == 1.0, task.id
        env.reset(task)
        env.step("submit SELECT NULL")  # the answer a model that knows nothing gives
        assert env.evaluate() == 0.0, task.id


def test_a_failing_submit_submits_nothing(env):
    task = _task(env, "spider-1017")
    env.reset(task)
    obs, done = env.step("submit SELECT nope FROM pets")
    assert not done and obs.startswith("Error:") and "nothing was submitted" in obs
    obs, done = env.step(f"submit {task.gold}")
    assert done and env.evaluate() == 1.0


def test_errors_are_observations_and_the_episode_goes_on(env):
    env.reset(Task(id="x", env="sql", instruction="?", origin="user", env_args={"db": "pets_1"}))
    obs, done = env.step("SELECT nope FROM Pets")
    assert obs.startswith("Error:") and "nope" in obs and not done
    obs, done = env.step("SELEC 1")
    assert obs.startswith("Error:") and not done
    obs, done = env.step("SELECT 1 AS one")
    assert obs == "one\n1" and not done


def test_writes_stay_in_the_episode_copy(env):
    src = databases.database_path("pets_1")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    task = Task(id="w", env="sql", instruction="?", origin="user", env_args={"db": "pets_1"})
    env.reset(task)
    assert "OK" in env.step("DELETE FROM Pets")[0]
    assert env.step("SELECT count(*) AS n FROM Pets")[0] == "n\n0"
    env.step("DROP TABLE Student")
    env.reset(task)  # deterministic reset: the data is back
    assert env.step("SELECT count(*) AS n FROM Pets")[0] == "n\n3"
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("escape", [
    "ATTACH DATABASE '/etc/passwd' AS p",
    "ATTACH DATABASE '{tmp}/new.db' AS p",
    "VACUUM INTO '{tmp}/copy.db'",
    "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')",
])
def test_host_files_cannot_be_read_or_written(env, tmp_path, escape):
    env.reset(Task(id="s", env="sql", instruction="?", origin="user", env_args={"db": "pets_1"}))
    obs, done = env.step(escape.format(tmp=tmp_path))
    assert obs.startswith("Error:") and not done
    assert list(tmp_path.iterdir()) == []


def test_long_query_is_interrupted_at_the_step_timeout():
    env = SQLEnv(SQLConfig(step_timeout_s=0.5))
    env.reset(Task(id="t", env="sql", instruction="?", origin="user", env_args={"db": "pets_1"}))
    forever = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT count(*) FROM c")
    t0 = time.monotonic()
    obs, done = env.step(forever)
    assert time.monotonic() - t0 < 3
    assert "interrupted" in obs and not done
    assert env.step("SELECT 2 AS two")[0] == "two\n2"  # still usable
    env.close()


def test_large_results_are_truncated_with_a_count(env):
    env.reset(Task(id="t", env="sql", instruction="?", origin="user", env_args={"db": "chinook"}))
    obs, _ = env.step("SELECT id, name FROM Track")
    assert obs.count("\n") <= env.config.max_rows + 2
    assert "3503 in total" in obs


def test_results_match_semantics():
    assert results_match([(1,), (2,)], [(2,), (1,)], ordered=False)
    assert not results_match([(1,), (2,)], [(2,), (1,)], ordered=True)
    assert not results_match([(1,)], [(1,), (1,)], ordered=False)  # multiset, not set
    assert results_match([(2.0,)], [(2,)], ordered=False)


def test_docs_are_plain_text_chunks(env):
    docs = list(env.docs())
    assert len(docs) > 200
    titles = {d.title for d in docs}
    assert any("SELECT" in t for t in titles)
    assert all("<html" not in d.text.lower() and len(d.text) <= 6000 for d in docs)
    assert len({d.id for d in docs}) == len(docs)


def test_a_page_is_parsed_once_and_again_when_it_changes(tmp_path, monkeypatch):
    """The HTML → text cache (LBI_HOME/doc-text) is keyed by the page's content."""
    import shutil

    from lbi.envs import docs as doc_files

    monkeypatch.setenv("LBI_HOME", str(tmp_path / "home"))
    page = tmp_path / "docs" / "lang_select.html"
    page.parent.mkdir()
    shutil.copy("/usr/share/doc/sqlite3/lang_select.html", page)
    parsed = list(doc_files.documents_from_files(page.parent, ["*.html"]))
    assert parsed and "SELECT" in parsed[0].title

    def parse(html: str) -> tuple[str, str]:
        calls.append(html)
        return "Changed", "changed " * 100

    calls: list[str] = []
    monkeypatch.setattr(doc_files, "html_to_text", parse)
    assert list(doc_files.documents_from_files(page.parent, ["*.html"])) == parsed and not calls
    page.write_text(page.read_text() + "<p>one more paragraph</p>")
    assert list(doc_files.documents_from_files(page.parent, ["*.html"]))[0].title == "Changed"
    assert len(calls) == 1


def test_a_function_pointer_set_from_sql_cannot_crash_the_host():
    """The fts3_tokenizer route segfaulted the host process (rc 139): run it in a child."""
    import subprocess
    import sys

    code = ("from lbi.envs import make_env; from lbi.types import Task\n"
            "env = make_env('sql')\n"
            "env.reset(Task(id='x', env='sql', instruction='x', origin='user'))\n"
            "print(env.step(\"SELECT fts3_tokenizer('x', x'4141414141414141')\")[0])\n"
            "print(env.step('CREATE VIRTUAL TABLE t USING fts3(content, tokenize=x)')[0])\n"
            "print(env.step(\"INSERT INTO t VALUES ('a b c')\")[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "not authorized" in out.stdout


def test_memory_per_episode_is_capped_with_an_observation(env):
    import resource

    env.reset(Task(id="x", env="sql", instruction="x", origin="user"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "too big" in env.step("SELECT length(zeroblob(200000000))")[0]
    assert "more than" in env.step("SELECT a.name FROM track a, track b")[0]
    grow = ("CREATE {} AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "LIMIT 3000000) SELECT x, randomblob(300) AS b FROM c")
    assert "full" in env.step(grow.format("TABLE big"))[0]
    assert "full" in env.step(grow.format("TEMP TABLE big"))[0]
    assert env.step("SELECT count(*) FROM track")[0].endswith("3503")  # the episode goes on
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 300  # 2 GB (zeroblob) and 800 MB (a table) before the caps
