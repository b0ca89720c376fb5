"""Small file helpers shared by every stage."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lbi.errors import ConfigError
from lbi.redact import redact_text


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write; it replaces ``path`` only if the block finishes, so a reader
    (or a crash) never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that a reader (or a crash) never sees a half-written file; credentials
    in it are masked first (``lbi.redact``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(redact_text(text)[0], encoding="utf-8")


def lock_dir(folder: Path, what: str) -> IO[str]:
    """Hold an exclusive lock on ``folder`` for this process (released when the returned file
    is closed, or when the process dies): two runs writing one output folder would repeat each
    other's calls and duplicate records."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output folder {folder} is a file; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / ".lock", "a+")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder {folder}: {exc.strerror}") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise ConfigError(f"{folder} is in use by {holder}; wait for it to finish (or stop "
                          "it), or use another output folder.") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{what} (pid {os.getpid()})")
    fh.flush()
    return fh


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (also one of another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
