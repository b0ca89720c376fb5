"""The SQL environment's documentation: Debian's ``sqlite3-doc`` HTML pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lbi.envs.docs import documents_from_files
from lbi.errors import EnvError
from lbi.types import Document

SQLITE_DOC_ROOT = Path("/usr/share/doc/sqlite3")
# The SQL language and usage pages; the C API reference (c3ref/) and release logs are not
# tasks a SQL user performs.
SQLITE_DOC_PATTERNS = ["*.html"]


def sqlite_docs(root: Path = SQLITE_DOC_ROOT,
                patterns: list[str] | None = None) -> Iterator[Document]:
    """Documents from the SQLite HTML documentation."""
    if not root.is_dir():
        raise EnvError(f"no SQLite documentation at {root}.\n"
                       "Fix: sudo apt-get install sqlite3-doc (Debian/Ubuntu), or point "
                       "docs_root at a copy of https://sqlite.org/docs.html")
    return documents_from_files(root, patterns or SQLITE_DOC_PATTERNS)
