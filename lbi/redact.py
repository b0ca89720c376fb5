"""Keep credentials out of everything the toolkit writes: datasets, cards, logs of runs, results.

Two layers. Config data is cleaned by key (``redact_config``: ``api_key``, ``Authorization``,
a password inside a URL …). Text is scanned by value (``redact_text``): the values of this
process's secret-looking environment variables (``*_API_KEY``, ``*_TOKEN``, ``*SECRET*`` …)
and common key formats (OpenAI/Anthropic ``sk-…``, Hugging Face ``hf_…``, AWS ``AKIA…``, GitHub
``ghp_…``, Google ``AIza…``, Slack ``xox…-``, bearer tokens). Agent observations are scanned as
they are recorded; every file write and the dataset export scan again (the last line of
defence), and the export counts what it redacted in the dataset card.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "<redacted>"
_SECRET_NAME = re.compile(
    r"api_?key|secret|passw(or)?d|credential|authorization|cookie|private_?key"
    r"|(^|_)(token|key|auth)$", re.I)
"""Credential-like names (``api_key``, ``HF_TOKEN``, ``Authorization``…), not ``max_tokens``."""
_KEY_PATTERNS = re.compile("|".join([
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}",
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{40,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
    r"(?<=[Bb]earer )[A-Za-z0-9._~+/\-]{16,}=*",
]))
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")
_MIN_SECRET_CHARS = 8


def secret_values() -> list[str]:
    """Values of this process's environment variables whose names look like credentials
    (longest first, so that a value containing another is masked whole)."""
    values = {value for name, value in os.environ.items()
              if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_CHARS
              and not value.startswith("/")}  # a path (SSH_AUTH_SOCK) is no credential
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, values: list[str] | None = None) -> tuple[str, int]:
    """``text`` with every secret value, key-shaped string and URL password masked, and the
    number of masks."""
    count = 0
    for value in secret_values() if values is None else values:
        if value in text:
            count += text.count(value)
            text = text.replace(value, MASK)
    text, n = _KEY_PATTERNS.subn(MASK, text)
    count += n
    text, n = _URL_PASSWORD.subn(rf"\1:{MASK}@", text)
    return text, count + n


def redact_config(node: Any) -> Any:
    """Plain config data with the value of every credential-like key masked and every string
    scanned (a password in ``api_base``, a key in a header value)."""
    if isinstance(node, dict):
        return {k: MASK if _SECRET_NAME.search(str(k)) and v else redact_config(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [redact_config(v) for v in node]
    return redact_text(node)[0] if isinstance(node, str) else node


def redact_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Dataset rows with every string (also inside lists and nested dicts) scanned; returns the
    rows and the number of masks."""
    values = secret_values()
    total = 0

    def clean(node: Any) -> Any:
        nonlocal total
        if isinstance(node, str):
            text, n = redact_text(node, values)
            total += n
            return text
        if isinstance(node, list):
            return [clean(v) for v in node]
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items()}
        return node

    return [clean(row) for row in rows], total
