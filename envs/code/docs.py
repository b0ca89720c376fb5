"""The code environment's documentation: each package's README and the docstrings of its public
functions and classes (none of the three sdists ships its Sphinx docs)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from lbi.envs.base import chunk_text
from lbi.envs.code import sources
from lbi.envs.docs import DEFAULT_CHUNK_CHARS
from lbi.types import Document, content_id


def module_reference(path: Path, module: str) -> str:
    """``def name(signature)`` + docstring for every public function and class of a module."""
    tree = ast.parse(path.read_text())
    parts = [ast.get_docstring(tree) or ""]
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.ClassDef) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        if isinstance(node, ast.FunctionDef):
            header = f"{module}.{node.name}({ast.unparse(node.args)})"
        else:
            header = f"class {module}.{node.name}"
        parts.append(f"{header}\n{doc}")
    return "\n\n".join(p for p in parts if p)


def package_docs(chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[Document]:
    """README and API reference (from docstrings) of every source package, chunked."""
    for package in sources.PACKAGES.values():
        root = sources.checkout(package)
        pages: list[tuple[str, str, str]] = []
        readme = next((p for p in sorted(root.glob("README*")) if p.is_file()), None)
        if readme:
            pages.append((f"{package.name} README", str(readme), readme.read_text()))
        for path in sorted((root / package.import_name).rglob("*.py")):
            rel = path.relative_to(root)
            if "tests" in rel.parts or path.name.startswith("_") and path.name != "__init__.py":
                continue
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            text = module_reference(path, module)
            if len(text) >= 200:
                pages.append((f"{module} API", str(path), text))
        for title, source, text in pages:
            for k, chunk in enumerate(chunk_text(text, chunk_chars)):
                yield Document(id=content_id(source, k), source=source,
                               title=title if k == 0 else f"{title} (part {k + 1})", text=chunk)
