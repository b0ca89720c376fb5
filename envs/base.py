"""What environments share: task contexts, one instance per worker thread, the infrastructure
probe, text helpers. The protocol itself is ``lbi.protocols.Environment``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lbi.protocols import Environment

FINISH_ACTIONS = frozenset({"submit", "stop", "exit"})
"""Bare actions that end an episode in every environment (the agent loop's ``stop``)."""


@dataclass(frozen=True)
class TaskContext:
    """A set-up generated tasks can target, and what the task generator is told about it."""

    env_args: dict[str, Any]
    description: str
    doc_sources: tuple[str, ...] = ()
    """Documents about this set-up (``Document.source`` equal to one of these, or under it as a
    folder): their tasks target this context. Documents no context claims are spread over all."""

    def covers(self, source: str) -> bool:
        return any(source == s or source.startswith(s.rstrip("/") + "/")
                   for s in self.doc_sources)


def check_infrastructure(env: Environment) -> None:
    """Fail fast, before any LLM call, when an environment's infrastructure is missing.

    Adapters over external harnesses (SWE-bench's Docker, WebArena's sites, a desktop VM) have
    a ``check_infrastructure()`` that raises one EnvError naming every missing piece; the
    offline environments have none and pass.
    """
    probe = getattr(env, "check_infrastructure", None)
    if probe is not None:
        probe()


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to ``max_chars``, saying how much was left out (never silently)."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return f"{cut}\n... [truncated: {len(text) - max_chars} more characters]"


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Split text into chunks of at most ``max_chars``, on paragraph boundaries where possible."""
    chunks: list[str] = []
    current = ""
    for para in text.split("\n\n"):
        para = para.strip()
        if not para:
            continue
        while len(para) > max_chars:  # a single huge paragraph: hard split
            if current:
                chunks.append(current)
                current = ""
            chunks.append(para[:max_chars])
            para = para[max_chars:]
        if current and len(current) + 2 + len(para) > max_chars:
            chunks.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    return chunks


class EnvPerThread:
    """One environment instance per worker thread (instances are never shared between threads),
    created on first use; ``close()`` closes them all."""

    def __init__(self, create: Callable[[], Environment]) -> None:
        self._create = create
        self._local = threading.local()
        self._all: list[Environment] = []
        self._lock = threading.Lock()

    def get(self) -> Environment:
        if not hasattr(self._local, "env"):
            self._local.env = self._create()
            with self._lock:
                self._all.append(self._local.env)
        return self._local.env

    def close(self) -> None:
        for env in self._all:
            env.close()
