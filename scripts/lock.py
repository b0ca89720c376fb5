"""Write ``constraints.txt``: the exact versions of every installed package the toolkit (with
the extras that ``scripts/install.sh`` installs) depends on, directly or not.

Run it after the test suite passed on a fresh install; ``scripts/install.sh`` installs with
``-c constraints.txt``, so a new release of a dependency cannot break an install between two
days. The version ranges in pyproject.toml stay open for library users.

    python scripts/lock.py            # rewrites constraints.txt
    python scripts/lock.py --check    # exit 1 if the installed versions differ from the file
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "constraints.txt"
EXTRAS = ("dev", "web", "code", "benchmarks")
FORBIDDEN = {"litellm": {"1.82.7", "1.82.8"}}
"""Releases that must never be installed (malicious)."""


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """Canonical name → installed version of ``root`` and everything it requires."""
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    visited: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in visited:
            continue
        visited.add((name, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency for another platform
        # A local label (torch's +cpu) is dropped: ==2.13.0 also admits a user's CUDA build.
        found[canonicalize_name(dist.metadata["Name"])] = dist.version.split("+")[0]
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((canonicalize_name(req.name), tuple(sorted(req.extras))))
    found.pop(canonicalize_name(root), None)
    return found


def main() -> int:
    pins = closure("learn-by-interact", EXTRAS)
    for name, bad in FORBIDDEN.items():
        if pins.get(name) in bad:
            print(f"{name} {pins[name]} is a known malicious release; refusing to lock it")
            return 1
    text = ("# Tested versions (scripts/lock.py); scripts/install.sh installs with -c.\n"
            + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    if "--check" in sys.argv:
        same = TARGET.exists() and TARGET.read_text() == text
        print("constraints.txt matches the installed versions" if same else
              "constraints.txt differs from the installed versions")
        return 0 if same else 1
    TARGET.write_text(text)
    print(f"wrote {len(pins)} pins to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
