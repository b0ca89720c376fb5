"""The shell environment's documentation: the man pages of the commands its tasks use."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

from lbi.envs.base import chunk_text
from lbi.envs.docs import DEFAULT_CHUNK_CHARS
from lbi.errors import EnvError
from lbi.types import Document, content_id

# Commands of the InterCode gold answers, and the everyday ones around them.
COMMANDS = ["awk", "basename", "cat", "chmod", "cp", "cut", "date", "diff", "dirname", "du",
            "echo", "file", "find", "grep", "gzip", "head", "ln", "ls", "md5sum", "mkdir", "mv",
            "paste", "printf", "rm", "sed", "sha256sum", "sort", "stat", "tail", "tar", "tee",
            "touch", "tr", "uniq", "wc", "xargs"]


def missing_man() -> list[str]:
    if shutil.which("man") is None:
        return ["docs: man pages need the `man` program (apt-get install man-db)"]
    return []


def render_man_page(command: str) -> str:
    """A man page as plain text (empty when the page is not installed)."""
    env = {**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(["man", "-P", "cat", command], capture_output=True, text=True,
                          env=env, timeout=60)
    return proc.stdout if proc.returncode == 0 else ""


def man_page_docs(commands: list[str] | None = None,
                  chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[Document]:
    """Documents from the man pages of ``commands`` (chunked; pages not installed are skipped)."""
    if missing := missing_man():
        raise EnvError(missing[0])
    found = 0
    for command in commands or COMMANDS:
        text = render_man_page(command)
        if not text:
            continue
        found += 1
        for k, chunk in enumerate(chunk_text(text, chunk_chars)):
            title = f"man {command}" + (f" (part {k + 1})" if k else "")
            yield Document(id=content_id("man", command, k), source=f"man:{command}",
                           title=title, text=chunk)
    if not found:
        raise EnvError("no man pages are installed (minimal images delete them).\n"
                       "Fix: install the manpages and man-db packages, and remove the "
                       "path-exclude rule for /usr/share/man from /etc/dpkg/dpkg.cfg.d/")
