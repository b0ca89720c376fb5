"""Turn documentation files (HTML, plain text) into chunked Documents."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup

from lbi.assets import lbi_home
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


_TEXT_CACHE_VERSION = b"1"  # bump when html_to_text changes what it returns


def html_file_to_text(path: Path) -> tuple[str, str]:
    """``html_to_text`` of a file, cached under ``LBI_HOME/doc-text`` by the file's content:
    parsing the 214 SQLite pages takes ≈ 12 s on 2 cores, and every synthesis run (and every
    docs retrieval row) reads them all to choose its documents."""
    raw = path.read_bytes()
    key = hashlib.sha256(_TEXT_CACHE_VERSION + raw).hexdigest()
    cached = lbi_home() / "doc-text" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError):  # absent, or torn by a crash: parse again
        title, text = json.loads(cached.read_text(encoding="utf-8"))
        return title, text
    title, text = html_to_text(raw.decode("utf-8", errors="replace"))
    with contextlib.suppress(OSError):  # a read-only home costs only the time
        cached.parent.mkdir(parents=True, exist_ok=True)
        # not lbi.io.atomic_path: its one ".tmp" name would be shared by the processes (Ray
        # workers, parallel runs) that parse the same page at once
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps([title, text]), encoding="utf-8")
        tmp.replace(cached)
    return title, text


def documents_from_files(root: Path, patterns: list[str], *, min_chars: int = 200,
                         chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[Document]:
    """Documents from the files under ``root`` matching ``patterns`` (HTML is converted to text).

    Pages shorter than ``min_chars`` (redirects, index stubs) are skipped; long pages are chunked
    on paragraph boundaries. Ids are stable across runs (hash of path and chunk number).
    """
    paths = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    for path in paths:
        if path.suffix in {".html", ".htm"}:
            title, text = html_file_to_text(path)
        else:
            title, text = path.stem, path.read_text(errors="replace")
        if len(text) < min_chars:
            continue
        yield from chunked_documents(str(path.relative_to(root)), str(path), title or path.stem,
                                     text, chunk_chars)


def chunked_documents(key: str, source: str, title: str, text: str,
                      chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[Document]:
    """``text`` as Documents of at most ``chunk_chars``; ids are stable (hash of ``key`` and the
    chunk number), later chunks' titles say which part they are."""
    for k, chunk in enumerate(chunk_text(text, chunk_chars)):
        yield Document(id=content_id(key, k), source=source,
                       title=title if k == 0 else f"{title} (part {k + 1})", text=chunk)


DOC_PATTERNS = ["**/*.html", "**/*.htm", "**/*.md", "**/*.rst", "**/*.txt"]


def documents_from_urls(urls: list[str], *, timeout_s: float = 30.0, min_chars: int = 200,
                        chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[Document]:
    """Documents fetched from ``urls`` (HTML converted to text), for machines that reach them.

    A page that cannot be fetched raises EnvError naming it; nothing is skipped silently.
    """
    import httpx

    from lbi.errors import EnvError

    with httpx.Client(timeout=timeout_s, follow_redirects=True) as client:
        for url in urls:
            try:
                response = client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise EnvError(f"could not fetch documentation page {url}: {exc}") from None
            if "html" in response.headers.get("content-type", "html"):
                title, text = html_to_text(response.text)
            else:
                title, text = url.rsplit("/", 1)[-1], response.text
            if len(text) >= min_chars:
                yield from chunked_documents(url, url, title or url, text, chunk_chars)


def configured_corpus(benchmark: str, docs_dir: str | None, doc_urls: list[str] | None,
                      patterns: list[str] | None = None) -> Iterator[Document]:
    """The documentation corpus a benchmark adapter was configured with: the files under
    ``docs_dir`` and/or the pages at ``doc_urls``. Neither → EnvError saying how to get them."""
    from lbi.errors import EnvError

    if not docs_dir and not doc_urls:
        raise EnvError(f"{benchmark} has no documentation corpus configured: set env_args "
                       "docs_dir (a folder of HTML/Markdown/reST/text pages) or doc_urls (a "
                       f"list of pages to fetch). The README section on {benchmark} lists the "
                       "documentation the paper used and how to download it.")
    if docs_dir:
        root = Path(docs_dir).expanduser()
        if not root.is_dir():
            raise EnvError(f"{benchmark}: docs_dir {docs_dir} is not a folder")
        yield from documents_from_files(root, patterns or DOC_PATTERNS)
    if doc_urls:
        yield from documents_from_urls(list(doc_urls))
