"""Turn documentation files (HTML, plain text) into chunked Documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup

from lbi.envs.base import chunk_text
from lbi.types import Document, content_id

DEFAULT_CHUNK_CHARS = 6000
"""About 1,500 tokens: room for a whole document and the task-generation prompt in a 8k context."""


def html_to_text(html: str) -> tuple[str, str]:
    """(title, plain text) of an HTML page, without scripts, styles and navigation."""
    soup = BeautifulSoup(html, "lxml")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    text = soup.get_text("\n")
    text = re.sub(r"[ \t\xa0]+", " ", text)
    text = re.sub(r"\n\s*\n\s*(\n\s*)+", "\n\n", text)
    return title, text.strip()


def documents_from_files(root: Path, patterns: list[str], *, min_chars: int = 200,
                         chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[Document]:
    """Documents from the files under ``root`` matching ``patterns`` (HTML is converted to text).

    Pages shorter than ``min_chars`` (redirects, index stubs) are skipped; long pages are chunked
    on paragraph boundaries. Ids are stable across runs (hash of path and chunk number).
    """
    paths = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    for path in paths:
        raw = path.read_text(errors="replace")
        if path.suffix in {".html", ".htm"}:
            title, text = html_to_text(raw)
        else:
            title, text = path.stem, raw
        if len(text) < min_chars:
            continue
        title = title or path.stem
        rel = str(path.relative_to(root))
        for k, chunk in enumerate(chunk_text(text, chunk_chars)):
            yield Document(id=content_id(rel, k), source=str(path),
                           title=title if k == 0 else f"{title} (part {k + 1})", text=chunk)
