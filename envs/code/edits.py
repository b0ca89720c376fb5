"""The ``edit`` action: search/replace blocks applied to a file of the episode's checkout.

    edit path/to/file.py
    <<<<<<< SEARCH
    exact lines to find
    =======
    the lines to put there instead
    >>>>>>> REPLACE

Several blocks may follow one ``edit`` line. The SEARCH text must occur exactly once. Paths are
relative to the working directory (/repo) or absolute inside the sandbox, and must stay inside
the episode directory (``..`` and symbolic links out of it are refused).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_BLOCK = re.compile(r"<<<<<<< SEARCH\n(.*?)\n?=======\n(.*?)\n?>>>>>>> REPLACE", re.S)


class EditError(ValueError):
    """An edit that cannot be applied; the message is the agent's observation."""


def is_edit(action: str) -> bool:
    return action.lstrip().startswith("edit ")


def format_edit(path: str, search: str, replace: str) -> str:
    """An ``edit`` action replacing ``search`` with ``replace`` in ``path``."""
    return (f"edit {path}\n<<<<<<< SEARCH\n{search.rstrip(chr(10))}\n=======\n"
            f"{replace.rstrip(chr(10))}\n>>>>>>> REPLACE")


def resolve(root: Path, path: str, workdir: str) -> Path:
    """The host path of sandbox path ``path``; EditError if it leaves the episode directory."""
    inside = Path(workdir, path) if not path.startswith("/") else Path(path)
    host = root / os.path.normpath(inside).lstrip("/")
    real = Path(os.path.realpath(host))
    if not real.is_relative_to(Path(os.path.realpath(root))):
        raise EditError(f"Error: {path} is outside the files you can edit.")
    return real


def apply_edit(action: str, root: Path, workdir: str = "/repo") -> str:
    """Apply an ``edit`` action to the files under ``root``; returns the observation."""
    head, _, body = action.strip().partition("\n")
    path = head[len("edit"):].strip()
    if not path:
        raise EditError("Error: name the file: `edit path/to/file.py` on the first line.")
    blocks = _BLOCK.findall(body + "\n")
    if not blocks:
        raise EditError("Error: no edit block. After `edit <path>` write:\n<<<<<<< SEARCH\n"
                        "<exact lines>\n=======\n<new lines>\n>>>>>>> REPLACE")
    target = resolve(root, path, workdir)
    if not target.is_file():
        raise EditError(f"Error: {path} does not exist (create files with a shell command).")
    text = target.read_text()
    for search, replace in blocks:
        count = text.count(search) if search else 0
        if count != 1:
            problem = "was not found" if count == 0 else f"occurs {count} times"
            raise EditError(f"Error: the SEARCH text {problem} in {path}; nothing was changed. "
                            "Copy the lines exactly (see them with `grep -n` or `sed -n`)"
                            + (" and include more lines to make them unique." if count else "."))
        text = text.replace(search, replace, 1)
    target.write_text(text)
    n = len(blocks)
    return f"Edited {path} ({n} block{'s' if n > 1 else ''} replaced)."
