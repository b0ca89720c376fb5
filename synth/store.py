"""Append-only JSONL stores keyed by a content hash: the resume mechanism of every stage.

Each record is one line, flushed and fsynced before ``append`` returns, so a ``kill -9`` can at
worst leave one partial last line. Every line ends with a checksum of the record
(``,"_sha256":"<16 hex>"}``, so it stays one JSON object): reading skips, with a warning, a torn
line, a line that is not UTF-8, and a line whose bytes changed; that item is redone. On reopen,
finished keys are skipped and nothing is written twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from lbi.io import atomic_write_text
from lbi.redact import redact_text

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_CHECKSUM = re.compile(rb',"_sha256":"([0-9a-f]{16})"}$')


def _checksum(record_json: bytes) -> str:
    return hashlib.sha256(record_json).hexdigest()[:16]


def encode_line(record: BaseModel) -> bytes:
    """One store line: the record's JSON (credentials masked) with its checksum as a last
    field."""
    body = redact_text(record.model_dump_json())[0].encode("utf-8")
    return body[:-1] + b',"_sha256":"' + _checksum(body).encode() + b'"}\n'


def decode_line(line: bytes) -> bytes:
    """The record's JSON from a store line; ValueError when the line is damaged. Lines written
    before checksums existed are taken as they are."""
    line = line.rstrip(b"\n")
    line.decode("utf-8")  # UnicodeDecodeError (a ValueError) on a torn multi-byte character
    match = _CHECKSUM.search(line)
    if match is None:
        return line
    body = line[: match.start()] + b"}"
    if _checksum(body) != match.group(1).decode():
        raise ValueError("checksum mismatch: the line was changed after it was written")
    return body


class JsonlStore(Generic[M]):
    """Records of one pydantic type in ``path``, one per key (the record's ``key_field``)."""

    def __init__(self, path: Path, model: type[M], key_field: str = "id") -> None:
        self.path = path
        self.model = model
        self.key_field = key_field
        self._lock = threading.Lock()
        self._records: dict[str, M] = {}
        self.skipped_lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = self.model.model_validate_json(decode_line(line))
                except (ValidationError, ValueError) as exc:
                    self.skipped_lines += 1
                    log.warning("%s:%d: skipped an unreadable record (%s)", self.path, number,
                                str(exc).splitlines()[0])
                    continue
                self._records[getattr(record, self.key_field)] = record

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._records.values()))

    def get(self, key: str) -> M | None:
        return self._records.get(key)

    def append(self, record: M) -> bool:
        """Write ``record`` unless its key is already stored; returns whether it was written."""
        key = getattr(record, self.key_field)
        line = encode_line(record)
        with self._lock:
            if key in self._records:
                return False
            with open(self.path, "ab") as fh:
                if fh.tell() > 0 and not _ends_with_newline(self.path):
                    fh.write(b"\n")  # a previous run died mid-line: keep that garbage separate
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._records[key] = record
        return True


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (temp file + rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))
