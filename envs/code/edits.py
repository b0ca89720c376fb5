"""The ``edit`` action applied to a file of the episode's checkout.

The SEARCH/REPLACE format and its rules live in ``lbi.envs.editblocks``. Here, paths are
relative to the working directory (/repo) or absolute inside the sandbox, and must stay inside
the episode directory (``..`` and symbolic links out of it are refused).
"""

from __future__ import annotations

import os
from pathlib import Path

from lbi.envs.editblocks import EditError, edited, format_edit, is_edit, parse_edit, replace_blocks


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
    path, blocks = parse_edit(action)
    target = resolve(root, path, workdir)
    if not target.is_file():
        raise EditError(f"Error: {path} does not exist (create files with a shell command).")
    target.write_text(replace_blocks(target.read_text(), blocks, path))
    return edited(path, blocks)


__all__ = ["EditError", "apply_edit", "format_edit", "is_edit", "resolve"]
